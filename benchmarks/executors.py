"""Benchmark: the Ray executor against the default (local worker processes) on the quick
variation studies, and optionally on ``cnnlab reproduce --quick``.

For each executor, in one run on this machine, alternating (local, ray, local, ray, ...):

* **start-up**: a fresh executor running one no-op task per slot, then closed (local: two
  spawned worker processes importing cnnlab; ray: ``ray.init`` starting a local Ray, its
  workers, and ``ray.shutdown``);
* **study**: ``run_study(STUDY, quick=True)`` into a fresh folder: the seconds inside the
  executor's ``run`` (training every run, not the planning or the summary), the sum of the
  runs' own seconds (train + evaluate, measured in the worker), and the overhead per run:
  ``(run seconds x slots - sum of runs) / runs``, the time a slot spends on other things than
  a run (starting workers, shipping tasks, waiting);
* with ``--reproduce``: the wall time of ``reproduce(quick=True)`` into a fresh folder.

Both executors use 2 slots of 1 thread on a 2-core machine (local: ``--jobs 2``; ray: a local
Ray with every run asking 1 CPU). The median over ``--repeats`` (2) is printed beside each
value, with the ratio ray / local. The load average is printed at the start and the end.

Run from the repository root (needs ``pip install 'cnnlab[ray]'``)::

    CNNLAB_MNIST_DIR=DIR .venv/bin/python benchmarks/executors.py [--repeats 2]
        [--studies variations-mnist,variations-lines] [--reproduce]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cnnlab.execution import Executor, LocalExecutor, Outcome, Task, make_executor
from cnnlab.reproduce import reproduce
from cnnlab.study import run_study

SLOTS = 2


class Timed(Executor):
    """Another executor, timed: seconds inside ``run`` and the runs' own seconds."""

    def __init__(self, inner: Executor) -> None:
        self.inner, self.name, self.here = inner, inner.name, inner.here
        self.run_seconds = 0.0
        self.task_seconds: list[float] = []

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()

    def run(self, tasks: Sequence[Task], report, *, home: Path, log) -> None:
        def timed_report(outcome: Outcome) -> None:
            if outcome.status == "done" and isinstance(outcome.value, dict):
                self.task_seconds.append(float(outcome.value.get("seconds", 0.0)))
            report(outcome)

        start = time.perf_counter()
        self.inner.run(tasks, timed_report, home=home, log=log)
        self.run_seconds += time.perf_counter() - start


def fresh(kind: str) -> Executor:
    return LocalExecutor(SLOTS, threads=1) if kind == "local" else make_executor("ray", threads=1)


def startup(kind: str, folder: Path) -> float:
    start = time.perf_counter()
    with fresh(kind) as executor:
        tasks = [Task(f"noop{i}", os.getpid) for i in range(SLOTS)]
        executor.run(tasks, lambda _: None, home=folder, log=lambda _: None)
    return time.perf_counter() - start


def study(kind: str, name: str, folder: Path) -> tuple[float, float, int]:
    """Seconds inside run, sum of the runs' seconds, number of runs."""
    with Timed(fresh(kind)) as executor, contextlib.redirect_stdout(io.StringIO()):
        run_study(name, out=folder, quick=True, executor=executor, quiet=True)
    return executor.run_seconds, sum(executor.task_seconds), len(executor.task_seconds)


def whole_reproduction(kind: str, folder: Path) -> float:
    start = time.perf_counter()
    reproduce(folder, quick=True, executor=kind, threads=1, jobs=SLOTS, log=lambda _: None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--studies", default="variations-mnist,variations-lines")
    parser.add_argument("--reproduce", action="store_true")
    args = parser.parse_args()
    if not os.environ.get("CNNLAB_MNIST_DIR"):
        sys.exit("set CNNLAB_MNIST_DIR to a folder of the MNIST IDX files")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    rows: dict[str, dict[str, list[float]]] = {"local": {}, "ray": {}}

    def add(kind: str, key: str, value: float) -> None:
        rows[kind].setdefault(key, []).append(value)
        print(f"  {kind:5s} {key:38s} {value:8.1f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="cnnlab-executors-") as scratch:
        root = Path(scratch)
        for repeat in range(args.repeats):
            for kind in ("local", "ray"):
                where = root / f"{kind}-{repeat}"
                where.mkdir()
                add(kind, "start-up s", startup(kind, where))
                for name in args.studies.split(","):
                    inside, busy, runs = study(kind, name, where / name)
                    add(kind, f"{name} --quick: s in run ({runs} runs)", inside)
                    add(kind, f"{name} --quick: overhead s per run", (inside * SLOTS - busy) / runs)
                if args.reproduce:
                    add(kind, "reproduce --quick: wall s", whole_reproduction(kind, where / "r"))
    print(f"\nmedians over {args.repeats} repeat(s); 2 slots of 1 thread each")
    print(f"{'measure':48s} {'local':>8s} {'ray':>8s} {'ray/local':>9s}")
    for key in rows["local"]:
        local, ray = statistics.median(rows["local"][key]), statistics.median(rows["ray"][key])
        ratio = f"{ray / local:9.2f}" if local > 0 else f"{'n/a':>9s}"
        print(f"{key:48s} {local:8.1f} {ray:8.1f} {ratio}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
