"""Where a model fails: the error analysis numbers, its files, `cnnlab errors` and the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run
from PIL import Image
from sklearn.calibration import calibration_curve

from cnnlab.evaluate import evaluate_run
from cnnlab.evaluate.errors import calibration, error_analysis, misclassified
from cnnlab.report import build_report
from cnnlab.runfolder import RunFolder
from cnnlab.training import train

NAMES = ("a", "b", "c")


def _probabilities() -> tuple[np.ndarray, np.ndarray]:
    """Six images of three classes: two wrong (b taken for c twice), one right but unsure."""
    labels = np.array([0, 0, 1, 1, 1, 2])
    probabilities = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.4, 0.35, 0.25],  # right, unsure
            [0.1, 0.2, 0.7],  # b -> c
            [0.05, 0.05, 0.9],  # b -> c, the worst
            [0.1, 0.8, 0.1],
            [0.2, 0.1, 0.7],
        ]
    )
    return labels, probabilities


def test_top_losses_pairs_and_recall() -> None:
    labels, probabilities = _probabilities()
    sources = [f"img{i}.png" for i in range(6)]
    analysis = error_analysis(labels, probabilities, NAMES, sources)
    assert (analysis["images"], analysis["errors"]) == (6, 2)
    top = analysis["top_losses"]
    assert [row["index"] for row in top[:3]] == [3, 2, 1]
    assert top[0]["loss"] == pytest.approx(-np.log(0.05))
    assert (top[0]["true"], top[0]["predicted"], top[0]["source"]) == ("b", "c", "img3.png")
    assert analysis["confused_pairs"] == [
        {"true": "b", "predicted": "c", "count": 2, "share_of_true": 2 / 3, "examples": [3, 2]}
    ]
    worst = analysis["worst_recall"][0]
    assert (worst["class"], worst["recall"], worst["taken_for"]) == ("b", pytest.approx(1 / 3), "c")
    rows = misclassified(labels, probabilities, NAMES, sources)
    assert [r["index"] for r in rows] == [3, 2]


def test_calibration_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.2, 1.0, 2_000)
    correct = rng.uniform(size=2_000) < confidence**2  # overconfident
    c = calibration(confidence, correct, bins=10)
    accuracy, mean_conf = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    filled = np.array(c["count"]) > 0
    assert np.allclose(np.array(c["accuracy"], dtype=float)[filled], accuracy)
    assert np.allclose(np.array(c["confidence"], dtype=float)[filled], mean_conf)
    weights = np.array(c["count"])[filled] / 2_000
    assert c["ece"] == pytest.approx(float(np.sum(weights * np.abs(accuracy - mean_conf))))
    assert c["ece"] > 0.05  # the squared accuracy makes it clearly overconfident
    assert c["right"]["count"] + c["wrong"]["count"] == 2_000
    assert c["right"]["mean"] > c["wrong"]["mean"]
    perfect = calibration(np.full(100, 0.75), np.arange(100) < 75)
    assert perfect["ece"] == pytest.approx(0.0) and perfect["mce"] == pytest.approx(0.0)


def _folder(root: Path) -> Path:
    """Three classes of 20x20 RGB noise, each brightest in one channel (some barely)."""
    rng = np.random.default_rng(1)
    for c, name in enumerate(NAMES):
        (root / name).mkdir(parents=True)
        for k in range(16):
            pixels = rng.integers(0, 90, (20, 20, 3), dtype=np.uint8)
            pixels[:, :, c] += 30 if k % 4 == 0 else 120  # every fourth is hard
            Image.fromarray(pixels).save(root / name / f"{name}{k:02d}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("errors")
    out = base / "run"
    sets = (f"data.dataset={_folder(base / 'pics')}", "train.epochs=1", "train.batch_size=8")
    train("part1-lines", out=out, overrides=sets, quiet=True)
    evaluate_run(out)
    return out


def test_evaluate_writes_the_errors_of_a_folder_run(folder_run: Path) -> None:
    files = RunFolder(folder_run).errors()
    record = json.loads(files.summary.read_text())
    stored = np.load(folder_run / "predictions-test.npz")
    wrong = np.flatnonzero(stored["predicted"] != stored["label"])
    assert record["errors"] == len(wrong) and record["images"] == len(stored["label"])
    with files.table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["index"]) for r in rows) == wrong.tolist()
    for row in rows:  # named by file, in its class folder
        assert row["source"].endswith(".png") and row["source"].split("/")[0] == row["true"]
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True)
    probability = stored["probability"]
    for row in record["top_losses"]:
        i = row["index"]
        assert row["true_probability"] == pytest.approx(probability[i, stored["label"][i]])
    assert files.top_losses().is_file()
    assert (files.confused_pairs().is_file()) == bool(record["confused_pairs"])
    assert record["heatmap"] and record["sources"] == "files"


def test_cnnlab_errors_prints_the_analysis(folder_run: Path, capsys) -> None:
    code, out, err = run(capsys, "errors", folder_run, "--top", "2")
    assert code == 0, err
    assert "images wrong" in out and "calibration: ECE" in out and "highest losses:" in out
    assert "misclassified.csv" in out
    code, out, err = run(capsys, "errors", folder_run, "--top", "0")
    assert code == 2 and "--top" in err


def test_the_report_shows_where_it_fails(folder_run: Path, tmp_path: Path) -> None:
    page = build_report([folder_run], tmp_path / "report.html").read_text()
    assert "Where it fails" in page and "Reliability diagram" in page
    assert "Highest-loss images" in page and "misclassified.csv" in page


def test_a_multihead_run_is_analysed_per_head_and_jointly(tmp_path: Path) -> None:
    out = tmp_path / "mh"
    train("multihead-lines", out=out, overrides=("data.lines={per_class: 12}", "train.epochs=1"),
          quiet=True)  # fmt: skip
    evaluate_run(out)
    files = RunFolder(out).errors()
    record = json.loads(files.summary.read_text())
    assert set(record["heads"]) == {"length", "width", "color", "angle"}
    stored = np.load(out / "predictions-test.npz")
    metrics = json.loads((out / "metrics-test.json").read_text())
    assert record["errors"] == round((1 - metrics["joint_accuracy"]) * len(stored["label"]))
    for name, head in record["heads"].items():
        assert head["errors"] == round((1 - metrics["heads"][name]["accuracy"]) * head["images"])
        assert files.top_losses(name).is_file()
    with files.table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == record["errors"]
    for row in rows:
        wrong = [h for h in record["heads"] if row[f"{h}_true"] != row[f"{h}_predicted"]]
        assert row["wrong_heads"].split() == wrong and wrong


def test_an_mnist_run_names_its_errors_by_index(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnist"
    sets = (
        f"data.mnist_dir={mnist_dir}",
        "data.train_limit=600",
        "data.test_limit=300",
        "train.epochs=1",
    )
    train("part1-mnist", out=out, overrides=sets, quiet=True)
    metrics = evaluate_run(out)
    files = RunFolder(out).errors()
    record = json.loads(files.summary.read_text())
    assert record["errors"] == round((1 - metrics.accuracy) * 300) > 0
    assert record["sources"].startswith("split indices")
    assert all(row["source"] == f"#{row['index']}" for row in record["top_losses"])
    assert files.top_losses().is_file() and files.confused_pairs().is_file()
    assert len(record["worst_recall"]) == 5 and record["calibration"]["bins"] == 15
