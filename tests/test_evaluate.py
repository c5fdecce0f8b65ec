"""Metrics from one prediction array: identities, agreement with scikit-learn, factor analysis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from cnnlab.cli import main
from cnnlab.data import LinesConfig
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import (
    classification_metrics,
    decode,
    describe_difference,
    evaluate_run,
    factor_analysis,
)
from cnnlab.training import train


def test_macro_means_skip_classes_absent_from_labels_and_predictions() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])  # classes 3..9 held out of this test split
    predicted = np.array([0, 1, 1, 1, 2, 2, 5])
    m = classification_metrics(labels, predicted, 10)
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            labels, predicted, average=average, zero_division=0
        )
        assert m[average]["precision"] == pytest.approx(p)
        assert m[average]["recall"] == pytest.approx(r)
        assert m[average]["f1"] == pytest.approx(f)
    assert m["macro"]["classes"] == 4


@pytest.mark.parametrize("seed", range(5))
def test_identities_and_scikit_learn_agreement(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 30))
    labels = rng.integers(0, k, 500)
    predicted = np.where(rng.random(500) < 0.7, labels, rng.integers(0, k, 500))
    m = classification_metrics(labels, predicted, k)
    confusion = np.array(m["confusion"])
    support = np.array(m["per_class"]["support"])
    assert support.sum() == m["n"] == 500
    assert np.trace(confusion) / 500 == pytest.approx(m["accuracy"])
    micro = skm.f1_score(labels, predicted, average="micro")
    assert micro == pytest.approx(m["accuracy"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert np.array_equal(confusion, skm.confusion_matrix(labels, predicted, labels=range(k)))
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, predicted, labels=range(k), zero_division=0
    )
    assert np.allclose(m["per_class"]["precision"], p)
    assert np.allclose(m["per_class"]["recall"], r)
    assert np.allclose(m["per_class"]["f1"], f)
    assert np.array_equal(support, s)
    for average in ("macro", "weighted"):
        ref = skm.precision_recall_fscore_support(
            labels, predicted, labels=range(k), average=average, zero_division=0
        )
        assert m[average]["precision"] == pytest.approx(ref[0])
        assert m[average]["recall"] == pytest.approx(ref[1])
        assert m[average]["f1"] == pytest.approx(ref[2])


def test_decode_inverts_the_lines_class_formula() -> None:
    config = LinesConfig()
    labels = np.arange(96)
    assert all(
        np.array_equal(decode(labels, config.levels)[f], v)
        for f, v in config.factor_indices(labels).items()
    )


def test_factor_analysis_names_the_factor_that_differs() -> None:
    levels = LinesConfig().levels
    names = LinesConfig().class_names()
    # 85 = len15 wid3 ang090 blue; 87 = ang105 blue; 84 = ang090 red
    labels = np.array([85, 85, 85, 85, 84, 0])
    predicted = np.array([85, 87, 87, 84, 84, 0])
    result = factor_analysis(labels, predicted, levels, names)
    assert result["errors"] == 3
    assert result["errors_by_differing_factors"] == {"angle": 2, "color": 1}
    assert result["most_confused"][0] == {
        "true": "len15_wid3_ang090_blue",
        "predicted": "len15_wid3_ang105_blue",
        "count": 2,
        "difference": "angle off by 15°",
    }
    assert result["factors"]["angle"]["accuracy"] == pytest.approx(4 / 6)
    assert result["factors"]["length"]["accuracy"] == 1.0
    assert describe_difference(0, 23, levels) == "angle off by 15°, color red → blue"  # 0 vs 165


def test_evaluate_run_writes_consistent_metrics(tmp_path: Path, capsys) -> None:
    run = train(
        "part1-lines",
        out=tmp_path / "run",
        overrides=("data.lines={per_class: 10}", "train.epochs=1"),
        quiet=True,
    )
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert "lines test: accuracy" in capsys.readouterr().out
    m = json.loads((tmp_path / "run" / "metrics-test.json").read_text())
    stored = np.load(tmp_path / "run" / "predictions-test.npz")
    assert m["accuracy"] == pytest.approx((stored["label"] == stored["predicted"]).mean())
    assert m["accuracy"] == pytest.approx(run.history[-1]["test_acc"], abs=1e-6)
    assert m["loss"] == pytest.approx(run.history[-1]["test_loss"], rel=1e-4)
    assert len(m["class_names"]) == 96 and "factor_analysis" in m
    again = evaluate_run(tmp_path / "run", write=False)
    assert again.confusion == m["confusion"]


def test_evaluate_refuses_what_is_not_a_run(tmp_path: Path, capsys) -> None:
    with pytest.raises(CnnlabError, match="not a run folder"):
        evaluate_run(tmp_path)
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
