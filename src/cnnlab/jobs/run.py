"""Running a job's tasks: the executor it owns or is given, its live status, each outcome
heard and the failures collected."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cnnlab.execution import Executor, Outcome, Task, make_executor
from cnnlab.jobs.live import LiveStatus

Say = Callable[[str], None]


@contextmanager
def job_executor(
    executor: Executor | str, *, jobs: int, threads: int | None, address: str | None
) -> Iterator[Executor]:
    """``executor`` itself (left open: its owner closes it), or a new one of that name
    (``local``, ``ray``: :func:`~cnnlab.execution.make_executor`), closed at the end."""
    if isinstance(executor, Executor):
        yield executor
        return
    with make_executor(executor, jobs=jobs, threads=threads, address=address) as made:
        yield made


def run_job(
    folder: Path,
    tasks: Sequence[Task],
    executor: Executor,
    heard: Callable[[Outcome, Say], None],
    *,
    intro: str,
    say: Say,
    progress: bool = True,
) -> list[Outcome]:
    """Run the tasks of the job in ``folder`` on ``executor``; returns the failed outcomes.

    Says ``intro`` with where the tasks run, then hands each outcome to ``heard`` with the
    ``say`` to use, in the driver as it comes. With ``progress`` the job's live status
    (:class:`~cnnlab.jobs.live.LiveStatus`) stays below its lines meanwhile."""
    if not tasks:
        return []
    failed: list[Outcome] = []
    with LiveStatus(folder, say, enabled=progress) as live:
        live.say(f"{intro} on {executor.describe()}")

        def report(outcome: Outcome) -> None:
            heard(outcome, live.say)
            if outcome.status == "failed":
                failed.append(outcome)

        executor.run(tasks, report, home=folder, log=live.say)
    return failed
