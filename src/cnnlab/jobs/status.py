"""Where a job stands, read from its folder alone (``cnnlab status``).

A job is a reproduction or a study (its plan: :func:`cnnlab.jobs.folder.read_plan`) or one
run folder (``config.yaml``); each run's progress comes from its run folder: its state, the
epochs in ``history.csv`` with the latest accuracy (validation when the run has a validation
split, else test), and whether a process trains it now. Reading never locks anything, so it
cannot disturb the trainings it watches.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.jobs.folder import (
    REPRODUCTION_FILE,
    STUDY_FILE,
    Planned,
    is_job,
    read_plan,
)
from cnnlab.runfolder import RunFolder

REPORT = "report.html"
"""A job's report, written when every run is done (a study's and a reproduction's alike)."""


RUN_STATES = ("waiting", "training", "interrupted", "trained", "done", "diverged", "failed")
"""What :class:`RunStatus` calls a run's state, from not started to final."""

TRAINING_LEFT = ("waiting", "training", "interrupted")
"""The states of a run with training left."""

UNTRAINED = ("absent", "started", "partial")
"""The run folder states (:data:`cnnlab.runfolder.STATES`) of a run with training left."""

_NOTES = {
    ("done", None): "trained and evaluated",
    ("trained", None): "not evaluated yet",
    ("diverged", None): "loss NaN or inf",
    ("waiting", None): "not started yet",
    ("interrupted", "partial"): "resumable from its checkpoint",
    ("interrupted", "started"): "stopped before its first checkpoint: starts again",
}


@dataclass(frozen=True)
class RunStatus:
    """One run's progress: ``state`` is one of :data:`RUN_STATES`: ``waiting`` (not started),
    ``training`` (a process trains it now), ``interrupted`` (started, no process trains it),
    ``trained`` (final weights, its evaluation left or under way), ``done`` (trained and
    evaluated), ``diverged`` or ``failed`` (the job recorded its failure)."""

    name: str
    state: str
    epoch: int
    epochs: int | None
    accuracy: float | None
    accuracy_split: str
    epoch_seconds: float | None
    """Mean seconds of its epochs so far (None before the first)."""
    images: int | None = None
    """Training images per epoch (from ``run.json``, else the plan; None: unknown)."""
    folder_state: str = "absent"
    """Its run folder's :meth:`~cnnlab.runfolder.RunFolder.state` (``partial``: a checkpoint
    to resume from; ``started``: none yet)."""

    @property
    def training_left(self) -> bool:
        """Whether the run has epochs left to train (waiting, training or interrupted)."""
        return self.state in TRAINING_LEFT

    def line(self) -> str:
        of = f"/{self.epochs}" if self.epochs else ""
        text = f"{self.name}: {self.state}, epoch {self.epoch}{of}"
        if self.accuracy is not None:
            text += f", {self.accuracy_split} accuracy {self.accuracy:.4f}"
        note = _NOTES.get((self.state, None)) or _NOTES.get((self.state, self.folder_state))
        return f"{text} ({note})" if note else text


