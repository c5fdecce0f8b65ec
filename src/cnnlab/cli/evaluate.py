"""``cnnlab evaluate``, ``cnnlab errors`` and ``cnnlab report``: what a trained run scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli import options
from cnnlab.errors import CnnlabError
from cnnlab.runfolder import SPLITS


def add(commands: options.Commands) -> None:
    """The ``evaluate``, ``errors`` and ``report`` commands."""
    _add_evaluate(commands)
    _add_errors(commands)
    _add_report(commands)


def _add_evaluate(commands: options.Commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="metrics of a trained run (accuracy, loss, per-class P/R/F1, confusion)",
        description="Evaluate RUN_DIR on a split and write metrics-<split>.json and "
        "predictions-<split>.npz into it.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--split", choices=SPLITS, default="test")  # val: with val_fraction
    evaluate.add_argument(
        "--dataset",
        metavar="OTHER",
        help="evaluate on another dataset with the same classes instead (a lines.npz or its "
        "folder, e.g. a Lines variant; mnist; a folder of IDX files): writes "
        "metrics-transfer-NAME.json, shown in the report beside the run's own test split",
    )
    evaluate.add_argument("--name", help="NAME for --dataset results (default: its folder name)")
    options.reporting(evaluate, runs_model=True)
    options.trust_code(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from cnnlab.evaluate import evaluate_run, result_files, summary_lines

    metrics = evaluate_run(
        args.run_dir,
        split=args.split,
        dataset=args.dataset,
        name=args.name,
        device=args.device or "cpu",
    )
    transfer = metrics.transfer
    files = result_files(args.run_dir, args.split, transfer["name"] if transfer else None)
    options.report(args, metrics.to_dict(), [*summary_lines(metrics), f"  written: {files[0]}"])
    return 0


def _add_errors(commands: options.Commands) -> None:
    errors = commands.add_parser(
        "errors",
        help="where a trained run fails: top losses, confused pairs, worst recall, calibration",
        description="Print the error analysis of RUN_DIR on a split (evaluating it first when "
        "needed): the highest losses with their sources, the most confused pairs, the classes "
        "with the lowest recall and the calibration (ECE). The files are in "
        "RUN_DIR/errors-<split>/: errors.json, misclassified.csv and the galleries.",
    )
    errors.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    errors.add_argument("--split", choices=SPLITS, default="test")
    errors.add_argument("--top", type=int, default=5, help="rows of each list (5)")
    options.reporting(errors, runs_model=True)
    options.trust_code(errors)
    errors.set_defaults(handler=_errors)


def _errors(args: argparse.Namespace) -> int:
    from cnnlab.evaluate import evaluate_run
    from cnnlab.evaluate.errors import error_lines
    from cnnlab.runfolder import RunFolder, read_json
    from cnnlab.training.run import resolve_device

    if args.top < 1:
        raise CnnlabError(f"--top must be at least 1, got {args.top}")
    if args.device is not None:
        resolve_device(args.device)  # refused alike whether or not the run needs evaluating
    folder = RunFolder(args.run_dir)
    files = folder.errors(args.split)
    if not folder.evaluated(args.split):
        evaluate_run(args.run_dir, split=args.split, device=args.device or "cpu")
    summary = read_json(files.summary)
    lines = [*error_lines(summary, args.top), f"  every misclassified image: {files.table}"]
    options.report(args, summary, lines)
    return 0


def _add_report(commands: options.Commands) -> None:
    report = commands.add_parser(
        "report",
        help="one self-contained HTML report for one or more runs",
        description="Write one HTML file (images embedded, no network needed) with each run's "
        "provenance, learning curves, metrics, confusion matrices and factor analysis; several "
        "runs side by side with a comparison table. A run with pictures from 'cnnlab "
        "visualize' in RUN_DIR/visualize also gets a 'Looking inside' section: activations, "
        "filter images, the heatmaps of the explanation methods (per head) and, on Lines, the "
        "localisation scores read in words.",
    )
    report.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    options.out(report, "HTML", None, default=Path("report.html"))
    report.add_argument("--markdown", type=Path, metavar="MD", help="also a Markdown summary")
    report.add_argument("--figures", type=Path, metavar="DIR", help="also keep the PNG/SVG files")
    report.add_argument(
        "--inside",
        action="store_true",
        help="first run 'cnnlab visualize --score' (the scoreboard of explanation methods on "
        "128 test images) into RUN_DIR/visualize for runs without pictures there (or with "
        "pictures older than the model); 10 s to 2 minutes per run on a 2-core CPU",
    )
    options.reporting(report)
    options.trust_code(report)
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from cnnlab.pipeline import report_runs

    out = report_runs(
        args.run_dirs,
        args.out,
        args.markdown,
        figures_dir=args.figures,
        inside=args.inside,
        log=options.progress_log(args),
    )
    written = f"report written: {out}" + (f" (summary: {args.markdown})" if args.markdown else "")
    markdown = None if args.markdown is None else str(args.markdown)
    options.report(args, {"report": str(out), "markdown": markdown}, [written])
    return 0
