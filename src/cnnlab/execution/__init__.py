"""Executors: one way to run the many trainings of a multi-run job (a study, the reproduction).

A job is a list of :class:`Task` (a module-level function and its arguments; a run folder is
the unit of work and every task is idempotent: a finished run is skipped, an interrupted one
resumed from its checkpoint). An :class:`Executor` runs them and hands each :class:`Outcome`
back to the caller, in the caller's process, as it comes:

* :class:`LocalExecutor` (the default, no extra dependency): ``jobs`` worker processes on this
  machine with ``cores // jobs`` torch threads each, or this process alone with ``jobs=1``;
* :class:`~cnnlab.execution.ray_cluster.RayExecutor` (``pip install 'cnnlab[ray]'``): each task
  is a Ray task declaring its CPUs (and a GPU where the cluster has GPUs), on a local Ray or an
  existing cluster; the job's folder must be on a file system every node mounts at the same path.

Ctrl-C stops the whole job, lets the trainings in progress save a checkpoint and raises
:class:`JobStopped`; a worker killed mid-run has its task run again, which resumes the run.
"""

from __future__ import annotations

from cnnlab.errors import CnnlabError
from cnnlab.execution.base import Executor, JobStopped, Outcome, Task
from cnnlab.execution.local import LocalExecutor, cores

EXECUTORS = ("local", "ray")


def make_executor(
    name: str = "local",
    *,
    jobs: int = 1,
    threads: int | None = None,
    address: str | None = None,
) -> Executor:
    """The executor called ``name``: ``local`` (``jobs`` processes of ``threads`` threads) or
    ``ray`` (each run asks ``threads`` CPUs, 1 by default, of the cluster at ``address``; a new
    local Ray without one)."""
    if jobs < 1:
        raise CnnlabError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise CnnlabError(f"--threads must be at least 1, got {threads}")
    if name == "local":
        if address is not None:
            raise CnnlabError("--address is for --executor ray (the local executor needs none)")
        return LocalExecutor(jobs, threads)
    if name == "ray":
        from cnnlab.execution.ray_cluster import RayExecutor

        return RayExecutor(address, cpus_per_run=threads or 1)
    raise CnnlabError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")


__all__ = [
    "EXECUTORS",
    "Executor",
    "JobStopped",
    "LocalExecutor",
    "Outcome",
    "Task",
    "cores",
    "make_executor",
]
