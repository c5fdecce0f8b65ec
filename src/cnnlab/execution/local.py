"""The default executor: worker processes on this machine, or the driver's own process."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from cnnlab.execution.base import (
    Executor,
    Log,
    Outcome,
    Place,
    Report,
    Task,
    place,
    stopped_error,
)
from cnnlab.execution.worker import call, start_worker

RETRIES = 2
"""How many times a task whose worker process died (killed, out of memory) is run again."""

STOP_GRACE_SECONDS = 120.0
"""How long a stopped job waits for its workers to save their checkpoints before killing them."""


def cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor(Executor):
    """``jobs`` worker processes (spawned, each with ``threads`` torch threads, by default
    ``cores // jobs``), given one task at a time so that nothing is queued in a worker; with
    ``jobs == 1`` the tasks run in the driver's own process, one after another."""

    name = "local"

    def __init__(self, jobs: int = 1, threads: int | None = None) -> None:
        self.jobs = jobs
        self.threads = threads
        self.here = jobs == 1

    def describe(self) -> str:
        if self.jobs == 1:
            return "this process"
        return f"{self.jobs} worker processes, {self.worker_threads()} thread(s) each"

    def worker_threads(self) -> int:
        return self.threads or max(1, cores() // self.jobs)

    def run(self, tasks: Sequence[Task], report: Report, *, home: Path, log: Log) -> None:
        if self.jobs == 1:
            for task in tasks:
                outcome = call(task, None)
                report(outcome)
                if outcome.status == "stopped":
                    raise stopped_error([outcome])
            return
        _Pool(self.jobs, self.worker_threads(), place(home, None), report, log).run(tasks)


class _Pool:
    """One job's worker processes: hands tasks out, replaces a broken pool, stops on Ctrl-C."""

    def __init__(self, jobs: int, threads: int, where: Place, report: Report, log: Log) -> None:
        self.jobs, self.threads, self.where = jobs, threads, where
        self.report, self.log = report, log
        self.context = multiprocessing.get_context("spawn")  # no fork of a threaded torch

    def run(self, tasks: Sequence[Task]) -> None:
        pending = deque(tasks)
        deaths: Counter[str] = Counter()
        while pending:
            lost = self._run_pool(pending)
            for task in lost:  # their worker died: the pool is gone, they go again
                deaths[task.name] += 1
                if deaths[task.name] > RETRIES:
                    error = f"its worker process died {RETRIES + 1} times"
                    self.report(Outcome(task, "failed", error=error))
                else:
                    self.log(f"a worker process died; {task.name} starts again (resumes)")
                    pending.appendleft(task)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.jobs, mp_context=self.context, initializer=start_worker, initargs=(self.threads,)
        )

    def _run_pool(self, pending: deque[Task]) -> list[Task]:
        """Run tasks from ``pending`` until none is left or the pool breaks; the lost tasks."""
        pool = self._new_pool()
        running: dict[Future[Outcome], Task] = {}
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    task = pending.popleft()
                    running[pool.submit(call, task, self.where)] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                lost = [running.pop(f) for f in done if _broken(f)]
                for future in done - {f for f in done if _broken(f)}:
                    running.pop(future)
                    self._handle(future.result())
                if lost:
                    lost += list(running.values())  # every worker of a broken pool is gone
                    running.clear()
                    pool.shutdown(wait=True)
                    return lost
        except BaseException as exc:
            self._stop(pool, running, exc)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return []

    def _handle(self, outcome: Outcome) -> None:
        self.report(outcome)
        if outcome.status == "stopped":  # a worker was interrupted: the job stops
            raise stopped_error([outcome])

    def _stop(
        self, pool: ProcessPoolExecutor, running: dict[Future[Outcome], Task], exc: BaseException
    ) -> None:
        """Stop every worker (one SIGINT: trainings save a checkpoint), report what they
        finish, kill them after the grace period or a second Ctrl-C."""
        if not running:
            return
        self.log(
            "stopping: the runs in progress save a checkpoint (Ctrl-C again to kill them); "
            "run the same command again to continue"
        )
        processes = list(getattr(pool, "_processes", {}).values())  # not public API
        for process in processes:
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(process.pid, signal.SIGINT)
        try:
            done, _ = wait(running, timeout=STOP_GRACE_SECONDS)
        except KeyboardInterrupt:
            done = set()
        outcomes = [o for o in map(_outcome, done) if o is not None and o.status != "failed"]
        for outcome in outcomes:
            with contextlib.suppress(Exception):
                self.report(outcome)
        if len(done) < len(running):  # the grace period is over, or Ctrl-C again
            for process in processes:
                if process.is_alive():
                    process.kill()
        if isinstance(exc, KeyboardInterrupt):
            raise stopped_error([o for o in outcomes if o.status == "stopped"]) from None


def _broken(future: Future[Outcome]) -> bool:
    return isinstance(future.exception(), BrokenProcessPool)


def _outcome(future: Future[Outcome]) -> Outcome | None:
    """A finished future's outcome; None if its worker raised (it died, or was stopped)."""
    return None if future.exception() is not None else future.result()
