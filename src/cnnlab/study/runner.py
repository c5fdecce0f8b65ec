"""``run_study``: plan a study, train its runs with local worker processes, summarise them.

``run_study`` (and ``cnnlab study``) validates every run config and builds every variant's
model first (parameters and training FLOPs per image), so that nothing trains when any of them
is wrong. It then starts ``jobs`` workers, each ``cnnlab study STUDY --out DIR --worker`` in a
process of its own with ``max(1, cores // jobs)`` torch threads, waits for them while printing
each finished run, and writes ``results.csv``, ``summary.csv``, ``summary.json`` and
``report.html`` into the study folder. ``jobs=1`` works in this process.

More machines: start ``cnnlab study STUDY --out DIR --worker`` on any machine that sees DIR (NFS
or another shared file system); workers split the runs through claim files (see
:mod:`cnnlab.study.claims`) and never train a run twice. A worker leaves when nothing is left to
claim; ``--worker --jobs N`` starts N of them on that machine. Workers summarise nothing: the
command started without ``--worker`` summarises when every run is done. Running the same command
again skips finished runs, resumes interrupted ones from their last checkpoint and takes over
the runs of workers that died (their claims go stale); runs that failed are retried.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import write_json
from cnnlab.runfolder import RunFolder
from cnnlab.study.claims import STALE_AFTER_SECONDS, check_stale_after
from cnnlab.study.results import (
    PLAN_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    SUMMARY_TABLE,
    collect,
    summarise,
    summary_table,
    write_results,
)
from cnnlab.study.spec import Study, load_study
from cnnlab.study.worker import (
    FINAL_STATES,
    check_folders,
    failed_path,
    run_dir,
    run_state,
    work,
)
from cnnlab.training.engine import Interrupted


def run_study(
    study: str | Path,
    *,
    out: str | Path | None = None,
    jobs: int = 1,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    worker: bool = False,
    threads: int | None = None,
    stale_after: float = STALE_AFTER_SECONDS,
    quiet: bool = False,
) -> dict[str, Any] | None:
    """Run (or continue) the study ``study`` (a YAML file or study preset) in ``out``.

    ``out`` defaults to ``studies/<name>`` (``studies/<name>-quick`` with ``quick``). With
    ``worker`` this machine only trains runs (in this process, or in ``jobs`` processes) and
    returns None; otherwise it returns the summary (the content of ``summary.json``).
    ``overrides`` (``key=value``, as ``cnnlab train --set``) apply to every run of the study.
    """
    if jobs < 1:
        raise CnnlabError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise CnnlabError(f"--threads must be at least 1, got {threads}")
    check_stale_after(stale_after)
    spec = load_study(
        study,
        quick=quick,
        seeds=tuple(seeds) if seeds is not None else None,
        extra=tuple(overrides),
    )
    folder = Path(out) if out is not None else default_out(spec)
    check_folders(spec, folder)
    say = _printer(quiet)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if worker and jobs == 1:
        _work_here(spec, folder, stale_after, quiet, say)
        return None
    if worker:
        (folder / "claims").mkdir(parents=True, exist_ok=True)
        problems = _run_workers(spec, folder, jobs, threads, stale_after, seeds, say)
        if problems:
            raise CnnlabError("; ".join(problems))
        return None

    analysis = analyse(spec)
    _prepare(spec, folder, analysis)
    say(
        f"Study {spec.name}: {len(spec.variants)} variants x {len(spec.seeds)} seeds = "
        f"{len(spec.runs)} runs in {folder}"
        + (f", {_done(spec, folder)} already done" if _done(spec, folder) else "")
    )
    if jobs == 1:
        _work_here(spec, folder, stale_after, quiet, say)
        problems: list[str] = []
    else:
        problems = _run_workers(spec, folder, jobs, threads, stale_after, seeds, say)
    summary = write_summary(spec, folder, analysis)
    say(summary_table(summary))
    files = (SUMMARY_TABLE, RESULTS_FILE, REPORT_FILE)
    say(f"results: {', '.join(str(folder / name) for name in files)}")
    problems += _unfinished(spec, folder, say)
    if problems:
        raise CnnlabError("; ".join(problems))
    return summary


def default_out(spec: Study) -> Path:
    return Path("studies") / (spec.name + ("-quick" if spec.quick else ""))


def analyse(spec: Study) -> dict[str, dict[str, Any]]:
    """Build every variant's model for its data: parameters and training FLOPs per image."""
    from cnnlab.models import create_model, parameter_count
    from cnnlab.models.flops import training_flops_per_image
    from cnnlab.training.run import prepare_dataset

    shapes: dict[str, tuple[int, int, tuple[int, int], int]] = {}
    result = {}
    for variant in spec.variants:
        config = next(r.config for r in spec.runs if r.variant == variant.name)
        key = json.dumps([asdict(config.data), config.seed], sort_keys=True, default=str)
        where = f"{spec.origin}: variants.{variant.name}"
        if key not in shapes:
            data = prepare_dataset(config)
            shapes[key] = (
                data.channels,
                data.num_classes,
                data.image_size,
                data.factor_levels,
                len(data.train),
            )
        channels, classes, size, factor_levels, train_images = shapes[key]
        options = {k: v for k, v in config.model.items() if k != "name"}
        try:
            model = create_model(
                config.model["name"], channels, classes, size, factor_levels, **options
            )
        except CnnlabError as exc:
            raise CnnlabError(f"{where}: {exc}") from None
        batch = min(config.train.batch_size, train_images)  # a batch is never larger
        flops = training_flops_per_image(model, channels, size, batch)
        result[variant.name] = {
            "parameters": parameter_count(model),
            "training_flops_per_image": flops,
        }
    return result


