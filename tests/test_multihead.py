"""The multi-head network: named outputs, per-head history and metrics, held-out combinations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.data import LinesConfig, generate_lines
from cnnlab.data.dataset import compose_factors, decode_factors
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.models import create_model
from cnnlab.predict import predict
from cnnlab.runfolder import read_history
from cnnlab.training import train
from cnnlab.training.run import prepare_dataset

TINY = ("data.lines={per_class: 15}", "train.epochs=2")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mh") / "run"
    train("multihead-lines", out=out, overrides=TINY, quiet=True)
    return out


def test_model_returns_one_output_per_head() -> None:
    model = create_model("multihead", 3, 96)
    out = model(torch.zeros(4, 3, 28, 28))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "length": (4, 1),
        "width": (4, 1),
        "color": (4, 1),
        "angle": (4, 12),
    }
    assert model.heads == {"length": 2, "width": 2, "color": 2, "angle": 12}


def test_history_logs_every_head(run_dir: Path) -> None:
    rows = read_history(run_dir / "history.csv")
    for part in ("train", "test"):
        for head in ("length", "width", "color", "angle"):
            assert f"{part}_{head}_loss" in rows[0] and f"{part}_{head}_acc" in rows[0]
    # joint accuracy can be no better than its weakest head
    assert rows[-1]["test_acc"] <= min(rows[-1][f"test_{h}_acc"] for h in ("length", "angle"))


def test_head_metrics_agree_with_stored_predictions(run_dir: Path) -> None:
    metrics = evaluate_run(run_dir)
    stored = np.load(run_dir / "predictions-test.npz")
    config = LinesConfig(per_class=15)
    truth = config.factor_indices(stored["label"])
    right = {h: stored[f"predicted_{h}"] == truth[h] for h in ("length", "width", "color", "angle")}
    for head, ok in right.items():
        assert metrics.heads[head]["accuracy"] == pytest.approx(ok.mean())
        assert metrics.factor_analysis["factors"][head]["accuracy"] == pytest.approx(ok.mean())
    joint = np.logical_and.reduce(list(right.values())).mean()
    assert metrics.joint_accuracy == pytest.approx(joint)
    assert metrics.accuracy == pytest.approx(joint)  # the decoded 96-way class
    decoded = compose_factors({h: stored[f"predicted_{h}"] for h in truth}, config.levels)
    assert np.array_equal(decoded, stored["predicted"])
    history = read_history(run_dir / "history.csv")[-1]
    assert metrics.joint_accuracy == pytest.approx(history["test_acc"], abs=1e-6)
    assert metrics.heads["angle"]["loss"] == pytest.approx(history["test_angle_loss"], rel=1e-4)


def test_compose_inverts_decode() -> None:
    levels = LinesConfig().levels
    classes = np.arange(96)
    assert np.array_equal(compose_factors(decode_factors(classes, levels), levels), classes)


def test_predict_prints_every_head(run_dir: Path, tmp_path: Path, capsys) -> None:
    images = generate_lines(LinesConfig(per_class=2, test_fraction=0.5, seed=9)).arrays["images"]
    np.savez(tmp_path / "x.npz", images=images[:3])
    rows = predict(run_dir, tmp_path / "x.npz")
    assert set(rows[0].heads) == {"length", "width", "color", "angle"}
    for row in rows:
        length, width, color, angle = (
            row.heads[h][0] for h in ("length", "width", "color", "angle")
        )
        assert row.name == f"len{length}_wid{width}_ang{int(angle):03d}_{color}"
        assert row.probability == pytest.approx(np.prod([p for _, p in row.heads.values()]))
    assert main(["predict", str(run_dir), str(tmp_path / "x.npz")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith("angle,angle_probability")


def test_holdout_keeps_combinations_out_of_training(tmp_path: Path) -> None:
    from cnnlab.training import load_config

    spec = "data.holdout={combinations: [{color: blue, width: 3, angle: 90}], random_fraction: 0.1}"
    config = load_config("multihead-lines", ("data.lines={per_class: 10}", spec))
    dataset = prepare_dataset(config)
    held = set(dataset.provenance["holdout"]["classes"])
    assert {"len7_wid3_ang090_blue", "len15_wid3_ang090_blue"} <= held
    assert 10 <= len(held) <= 12  # 10 random classes, plus the 2 named unless drawn already
    names = dataset.class_names
    assert not held & {names[i] for i in dataset.train.labels.tolist()}
    assert {names[i] for i in dataset.test.labels.tolist()} == held
    assert len(dataset.test) == 10 * len(held)  # every image of a held-out class is tested


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{combinations: [{colour: blue}]}", "no factor 'colour'"),
        ("{combinations: [{angle: 7}]}", "angle has no level 7"),
        ("{fraction: 0.1}", "unknown key.*fraction"),
        ("{random_fraction: 0}", "holds out no class"),
    ],
)
def test_bad_holdout_specs_are_refused(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        train("multihead-lines", out=tmp_path / "x", overrides=(*TINY, f"data.holdout={spec}"))


def test_multihead_needs_factor_labels(tmp_path: Path, mnist_dir: Path) -> None:
    with pytest.raises(CnnlabError, match="needs factor labels"):
        train(
            "multihead-lines",
            out=tmp_path / "x",
            quiet=True,
            overrides=("data.dataset=mnist", f"data.mnist_dir={mnist_dir}", "data.train_limit=100"),
        )
    assert not (tmp_path / "x" / "model.safetensors").exists()
