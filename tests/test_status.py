"""Where a job stands: ``cnnlab status`` on a study with runs in every state, the live lines in a
terminal (a pseudo-terminal) and as plain lines elsewhere (a pipe: see the reproduction's test),
and the newcomer's MNIST error."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_killer import write_slow_study

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.jobs import LiveStatus, Planned, job_status
from cnnlab.jobs.folder import plan_record
from cnnlab.runfolder import RunFolder
from cnnlab.training import train

STATES = ("done", "training", "killed", "elsewhere", "waiting", "failed")
TINY = ("data.train_limit=200", "data.test_limit=100", "train.epochs=2", "train.batch_size=50")


@pytest.fixture(scope="module")
def finished_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny run, trained and evaluated."""
    out = tmp_path_factory.mktemp("status") / "done"
    overrides = (*TINY, f"data.mnist_dir={mnist_dir}", "model.filters=4", "model.dense_units=16")
    train("part1-mnist", overrides=overrides, out=out, quiet=True)
    evaluate_run(out)
    return out


def a_study_in_every_state(folder: Path, finished_run: Path) -> Path:
    """A study folder whose plan has six runs: done, training (this process holds it),
    interrupted (its process is gone), started by another machine, waiting, failed."""
    config = json.loads((finished_run / "run.json").read_text())
    planned = [Planned(n, folder / "runs" / n, 2, 200) for n in STATES]
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"planned": plan_record(folder, planned)}))
    shutil.copytree(finished_run, folder / "runs" / "done")
    for name, holder in (
        ("training", f"cnnlab (pid {os.getpid()} on {os.uname().nodename}, since now)"),
        ("killed", f"cnnlab (pid 999999999 on {os.uname().nodename}, since now)"),
        ("elsewhere", "cnnlab (pid 1 on another-machine, since now)"),
    ):
        run = RunFolder(folder / "runs" / name)
        run.path.mkdir(parents=True)
        shutil.copy(finished_run / "config.yaml", run.config)
        run.info.write_text(json.dumps({**config, "status": "running"}))
        (run.path / "history.csv").write_text(
            "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds\n1,1.0,0.5,0.9,0.625,0.001,3.0\n"
        )
        run.lock_file.write_text(holder)
    (folder / "failures").mkdir()
    (folder / "failures" / "failed.json").write_text("{}")
    return folder


def test_status_names_every_state_and_what_is_left(
    tmp_path: Path, finished_run: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = a_study_in_every_state(tmp_path / "study", finished_run)
    status = job_status(folder)
    states = {r.name: r.state for r in status.runs}
    assert states == {
        "done": "done",
        "training": "training",
        "killed": "interrupted",
        "elsewhere": "training",  # another machine's process: run.json is trusted
        "waiting": "waiting",
        "failed": "failed",
    }
    training = next(r for r in status.runs if r.name == "training")
    assert (training.epoch, training.epochs, training.accuracy) == (1, 2, 0.625)
    # left: 1 epoch each of training, killed, elsewhere at 3 s; waiting: 2 epochs at 3 s / 200
    # images x 200 images; over the 2 runs training now
    assert status.eta_seconds() == pytest.approx((3 * 3.0 + 2 * 3.0) / 2)
    assert status.headline().startswith(
        f"study {folder}: 1/6 runs done, 2 training, 5 left, 1 failed, about 8 s"
    )
    assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == status.headline()
    assert out[1:] == [
        "  training: training, epoch 1/2, test accuracy 0.6250",
        "  killed: interrupted, epoch 1/2, test accuracy 0.6250 "
        "(stopped before its first checkpoint: starts again)",
        "  elsewhere: training, epoch 1/2, test accuracy 0.6250",
        "  failed: failed, epoch 0/2",
    ]
    older = {"runs": {n: {"train": {"epochs": 2}, "data": {"train_limit": 200}} for n in STATES}}
    (folder / "study.json").write_text(json.dumps(older))
    assert job_status(folder) == status  # a study written before plans were reads the same
    assert main(["status", str(folder / "runs" / "done")]) == 0
    assert capsys.readouterr().out.startswith(f"run {folder / 'runs' / 'done'}: 1/1 runs done")
    assert main(["status", str(tmp_path)]) == 2
    assert "not a reproduction, study or run folder" in capsys.readouterr().err


def test_live_status_redraws_in_a_terminal_and_prints_plain_lines_elsewhere(
    tmp_path: Path, finished_run: Path
) -> None:
    folder = a_study_in_every_state(tmp_path / "study", finished_run)
    screen = io.StringIO()
    said: list[str] = []
    with LiveStatus(folder, said.append, interactive=True, stream=screen, interval=0.05) as live:
        time.sleep(0.2)
        live.say("a line of the job")
    drawn = screen.getvalue()
    assert "  training: training, epoch 1/2, test accuracy 0.6250\n" in drawn
    assert "\x1b[3F\x1b[J" in drawn  # the block (headline + 2 trainings) redrawn in place
    assert drawn.endswith("\x1b[3F\x1b[J")  # and erased at the end
    assert said == ["a line of the job"]

    plain: list[str] = []
    history = folder / "runs" / "training" / "history.csv"
    with LiveStatus(folder, plain.append, interactive=False, interval=0.05):
        time.sleep(0.2)
        assert plain == []  # nothing new yet
        history.write_text(history.read_text() + "2,0.5,0.8,0.4,0.875,0.001,3.0\n")
        time.sleep(0.3)
    assert plain == [
        "[progress] training: training, epoch 2/2, test accuracy 0.8750 | "
        + job_status(folder).headline()
    ]


def test_a_study_shows_live_lines_in_a_pseudo_terminal(tmp_path: Path, mnist_dir: Path) -> None:
    path = write_slow_study(tmp_path, mnist_dir, seeds=(0,), both=False)
    command = [sys.executable, "-m", "cnnlab", "study", str(path), "--threads", "1"]
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*command, "--out", str(tmp_path / "tty")], stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=120) == 0
    text = screen.decode(errors="replace")
    assert re.search(r"\n  base-seed0: (training|trained), epoch [0-3]/3", text), text
    assert "\x1b[J" in text and "[progress]" not in text


def test_no_network_and_no_mnist_folder_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("CNNLAB_MNIST_DIR", raising=False)
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_MNIST_MIRRORS", "http://127.0.0.1:9/")  # nothing listens there
    assert main(["data", "mnist"]) == 2
    err = capsys.readouterr().err
    assert "could not download" in err
    assert "cnnlab reproduce --mnist-dir DIR" in err and "CNNLAB_MNIST_DIR=DIR" in err


def test_a_plan_naming_a_folder_outside_its_job_is_refused_in_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    plan = {"planned": [{"name": "x", "folder": "../../etc", "epochs": 3, "images": None}]}
    (job / "reproduce.json").write_text(json.dumps(plan))
    with pytest.raises(CnnlabError, match=r"'\.\./\.\./etc' is outside the job folder"):
        job_status(job)
