"""A job folder's files: their names, the plan of its runs, and the records of failed runs.

A job is a reproduction (``reproduce.json``) or a study (``study.json``). Its runs live in
``<job>/runs/<name>`` (a reproduction's studies are jobs of their own, inside it), and a run
that failed has ``<job>/failures/<name>.json``. When it starts, a job writes the runs it plans
(:class:`Planned`: name, folder, epochs, images) into its file under ``planned``, so that
anyone can tell where it stands from that file and the run folders alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import write_json

REPRODUCTION_FILE = "reproduce.json"
STUDY_FILE = "study.json"
RUNS = "runs"
FAILURES = "failures"
PLANNED = "planned"
"""The key of a job file that holds its planned runs."""


@dataclass(frozen=True)
class Planned:
    """A run a job will train: its name in the job, its folder, its epochs (None: unknown)."""

    name: str
    folder: Path
    epochs: int | None
    images: int | None = None
    """Training images per epoch, where the plan says (``data.train_limit``)."""
    failed: bool = False
    """The job recorded it as failed (``failures/<run>.json``)."""


def run_folder(job: Path, name: str) -> Path:
    """Where the run ``name`` of the job in ``job`` lives."""
    return job / RUNS / name


def failure_file(run: Path) -> Path:
    """Where the job records why the run in folder ``run`` failed (removed when it starts
    again)."""
    return run.parent.parent / FAILURES / f"{run.name}.json"


def record_failure(run: Path, error: str, trace: str) -> None:
    """Write the run's failure record: the error, where and when."""
    write_json(
        failure_file(run),
        {
            "run": run.name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "error": error,
            "traceback": trace,
        },
    )


def plan_record(job: Path, planned: Sequence[Planned]) -> list[dict[str, Any]]:
    """The ``planned`` entry of a job file (folders relative to the job's)."""
    return [
        {
            "name": p.name,
            "folder": p.folder.relative_to(job).as_posix(),
            "epochs": p.epochs,
            "images": p.images,
        }
        for p in planned
    ]


def read_plan(job: Path) -> tuple[str, list[Planned]]:
    """The kind of job in ``job`` (``reproduction`` or ``study``) and the runs it plans, each
    marked failed where it has a failure record. Raises :class:`CnnlabError` when ``job``
    holds no readable job file."""
    path, kind = job / REPRODUCTION_FILE, "reproduction"
    if not path.is_file():
        path, kind = job / STUDY_FILE, "study"
    try:
        record = json.loads(path.read_text())
        if PLANNED not in record and kind == "reproduction":
            raise CnnlabError(
                f"{path}: written by an older cnnlab, without its plan; run the same "
                "reproduce command again to record it"
            )
        entries = record[PLANNED] if PLANNED in record else _older_study(record["runs"])
        planned = [
            Planned(e["name"], _inside(job, e["folder"]), e["epochs"], e["images"]) for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CnnlabError(f"{path}: not a readable {kind} plan ({exc})") from None
    return kind, [
        Planned(p.name, p.folder, p.epochs, p.images, failure_file(p.folder).is_file())
        for p in planned
    ]


def _inside(job: Path, folder: str) -> Path:
    """A planned run's folder, which must lie inside the job (a plan is data: it cannot send
    ``status`` to read folders elsewhere)."""
    path = job / folder
    if not isinstance(folder, str) or not path.resolve().is_relative_to(job.resolve()):
        raise ValueError(f"run folder {folder!r} is outside the job folder")
    return path


def is_job(folder: Path) -> bool:
    """Whether ``folder`` holds a job file."""
    return (folder / REPRODUCTION_FILE).is_file() or (folder / STUDY_FILE).is_file()


def _older_study(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan of a study written before plans were (its run configs by name)."""
    return [
        {
            "name": name,
            "folder": f"{RUNS}/{name}",
            "epochs": config.get("train", {}).get("epochs"),
            "images": config.get("data", {}).get("train_limit"),
        }
        for name, config in runs.items()
    ]
