"""Every ``cnnlab`` command that reports speaks one language (issue 29): ``--json FILE`` (``-``:
the JSON document alone on stdout), ``--quiet`` (nothing on stdout but the result asked for),
and ``--device`` where a model runs on data (a clear one-line error without CUDA)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import Capsys, assert_one_line_error, run

from cnnlab.cli import build_parser, main

TINY = (
    "data.train_limit=300",
    "data.test_limit=100",
    "model.filters=4",
    "model.dense_units=16",
    "train.epochs=1",
)
REPORTING = (
    "evaluate",
    "errors",
    "predict",
    "status",
    "models",
    "visualize",
    "export",
    "report",
    "lr-find",
    "train",
)
ON_DEVICE = ("evaluate", "errors", "predict", "train", "lr-find", "reproduce")
ON_CPU = ("visualize", "export")
"""Commands that run a model but only on the CPU: no --device, and their help says so."""


def _settings(mnist_dir: Path) -> list[str]:
    return [a for v in (*TINY, f"data.mnist_dir={mnist_dir}") for a in ("--set", v)]


@pytest.fixture(scope="module")
def base(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One tiny MNIST run (trained with ``--quiet --json FILE``), three images to predict."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: threads only wait on each other
    base = tmp_path_factory.mktemp("cli-reporting")
    try:
        argv = ["train", "part1-mnist", "--out", str(base / "run"), "--device", "cpu", "--quiet"]
        assert main([*argv, *_settings(mnist_dir), "--json", str(base / "train.json")]) == 0
        images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
        np.savez(base / "images.npz", images=images)
        yield base
    finally:
        torch.set_num_threads(threads)


def _json_stdout(capsys: Capsys, *argv: str | Path) -> object:
    """``cnnlab ARGV --json -``: exit 0 and stdout the JSON document, nothing else."""
    code, out, err = run(capsys, *argv, "--json", "-")
    assert code == 0, err
    return json.loads(out)  # anything else on stdout would fail to parse


def _options(command: str) -> set[str]:
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    return {flag for action in parser._actions for flag in action.option_strings}


# -- the flags exist ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", REPORTING)
def test_every_reporting_command_takes_json_and_quiet(command: str) -> None:
    assert {"--json", "--quiet"} <= _options(command)
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    help_text = " ".join(parser.format_help().split())
    assert "--json FILE" in help_text and "-: on stdout" in help_text


@pytest.mark.parametrize("command", ON_DEVICE)
def test_model_running_commands_take_device(command: str) -> None:
    assert "--device" in _options(command)
    assert "--quiet" in _options("reproduce")


@pytest.mark.parametrize("command", ON_CPU)
def test_cpu_only_commands_say_so(command: str) -> None:
    assert "--device" not in _options(command)
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    assert "runs on the CPU" in " ".join(parser.format_help().split())


# -- --json -: the document alone on stdout -------------------------------------------------------


def test_train_json_file_and_json_stdout(base: Path, mnist_dir: Path, capsys: Capsys) -> None:
    record = json.loads((base / "train.json").read_text())  # the fixture's --quiet --json FILE
    with open(base / "run" / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    assert record["run"] == str(base / "run") and record["name"] == "part1-mnist"
    assert record["epochs"] == 1 == len(history)
    assert set(record["final"]) == set(history[-1]) >= {"epoch", "train_loss", "test_acc"}
    for key, value in history[-1].items():
        assert record["final"][key] == pytest.approx(float(value), rel=1e-5, abs=1e-6), key
    argv = ["train", "part1-mnist", "--out", base / "again", *_settings(mnist_dir)]
    code, out, err = run(capsys, *argv, "--json", "-")  # not quiet: the progress goes to stderr
    assert code == 0
    again = json.loads(out)
    assert again["run"] == str(base / "again")
    del again["final"]["seconds"], record["final"]["seconds"]
    assert again["final"] == record["final"]  # seeded: the same run again
    assert "epoch 1/1" in err


def test_evaluate_json(base: Path, capsys: Capsys) -> None:
    metrics = _json_stdout(capsys, "evaluate", base / "run", "--device", "cpu")
    assert isinstance(metrics, dict)
    assert {"accuracy", "loss", "per_class", "split"} <= set(metrics)
    assert metrics["n"] == 100 and metrics["split"] == "test"
    assert metrics == json.loads((base / "run" / "metrics-test.json").read_text())


def test_errors_json(base: Path, capsys: Capsys) -> None:
    summary = _json_stdout(capsys, "errors", base / "run", "--top", "2")
    assert isinstance(summary, dict)
    assert {"top_losses", "confused_pairs", "worst_recall", "calibration"} <= set(summary)
    written = json.loads((base / "run" / "errors-test" / "errors.json").read_text())
    assert summary == written  # the whole summary, not --top's rows


def test_predict_json_and_csv(base: Path, capsys: Capsys) -> None:
    predictions = _json_stdout(capsys, "predict", base / "run", base / "images.npz")
    assert isinstance(predictions, list) and len(predictions) == 3
    for k, p in enumerate(predictions):
        assert set(p) == {"input", "class_index", "class_name", "probability"}
        assert p["input"] == f"{base / 'images.npz'}[{k}]"
        assert p["class_name"] == str(p["class_index"]) and 0.1 <= p["probability"] <= 1
    code, out, _ = run(capsys, "predict", base / "run", base / "images.npz", "--quiet")
    assert code == 0  # --quiet without --out: the CSV is the result
    rows = out.splitlines()
    assert rows[0] == "input,class_index,class_name,probability" and len(rows) == 4
    assert rows[1].split(",")[1] == str(predictions[0]["class_index"])


def test_a_multi_head_prediction_gives_each_head() -> None:
    from cnnlab.cli.train import _prediction_record
    from cnnlab.predict import Prediction

    record = _prediction_record(Prediction("a.png", 7, "red-15", 0.5, {"angle": ("15", 0.8)}))
    assert record == {
        "input": "a.png",
        "class_index": 7,
        "class_name": "red-15",
        "probability": 0.5,
        "heads": {"angle": {"level": "15", "probability": 0.8}},
    }


def test_status_json_file_and_stdout(base: Path, capsys: Capsys, tmp_path: Path) -> None:
    status = _json_stdout(capsys, "status", base / "run")
    assert isinstance(status, dict)
    assert (status["kind"], status["runs_total"], status["runs_done"]) == ("run", 1, 1)
    assert status["runs"][0]["state"] == "done" and status["runs"][0]["epoch"] == 1
    code, out, _ = run(capsys, "status", base / "run", "--json", tmp_path / "s" / "status.json")
    assert code == 0 and out.startswith(f"run {base / 'run'}: 1/1 runs done")
    assert json.loads((tmp_path / "s" / "status.json").read_text()) == status
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["status.json"]  # no temporary left


def test_models_json(capsys: Capsys) -> None:
    families = _json_stdout(capsys, "models")
    assert isinstance(families, list)
    names = {f["name"] for f in families}
    assert {"part1", "convnet"} <= names
    assert all(set(f) == {"name", "options"} for f in families)
    one = _json_stdout(capsys, "models", "part1", "--classes", "7")
    assert isinstance(one, dict)
    assert (one["name"], one["channels"], one["classes"]) == ("part1", 1, 7)
    assert one["parameters"] == sum(layer["parameters"] for layer in one["layers"]) > 0
    assert one["layers"][0] == {"name": "features.conv1", "type": "Conv2d", "parameters": 1600}


def test_visualize_json_and_quiet(base: Path, capsys: Capsys, tmp_path: Path) -> None:
    argv = ["visualize", base / "run", "--layer", "features.conv1", "--method", "gradcam"]
    summary = _json_stdout(capsys, *argv, "--out", tmp_path / "a")
    assert isinstance(summary, dict)
    assert summary["layers"] == ["conv1"] and summary["out"] == str(tmp_path / "a")
    assert (tmp_path / "a" / "summary.json").is_file()
    code, out, _ = run(capsys, *argv, "--out", tmp_path / "b", "--quiet")
    assert (code, out) == (0, "")


def test_export_json(base: Path, capsys: Capsys, tmp_path: Path) -> None:
    out = tmp_path / "model.pt2"
    argv = ["export", base / "run", "--format", "pt2", "--check-images", "8", "--out", out]
    record = _json_stdout(capsys, *argv)
    assert isinstance(record, dict)
    assert record["path"] == str(out) and out.is_file()
    assert record["card"] == str(out) + ".json" and record["images"] == 8
    assert record["same_predictions"] is True and record["outputs"] == ["logits"]


def test_report_json_and_quiet(base: Path, capsys: Capsys, tmp_path: Path) -> None:
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    record = _json_stdout(capsys, "report", base / "run", "--out", html, "--markdown", md)
    assert record == {"report": str(html), "markdown": str(md)}
    assert html.is_file() and md.is_file()
    code, out, _ = run(capsys, "report", base / "run", "--out", tmp_path / "q.html", "--quiet")
    assert (code, out) == (0, "") and (tmp_path / "q.html").is_file()


def test_lr_find_json_and_quiet(mnist_dir: Path, capsys: Capsys, tmp_path: Path) -> None:
    argv = ["lr-find", "part1-mnist", *_settings(mnist_dir), "--steps", "4"]
    curve = _json_stdout(capsys, *argv, "--out", tmp_path / "a.png")
    assert isinstance(curve, dict) and len(curve["lrs"]) == len(curve["losses"]) == 4
    code, out, _ = run(
        capsys, *argv, "--out", tmp_path / "b.png", "--quiet", "--json", tmp_path / "b.json"
    )
    assert (code, out) == (0, "")
    assert json.loads((tmp_path / "b.json").read_text()) == curve  # seeded: the same curve


# -- --quiet and --json FILE ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("evaluate", "{run}"),
        ("errors", "{run}"),
        ("status", "{run}"),
        ("models",),
        ("models", "part1"),
        ("predict", "{run}", "{images}", "--out", "{tmp}/p.csv"),
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_quiet_prints_nothing(
    base: Path, capsys: Capsys, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    filled = [a.format(run=base / "run", images=base / "images.npz", tmp=tmp_path) for a in argv]
    code, out, err = run(capsys, *filled, "--quiet")
    assert (code, out) == (0, ""), err
    loud_code, loud, _ = run(capsys, *filled)
    assert loud_code == 0 and loud.strip()  # without --quiet it does say something


def test_evaluate_json_file_keeps_the_lines(base: Path, capsys: Capsys, tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    code, out, _ = run(capsys, "evaluate", base / "run", "--json", target)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("mnist test: accuracy ")
    assert lines[-1] == f"  written: {base / 'run' / 'metrics-test.json'}"
    assert json.loads(target.read_text())["n"] == 100


def test_json_to_an_unwritable_place_is_one_line(base: Path, capsys: Capsys) -> None:
    blocker = base / "a-file"
    blocker.write_text("")
    code, out, err = run(capsys, "status", base / "run", "--quiet", "--json", blocker / "x.json")
    assert_one_line_error(code, out, err, "cannot write there")


# -- --device -------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "argv",
    [
        ("evaluate", "{run}"),
        ("errors", "{run}"),
        ("predict", "{run}", "{images}"),
    ],
    ids=lambda argv: argv[0],
)
def test_device_cuda_without_cuda_is_one_line(
    base: Path, capsys: Capsys, argv: tuple[str, ...]
) -> None:
    filled = [a.format(run=base / "run", images=base / "images.npz") for a in argv]
    code, out, err = run(capsys, *filled, "--device", "cuda")
    assert_one_line_error(code, out, err, "CUDA is not available")


def test_a_device_that_is_no_device_is_a_usage_error(base: Path, capsys: Capsys) -> None:
    code, out, err = run(capsys, "evaluate", base / "run", "--device", "gpu")
    assert_one_line_error(code, out, err, "--device", "expected auto, cpu, cuda or cuda:N")