@dataclass(frozen=True)
class JobStatus:
    """Every planned run's :class:`RunStatus` and what they add up to; ``also_left``: the
    job's work left besides its runs' training and evaluation (a reproduction's ``pictures``,
    a job's ``report``), which the headline names once no training is left."""

    kind: str
    folder: Path
    runs: tuple[RunStatus, ...]
    also_left: tuple[str, ...] = ()

    def count(self, *states: str) -> int:
        return sum(r.state in states for r in self.runs)

    @property
    def training(self) -> tuple[RunStatus, ...]:
        return tuple(r for r in self.runs if r.state == "training")

    @property
    def to_train(self) -> tuple[RunStatus, ...]:
        """The runs with training left (waiting, training, interrupted); a trained run, one
        done or diverged has none, and a failed one waits for the job to run again."""
        return tuple(r for r in self.runs if r.training_left)

    def eta_seconds(self) -> float | None:
        """About how long the epochs left take, spread over the runs training now (or one):
        each run's epochs left at its own mean epoch time; a run not measured yet at the
        median seconds per training image of the measured runs times its images, or at their
        median epoch time when its images are unknown. 0 when no run has training left (a
        trained run's evaluation is not training); None when it cannot be told."""
        left_runs = self.to_train
        if not left_runs:
            return 0.0
        measured = [r for r in self.runs if r.epoch_seconds]
        if not measured or all(r.epochs is None for r in left_runs):
            return None
        typical = statistics.median(r.epoch_seconds or 0.0 for r in measured)
        rates = [r.epoch_seconds / r.images for r in measured if r.epoch_seconds and r.images]
        rate = statistics.median(rates) if rates else None
        left = 0.0
        for run in left_runs:
            if run.epochs is None:
                continue
            epoch = run.epoch_seconds or (rate * run.images if rate and run.images else typical)
            left += max(0, run.epochs - run.epoch) * epoch
        return left / max(1, len(self.training))

    def work_left(self) -> list[str]:
        """What is left to do, in order: ``training`` (a run with training left),
        ``evaluation`` (a run trained or to train), then :attr:`also_left`; empty when the job
        is complete (failed runs aside)."""
        evaluation = self.to_train or self.count("trained")
        return [
            *(["training"] if self.to_train else []),
            *(["evaluation"] if evaluation else []),
            *self.also_left,
        ]

    def headline(self) -> str:
        """``<kind> <folder>: D/N runs done, T training, L left``: done counts the runs
        evaluated (or diverged), left every other run, and the trained runs among those left
        are named (not evaluated yet). Then the failed runs, and about how much training is
        left, or that none is and, for a job, what else is left to do."""
        done, diverged = self.count("done", "diverged"), self.count("diverged")
        trained, failed, left = self.count("trained"), self.count("failed"), len(self.runs) - done
        text = f"{self.kind} {self.folder}: {done}/{len(self.runs)} runs done"
        text += f" ({diverged} diverged)" if diverged else ""
        text += f", {len(self.training)} training, {left} left"
        text += f" ({trained} trained, not evaluated yet)" if trained else ""
        text += f", {failed} failed" if failed else ""
        if self.to_train:
            eta = self.eta_seconds()
            return text + (f", about {_duration(eta)} of training left" if eta is not None else "")
        if any(r.state == "failed" and r.folder_state in UNTRAINED for r in self.runs):
            return text  # a failed run trains again when the job runs again
        text += ", no training left" if left else ""
        if self.also_left:
            text += "; still to do: " + ", ".join(
                [*(["evaluation"] if trained else []), *self.also_left]
            )
        return text

    def lines(self, states: tuple[str, ...] = ("training", "trained")) -> list[str]:
        """The headline, then one line per run in one of ``states``."""
        return [self.headline(), *(f"  {r.line()}" for r in self.runs if r.state in states)]

    def advice(self) -> list[str]:
        """How to go on, said once: resume an interrupted run, evaluate a trained one (a run
        folder); run the job's command again (a job that no process trains now)."""
        interrupted, trained = self.count("interrupted"), self.count("trained")
        if self.kind == "run":
            return [
                *([f"  resume: cnnlab train --resume {self.folder}"] if interrupted else []),
                *([f"  evaluate: cnnlab evaluate {self.folder}"] if trained else []),
            ]
        if self.training or not (interrupted or trained):
            return []
        command = "study" if self.kind == "study" else "reproduce"
        text = f"  to go on: the same cnnlab {command} command again (it resumes interrupted runs "
        text += "and evaluates trained ones)"
        return [text + ("; one run alone: cnnlab train --resume RUN" if interrupted else "")]

    def to_dict(self) -> dict[str, Any]:
        """The status as plain data (``cnnlab status --json``): what the headline adds up (runs
        per state in ``states``; ``runs_left`` counts every run not done, ``runs_trained`` the
        trained ones among them, ``runs_to_train`` those with training left), what is left to
        do, and every run's progress."""
        done = self.count("done", "diverged")
        return {
            "kind": self.kind,
            "folder": str(self.folder),
            "runs_total": len(self.runs),
            "runs_done": done,
            "runs_training": len(self.training),
            "runs_left": len(self.runs) - done,
            "runs_trained": self.count("trained"),
            "runs_to_train": len(self.to_train),
            "runs_failed": self.count("failed"),
            "states": {state: self.count(state) for state in RUN_STATES},
            "eta_seconds": self.eta_seconds(),
            "work_left": self.work_left(),
            "headline": self.headline(),
            "runs": [asdict(run) for run in self.runs],
        }


