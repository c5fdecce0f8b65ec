"""The typed results of ``evaluate_run``, ``visualize_run`` and ``run_study``: each is its
dataclass, its fields are the record's, and ``to_dict()`` is the file written, byte for byte."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import cnnlab
from cnnlab.evaluate import Evaluation, evaluate_run, summary_lines
from cnnlab.study import StudySummary, run_study
from cnnlab.training import train
from cnnlab.visualize import Visualization, visualize_run

TINY = (
    "data.lines={per_class: 10}",
    "data.train_limit=128",
    "data.test_limit=96",
    "train.epochs=1",
    "train.batch_size=64",
    "model.filters=4",
    "model.dense_units=16",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny trained 96-way Lines run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: threads only wait on each other
    folder = tmp_path_factory.mktemp("results") / "run"
    try:
        train("part1-lines", out=folder, overrides=TINY, quiet=True)
        yield folder
    finally:
        torch.set_num_threads(threads)


def _as_written(result: Any) -> str:
    """``result.to_dict()`` as ``write_json`` writes it."""
    return json.dumps(result.to_dict(), indent=2) + "\n"


def test_evaluate_run_returns_an_evaluation_of_the_file(run: Path) -> None:
    evaluation = evaluate_run(run)
    assert isinstance(evaluation, Evaluation)
    text = (run / "metrics-test.json").read_text()
    record = json.loads(text)
    assert _as_written(evaluation) == text
    assert evaluation.to_dict() == record and list(evaluation.to_dict()) == list(record)
    assert evaluation.accuracy == record["accuracy"] and evaluation.loss == record["loss"]
    assert evaluation.n == record["n"] == 96 and evaluation.split == "test"
    assert (
        evaluation.class_names == tuple(record["class_names"]) and len(evaluation.class_names) == 96
    )
    assert evaluation.confusion == record["confusion"] and evaluation.macro == record["macro"]
    assert evaluation.factor_analysis == record["factor_analysis"]  # Lines: factorised
    assert evaluation.transfer is evaluation.heads is evaluation.joint_accuracy is None
    assert Evaluation.from_record(record) == evaluation
    assert summary_lines(evaluation) == summary_lines(record)


def test_an_evaluation_is_a_value(run: Path) -> None:
    evaluation = Evaluation.from_record(json.loads((run / "metrics-test.json").read_text()))
    record = evaluation.to_dict()
    record["accuracy"] = -1.0
    record["macro"]["f1"] = -1.0
    assert evaluation.to_dict()["accuracy"] == evaluation.accuracy != -1.0  # a copy
    assert evaluation.to_dict()["macro"]["f1"] != -1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        evaluation.accuracy = 0.5  # type: ignore[misc]
    changed = dataclasses.replace(evaluation, accuracy=0.5)
    assert changed.to_dict()["accuracy"] == 0.5 != evaluation.accuracy
    assert list(changed.to_dict()) == list(evaluation.to_dict())  # the record's keys, in order
    assert dataclasses.replace(evaluation).to_dict() == evaluation.to_dict()


def test_a_transfer_evaluation_has_its_transfer(run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    cnnlab.data.save_lines(cnnlab.generate_lines(cnnlab.LinesConfig(seed=3, per_class=3)), other)
    evaluation = evaluate_run(run, dataset=other)
    text = (run / "metrics-transfer-other.json").read_text()
    assert _as_written(evaluation) == text
    assert evaluation.transfer == json.loads(text)["transfer"]
    assert evaluation.transfer["name"] == "other" and evaluation.n == json.loads(text)["n"]
    assert evaluation.factor_analysis is not None


def test_visualize_run_returns_a_visualization_of_the_summary(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    drawn = visualize_run(run, out, filters=False, methods=["gradcam"], score=True, score_images=8)
    assert isinstance(drawn, Visualization)
    text = (out / "summary.json").read_text()
    summary = json.loads(text)
    assert _as_written(drawn) == text and drawn.to_dict() == summary
    assert summary["format"] == drawn.to_dict()["format"]
    assert drawn.layers == tuple(summary["layers"]) == ("conv1", "pool1")
    assert drawn.heads == () and drawn.target == "predicted" and drawn.model == "part1"
    assert drawn.out == str(out) and drawn.run == str(run)
    assert drawn.images["count"] == 8 and drawn.filters == {}
    assert drawn.heatmaps == summary["heatmaps"] and list(drawn.heatmaps) == ["output"]
    assert drawn.scores == json.loads((out / "scores.json").read_text())
    assert drawn.scores_json == str(out / "scores.json")
    assert Visualization.from_record(summary) == drawn

    plain = visualize_run(run, tmp_path / "plain", layers=["pool1"], filters=False)
    assert plain.scores is None and plain.scores_json is None
    assert "scores" not in plain.to_dict()
    assert _as_written(plain) == (tmp_path / "plain" / "summary.json").read_text()


def test_run_study_returns_a_study_summary_of_the_file(mnist_dir: Path, tmp_path: Path) -> None:
    spec = {
        "name": "typed",
        "base": "part1-mnist",
        "set": {
            "data.mnist_dir": str(mnist_dir),
            "data.train_limit": 100,
            "data.test_limit": 50,
            "train.epochs": 1,
            "train.batch_size": 50,
            "model.filters": 4,
            "model.dense_units": 16,
        },
        "seeds": [0, 1],
        "variants": {"base": {}, "kernel-5": {"model.kernel_size": 5}},
    }
    path, out = tmp_path / "study.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    summary = run_study(path, out=out, quiet=True, threads=1)
    assert isinstance(summary, StudySummary)
    text = (out / "summary.json").read_text()
    record = json.loads(text)
    assert _as_written(summary) == text and summary.to_dict() == record
    assert summary.runs_done == record["runs_done"] == summary.runs_planned == 4
    assert summary.test_images == record["test_images"] == 50 and summary.target is None
    assert summary.names == ["base", "kernel-5"] and summary.variants == tuple(record["variants"])
    kernel = summary.variant("kernel-5")
    assert kernel == record["variants"][1] and kernel["seeds_done"] == 2
    assert kernel["verdict"] in ("better", "worse", "within noise")
    assert summary.study["name"] == "typed" and summary.curves == record["curves"]
    with pytest.raises(KeyError, match="no variant 'wide'; the study has base, kernel-5"):
        summary.variant("wide")
    assert StudySummary.from_record(record) == summary
