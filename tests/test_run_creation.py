"""A run folder appears whole (its config and ``run.json``) or not at all, however its start
ends; a folder an older cnnlab left with only its lock file is read and reused correctly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import cnnlab.training.run as run_module
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.jobs.status import job_status
from cnnlab.runfolder import LOCK, RunFolder
from cnnlab.study import run_study
from cnnlab.training import train
from cnnlab.training.run import continue_run

TINY = (
    "data.dataset=lines",
    "data.lines={per_class: 4, test_fraction: 0.25}",
    "train.epochs=1",
    "train.batch_size=64",
)


def tiny(out: Path) -> object:
    return train("part1-lines", out=out, overrides=TINY, quiet=True)


def siblings(out: Path) -> list[str]:
    """What a start left beside ``out`` (its temporary folder, if any)."""
    if not out.parent.is_dir():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def stop_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Ctrl-C (KeyboardInterrupt) when ``cnnlab.training.run.<name>`` is called."""

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, name, stopped)


@pytest.mark.parametrize(
    "where",
    [
        "prepare_dataset",  # loading the data: before the folder is made
        "save_config",  # writing the folder's first file
        "record_trust",  # after the folder was renamed into place: it is whole
    ],
)
def test_a_start_stopped_anywhere_leaves_nothing_or_a_whole_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    out = tmp_path / "runs" / "cut"
    stop_at(monkeypatch, where)
    overrides = (*TINY, "model.name=tests_models:Tiny") if where == "record_trust" else TINY
    if where == "record_trust":  # only a run naming its own code is recorded
        (tmp_path / "tests_models.py").write_text(
            "from torch import nn\n\nclass Tiny(nn.Sequential):\n"
            "    def __init__(self, in_channels, num_classes, image_size):\n"
            "        super().__init__(nn.Flatten(),"
            " nn.Linear(in_channels * image_size[0] * image_size[1], num_classes))\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        train("part1-lines", out=out, overrides=overrides, quiet=True)
    assert siblings(out) == []  # no temporary folder left
    folder = RunFolder(out)
    if where == "record_trust":
        assert folder.config.is_file() and folder.info.is_file()
        assert folder.recorded_status() == "running" and folder.status() == "interrupted"
        assert folder.state() == "started"  # no checkpoint: the study's resume starts it again
        monkeypatch.undo()
        monkeypatch.syspath_prepend(str(tmp_path))
        assert continue_run("part1-lines", out, overrides=overrides, quiet=True) == "started"
        assert folder.state() == "trained"
    else:
        assert not out.exists()
        assert folder.state() == "absent"


def test_a_folder_being_made_is_never_seen_half_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the first files are written, the run's own path does not exist yet; the
    temporary sibling is locked, so no other start removes it."""
    out = tmp_path / "cut"
    seen: dict[str, object] = {}
    save = run_module.save_config

    def watched(config: object, path: Path) -> None:
        save(config, path)
        seen["exists"] = out.exists()
        seen["locked"] = RunFolder(path.parent).locked()
        with pytest.raises(CnnlabError, match="in use by"):  # a second start now
            RunFolder(path.parent).lock().__enter__()

    monkeypatch.setattr(run_module, "save_config", watched)
    tiny(out)
    assert seen == {"exists": False, "locked": True}
    assert RunFolder(out).state() == "trained"


def test_a_killed_start_is_cleaned_up_by_the_next_one(tmp_path: Path) -> None:
    """SIGKILL while the first files were written leaves a hidden sibling nobody holds: the
    next start of that run removes it."""
    out = tmp_path / "cut"
    left = tmp_path / ".cut.creating-x1y2z3"
    left.mkdir()
    (left / LOCK).write_text("cnnlab (pid 1 on elsewhere, since then)")
    (left / "config.yaml").write_text("name: half\n")
    tiny(out)
    assert siblings(out) == []
    assert RunFolder(out).recorded_status() == "finished"


def test_an_older_cnnlabs_lock_only_folder_is_read_and_reused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cut"
    (out / "checkpoints").mkdir(parents=True)
    (out / LOCK).write_text("cnnlab (pid 1 on elsewhere, since then)")
    folder = RunFolder(out)
    assert folder.state() == "absent" and folder.status() is None
    assert main(["train", "--resume", str(out)]) == 2  # no config: says so in one line
    assert "not a run folder (no config.yaml)" in capsys.readouterr().err
    assert main(["status", str(out)]) == 2
    assert "not a reproduction, study or run folder" in capsys.readouterr().err
    tiny(out)  # the lock file is taken over: a new run is made there
    assert folder.recorded_status() == "finished"
    assert {"config.yaml", "run.json", "model.safetensors"} <= {p.name for p in out.iterdir()}


def test_a_study_resumes_over_a_lock_only_run_folder(tmp_path: Path, mnist_dir: Path) -> None:
    from study_killer import write_slow_study

    path, out = write_slow_study(tmp_path, mnist_dir, seeds=(0,), both=False), tmp_path / "out"
    run_study(path, out=out, jobs=1, quiet=True)
    stale = out / "runs" / "base-seed0"
    shutil.rmtree(stale)
    (stale / "checkpoints").mkdir(parents=True)  # an older cnnlab's start, stopped
    (stale / LOCK).write_text("cnnlab (pid 1 on elsewhere, since then)")
    assert [(r.name, r.state) for r in job_status(out).runs] == [("base-seed0", "waiting")]
    summary = run_study(path, out=out, jobs=1, quiet=True)
    assert summary.runs_done == 1
    assert RunFolder(stale).state() == "done"
    assert json.loads(RunFolder(stale).info.read_text())["status"] == "finished"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("x"), "a file is there, not a folder"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), r"holds other files \(notes"),
    ],
)
def test_a_new_run_is_refused_where_something_else_lives(
    tmp_path: Path, make, message: str
) -> None:
    out = tmp_path / "cut"
    make(out)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(CnnlabError, match=message):
        tiny(out)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing touched


def test_an_empty_folder_takes_a_run_and_a_run_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "cut"
    out.mkdir()
    tiny(out)
    with pytest.raises(CnnlabError, match=r"already holds a run.*--resume"):
        tiny(out)


def test_resume_removes_what_a_killed_checkpoint_write_left(tmp_path: Path) -> None:
    out = tmp_path / "cut"
    tiny(out)
    folder = RunFolder(out)
    folder.weights.unlink()
    folder.set_status("interrupted")  # as if killed after its last checkpoint
    left = [folder.checkpoints / ".last.pt.k1ll3d.tmp", out / ".model.safetensors.k1ll3d.tmp"]
    mine = out / ".notes.txt.tmp"  # not a file the training writes: kept
    for path in (*left, mine):
        path.write_bytes(b"half a file")
    train(None, resume=out, quiet=True)
    assert not any(p.exists() for p in left)
    assert mine.exists()
    assert folder.recorded_status() == "finished"


def test_a_run_being_trained_is_not_advised_resume(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cut"
    tiny(out)
    folder = RunFolder(out)
    folder.weights.unlink()
    folder.set_status("running")
    with folder.lock():  # a training holds it now
        assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 2
        err = capsys.readouterr().err
        assert "the run is training now (in use by cnnlab (pid" in err and "--resume" not in err
        assert main(["train", "--resume", str(out)]) == 2
        assert "in use by cnnlab (pid" in capsys.readouterr().err
    folder.set_status("interrupted")
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 2
    assert f"finish it first with cnnlab train --resume {out}" in capsys.readouterr().err


def test_resume_of_a_finished_run_is_refused_and_changes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cut"
    tiny(out)
    folder = RunFolder(out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(out)]) == 2
    assert "the run is finished" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == before
    assert folder.state() == "trained"
    folder.set_status("diverged")
    assert main(["train", "--resume", str(out)]) == 2
    assert "the run diverged" in capsys.readouterr().err


def test_a_one_class_dataset_is_refused_before_a_folder_is_made(tmp_path: Path) -> None:
    import numpy as np

    data = tmp_path / "one.npz"
    np.savez(data, images=np.zeros((20, 1, 8, 8), np.uint8), labels=np.zeros(20, np.int64))
    overrides = (f"data.dataset={data}", "data.image_size=8", "train.epochs=1")
    with pytest.raises(CnnlabError, match=r"1 class .*needs at least 2 classes"):
        train("part1-mnist", out=tmp_path / "run", overrides=overrides, quiet=True)
    assert not (tmp_path / "run").exists()