def job_status(folder: str | Path) -> JobStatus:
    """Where the job in ``folder`` stands (a reproduction, a study or a run folder)."""
    folder = Path(folder)
    if is_job(folder):
        kind, planned = read_plan(folder)
    elif RunFolder(folder).config.is_file():
        kind, planned = "run", [Planned(folder.name, folder, _epochs(folder))]
    else:
        raise CnnlabError(
            f"{folder}: not a reproduction, study or run folder (no {REPRODUCTION_FILE}, "
            f"{STUDY_FILE} or {RunFolder(folder).config.name})"
        )
    runs = tuple(run_status(p) for p in planned)
    return JobStatus(kind, folder, runs, _also_left(kind, folder, planned, runs))


def _also_left(
    kind: str, folder: Path, planned: list[Planned], runs: tuple[RunStatus, ...]
) -> tuple[str, ...]:
    """A job's work left besides training and evaluating its runs: a reproduction's
    ``pictures`` (a model's run, named without a ``/`` unlike its studies' runs, trained but
    without current pictures) and a job's ``report`` (no ``report.html`` yet)."""
    if kind == "run":
        return ()
    pictures = kind == "reproduction" and any(
        "/" not in p.name
        and r.state in ("trained", "done")
        and not RunFolder(p.folder).pictures_current()
        for p, r in zip(planned, runs, strict=True)
    )
    report = not (folder / REPORT).is_file()
    return (*(["pictures"] if pictures else []), *(["report"] if report else []))


def run_status(planned: Planned) -> RunStatus:
    """One planned run's progress, from its folder."""
    folder = RunFolder(planned.folder)
    state = folder.state() if folder.path.is_dir() else "absent"
    history = _history(folder.history)
    split = "val" if history and "val_acc" in history[-1] else "test"
    accuracy = _number(history[-1].get(f"{split}_acc")) if history else None
    seconds = [s for s in (_number(row.get("seconds")) for row in history) if s is not None]
    if planned.failed:
        shown = "failed"
    elif state in ("done", "diverged", "trained"):
        shown = state
    elif state == "absent":
        shown = "waiting"
    else:
        shown = "training" if _training(folder) else "interrupted"
    return RunStatus(
        planned.name,
        shown,
        len(history),
        planned.epochs or _epochs(folder.path),
        accuracy,
        split,
        statistics.fmean(seconds) if seconds else None,
        _images(folder) or planned.images,
        state,
    )


def _training(folder: RunFolder) -> bool:
    """Whether a process trains the run now: ``run.json`` says running and, when the lock file
    names a process of this machine, that process lives (a killed run still says running).
    Never tries the lock (that could make a training that starts now find it taken)."""
    if folder.recorded_status() != "running":
        return False
    try:
        holder = folder.lock_file.read_text()
    except OSError:
        return True
    if f" on {socket.gethostname()}," not in holder:
        return True  # another machine's process: trust run.json
    try:
        pid = int(holder.split("pid ", 1)[1].split()[0])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _images(folder: RunFolder) -> int | None:
    """The run's training images per epoch, from ``run.json``."""
    try:
        images = json.loads(folder.info.read_text())["dataset"]["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return images if isinstance(images, int) else None


def _history(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _epochs(folder: Path) -> int | None:
    from cnnlab.training.config import load_config

    try:
        return load_config(RunFolder(folder).config, import_models=False).train.epochs
    except (CnnlabError, OSError):
        return None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{max(1, round(seconds))} s"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
