"""``cnnlab study``, ``cnnlab reproduce`` and ``cnnlab status``: jobs of many runs."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TextIO

from cnnlab.cli import options
from cnnlab.cli.data import MNIST_DIR
from cnnlab.errors import CnnlabError
from cnnlab.overrides import preset_names

PRESETS = "presets/studies"
"""The study presets' package folder (``cnnlab.study.spec.PRESETS``, read here without loading
torch; tests/test_cli_help.py checks the two agree)."""


def add(commands: options.Commands) -> None:
    """The ``study``, ``reproduce`` and ``status`` commands."""
    _add_study(commands)
    _add_reproduce(commands)
    _add_status(commands)


def _add_study(commands: options.Commands) -> None:
    study = commands.add_parser(
        "study",
        help="train variants of a config over several seeds and compare them with the baseline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Train every variant x seed of a study as a run folder DIR/runs/<variant>-seed<k>, then write
DIR/results.csv (one row per run), DIR/summary.csv and summary.json (one row per variant: test
accuracy and loss as mean ± 95% CI over seeds, the difference from the baseline paired by
seed with its CI and a within-noise verdict, parameters, training FLOPs per image, epochs to
the target accuracy) and DIR/report.html. STUDY is a YAML file or a study preset:
{", ".join(preset_names(PRESETS)) or "none"}.

A difference is "within noise" when its 95% CI (Student t over the paired seeds) includes 0
or it is below 1.96 binomial standard errors of a difference of two accuracies on the test
images of those seeds. Running the same command again skips finished runs and resumes
interrupted ones; a run folder whose config differs from what the study asks is refused.

Where the runs train: --jobs N starts N worker processes here, each with max(1, cores // N)
threads (1: this process). --executor ray runs each run as a Ray task asking --threads CPUs
(1) and, where the cluster has GPUs, one GPU: on a local Ray started for the job, or on the
cluster at --address (auto: the one `ray start` began on this machine). Every Ray node must see
DIR and the data at the same path (a shared file system). A worker killed mid-run has its run
started again, resuming from its checkpoint; Ctrl-C stops every run with a checkpoint.""",
    )
    study.add_argument("study", metavar="STUDY", help="study YAML file or study preset name")
    options.out(study, "DIR", "study folder (studies/<name>[-quick])")
    study.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (1)")
    study.add_argument(
        "--quick", action="store_true", help="the study's quick settings (fewer seeds, less data)"
    )
    study.add_argument(
        "--seeds",
        type=options.int_list,
        metavar="S,S",
        help="seeds to run, e.g. 0,1,2 (the study's)",
    )
    options.config_set(study, "override a config key of every run, e.g. data.mnist_dir=DIR")
    options.executor(study)
    study.add_argument(
        "--tensorboard",
        action="store_true",
        help="log every run for TensorBoard (tensorboard --logdir DIR/runs compares them)",
    )
    options.quiet(study, "print only errors")
    study.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # retired
    study.set_defaults(handler=_study)


def _study(args: argparse.Namespace) -> int:
    from cnnlab.study import run_study

    if args.worker:
        raise CnnlabError(
            "--worker was retired with the claim files: to spread a study over machines, start "
            "a Ray cluster on them (ray start --head; ray start --address HEAD:6379) and run "
            "cnnlab study STUDY --executor ray --address HEAD:6379 (see the README)"
        )
    run_study(
        args.study,
        out=args.out,
        jobs=args.jobs,
        quick=args.quick,
        seeds=args.seeds,
        overrides=[*args.overrides, *(["train.tensorboard=true"] if args.tensorboard else [])],
        threads=args.threads,
        executor=args.executor,
        address=args.address,
        quiet=args.quiet,
    )
    return 0


def _add_reproduce(commands: options.Commands) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help="the whole CNN study end to end: data, every model, the variations, one report",
        description="Generate Lines, load MNIST, train every model of the study (part1 and "
        "part2 on MNIST and Lines, the multi-head nets), evaluate and look inside each, run the "
        "variation studies and write DIR/report.html with a front page that sets the results "
        "beside the original study's. Finished steps are not redone when run again; an "
        "interrupted training is resumed. Uses a GPU when there is one.",
    )
    options.out(reproduce, "DIR", "(reproduction)", default=Path("reproduction"))
    reproduce.add_argument(
        "--quick",
        action="store_true",
        help="a few thousand images and 2 epochs per run: a few minutes, labelled as quick",
    )
    options.mnist_dir(reproduce, MNIST_DIR)
    options.device(reproduce)
    options.quiet(reproduce, "print nothing on stdout (no progress, no closing line)")
    reproduce.add_argument(
        "--jobs",
        type=int,
        default=2,
        metavar="N",
        help="runs trained at once, each in a process with cores/N threads (2; the six "
        "models train one at a time on a GPU)",
    )
    options.executor(reproduce)
    reproduce.add_argument("--no-studies", action="store_true", help="skip the variation studies")
    options.config_set(
        reproduce, "override a config key of every training (e.g. data.train_limit=500)"
    )
    reproduce.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from cnnlab.reproduce import reproduce

    with contextlib.ExitStack() as stack:
        if args.quiet:  # the trainings that run in this process print too
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(_devnull())))
        report = reproduce(
            args.out,
            quick=args.quick,
            mnist_dir=args.mnist_dir,
            device=args.device,
            overrides=args.overrides,
            studies=not args.no_studies,
            jobs=args.jobs,
            threads=args.threads,
            executor=args.executor,
            address=args.address,
            log=_nothing if args.quiet else print,
            progress=not args.quiet,
        )
    options.say(args, f"open {report}")
    return 0


def _devnull() -> TextIO:
    return open(os.devnull, "w")


def _nothing(line: str) -> None:
    """A log that keeps its lines to itself (--quiet)."""


def _add_status(commands: options.Commands) -> None:
    status = commands.add_parser(
        "status",
        help="where a reproduction, study or run folder stands (from any shell)",
        description="Read DIR (a reproduction, a study or a run folder) and print its runs "
        "done / training / left, about how much training is left, and one line per run in "
        "training, interrupted or failed (run, epoch, accuracy so far). Reads files only: safe "
        "while the job runs.",
    )
    status.add_argument("folder", type=Path, metavar="DIR")
    status.add_argument("--all", action="store_true", help="one line for every run")
    options.json_file(
        status,
        "write the status as JSON to FILE, every run included (-: on stdout, and nothing else "
        "there)",
    )
    options.quiet(status)
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from cnnlab.jobs.status import RUN_STATES, job_status

    status = job_status(args.folder)
    shown = RUN_STATES if args.all else ("training", "interrupted", "failed")
    options.report(args, status.to_dict(), [*status.lines(shown), *status.advice()])
    return 0
