"""``run_study``: plan a study, train its runs through an executor, summarise them.

``run_study`` (and ``cnnlab study``) validates every run config and builds every variant's
model first (parameters and training FLOPs per image), so that nothing trains when any of them
is wrong. It then hands the runs that are not done to an executor (:mod:`cnnlab.execution`):
``jobs`` worker processes on this machine by default, each with ``max(1, cores // jobs)`` torch
threads (``jobs=1``: this process), or a Ray cluster (``executor="ray"``). It prints each run as
it finishes and writes ``results.csv``, ``summary.csv``, ``summary.json`` and ``report.html``
into the study folder. Running the same command again skips finished runs, resumes
interrupted ones from their last checkpoint and retries failed ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.execution import Executor, Outcome, Task
from cnnlab.fileio import write_json
from cnnlab.jobs.folder import (
    FAILURES,
    PLANNED,
    STUDY_FILE,
    Planned,
    failure_file,
    plan_record,
    record_failure,
    run_folder,
)
from cnnlab.jobs.run import job_executor, run_job
from cnnlab.study.results import (
    REPORT_FILE,
    RESULTS_FILE,
    SUMMARY_TABLE,
    StudySummary,
    collect,
    summarise,
    summary_table,
    write_results,
)
from cnnlab.study.runs import FINAL_STATES, check_folders, run_dir, run_state, train_run
from cnnlab.study.spec import Study, load_study


def run_study(
    study: str | Path,
    *,
    out: str | Path | None = None,
    jobs: int = 1,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    threads: int | None = None,
    executor: Executor | str = "local",
    address: str | None = None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> StudySummary:
    """Run (or continue) the study ``study`` (a YAML file or study preset) in ``out``; returns
    the summary (:class:`~cnnlab.study.results.StudySummary`: ``to_dict()`` is the content of
    ``summary.json``).

    ``out`` defaults to ``studies/<name>`` (``studies/<name>-quick`` with ``quick``).
    ``overrides`` (``key=value``, as ``cnnlab train --set``) apply to every run of the study.
    ``executor``: ``local`` (``jobs`` processes of ``threads`` threads), ``ray`` (the cluster at
    ``address``, each run asking ``threads`` CPUs) or an :class:`~cnnlab.execution.Executor`
    (kept open: the caller closes it). Lines go to ``log`` (print; nothing with ``quiet``),
    with the live status of the trainings (``progress``, :class:`~cnnlab.jobs.LiveStatus`).
    """
    with job_executor(executor, jobs=jobs, threads=threads, address=address) as chosen:
        spec = load_study(
            study,
            quick=quick,
            seeds=tuple(seeds) if seeds is not None else None,
            extra=tuple(overrides),
        )
        folder = Path(out) if out is not None else default_out(spec)
        check_folders(spec, folder)
        say = log or _printer(quiet)
        if threads is not None and chosen.name == "local":
            import torch

            torch.set_num_threads(threads)  # the runs trained in this process (jobs=1)
        analysis = analyse(spec)
        _prepare(spec, folder, analysis)
        done = _done(spec, folder)
        say(
            f"Study {spec.name}: {len(spec.variants)} variants x {len(spec.seeds)} seeds = "
            f"{len(spec.runs)} runs in {folder}" + (f", {done} already done" if done else "")
        )
        _train_runs(spec, folder, chosen, say, progress and not quiet)
    summary = write_summary(spec, folder, analysis)
    say(summary_table(summary))
    files = (SUMMARY_TABLE, RESULTS_FILE, REPORT_FILE)
    say(f"results: {', '.join(str(folder / name) for name in files)}")
    problems = _unfinished(spec, folder, say)
    if problems:
        raise CnnlabError("; ".join(problems))
    return StudySummary.from_record(summary)


def default_out(spec: Study) -> Path:
    return Path("studies") / (spec.name + ("-quick" if spec.quick else ""))


def analyse(spec: Study) -> dict[str, dict[str, Any]]:
    """Build every variant's model for its data: parameters and training FLOPs per image."""
    from cnnlab.models import parameter_count
    from cnnlab.models.flops import training_flops_per_image
    from cnnlab.models.registry import build_model
    from cnnlab.training.recipe import resolve_model
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
        config = resolve_model(config, channels, classes, size)  # model.name auto
        try:
            model = build_model(config.model, channels, classes, size, factor_levels)
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
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"--out {folder}: cannot create the study folder ({exc})") from None
    planned = [
        Planned(r.name, run_dir(folder, r), r.config.train.epochs, r.config.data.train_limit)
        for r in spec.runs
    ]
    write_json(
        folder / STUDY_FILE,
        {
            **spec.to_dict(),
            "analysis": analysis,
            "runs": {r.name: r.config.to_dict() for r in spec.runs},
            PLANNED: plan_record(folder, planned),
        },
    )
    for run in planned:  # failed runs are tried again
        failure_file(run.folder).unlink(missing_ok=True)


def _train_runs(
    spec: Study, folder: Path, executor: Executor, say: Callable[[str], None], progress: bool
) -> None:
    """Bring every run that is not final to ``done`` through ``executor``."""
    todo = [r for r in spec.runs if run_state(run_dir(folder, r)) not in FINAL_STATES]
    finished = [len(spec.runs) - len(todo)]

    def heard(outcome: Outcome, say: Callable[[str], None]) -> None:
        name = outcome.task.name
        run = run_folder(folder, name)
        if outcome.status == "done":
            finished[0] += 1
            result = outcome.value
            verb = "evaluated" if result["state_before"] == "trained" else "trained"
            where = f", {outcome.worker}" if outcome.worker else ""
            say(
                f"[{finished[0]}/{len(spec.runs)}] {verb} {name}: test accuracy "
                f"{result['accuracy']:.4f}, loss {result['loss']:.4f} "
                f"({result['seconds']:.1f} s{where})"
            )
        elif outcome.status == "failed":
            if run_state(run) == "diverged":
                say(f"{name} diverged: {outcome.error}")
            else:
                record_failure(run, outcome.error, outcome.traceback)
                say(f"{name} FAILED: {outcome.error}")

    tasks = [Task(r.name, train_run, (r, str(run_dir(folder, r).resolve()))) for r in todo]
    intro = f"{len(todo)} run(s) to train"
    run_job(folder, tasks, executor, heard, intro=intro, say=say, progress=progress)


def _unfinished(spec: Study, folder: Path, say: Callable[[str], None]) -> list[str]:
    """Name the runs that failed or are not done (diverged runs are a result: only said)."""
    states = {r.name: run_state(run_dir(folder, r)) for r in spec.runs}
    diverged = [name for name, state in states.items() if state == "diverged"]
    if diverged:
        say(
            f"diverged (left out of the statistics; remove its folder to retry): {len(diverged)} "
            f"run(s), {', '.join(diverged)}"
        )
    failed = [r.name for r in spec.runs if failure_file(run_dir(folder, r)).exists()]
    if failed:
        return [
            f"{len(failed)} run(s) failed ({', '.join(failed)}); the errors are in "
            f"{folder / FAILURES}/<run>.json; run the same command again to retry"
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
