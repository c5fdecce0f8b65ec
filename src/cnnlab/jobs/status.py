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


@dataclass(frozen=True)
class RunStatus:
    """One run's progress: ``state`` is ``waiting``, ``training``, ``interrupted``, ``trained``
    (trained, its evaluation left or under way), ``done``, ``diverged`` or ``failed``."""

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

    def line(self) -> str:
        of = f"/{self.epochs}" if self.epochs else ""
        text = f"{self.name}: {self.state}, epoch {self.epoch}{of}"
        if self.accuracy is not None:
            text += f", {self.accuracy_split} accuracy {self.accuracy:.4f}"
        return text


@dataclass(frozen=True)
class JobStatus:
    """Every planned run's :class:`RunStatus` and what they add up to."""

    kind: str
    folder: Path
    runs: tuple[RunStatus, ...]

    def count(self, *states: str) -> int:
        return sum(r.state in states for r in self.runs)

    @property
    def training(self) -> tuple[RunStatus, ...]:
        return tuple(r for r in self.runs if r.state == "training")

    def eta_seconds(self) -> float | None:
        """About how long the epochs left take, spread over the runs training now (or one):
        each run's epochs left at its own mean epoch time; a run not measured yet at the
        median seconds per training image of the measured runs times its images, or at their
        median epoch time when its images are unknown."""
        measured = [r for r in self.runs if r.epoch_seconds]
        if not measured:
            return None
        typical = statistics.median(r.epoch_seconds or 0.0 for r in measured)
        rates = [r.epoch_seconds / r.images for r in measured if r.epoch_seconds and r.images]
        rate = statistics.median(rates) if rates else None
        left = 0.0
        for run in self.runs:
            if run.state in ("done", "diverged", "failed", "trained") or run.epochs is None:
                continue
            epoch = run.epoch_seconds or (rate * run.images if rate and run.images else typical)
            left += max(0, run.epochs - run.epoch) * epoch
        return left / max(1, len(self.training))

    def headline(self) -> str:
        done = self.count("done", "diverged")
        text = (
            f"{self.kind} {self.folder}: {done}/{len(self.runs)} runs done, "
            f"{len(self.training)} training, {len(self.runs) - done} left"
        )
        failed = self.count("failed")
        if failed:
            text += f", {failed} failed"
        eta = self.eta_seconds()
        if eta is not None and done < len(self.runs):
            text += f", about {_duration(eta)} of training left"
        return text

    def lines(self, states: tuple[str, ...] = ("training", "trained")) -> list[str]:
        """The headline, then one line per run in one of ``states``."""
        return [self.headline(), *(f"  {r.line()}" for r in self.runs if r.state in states)]

    def to_dict(self) -> dict[str, Any]:
        """The status as plain data (``cnnlab status --json``): what the headline adds up and
        every run's progress."""
        done = self.count("done", "diverged")
        return {
            "kind": self.kind,
            "folder": str(self.folder),
            "runs_total": len(self.runs),
            "runs_done": done,
            "runs_training": len(self.training),
            "runs_left": len(self.runs) - done,
            "runs_failed": self.count("failed"),
            "eta_seconds": self.eta_seconds() if done < len(self.runs) else None,
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
    return JobStatus(kind, folder, tuple(run_status(p) for p in planned))


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
