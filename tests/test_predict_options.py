"""``cnnlab predict`` options (issue 30): ``--top-k K``, ``--probabilities``, ``--out -``; and
the library's :func:`cnnlab.predict.top_k` and ``Prediction.probabilities`` they rest on."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import Capsys, assert_one_line_error, run

from cnnlab.data import LinesConfig, generate_lines
from cnnlab.errors import CnnlabError
from cnnlab.predict import (
    Prediction,
    predict,
    predictions_csv,
    probability_keys,
    read_images,
    top_k,
)
from cnnlab.training import train
from cnnlab.training.run import Run, load_run

TINY = (
    "data.train_limit=300",
    "data.test_limit=100",
    "model.filters=4",
    "model.dense_units=16",
    "train.epochs=1",
)
BASE = ["input", "class_index", "class_name", "probability"]


@pytest.fixture(scope="module")
def base(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny MNIST run (10 classes), five images to predict, and a tiny multi-head Lines run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: threads only wait on each other
    base = tmp_path_factory.mktemp("predict-options")
    try:
        overrides = (*TINY, f"data.mnist_dir={mnist_dir}")
        train("part1-mnist", out=base / "run", overrides=overrides, quiet=True, device="cpu")
        images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
        np.savez(base / "images.npz", images=images)
        tiny_lines = ("data.lines={per_class: 4}", "train.epochs=1")
        train("multihead-lines", out=base / "heads", overrides=tiny_lines, quiet=True)
        lines = generate_lines(LinesConfig(per_class=2, test_fraction=0.5, seed=9))
        np.savez(base / "lines.npz", images=lines.arrays["images"][:3])
        yield base
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(base: Path) -> Run:
    return load_run(base / "run")


@pytest.fixture(scope="module")
def proba(base: Path, loaded: Run) -> np.ndarray:
    """``Run.predict_proba`` on the same images: what every option must agree with."""
    images, _ = read_images(base / "images.npz", loaded.preprocess)
    return loaded.predict_proba(images).double().numpy()


def _csv(capsys: Capsys, base: Path, *options: str) -> tuple[str, list[dict[str, str]]]:
    code, out, err = run(capsys, "predict", base / "run", base / "images.npz", *options)
    assert code == 0, err
    return out, list(csv.DictReader(io.StringIO(out)))


def _json(capsys: Capsys, base: Path, *options: str, run_dir: str = "run") -> list[dict]:
    inputs = base / ("lines.npz" if run_dir == "heads" else "images.npz")
    code, out, err = run(capsys, "predict", base / run_dir, inputs, *options, "--json", "-")
    assert code == 0, err
    return json.loads(out)


def test_top_k_is_predict_proba_best_first(base: Path, proba: np.ndarray, capsys) -> None:
    out, rows = _csv(capsys, base, "--top-k", "4")
    header = out.splitlines()[0].split(",")
    ranks = [f"{c}_{r}" for r in (2, 3, 4) for c in ("class_index", "class_name", "probability")]
    assert header == BASE + ranks
    records = _json(capsys, base, "--top-k", "4")
    assert len(rows) == len(records) == 5
    for p, row, record in zip(proba, rows, records, strict=True):
        expected = sorted(range(10), key=lambda i: -p[i])[:4]
        suffixes = ["", "_2", "_3", "_4"]
        assert [int(row[f"class_index{s}"]) for s in suffixes] == expected
        assert [float(row[f"probability{s}"]) for s in suffixes] == pytest.approx(
            p[expected], abs=1e-6
        )
        assert [t["class_index"] for t in record["top"]] == expected
        assert [t["class_name"] for t in record["top"]] == [str(i) for i in expected]
        assert [t["probability"] for t in record["top"]] == pytest.approx(p[expected], abs=1e-6)
        assert record["top"][0]["probability"] == record["probability"]
        assert p.sum() == pytest.approx(1.0, abs=1e-6)


def test_top_k_1_is_todays_output(base: Path, loaded: Run, capsys) -> None:
    today, _ = _csv(capsys, base)
    assert today == predictions_csv(predict(loaded, base / "images.npz"))
    assert today.splitlines()[0] == ",".join(BASE)
    assert _csv(capsys, base, "--top-k", "1")[0] == today
    assert _csv(capsys, base, "--top-k", "10")[0].splitlines()[0].endswith(",probability_10")


@pytest.mark.parametrize("k", ["0", "-1", "11"])
def test_a_bad_k_is_one_line(base: Path, capsys, k: str) -> None:
    code, out, err = run(capsys, "predict", base / "run", base / "images.npz", "--top-k", k)
    assert_one_line_error(code, out, err, f"--top-k {k}", "1 to 10")


def test_probabilities_in_class_order(base: Path, loaded: Run, proba: np.ndarray, capsys) -> None:
    out, rows = _csv(capsys, base, "--probabilities")
    header = out.splitlines()[0].split(",")
    assert header == BASE + [f"p_{name}" for name in loaded.class_names]
    assert list(loaded.class_names) == [str(i) for i in range(10)]
    for p, row in zip(proba, rows, strict=True):
        written = np.array([float(row[f"p_{name}"]) for name in loaded.class_names])
        assert written == pytest.approx(p, abs=1e-6)
        assert written.sum() == pytest.approx(1.0, abs=1e-5)
        assert row["probability"] == row[f"p_{row['class_name']}"]
    both = _csv(capsys, base, "--top-k", "2", "--probabilities")[0].splitlines()[0].split(",")
    assert both == [*BASE, "class_index_2", "class_name_2", "probability_2", *header[4:]]


def test_out_dash_is_stdout(base: Path, tmp_path: Path, capsys) -> None:
    today, _ = _csv(capsys, base)
    assert _csv(capsys, base, "--out", "-")[0] == today
    assert _csv(capsys, base, "--out", "-", "--quiet")[0] == today
    code, out, err = run(
        capsys,
        "predict",
        base / "run",
        base / "images.npz",
        "--out",
        "-",
        "--json",
        str(tmp_path / "p.json"),
    )
    assert (code, out) == (0, today), err
    assert len(json.loads((tmp_path / "p.json").read_text())) == 5
    code, out, err = run(
        capsys, "predict", base / "run", base / "images.npz", "--out", "-", "--json", "-"
    )
    assert_one_line_error(code, out, err, "--out -", "--json -")


def test_json_fields(base: Path, loaded: Run, proba: np.ndarray, capsys) -> None:
    plain = _json(capsys, base)
    assert all(set(r) == set(BASE) for r in plain)
    assert all(
        set(r) == {*BASE, "top"} and len(r["top"]) == 1 for r in _json(capsys, base, "--top-k", "1")
    )
    records = _json(capsys, base, "--top-k", "3", "--probabilities")
    for p, record, before in zip(proba, records, plain, strict=True):
        assert set(record) == {*BASE, "top", "probabilities"}
        assert {k: record[k] for k in BASE} == before
        assert [set(t) for t in record["top"]] == [set(BASE[1:])] * 3
        assert list(record["probabilities"]) == list(loaded.class_names)
        assert list(record["probabilities"].values()) == pytest.approx(p, abs=1e-6)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_multi_head_runs_rank_each_head(base: Path, capsys) -> None:
    heads = load_run(base / "heads")
    levels = {h: [str(v) for v in heads.factor_levels[h]] for h in ("length", "color", "angle")}
    code, out, err = run(
        capsys, "predict", base / "heads", base / "lines.npz", "--top-k", "3", "--probabilities"
    )
    assert code == 0, err
    header = out.splitlines()[0].split(",")
    assert header[:6] == [*BASE, "length", "length_probability"]
    assert "length_2" in header and "length_3" not in header  # a head of two levels: both
    angle = header[header.index("angle") :]
    assert angle[:6] == [
        "angle",
        "angle_probability",
        "angle_2",
        "angle_probability_2",
        "angle_3",
        "angle_probability_3",
    ]
    assert angle[6:] == [f"angle_p_{v}" for v in levels["angle"]]
    assert "class_index_2" not in header and "p_0" not in header
    for record in _json(capsys, base, "--top-k", "12", "--probabilities", run_dir="heads"):
        for head, data in record["heads"].items():
            every = data["probabilities"]
            assert list(every) == [str(v) for v in heads.factor_levels[head]]
            assert sum(every.values()) == pytest.approx(1.0, abs=1e-6)
            ranked = [t["probability"] for t in data["top"]]
            assert data["top"][0] == {"level": data["level"], "probability": data["probability"]}
            assert ranked == sorted(every.values(), reverse=True)
    code, out, err = run(capsys, "predict", base / "heads", base / "lines.npz", "--top-k", "13")
    assert_one_line_error(code, out, err, "--top-k 13", "1 to 12")


def test_the_library() -> None:
    tied = Prediction("a", 2, "c", 0.4, probabilities=(0.2, 0.4, 0.4))
    assert [(r.index, r.name) for r in top_k(tied, 3, "abc")] == [(2, "c"), (1, "b"), (0, "a")]
    assert len(top_k(tied, 9, "abc")) == 3  # at most every class
    with pytest.raises(CnnlabError, match="at least 1"):
        top_k(tied, 0, "abc")
    with pytest.raises(CnnlabError, match="per head"):
        top_k(Prediction("a", 0, "x", 0.5), 2, "ab")  # no class probabilities
    assert probability_keys(["cat", "dog"]) == ["cat", "dog"]
    assert probability_keys(["cat", "cat", "dog"]) == ["0", "1", "2"]
    table = predictions_csv([tied], probabilities=True, class_names=["x", "x", "y"])
    assert table.splitlines() == [
        "input,class_index,class_name,probability,p_0,p_1,p_2",
        "a,2,c,0.400000,0.200000,0.400000,0.400000",
    ]
    with pytest.raises(CnnlabError, match="class_names"):
        predictions_csv([tied], top=2)
