"""Test-time views (``train.tta``): checked, resolved against the labels, averaged into every
evaluation, the choice of the kept epoch and prediction."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cnnlab.data.registry import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.models.tta import averaged, check_tta, resolve_tta
from cnnlab.runfolder import RunFolder
from cnnlab.training import load_run, train
from cnnlab.training.config import load_config
from cnnlab.training.recipe import recipe_config


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .npz of 240 16x16 RGB pictures of 3 classes, a bright square in a class's corner:
    a left-right mirror changes what the picture shows, not its class's name."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 80)
    images = rng.integers(0, 60, (240, 16, 16, 3), dtype=np.uint8)
    for k, (r, c) in enumerate([(0, 0), (0, 8), (8, 0)]):
        images[labels == k, r : r + 8, c : c + 8] = 220
    path = tmp_path_factory.mktemp("tta") / "corners.npz"
    np.savez(path, images=images, labels=labels)
    return path


def test_tta_is_checked_in_the_config() -> None:
    assert load_config("part2-mnist", ["train.tta=flip"]).train.tta == "flip"
    assert load_config("part2-mnist", ["train.tta=[hflip, vflip]"]).train.tta == ["hflip", "vflip"]
    assert load_config("part2-mnist").train.tta == "none"
    for bad in ("mirror", ["hflip", "hflip"], ["rotate90"], 3):
        with pytest.raises(CnnlabError, match=r"train\.tta"):
            check_tta(bad)


def test_views_that_would_change_a_label_are_left_out_or_refused(pictures: Path) -> None:
    plain = load_dataset(pictures)
    assert resolve_tta("flip", plain) == (["hflip"], [])
    assert resolve_tta(["hflip", "vflip"], plain) == (["hflip", "vflip"], [])
    digits = dataclasses.replace(plain, upright=True)  # as MNIST is
    views, notes = resolve_tta("flip", digits)
    assert views == [] and len(notes) == 1 and "mirrored or turned" in notes[0]
    with pytest.raises(CnnlabError, match=r"train.tta: hflip: .*mirrored"):
        resolve_tta(["hflip"], digits)
    lines = load_dataset("lines", lines={"per_class": 2, "test_fraction": 0.5})
    views, notes = resolve_tta("flip", lines)  # the angle would be mapped, not kept
    assert views == [] and "would change factor 'angle'" in notes[0]
    with pytest.raises(CnnlabError, match=r"factor .angle."):
        resolve_tta(["vflip"], lines)
    assert resolve_tta("none", lines) == ([], [])


def test_outputs_are_averaged_over_the_image_and_its_views() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 2, 3)
    batch = torch.randn(4, 1, 6, 6)

    def model(x: torch.Tensor) -> torch.Tensor:
        return conv(x).flatten(1)

    expected = (model(batch) + model(batch.flip(-1)) + model(batch.flip(-2))) / 3
    assert torch.allclose(averaged(model, batch, ["hflip", "vflip"]), expected, atol=1e-6)
    assert torch.equal(averaged(model, batch, []), model(batch))

    def heads(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": model(x), "b": -model(x)}

    both = averaged(heads, batch, ["hflip"])
    half = (model(batch) + model(batch.flip(-1))) / 2
    assert torch.allclose(both["a"], half, atol=1e-6) and torch.allclose(both["b"], -half)


def test_a_run_with_flip_views_evaluates_chooses_and_predicts_with_them(
    pictures: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    sets = ["train.epochs=2", "train.batch_size=32", "train.tta=flip"]
    run = train(recipe_config(str(pictures), sets), out=out, quiet=True)
    recorded = yaml.safe_load(RunFolder(out).config.read_text())
    assert recorded["train"]["tta"] == ["hflip"]  # resolved once, recorded as resolved
    loaded = load_run(out)
    assert loaded.views == ["hflip"]
    data = load_dataset(pictures)  # the run's test split: the same seed, the same fraction
    images, labels = data.test.images, data.test.labels
    with torch.inference_mode():
        x = loaded.preprocess(images).contiguous(memory_format=torch.channels_last)
        by_hand = (loaded.model(x) + loaded.model(x.flip(-1))) / 2
        alone = loaded.model(x)
    outputs = loaded.outputs(images)
    assert torch.allclose(outputs, by_hand, atol=1e-4)
    accuracy = float((outputs.argmax(1) == labels).float().mean())
    loss = float(torch.nn.functional.cross_entropy(outputs, labels, label_smoothing=0.1))
    plain = float(torch.nn.functional.cross_entropy(alone, labels, label_smoothing=0.1))
    assert abs(loss - plain) > 1e-3  # the views make a difference to tell
    metrics = evaluate_run(out)
    assert metrics.accuracy == pytest.approx(accuracy, abs=1e-6)
    assert metrics.loss == pytest.approx(loss, abs=1e-4)
    info = json.loads(RunFolder(out).info.read_text())
    assert info["final"]["test_acc"] == pytest.approx(accuracy, abs=1e-5)
    kept = max(run.history, key=lambda r: (r["val_acc"], r["epoch"]))
    assert kept["test_loss"] == pytest.approx(loss, abs=1e-3)  # measured with the views


def test_data_upright_takes_mirrors_out_of_training_and_prediction(
    pictures: Path, tmp_path: Path
) -> None:
    sets = ["train.epochs=1", "train.batch_size=64", "train.augment=light", "train.tta=flip"]
    assert recipe_config(str(pictures), sets).data.upright is None
    out = tmp_path / "upright"
    train(recipe_config(str(pictures), [*sets, "data.upright=true"]), out=out, quiet=True)
    recorded = yaml.safe_load(RunFolder(out).config.read_text())
    assert recorded["data"]["upright"] is True and recorded["train"]["tta"] == []
    assert load_run(out).views == []
    with pytest.raises(CnnlabError, match=r"data.upright must be bool or null"):
        recipe_config(str(pictures), ["data.upright=sometimes"])