def write_summary(spec: Study, folder: Path, analysis: dict[str, dict[str, Any]]) -> dict:
    """Collect the runs, write the CSV/JSON results and the HTML report; return the summary."""
    from cnnlab.study.report import write_report

    rows = collect(spec, folder)
    summary = summarise(spec, rows, analysis)
    write_results(folder, rows, summary)
    write_report(folder)
    return summary


# -- pieces -------------------------------------------------------------------------------------


def _prepare(spec: Study, folder: Path, analysis: dict[str, dict[str, Any]]) -> None:
    try:
        (folder / "claims").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"--out {folder}: cannot create the study folder ({exc})") from None
    write_json(
        folder / PLAN_FILE,
        {
            **spec.to_dict(),
            "analysis": analysis,
            "runs": {r.name: r.config.to_dict() for r in spec.runs},
        },
    )
    for run in spec.runs:  # failed runs are tried again
        failed_path(folder, run).unlink(missing_ok=True)


def _work_here(
    spec: Study, folder: Path, stale_after: float, quiet: bool, say: Callable[[str], None]
) -> None:
    try:
        work(spec, folder, stale_after=stale_after, quiet=quiet, log=say)
    except Interrupted as exc:
        raise CnnlabError(
            f"{str(exc).split('; checkpoint saved')[0]}; checkpoint saved. Run the same "
            "command again to continue the study"
        ) from None


def _unfinished(spec: Study, folder: Path, say: Callable[[str], None]) -> list[str]:
    """Name the runs that failed or are not done (diverged runs are a result: only said)."""
    states = {r.name: run_state(run_dir(folder, r)) for r in spec.runs}
    diverged = [name for name, state in states.items() if state == "diverged"]
    if diverged:
        say(
            f"diverged (left out of the statistics; remove its folder to retry): {len(diverged)} "
            f"run(s), {', '.join(diverged)}"
        )
    failed = [r.name for r in spec.runs if failed_path(folder, r).exists()]
    if failed:
        return [
            f"{len(failed)} run(s) failed ({', '.join(failed)}); the errors are in "
            f"{folder / 'claims'}/<run>.failed; run the same command again to retry"
        ]
    missing = [name for name, state in states.items() if state not in FINAL_STATES]
    return [f"{len(missing)} run(s) not done: {', '.join(missing)}"] if missing else []


def _done(spec: Study, folder: Path) -> int:
    return sum(run_state(run_dir(folder, r)) == "done" for r in spec.runs)


def _printer(quiet: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    return say


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_command(
    spec: Study,
    folder: Path,
    threads: int,
    stale_after: float,
    seeds: Sequence[int] | None,
) -> list[str]:
    """The command line of one local worker process."""
    command = [sys.executable, "-m", "cnnlab", "study", spec.source, "--out", str(folder)]
    command += ["--worker", "--threads", str(threads), "--stale-after", str(stale_after)]
    if spec.quick:
        command.append("--quick")
    if seeds is not None:
        command += ["--seeds", ",".join(str(s) for s in seeds)]
    for item in spec.extra:
        command += ["--set", item]
    return command


def _run_workers(
    spec: Study,
    folder: Path,
    jobs: int,
    threads: int | None,
    stale_after: float,
    seeds: Sequence[int] | None,
    say: Callable[[str], None],
) -> list[str]:
    """Start ``jobs`` worker processes, report runs as they finish, wait; return problems."""
    threads = threads or max(1, cores() // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    command = worker_command(spec, folder, threads, stale_after, seeds)
    say(f"{jobs} worker processes, {threads} thread(s) each; logs in {logs}")
    processes: list[tuple[subprocess.Popen, Path]] = []
    reported = {r.name for r in spec.runs if run_state(run_dir(folder, r)) == "done"}
    try:
        for i in range(jobs):
            log = logs / f"{stamp}-worker{i + 1}.log"
            with open(log, "ab") as handle:
                processes.append(
                    (
                        subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env),
                        log,
                    )
                )
        while any(p.poll() is None for p, _ in processes):
            time.sleep(1.0)
            _report_finished(spec, folder, reported, say)
    except KeyboardInterrupt:
        _stop(processes)
        raise CnnlabError(
            "interrupted; workers saved a checkpoint of the runs they were training. Run the same "
            "command again to continue"
        ) from None
    _report_finished(spec, folder, reported, say)
    return [
        f"worker {p.pid} exited with status {p.returncode}: see {log}"
        for p, log in processes
        if p.returncode != 0
    ]


def _report_finished(spec: Study, folder: Path, reported: set[str], say: Callable) -> None:
    for run in spec.runs:
        if run.name in reported or run_state(run_dir(folder, run)) != "done":
            continue
        reported.add(run.name)
        metrics = RunFolder(run_dir(folder, run)).read_metrics()
        say(
            f"[{len(reported)}/{len(spec.runs)}] {run.name}: test accuracy "
            f"{metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"
        )


def _stop(processes: list[tuple[subprocess.Popen, Path]], grace: float = 60.0) -> None:
    """Let workers save a checkpoint (SIGINT, as Ctrl-C gives them), then make sure they end."""
    time.sleep(1.0)  # Ctrl-C in a terminal reached them already
    for process, _ in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for process, _ in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
