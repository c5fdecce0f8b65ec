"""What every executor shares: the task, its outcome, the executor's contract."""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cnnlab.errors import Interrupted
from cnnlab.fileio import atomic_open

JOB_FILE = ".cnnlab-job"
"""Written by the driver into the job's folder; a worker that cannot read it back does not see
the folder (no shared file system)."""

ENV_PREFIXES = ("CNNLAB_", "PYTHONPATH")
"""Environment variables a worker takes from the driver (data folders, caches, user models)."""


@dataclass(frozen=True)
class Task:
    """``function(*arguments)``, run by a worker: ``function`` is a module-level function
    (workers import it by name) and ``name`` says what it is (a run's name)."""

    name: str
    function: Callable[..., Any]
    arguments: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """How a task ended: ``done`` (with its ``value``), ``failed`` (``error`` is one line,
    ``traceback`` the whole story) or ``stopped`` (interrupted; what it saved is resumable)."""

    task: Task
    status: Literal["done", "failed", "stopped"]
    value: Any = None
    error: str = ""
    traceback: str = ""
    worker: str = ""
    """Where it ran: ``host:pid``, or the Ray node (empty in the driver's own process)."""


@dataclass(frozen=True)
class Place:
    """Where and how a worker runs a task as the driver would: the driver's working folder and
    environment, the job's folder with its token, the torch threads."""

    cwd: str
    home: str
    token: str
    threads: int | None
    env: dict[str, str] = field(default_factory=dict)


class JobStopped(Interrupted):
    """The job was stopped (Ctrl-C); the runs in progress saved a checkpoint."""


Report = Callable[[Outcome], None]
Log = Callable[[str], None]


class Executor(ABC):
    """Runs the tasks of a job; use it as a context manager (it may hold a cluster)."""

    name: str = ""
    here: bool = False
    """Whether the tasks run in the driver's own process (one at a time)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 (most executors hold nothing between jobs)
        """Release what the executor holds (a cluster connection)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: where and how the tasks run."""

    @abstractmethod
    def run(self, tasks: Sequence[Task], report: Report, *, home: Path, log: Log) -> None:
        """Run every task; ``report`` each outcome here, in the driver, as it comes.

        ``home`` is the job's folder (every task's files lie under it or are read-only data).
        A worker lost mid-task (killed, out of memory) has its task run again; Ctrl-C stops
        every task (a training saves a checkpoint) and raises :class:`JobStopped`. An exception
        raised by ``report`` stops the job the same way and is raised again."""


def place(home: Path, threads: int | None) -> Place:
    """The driver's :class:`Place` for a job in ``home``; writes the job file there."""
    token = uuid.uuid4().hex
    with atomic_open(home / JOB_FILE) as handle:
        handle.write(token)
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    return Place(os.getcwd(), str(home.resolve()), token, threads, env)


def stopped_error(outcomes: Sequence[Outcome]) -> JobStopped:
    """The error that ends a stopped job, naming what the stopped tasks said."""
    said = "; ".join(
        f"{o.task.name}: {o.error.rstrip('.')}" for o in outcomes if o.status == "stopped"
    )
    return JobStopped(
        "interrupted" + (f" ({said})" if said else "") + ". Run the same command again to continue"
    )
