"""The default recipe: ``cnnlab train DATA`` with no preset, a net chosen for the data, the
weights kept chosen on validation, label-safe augmentation, the run named after the data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_helpers import assert_one_line_error, run

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder
from cnnlab.training import train
from cnnlab.training.config import load_config
from cnnlab.training.recipe import (
    choose_model,
    is_data_source,
    recipe_config,
    resolve_model,
    run_name_for,
)

QUICK = ("train.epochs=2", "train.batch_size=32")


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """An .npz of 240 16x16 RGB images of 3 classes (a bright square in a class's corner)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 80)
    images = rng.integers(0, 60, (240, 16, 16, 3), dtype=np.uint8)
    for k, (r, c) in enumerate([(0, 0), (0, 8), (8, 0)]):
        images[labels == k, r : r + 8, c : c + 8] = 220
    path = tmp_path / "my corner pictures.npz"
    np.savez(path, images=images, labels=labels)
    return path


def test_data_is_told_from_configs(tmp_path: Path, pictures: Path) -> None:
    (tmp_path / "config.yaml").write_text("name: x\n")
    assert is_data_source("mnist") and is_data_source("lines") and is_data_source(str(pictures))
    assert is_data_source(str(tmp_path))
    assert not is_data_source("part2-mnist") and not is_data_source(str(tmp_path / "config.yaml"))
    assert not is_data_source(str(tmp_path / "missing"))
    assert run_name_for(str(pictures)) == "my-corner-pictures"
    assert run_name_for("photos/") == "photos" and run_name_for("mnist") == "mnist"


def test_the_recipe_picks_a_net_for_the_image_size() -> None:
    assert choose_model(3, 10, (32, 32))["name"] == "resnet"
    assert choose_model(1, 10, (28, 28))["name"] == "resnet"
    small = choose_model(1, 10, (8, 8))
    assert small["name"] == "convnet" and small["downsample"] == "maxpool"
    config = recipe_config("mnist", ["model.init_from=runs/x"])
    assert config.model.to_dict() == {"name": "auto", "init_from": "runs/x"}
    resolved = resolve_model(config, 1, 10, (28, 28))
    assert resolved.model.to_dict() == {"name": "resnet", "depth": [2, 2, 2], "init_from": "runs/x"}
    plain = load_config("part2-mnist")
    assert resolve_model(plain, 1, 10, (28, 28)) is plain


def test_train_data_runs_the_recipe_end_to_end(
    pictures: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    sets = [arg for kv in QUICK for arg in ("--set", kv)]
    assert main(["train", str(pictures), *sets]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "my-corner-pictures"
    folder = RunFolder(run)
    config = yaml.safe_load(folder.config.read_text())
    assert config["model"]["name"] == "resnet"  # chosen for 16 px, recorded as chosen
    assert config["data"]["val_fraction"] == 0.1 and config["train"]["keep"] == "best"
    assert config["train"]["augment"] == "light" and config["train"]["tta"] == ["hflip"]
    assert "Augmentation: crop, hflip" in out and "Test-time views: hflip" in out
    assert folder.augmented.is_file()
    history = folder.read_history()
    best = max(history, key=lambda r: (r["val_acc"], r["epoch"]))
    info = json.loads(folder.info.read_text())
    assert info["final"]["test_acc"] == pytest.approx(best["test_acc"], abs=1e-5)
    assert f"the weights of epoch {int(best['epoch'])}, the best on validation" in out


def test_keep_best_needs_a_validation_split(pictures: Path, tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match=r"train.keep best: .* set data.val_fraction"):
        train(
            recipe_config(str(pictures), ["data.val_fraction=0", *QUICK]),
            out=tmp_path / "run",
            quiet=True,
        )


def test_weight_ema_is_what_is_evaluated_chosen_and_kept(tmp_path: Path) -> None:
    """With train.ema the moving average of the weights is evaluated every epoch, chosen
    (keep best) and saved; the trained weights go on in the checkpoint for a resume."""
    from safetensors.torch import load_file

    from cnnlab.evaluate import evaluate_run
    from cnnlab.training.checkpoint import load_checkpoint

    out = tmp_path / "ema"
    overrides = (
        "data.dataset=lines",
        "data.lines={per_class: 8, test_fraction: 0.25}",
        "data.val_fraction=0.2",
        "train.epochs=2",
        "train.batch_size=32",
        "train.ema=0.9",
        "train.keep=best",
    )
    run = train("part1-lines", out=out, overrides=overrides, quiet=True)
    folder = RunFolder(out)
    saved = load_file(str(folder.weights))
    best = load_checkpoint(folder.checkpoint("best"))
    average = {k.removeprefix("module."): v for k, v in best["ema"].items() if k != "n_averaged"}
    assert saved.keys() == average.keys()
    assert all(torch.equal(saved[k], average[k]) for k in saved)
    assert not all(torch.equal(saved[k], best["model"][k]) for k in saved)  # not the trained
    kept = next(r for r in run.history if r["epoch"] == best["epoch"])
    assert evaluate_run(out).accuracy == pytest.approx(kept["test_acc"], abs=1e-5)


def test_a_missing_data_path_is_named_as_data_or_config(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "my photos"
    code, out, err = run(capsys, "train", missing)
    assert_one_line_error(code, out, err, f"'{missing}': no such file or folder", "Give DATA (")
    assert "CONFIG (a YAML file or a preset: default, " in err


def test_recipe_picks_the_preset_a_data_run_starts_from(
    pictures: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "borrowed"
    sets = ("--set", "train.epochs=1", "--out", out)
    assert run(capsys, "train", pictures, "--recipe", "part2-mnist", *sets)[0] == 0
    config = yaml.safe_load(RunFolder(out).config.read_text())
    assert config["name"] == "my-corner-pictures"  # named after the data, not the preset
    assert config["model"]["name"] == "convnet" and config["train"]["optimizer"] == "adam"
    assert config["data"]["dataset"] == str(pictures)
    code, out_text, err = run(capsys, "train", "part2-mnist", "--recipe", "default")
    assert_one_line_error(code, out_text, err, "--recipe goes with DATA")


def test_a_recorded_config_matches_the_request_it_resolved() -> None:
    """A study or a rerun asks for model.name auto and tta flip; the run records the net and
    views it got: that is the same request, another init_from or view is not."""
    from cnnlab.training.recipe import as_requested

    asked = recipe_config("mnist", ["model.init_from=runs/x"]).to_dict()
    got = {
        **asked,
        "model": {"name": "resnet", "depth": [2, 2, 2], "init_from": "runs/x"},
        "train": {**asked["train"], "tta": ["hflip"]},
    }
    assert as_requested(got, asked) == asked
    assert as_requested({**got, "train": {**got["train"], "tta": []}}, asked) == asked
    other = {**got, "model": {**got["model"], "init_from": "runs/y"}}
    assert as_requested(other, asked)["model"] == other["model"]
    vertical = {**got, "train": {**got["train"], "tta": ["vflip"]}}
    assert as_requested(vertical, asked)["train"]["tta"] == ["vflip"]
    plain = load_config("part2-mnist").to_dict()
    assert as_requested({**plain, "train": {**plain["train"], "tta": []}}, plain) == plain
