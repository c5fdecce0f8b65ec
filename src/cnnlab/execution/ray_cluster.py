"""The Ray executor: every task a Ray task with declared resources, on a local Ray or a cluster.

``RayExecutor(address)`` connects to the cluster at ``address`` (``auto``: the one ``ray start``
began on this machine) or, with none, starts a Ray of its own on this machine for the job.
Each task asks ``cpus_per_run`` CPUs (its torch threads) and, where the cluster has GPUs, one
GPU. Ray runs a task again when its worker or node dies (``RETRIES`` times); the run it trains
resumes from its checkpoint. Files: the job's folder (and the data) must be on a file system
every node mounts at the same path; a worker that does not see it refuses the task, saying so.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
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
from cnnlab.execution.worker import call

RETRIES = 3
"""How many times Ray runs a task again whose worker process or node died."""

STOP_GRACE_SECONDS = 120.0
"""How long a stopped job waits for its tasks to save their checkpoints."""

INSTALL_HINT = "the Ray executor needs Ray: pip install 'cnnlab[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise CnnlabError(INSTALL_HINT) from None
    return ray


def call_on_ray(task: Task, place: Place) -> Outcome:
    """:func:`~cnnlab.execution.worker.call` in a Ray worker, naming the node it ran on."""
    import ray

    node = ray.get_runtime_context().get_node_id()[:8]
    return replace(call(task, place), worker=f"Ray node {node}")


class RayExecutor(Executor):
    """Runs each task as a Ray task (see the module docstring)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_run: int = 1,
        gpus_per_run: float | None = None,
    ) -> None:
        self.ray = import_ray()
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self._connected = False

    def connect(self) -> None:
        """Join the cluster (or start a local Ray) once, for every job of this executor."""
        if self._connected:
            return
        try:
            self.ray.init(
                address=self.address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                include_dashboard=False if self.address is None else None,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            raise CnnlabError(f"--executor ray: cannot start or reach {where} ({first})") from None
        self._connected = True
        if self.gpus_per_run is None:
            self.gpus_per_run = 1.0 if self.ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        cpus = self.ray.cluster_resources().get("CPU", 0)
        if cpus < self.cpus_per_run:
            self.close()
            raise CnnlabError(
                f"--threads {self.cpus_per_run}: each run asks that many CPUs, and the Ray "
                f"cluster has {cpus:g}"
            )

    def close(self) -> None:
        if self._connected:
            self.ray.shutdown()
            self._connected = False

    def describe(self) -> str:
        self.connect()
        resources = self.ray.cluster_resources()
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        gpus = f" and {self.gpus_per_run:g} GPU" if self.gpus_per_run else ""
        return (
            f"Ray at {self.address or 'a local Ray'} ({nodes} node(s), {resources.get('CPU', 0):g} "
            f"CPUs), each run asking {self.cpus_per_run} CPU(s){gpus}"
        )

    def run(self, tasks: Sequence[Task], report: Report, *, home: Path, log: Log) -> None:
        if not tasks:
            return
        self.connect()
        ray = self.ray
        remote = ray.remote(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=RETRIES
        )(call_on_ray)
        where = place(home, self.cpus_per_run)
        running = {remote.remote(task, where): task for task in tasks}
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    task = running.pop(ref)
                    outcome = self._outcome(ref, task)
                    report(outcome)
                    if outcome.status == "stopped":
                        raise stopped_error([outcome])
        except BaseException as exc:
            stopped = self._stop(running, report, log)
            if isinstance(exc, KeyboardInterrupt):
                raise stopped_error(stopped) from None
            raise

    def _outcome(self, ref: Any, task: Task) -> Outcome:
        """The task's outcome; a task Ray gave up on (its worker died too often) failed."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return Outcome(task, "failed", error=f"Ray: {type(exc).__name__}: {first}")

    def _stop(self, running: dict[Any, Task], report: Report, log: Log) -> list[Outcome]:
        """Cancel every task (a running training gets SIGINT, saves a checkpoint and stops),
        wait for them, report what they did; the outcomes of those that stopped."""
        if not running:
            return []
        log(
            "stopping: the runs in progress save a checkpoint; run the same command again to "
            "continue"
        )
        for ref in running:
            self.ray.cancel(ref)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        pending, stopped = list(running), []
        try:
            while pending and time.monotonic() < deadline:
                done, pending = self.ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    outcome = self._outcome(ref, running[ref])
                    if outcome.status != "failed":  # a task cancelled before it started
                        stopped += [outcome] if outcome.status == "stopped" else []
                        with contextlib.suppress(Exception):
                            report(outcome)
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once
            pass
        for ref in pending:
            self.ray.cancel(ref, force=True)
        return stopped
