"""The default executor: worker processes here; a worker killed mid-run has its run resumed,
Ctrl-C stops the whole study resumably; a worker refuses a job folder it cannot see."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_killer import (
    Killer,
    check_each_run_trained_once,
    history_without_times,
    train_alone,
    write_slow_study,
)

from cnnlab.cli import main
from cnnlab.execution import LocalExecutor, Task, make_executor
from cnnlab.execution.base import Place
from cnnlab.execution.worker import call
from cnnlab.runfolder import RunFolder
from cnnlab.study import run_study

RUNS = ["base-seed0", "kernel-5-seed0", "base-seed1", "kernel-5-seed1"]


def test_a_killed_worker_process_has_its_run_resumed(tmp_path: Path, mnist_dir: Path) -> None:
    path, out = write_slow_study(tmp_path, mnist_dir), tmp_path / "out"
    killer = Killer(out / "runs")
    killer.start()
    said: list[str] = []
    try:
        executor = LocalExecutor(2, threads=1)
        summary = run_study(path, out=out, executor=executor, log=said.append, progress=False)
    finally:
        killer.done.set()
    assert killer.killed is not None, "the watcher never caught a run training"
    assert f"a worker process died; {killer.killed} starts again (resumes)" in said
    workers = {line.rsplit(", ", 1)[1].rstrip(")") for line in said if "] trained " in line}
    assert len(workers) >= 2, said  # two worker processes at least
    assert summary.runs_done == 4
    check_each_run_trained_once(out / "runs", RUNS)
    alone = train_alone(out / "runs" / killer.killed, tmp_path / "alone")
    assert history_without_times(out / "runs" / killer.killed) == history_without_times(alone)


def test_ctrl_c_stops_every_worker_and_the_study_resumes(tmp_path: Path, mnist_dir: Path) -> None:
    """Ctrl-C once the first run has saved its first epoch (the event waited for; no timing):
    the study stops, says how to continue, leaves every run folder whole and no run marked
    running, and the same command finishes each run with each epoch trained once. Six epochs a
    run leave the stop five epochs of the first runs (and two whole runs) to land in."""
    epochs = 6
    path, out = write_slow_study(tmp_path, mnist_dir, epochs=epochs), tmp_path / "out"
    command = [sys.executable, "-m", "cnnlab", "study", str(path), "--out", str(out)]
    command += ["--jobs", "2", "--threads", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("runs/*/checkpoints/last.pt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output
    assert "stopping: the runs in progress save a checkpoint" in output
    assert "Run the same command again to continue" in output
    runs = sorted((out / "runs").iterdir())
    assert all(RunFolder(d).info.is_file() for d in runs), runs  # whole, or not there at all
    statuses = {d.name: RunFolder(d).recorded_status() for d in runs}
    assert list(statuses.values()).count("finished") < 4, statuses  # it stopped
    assert "running" not in statuses.values(), statuses  # nobody left behind
    summary = run_study(path, out=out, jobs=2, threads=1, quiet=True)
    assert summary.runs_done == 4
    check_each_run_trained_once(out / "runs", RUNS, epochs)


def test_a_worker_refuses_a_job_folder_it_does_not_see(tmp_path: Path) -> None:
    task = Task("t", os.getcwd)
    elsewhere = Place(str(tmp_path), str(tmp_path / "not-shared"), "token", None)
    outcome = call(task, elsewhere)
    assert outcome.status == "failed"
    assert "does not see the job's folder" in outcome.error
    assert str(tmp_path / "not-shared") in outcome.error
    (tmp_path / "not-shared").mkdir()
    (tmp_path / "not-shared" / ".cnnlab-job").write_text("token")
    assert call(task, elsewhere).value == str(tmp_path)  # seen: it works where the driver does


def test_executor_options_are_checked(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(Exception, match="--address is for --executor ray"):
        make_executor("local", address="10.0.0.1:6379")
    assert main(["study", "variations-mnist", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert main(["study", "variations-mnist", "--worker"]) == 2
    assert "--worker was retired" in capsys.readouterr().err


def test_without_ray_the_ray_executor_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert main(["study", "variations-mnist", "--quick", "--executor", "ray"]) == 2
    assert "pip install 'cnnlab[ray]'" in capsys.readouterr().err
