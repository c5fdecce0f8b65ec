"""Evaluating a run on another dataset with the same classes ("transfer"), and the report's
"Tested on other data" table and data-check line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.data import load_dataset, save_lines
from cnnlab.data.dataset import normalize
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run, summary_lines
from cnnlab.evaluate.evaluation import result_files, transfer_name
from cnnlab.report import build_report
from cnnlab.training import load_run, train
from cnnlab.training.run import prepare_dataset

DATA = (
    "data.lines={per_class: 10}",
    "data.train_limit=128",
    "data.test_limit=96",
    "train.epochs=1",
    "train.batch_size=64",
)
TINY_MH = ("model.channels=[8]", "model.kernel_size=3", "model.shared=[32]", "model.head_hidden=16")
HEADS = ("length", "width", "angle", "color")


def _save(folder: Path, **options) -> Path:
    save_lines(cnnlab.generate_lines(cnnlab.LinesConfig(**options)), folder)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny 96-way run, a tiny multi-head run and a few other Lines datasets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: threads only wait on each other
    base = tmp_path_factory.mktemp("transfer")
    try:
        train("part1-lines", out=base / "p1", overrides=DATA, quiet=True)
        train("multihead-lines", out=base / "mh", overrides=(*DATA, *TINY_MH), quiet=True)
        _save(base / "other", seed=3, per_class=4, noise=20)
        _save(base / "same", seed=0, per_class=10)  # the runs' own data, before the limits
        yield base
    finally:
        torch.set_num_threads(threads)


def test_transfer_metrics_come_from_the_other_images(base: Path) -> None:
    metrics = evaluate_run(base / "p1", dataset=base / "other")
    metrics_path, predictions_path = result_files(base / "p1", "test", "other")
    assert metrics_path.name == "metrics-transfer-other.json"
    assert json.loads(metrics_path.read_text()) == metrics.to_dict()
    assert not (base / "p1" / "metrics-test.json").exists()
    other = load_dataset(base / "other")
    stored = np.load(predictions_path)
    assert metrics.n == len(other.test) == 154 != 96
    assert np.array_equal(stored["label"], other.test.labels.numpy())
    assert metrics.accuracy == pytest.approx((stored["label"] == stored["predicted"]).mean())
    transfer = metrics.transfer
    assert transfer is not None
    assert transfer["name"] == "other" and transfer["split"] == "test"
    assert transfer["source"] == str(base / "other")
    assert transfer["provenance"]["seed"] == 3 and transfer["provenance"]["noise"] == 20
    assert transfer["training_copies"] == {
        "checked": True,
        "images": 154,
        "copies": 0,  # noisy images equal no training image
        "train_images": 128,
    }
    assert "other" in summary_lines(metrics)[0]


def test_transfer_uses_the_runs_normalisation(base: Path) -> None:
    run = load_run(base / "p1")
    other = load_dataset(base / "other")
    evaluate_run(base / "p1", dataset=base / "other", name="noisy q50")
    stored = np.load(base / "p1" / "predictions-transfer-noisy-q50.npz")
    expected = run.predict_proba(other.test.images).numpy()
    assert np.allclose(stored["probability"], expected, atol=1e-5)
    assert not np.allclose(run.preprocess.mean, other.mean, atol=1e-3)
    with torch.inference_mode():
        theirs = run.model(normalize(other.test.images, other.mean, other.std)).softmax(1)
    assert not np.allclose(stored["probability"], theirs.numpy(), atol=1e-5)


def test_copies_of_training_images_are_counted(base: Path) -> None:
    metrics = evaluate_run(base / "p1", split="train", dataset=base / "same" / "lines.npz")
    assert result_files(base / "p1", "train", "same")[0].is_file()
    assert metrics.transfer is not None and metrics.transfer["name"] == "same"
    images = load_dataset(base / "same").train.images
    train_images = prepare_dataset(load_run(base / "p1").config).train.images
    copies = sum(bool((train_images == image).flatten(1).all(1).any()) for image in images)
    assert copies >= 128  # the run's 128 training images are among them
    assert metrics.transfer["training_copies"]["copies"] == copies
    assert "copies of training images" in summary_lines(metrics)[1]


def test_other_classes_or_shapes_are_refused(base: Path) -> None:
    red = _save(base / "red", seed=3, per_class=4, colors=("red",))
    with pytest.raises(CnnlabError, match=r"dataset \S*red: 48 classes .* trained on 96 classes"):
        evaluate_run(base / "p1", dataset=red)
    small = _save(base / "small", seed=3, per_class=4, image_size=20)
    with pytest.raises(CnnlabError, match=r"dataset \S*small: images are 20x20 with 3 channels"):
        evaluate_run(base / "p1", dataset=small)
    with pytest.raises(CnnlabError, match="give --dataset"):
        evaluate_run(base / "p1", name="x")
    assert not list((base / "p1").glob("metrics-transfer-red*"))


def test_default_names() -> None:
    assert transfer_name("data/jpeg q50/lines.npz") == "jpeg-q50"
    assert transfer_name("data/noisy.npz") == "noisy"
    assert transfer_name("mnist") == "mnist"


def test_multihead_run_transfers(base: Path) -> None:
    metrics = evaluate_run(base / "mh", dataset=base / "other")
    stored = np.load(base / "mh" / "predictions-transfer-other.npz")
    truth = cnnlab.LinesConfig().factor_indices(stored["label"])
    right = {h: stored[f"predicted_{h}"] == truth[h] for h in HEADS}
    for head, ok in right.items():
        assert metrics.heads is not None
        assert metrics.heads[head]["accuracy"] == pytest.approx(ok.mean())
    joint = np.logical_and.reduce(list(right.values())).mean()
    assert metrics.joint_accuracy == pytest.approx(joint)
    assert metrics.n == 154 and metrics.transfer is not None
    assert metrics.transfer["name"] == "other"


def _with_data_check(run: Path, out: Path, check: dict | None) -> Path:
    """A copy of ``run`` whose run.json holds ``check`` as its data check (or none)."""
    shutil.copytree(run, out)
    info = json.loads((out / "run.json").read_text())
    info.pop("data_check", None)
    if check is not None:
        info["data_check"] = check
    (out / "run.json").write_text(json.dumps(info))
    return out


def _check(test_in_train: int) -> dict:
    return {
        "images": {"train": 128, "test": 96},
        "distinct": {"train": 120, "test": 90, "all": 200},
        "duplicates": {
            "within_train": 8,
            "within_test": 6,
            "test_in_train": test_in_train,
            "test_in_train_fraction": test_in_train / 96,
        },
        "conflicting_labels": {"groups": 0, "images": 0},
        "class_counts": {},
        "overlap": test_in_train > 0,
    }


def test_report_shows_transfers_and_the_data_check(base: Path, tmp_path: Path) -> None:
    evaluate_run(base / "p1")
    evaluate_run(base / "mh")
    evaluate_run(base / "p1", dataset=base / "other")
    mh_other = evaluate_run(base / "mh", dataset=base / "other")
    runs = [
        _with_data_check(base / "p1", tmp_path / "clean", _check(0)),
        _with_data_check(base / "mh", tmp_path / "overlap", _check(24)),
        _with_data_check(base / "p1", tmp_path / "old", None),
    ]
    out, markdown = tmp_path / "r.html", tmp_path / "r.md"
    page = build_report(runs, out, markdown).read_text()
    sections = page.split("<section class='run'")[1:]
    assert all("<h4>Tested on other data</h4>" in s for s in sections)
    assert "<th>own test split</th>" in sections[0] and "<th>other</th>" in sections[0]
    assert "joint accuracy" in sections[1] and "angle accuracy" in sections[1]
    assert f"<td class=num>{mh_other.joint_accuracy:.4f}</td>" in sections[1]
    assert "test split: 96 images, none equal to a training image" in sections[0]
    note = (
        "24 of 96 test images (25.0%) are copies of training images: this accuracy measures "
        "memory, not generalisation"
    )
    assert note[1:] in sections[1] and "class='overlap'" in sections[1]
    assert "Data check" not in sections[2] and "copies of training images:" not in sections[2]
    summary = markdown.read_text()
    assert summary.count("Tested on other data:") == 3 and note in summary
    assert "| other | 154 | none |" in summary
