"""``cnnlab status`` names each state of a run for what it is (issue 30): trained but not
evaluated is not training left, done, diverged, interrupted with or without a checkpoint,
waiting; for a run folder and for a job alike. The run folders are written file by file, as
:class:`~cnnlab.runfolder.RunFolder` reads them (no training, no data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.jobs import Planned, job_status
from cnnlab.jobs.folder import plan_record
from cnnlab.runfolder import RunFolder
from cnnlab.training.config import load_config, save_config

HEADER = "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds\n"
EPOCH = "{},1.0,0.5,0.9,{},0.001,3.0\n"


def a_run(path: Path, state: str) -> Path:
    """A run folder of 2 epochs of 200 images at 3 s each, in one of the run folder's states:
    ``started`` (an epoch, no checkpoint), ``partial`` (an epoch and a checkpoint),
    ``trained`` (both epochs and the final weights), ``done`` (and evaluated), ``diverged``;
    none of them held by a process."""
    folder = RunFolder(path)
    path.mkdir(parents=True)
    save_config(load_config("part1-mnist", ["train.epochs=2"]), folder.config)
    status = {"started": "interrupted", "partial": "interrupted", "diverged": "diverged"}
    record = {"status": status.get(state, "finished"), "dataset": {"train": 200}}
    folder.info.write_text(json.dumps(record))
    epochs = 2 if state in ("trained", "done") else 1
    accuracies = ("0.625", "0.9")
    folder.history.write_text(
        HEADER + "".join(EPOCH.format(e + 1, accuracies[e]) for e in range(epochs))
    )
    if state == "partial":
        folder.checkpoints.mkdir()
        folder.checkpoint().write_bytes(b"checkpoint")
    if state in ("trained", "done"):
        folder.weights.write_bytes(b"weights")
    if state == "done":
        folder.metrics().write_text("{}")
        folder.errors().folder.mkdir()
        folder.errors().summary.write_text("{}")
        later = folder.weights.stat().st_mtime + 1
        for evaluated in (folder.metrics(), folder.errors().summary):
            os.utime(evaluated, (later, later))
    assert folder.state() == state
    return path


def said(capsys: pytest.CaptureFixture, *argv: str | Path) -> list[str]:
    assert main(["status", *map(str, argv)]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_trained_run_not_evaluated_has_no_training_left(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = a_run(tmp_path / "x", "trained")
    status = job_status(run)
    headline = f"run {run}: 0/1 runs done, 0 training, 1 left (1 trained, not evaluated yet)"
    assert status.headline() == headline + ", no training left"  # was "..., about 1 s of
    assert status.eta_seconds() == 0.0  # training left": the trained run counted as left
    record = status.to_dict()
    assert (record["runs_done"], record["runs_left"], record["runs_trained"]) == (0, 1, 1)
    assert (record["runs_to_train"], record["eta_seconds"]) == (0, 0.0)
    assert record["work_left"] == ["evaluation"]
    assert record["states"] == {
        "waiting": 0,
        "training": 0,
        "interrupted": 0,
        "trained": 1,
        "done": 0,
        "diverged": 0,
        "failed": 0,
    }
    assert record["runs"][0]["folder_state"] == "trained"
    assert said(capsys, run) == [status.headline(), f"  evaluate: cnnlab evaluate {run}"]
    assert (
        said(capsys, run, "--all")[1]
        == "  x: trained, epoch 2/2, test accuracy 0.9000 (not evaluated yet)"
    )


def test_a_done_run_is_trained_and_evaluated(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = a_run(tmp_path / "x", "done")
    status = job_status(run)
    assert status.headline() == f"run {run}: 1/1 runs done, 0 training, 0 left"
    record = status.to_dict()
    assert (record["runs_done"], record["runs_left"], record["runs_trained"]) == (1, 0, 0)
    assert (record["eta_seconds"], record["work_left"], record["states"]["done"]) == (0.0, [], 1)
    assert said(capsys, run) == [status.headline()]  # nothing to advise
    assert said(capsys, run, "--all")[1:] == [
        "  x: done, epoch 2/2, test accuracy 0.9000 (trained and evaluated)"
    ]


def test_an_interrupted_run_says_how_to_resume_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = a_run(tmp_path / "x", "partial")
    status = job_status(run)
    assert status.headline() == (
        f"run {run}: 0/1 runs done, 0 training, 1 left, about 3 s of training left"
    )
    record = status.to_dict()
    assert (record["runs_to_train"], record["runs_trained"], record["eta_seconds"]) == (1, 0, 3.0)
    assert record["work_left"] == ["training", "evaluation"]
    assert record["states"]["interrupted"] == 1 and record["runs"][0]["folder_state"] == "partial"
    assert said(capsys, run) == [
        status.headline(),
        "  x: interrupted, epoch 1/2, test accuracy 0.6250 (resumable from its checkpoint)",
        f"  resume: cnnlab train --resume {run}",
    ]


def test_a_started_and_a_diverged_run_say_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    started = a_run(tmp_path / "started", "started")
    assert said(capsys, started)[1:] == [
        "  started: interrupted, epoch 1/2, test accuracy 0.6250 "
        "(stopped before its first checkpoint: starts again)",
        f"  resume: cnnlab train --resume {started}",
    ]
    diverged = a_run(tmp_path / "nan", "diverged")
    status = job_status(diverged)
    assert status.headline() == f"run {diverged}: 1/1 runs done (1 diverged), 0 training, 0 left"
    assert said(capsys, diverged, "--all")[1:] == [
        "  nan: diverged, epoch 1/2, test accuracy 0.6250 (loss NaN or inf)"
    ]


def a_job(folder: Path, kind: str, states: dict[str, str]) -> Path:
    """A study or reproduction folder whose plan has a run of each name in ``states``, its run
    folder in that state (``absent``: none yet)."""
    planned = [Planned(n, folder / "runs" / n, 2, 200) for n in states]
    folder.mkdir()
    job_file = "study.json" if kind == "study" else "reproduce.json"
    (folder / job_file).write_text(json.dumps({"planned": plan_record(folder, planned)}))
    for p in planned:
        if states[p.name] != "absent":
            a_run(p.folder, states[p.name])
    return folder


def test_a_study_whose_runs_are_all_trained_has_evaluation_left_not_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    study = a_job(tmp_path / "s", "study", {"a": "trained", "b": "trained", "c": "done"})
    status = job_status(study)
    assert status.headline() == (
        f"study {study}: 1/3 runs done, 0 training, 2 left (2 trained, not evaluated yet), "
        "no training left; still to do: evaluation, report"
    )
    assert status.to_dict()["work_left"] == ["evaluation", "report"]
    assert said(capsys, study) == [
        status.headline(),
        "  to go on: the same cnnlab study command again (it resumes interrupted runs and "
        "evaluates trained ones)",
    ]
    (study / "report.html").write_text("<html></html>")
    assert job_status(study).headline().endswith("(2 trained, not evaluated yet), no training left")


def test_a_job_in_every_state_shows_each_run_in_its_words(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    states = {
        "new": "absent",
        "cut": "started",
        "half": "partial",
        "trained": "trained",
        "done": "done",
        "nan": "diverged",
    }
    study = a_job(tmp_path / "s", "study", states)
    status = job_status(study)
    # left: 2 epochs of the waiting run, 1 of each interrupted one, at 3 s; none of the trained
    assert status.eta_seconds() == pytest.approx(4 * 3.0)
    assert status.headline() == (
        f"study {study}: 2/6 runs done (1 diverged), 0 training, 4 left "
        "(1 trained, not evaluated yet), about 12 s of training left"
    )
    record = status.to_dict()
    assert (record["runs_to_train"], record["runs_trained"], record["runs_left"]) == (3, 1, 4)
    assert record["work_left"] == ["training", "evaluation", "report"]
    assert said(capsys, study, "--all") == [
        status.headline(),
        "  new: waiting, epoch 0/2 (not started yet)",
        "  cut: interrupted, epoch 1/2, test accuracy 0.6250 "
        "(stopped before its first checkpoint: starts again)",
        "  half: interrupted, epoch 1/2, test accuracy 0.6250 (resumable from its checkpoint)",
        "  trained: trained, epoch 2/2, test accuracy 0.9000 (not evaluated yet)",
        "  done: done, epoch 2/2, test accuracy 0.9000 (trained and evaluated)",
        "  nan: diverged, epoch 1/2, test accuracy 0.6250 (loss NaN or inf)",
        "  to go on: the same cnnlab study command again (it resumes interrupted runs and "
        "evaluates trained ones); one run alone: cnnlab train --resume RUN",
    ]


def test_a_trained_reproduction_has_evaluation_pictures_and_report_left(tmp_path: Path) -> None:
    states = {"part1-mnist": "trained", "variations/base-seed0": "done"}
    reproduction = a_job(tmp_path / "r", "reproduction", states)
    status = job_status(reproduction)
    assert status.headline() == (
        f"reproduction {reproduction}: 1/2 runs done, 0 training, 1 left "
        "(1 trained, not evaluated yet), no training left; still to do: evaluation, pictures, "
        "report"
    )
    assert status.to_dict()["work_left"] == ["evaluation", "pictures", "report"]
    assert status.advice() == [
        "  to go on: the same cnnlab reproduce command again (it resumes interrupted runs and "
        "evaluates trained ones)"
    ]
