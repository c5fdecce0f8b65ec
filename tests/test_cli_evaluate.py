"""``cnnlab evaluate`` end to end: a tiny run, evaluated on its own split and on other data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_helpers import Capsys, assert_one_line_error, run

from cnnlab.cli import main

TINY = (
    "data.lines={per_class: 10}",
    "data.train_limit=128",
    "data.test_limit=96",
    "train.epochs=1",
    "train.batch_size=64",
)
SAVED = ("data", "lines", "--per-class", "4", "--seed", "3")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny 96-way run trained through the CLI, and two Lines datasets saved by the CLI:
    ``noisy`` (the run's classes) and ``red`` (48 classes: red lines only)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: threads only wait on each other
    base = tmp_path_factory.mktemp("cli-evaluate")
    try:
        sets = [arg for value in TINY for arg in ("--set", value)]
        train = ["train", "part1-lines", "--out", str(base / "run"), "--device", "cpu"]
        assert main([*train, *sets, "--quiet"]) == 0
        for name, options in (("noisy", ("--variant", "noisy")), ("red", ("--colors", "red"))):
            assert main([*SAVED, *options, "--out", str(base / name)]) == 0
        yield base
    finally:
        torch.set_num_threads(threads)


def files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_evaluate_on_a_saved_dataset_prints_accuracy_and_writes_metrics(
    base: Path, capsys: Capsys
) -> None:
    run_dir, other = base / "run", base / "noisy"
    before = files(run_dir)
    code, stdout, err = run(capsys, "evaluate", run_dir, "--dataset", other, "--name", "x")
    assert (code, err) == (0, "")
    lines = stdout.splitlines()
    found = re.match(r"x \((.+), test split\): accuracy (\d\.\d{4}), loss \d", lines[0])
    assert found, lines[0]
    assert found.group(1) == str(other)
    assert lines[1] == "  none of the 154 images is a copy of a training image"
    metrics_path = run_dir / "metrics-transfer-x.json"
    assert lines[-1] == f"  written: {metrics_path}"
    assert files(run_dir) - before == {
        "metrics-transfer-x.json",
        "predictions-transfer-x.npz",
        "errors-transfer-x",
    }
    metrics = json.loads(metrics_path.read_text())
    assert f"{metrics['accuracy']:.4f}" == found.group(2)
    assert metrics["n"] == 154 and metrics["split"] == "test"
    assert metrics["transfer"]["name"] == "x" and metrics["transfer"]["source"] == str(other)
    assert metrics["transfer"]["provenance"]["noise"] == 20.0


def test_evaluate_names_the_results_after_the_dataset_folder(base: Path, capsys: Capsys) -> None:
    npz = base / "noisy" / "lines.npz"
    code, stdout, _ = run(capsys, "evaluate", base / "run", "--dataset", npz)
    assert code == 0
    assert stdout.startswith(f"noisy ({npz}, test split): accuracy ")
    assert (base / "run" / "metrics-transfer-noisy.json").is_file()


def test_evaluate_on_the_runs_own_test_split(base: Path, capsys: Capsys) -> None:
    code, stdout, _ = run(capsys, "evaluate", base / "run")
    assert code == 0
    assert stdout.startswith("lines test: accuracy ")
    assert "(96 images, " in stdout.splitlines()[0]
    assert stdout.splitlines()[-1] == f"  written: {base / 'run' / 'metrics-test.json'}"
    assert json.loads((base / "run" / "metrics-test.json").read_text())["n"] == 96


def test_evaluate_on_other_classes_is_one_line(base: Path, capsys: Capsys) -> None:
    red = base / "red"
    code, out, err = run(capsys, "evaluate", base / "run", "--dataset", red)
    assert_one_line_error(code, out, err, f"dataset {red}:", "48 classes", "96 classes")
    assert not list((base / "run").glob("*transfer-red*"))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--name", "x"), "give --dataset"),
        (("--split", "dev"), "--split"),
        (("--split", "val"), "no validation split"),
    ],
)
def test_evaluate_bad_input_is_one_line(
    base: Path, capsys: Capsys, args: tuple[str, ...], fragment: str
) -> None:
    assert_one_line_error(*run(capsys, "evaluate", base / "run", *args), fragment)


def test_evaluate_missing_run_or_dataset_is_one_line(
    base: Path, tmp_path: Path, capsys: Capsys
) -> None:
    missing = tmp_path / "nowhere"
    assert_one_line_error(*run(capsys, "evaluate", missing), str(missing))
    for dataset in (missing, missing / "lines.npz"):
        args = ("evaluate", base / "run", "--dataset", dataset, "--name", "x")
        assert_one_line_error(*run(capsys, *args), str(missing))
    assert not (base / "run" / "metrics-transfer-nowhere.json").exists()
