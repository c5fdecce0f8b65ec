"""The worker's side of every executor: run one task as the driver would, catch how it ends.

A worker is stopped by SIGINT (the driver's stop, or Ray's ``cancel``): a training then saves
a checkpoint after its current step and stops (see :mod:`cnnlab.training.interrupt`); anything
else stops at once (every file is written whole or not at all). Between tasks a local worker
ignores SIGINT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import traceback
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.execution.base import JOB_FILE, Outcome, Place, Task


def start_worker(threads: int | None) -> None:
    """A local worker process's start: its own process group (Ctrl-C in a terminal reaches the
    driver, which stops the workers itself, once), SIGINT ignored between tasks, its threads."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def call(task: Task, place: Place | None) -> Outcome:
    """Run ``task`` in this worker process as the driver would (its folder, environment and
    threads) and say how it ended; never raises for the task's own errors. ``place=None``: in
    the driver itself (Ctrl-C then acts as usual)."""
    outcome = _run(task, place)
    if place is None:
        return outcome
    return replace(outcome, worker=f"{socket.gethostname()}:{os.getpid()}")


def _run(task: Task, place: Place | None) -> Outcome:
    try:
        if place is None:
            value = task.function(*task.arguments)
        else:
            _enter(place)
            with _interruptible():
                value = task.function(*task.arguments)
    except Interrupted as exc:
        return Outcome(task, "stopped", exc.partial, error=exc.what)
    except KeyboardInterrupt:
        return Outcome(task, "stopped", error="interrupted")
    except Exception as exc:
        message = str(exc) if isinstance(exc, CnnlabError) else f"{type(exc).__name__}: {exc}"
        return Outcome(task, "failed", error=message, traceback=traceback.format_exc())
    return Outcome(task, "done", value)


def _enter(place: Place) -> None:
    """Take the driver's place; refuse when the job's folder is not the driver's."""
    job_file = Path(place.home) / JOB_FILE
    try:
        token = job_file.read_text().strip()
    except OSError:
        token = ""
    if token != place.token:
        raise CnnlabError(
            f"{socket.gethostname()} does not see the job's folder {place.home} as the driver "
            "wrote it: every worker must reach the job's folder (and the data) at the same path, "
            "on a shared file system (NFS, ...)"
        )
    os.chdir(place.cwd)
    os.environ.update(place.env)
    if place.threads is not None:
        import torch

        torch.set_num_threads(place.threads)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this block (in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
