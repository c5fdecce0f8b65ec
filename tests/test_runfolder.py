"""The run folder's owner: file names, states, typed and versioned records, old folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import (
    FORMAT,
    DatasetFacts,
    RunFolder,
    RunInfo,
    read_history,
    read_metrics,
    write_history,
)

OLD_INFO = {  # a run.json as cnnlab wrote it before records carried a format
    "status": "finished",
    "name": "part1-lines",
    "seed": 0,
    "started": "2026-11-20T10:00:00+0000",
    "dataset": {
        "name": "lines",
        "train": 10,
        "test": 5,
        "class_names": ["a", "b"],
        "factor_levels": {"colour": ["red", "blue"]},
        "provenance": {"seed": 0},
    },
    "preprocess": {"mean": [0.0], "std": [1.0]},
    "model": {"name": "part1", "parameters": 12},
    "train_seconds": 1.5,
}


def info(**changes) -> RunInfo:
    return RunInfo.from_dict({**OLD_INFO, **changes})


def test_every_file_name_comes_from_the_folder(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert folder.metrics() == tmp_path / "metrics-test.json"
    assert folder.metrics("train") == tmp_path / "metrics-train.json"
    assert folder.predictions("test", "jpeg") == tmp_path / "predictions-transfer-jpeg.npz"
    assert folder.metrics("train", "jpeg") == tmp_path / "metrics-transfer-jpeg.train.json"
    assert folder.checkpoint("best") == tmp_path / "checkpoints" / "best.pt"
    for name in ("noisy", "centred"):
        folder.metrics("test", name).write_text("{}")
    folder.metrics("train", "sharp").write_text("{}")  # not a test-split transfer
    folder.metrics().write_text("{}")
    assert [p.name for p in folder.transfer_metrics()] == [
        "metrics-transfer-centred.json",
        "metrics-transfer-noisy.json",
    ]


def test_states_follow_the_files(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.state() == "absent"
    folder.path.mkdir()
    folder.config.write_text("name: run\n")
    folder.write_info(info(status="running"))
    assert folder.state() == "started"
    folder.checkpoints.mkdir()
    folder.checkpoint().write_bytes(b"x")
    assert folder.state() == "partial"
    folder.set_status("diverged")
    assert folder.state() == "diverged" and folder.status() == "diverged"
    folder.set_status("finished")
    assert folder.state() == "partial"  # finished without weights is not trained
    folder.weights.write_bytes(b"w")
    assert folder.state() == "trained" and not folder.evaluated()
    folder.metrics().write_text("{}")
    assert folder.state() == "trained" and not folder.evaluated()  # no error analysis yet
    folder.errors().folder.mkdir()
    folder.errors().summary.write_text("{}")
    assert folder.state() == "done" and folder.evaluated()
    folder.weights.touch()  # a newer model: the metrics are stale
    stamp = folder.metrics().stat().st_mtime - 10
    import os

    os.utime(folder.metrics(), (stamp, stamp))
    assert folder.state() == "trained"
    os.utime(folder.errors().summary, (stamp, stamp))
    os.utime(folder.metrics(), None)
    assert folder.state() == "trained"  # the error analysis is stale


def test_run_info_round_trips_and_old_files_read_as_format_1(tmp_path: Path) -> None:
    old = info()
    assert old.format == 1 and old.dataset.masks  # Lines before masks were recorded
    assert old.dataset.factor_levels == {"colour": ("red", "blue")}
    assert RunInfo.from_dict(old.to_dict()) == old
    plain = RunInfo.from_dict({**OLD_INFO, "dataset": {**OLD_INFO["dataset"], "name": "mnist"}})
    assert not plain.dataset.masks and plain.dataset.factorised
    written = old.replace(format=FORMAT, dataset=DatasetFacts("x", 1, 1, ("a",), masks=True))
    folder = RunFolder(tmp_path)
    folder.write_info(written)
    raw = json.loads(folder.info.read_text())
    assert raw["format"] == FORMAT and raw["dataset"]["masks"] is True
    assert folder.read_info() == written
    finished = written.finish(train_seconds=2.0, final={"test_acc": 0.5})
    assert finished.status == "finished" and re.match(r"\d{4}-\d\d-\d\dT", finished.finished)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**OLD_INFO, "format": FORMAT + 1}, "written by a newer cnnlab"),
        ({**OLD_INFO, "format": "one"}, "format must be a positive integer"),
        ({k: v for k, v in OLD_INFO.items() if k != "model"}, "lacks model"),
        ({**OLD_INFO, "dataset": {"name": "lines"}}, "dataset lacks class_names"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_run_info_is_one_clear_error(tmp_path: Path, raw, message: str) -> None:
    folder = RunFolder(tmp_path)
    folder.info.write_text(json.dumps(raw))
    with pytest.raises(CnnlabError, match=re.escape(message)) as error:
        folder.read_info()
    assert str(folder.info) in str(error.value)


def test_metrics_declare_their_shape(tmp_path: Path) -> None:
    path = tmp_path / "metrics-test.json"
    path.write_text(json.dumps({"split": "test", "accuracy": 0.5}))
    with pytest.raises(CnnlabError, match="lacks dataset, class_names, n, loss"):
        read_metrics(path)
    path.write_text("{not json")
    with pytest.raises(CnnlabError, match="cannot read"):
        read_metrics(path)


def test_history_round_trip_and_bad_history(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    rows = [{"epoch": 1, "test_acc": 0.123456789}, {"epoch": 2, "test_acc": 0.5}]
    write_history(path, rows)
    assert read_history(path) == [{"epoch": 1.0, "test_acc": 0.123457}, rows[1]]
    write_history(path, [], columns=("epoch", "test_acc"))
    assert path.read_text() == "epoch,test_acc\n" and read_history(path) == []
    path.write_text("epoch,test_acc\n1,abc\n")
    with pytest.raises(CnnlabError, match="cannot read the history"):
        read_history(path)


def test_require_says_how_to_go_on(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "r")
    with pytest.raises(CnnlabError, match="no such run folder"):
        folder.require()
    folder.path.mkdir()
    with pytest.raises(CnnlabError, match=re.escape("not a run folder (no config.yaml)")):
        folder.require()
    folder.config.write_text("name: r\n")
    folder.write_info(info(status="interrupted"))
    with pytest.raises(CnnlabError, match=r"status: interrupted.*cnnlab train --resume"):
        folder.require()
    folder.require(finished=False)


def test_no_other_module_spells_a_run_folder_file() -> None:
    """The owner's file names appear as string literals nowhere else in the package."""
    package = Path(__file__).parents[1] / "src" / "cnnlab"
    names = ("run.json", "history.csv", "model.safetensors", "config.yaml", "last.pt")
    alternatives = "|".join(map(re.escape, names))
    literal = re.compile(r"""["'][^"'\n]*(""" + alternatives + r""")[^"'\n]*["']""")
    found = []
    for path in package.rglob("*.py"):
        if path.parent.name == "runfolder":  # the owner itself
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if literal.search(code) and not code.strip().startswith(('"""', "``")):
                found.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
