"""The ``cnnlab`` command: a thin layer over the same functions the Python API exposes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path

from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.runfolder import SPLITS


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (subcommand parsers inherit this)."""

    def error(self, message: str) -> typing.NoReturn:
        raise CnnlabError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, got {text!r}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="generate or load datasets")
    kinds = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")

    lines = kinds.add_parser(
        "lines",
        help="generate the Lines dataset (one straight line on black, 96 classes by default)",
        description="Generate the Lines dataset: DIR/lines.npz, DIR/card.json and, with --png, "
        "DIR/preview.png and an ImageFolder tree DIR/png/{train,test}/<class>/.",
    )
    lines.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    lines.add_argument("--seed", type=int, default=0, help="fixes positions, noise and the split")
    lines.add_argument("--per-class", type=int, default=1000, help="images per class (1000)")
    lines.add_argument("--test-fraction", type=float, default=0.4, help="share for test (0.4)")
    lines.add_argument("--png", action="store_true", help="also write PNG files and a preview")
    lines.add_argument("--image-size", type=int, default=28, help="image side in px (28)")
    lines.add_argument("--lengths", type=_int_list, default=(7, 15), metavar="L,L")
    lines.add_argument("--widths", type=_int_list, default=(1, 3), metavar="W,W")
    lines.add_argument("--angle-step", type=int, default=15, help="degrees between angles (15)")
    lines.add_argument(
        "--colors",
        type=_names,
        default=("red", "blue"),
        metavar="C,C",
        help="colour names or #rrggbb (red,blue)",
    )
    lines.add_argument(
        "--variant",
        default="default",
        help="a named rendering: default (anti-aliased lines anywhere in the frame), centred "
        "(generator 1.0: 49 whole-pixel shifts, every test image a copy of a training image), "
        "sharp, jpeg (sharp lines stored as JPEG 95, as the study), noisy; options below "
        "override it",
    )
    lines.add_argument(
        "--position",
        choices=("anywhere", "centred"),
        help="anywhere: the line's centre at a random sub-pixel point wherever it fits; "
        "centred: within --max-shift whole pixels of the centre",
    )
    lines.add_argument(
        "--render",
        choices=("antialias", "sharp"),
        help="antialias: edge pixels shaded by coverage; sharp: pixels whose centre is on the line",
    )
    lines.add_argument("--max-shift", type=int, help="centred only: centre shift, px (3)")
    lines.add_argument("--noise", type=float, help="Gaussian noise std, 0..255 (0)")
    lines.add_argument("--jpeg-quality", type=int, help="store as JPEG at this quality, 1..100")
    lines.set_defaults(handler=_data_lines)

    mnist = kinds.add_parser(
        "mnist",
        help="load and check MNIST (or any dataset in its IDX format)",
        description="Read the four IDX files from --dir or $CNNLAB_MNIST_DIR, or download them "
        "into the cache with checksum checks; print a summary; with --out also write "
        "DIR/mnist.npz, DIR/card.json and DIR/preview.png (and with --png an image-folder "
        "tree DIR/png/{train,test}/<digit>/).",
    )
    mnist.add_argument("--dir", type=Path, metavar="DIR", help="folder with the IDX files")
    mnist.add_argument(
        "--split",
        choices=("study", "official"),
        default="study",
        help="study: all 70,000 pooled, 60/40 stratified; official: 60k/10k",
    )
    mnist.add_argument("--seed", type=int, default=0, help="fixes the study split")
    mnist.add_argument("--test-fraction", type=float, default=0.4, help="share for test (0.4)")
    mnist.add_argument("--out", type=Path, metavar="DIR", help="also export the dataset here")
    mnist.add_argument(
        "--png", action="store_true", help="with --out, also write every image as a PNG file"
    )
    mnist.set_defaults(handler=_data_mnist)
    _add_data_check_command(kinds)


def _data_lines(args: argparse.Namespace) -> int:
    from cnnlab.data import GENERATOR_VERSION, generate_lines, lines_config, save_lines

    chosen = {
        name: getattr(args, name)
        for name in ("position", "render", "max_shift", "noise", "jpeg_quality")
        if getattr(args, name) is not None
    }
    config = lines_config(
        args.variant,
        image_size=args.image_size,
        lengths=args.lengths,
        widths=args.widths,
        angle_step=args.angle_step,
        colors=args.colors,
        per_class=args.per_class,
        test_fraction=args.test_fraction,
        seed=args.seed,
        **chosen,
    )
    start = time.perf_counter()
    data = generate_lines(config)
    generated = time.perf_counter() - start
    paths = save_lines(data, args.out, png=args.png)
    train = int((data.arrays["split"] == "train").sum())
    distinct = json.loads(paths["card"].read_text())["distinct"]
    print(
        f"Lines (generator {GENERATOR_VERSION}, {config.position}, {config.render}): "
        f"{len(data)} images ({train} train / {len(data) - train} test), "
        f"{config.num_classes} classes, seed {config.seed}; generated in {generated:.2f} s\n"
        f"  distinct pictures: {distinct['train']:,d} train, {distinct['test']:,d} test; "
        f"{distinct['test_in_train']:,d} test images equal a training image"
    )
    for kind, path in paths.items():
        print(f"  {kind:8s} {path}")
    return 0


def _add_data_check_command(kinds: argparse._SubParsersAction) -> None:
    check = kinds.add_parser(
        "check",
        help="look for duplicate images, test images copied from training, conflicting labels",
        description="Check a dataset: exact duplicates (by pixels) within and across its train "
        "and test splits, identical images with different labels, class counts per split. "
        "The same check runs at the start of every training and is kept in the run's record.",
    )
    check.add_argument(
        "source",
        metavar="DATASET",
        help="mnist, lines, a lines.npz file or its folder, a folder of IDX files, a folder "
        "of class folders, a CSV manifest, an .npz of images and labels, a CIFAR binary folder",
    )
    check.add_argument("--dir", type=Path, metavar="DIR", help="MNIST: folder of the IDX files")
    check.add_argument(
        "--image-size", type=int, metavar="PX", help="files: resize to PX x PX (data.image_size)"
    )
    check.add_argument(
        "--channels", type=int, choices=(1, 3), help="files: grey or RGB (data.channels)"
    )
    check.add_argument(
        "--test-fraction", type=float, default=0.2, help="files without a split (0.2)"
    )
    check.add_argument("--split", choices=("study", "official"), default="study")
    check.add_argument("--seed", type=int, default=0, help="fixes generated data and splits")
    check.add_argument("--json", type=Path, metavar="FILE", help="also write the result here")
    check.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when test images copy training images or labels conflict",
    )
    check.set_defaults(handler=_data_check)


def _data_check(args: argparse.Namespace) -> int:
    from cnnlab.data import check_dataset, check_summary_lines, load_dataset, overlap_warning
    from cnnlab.fileio import write_json

    dataset = load_dataset(
        args.source,
        seed=args.seed,
        mnist_dir=args.dir,
        mnist_split=args.split,
        image_size=args.image_size,
        channels=args.channels,
        test_fraction=args.test_fraction,
    )
    result = check_dataset(dataset)
    print(f"{dataset.name} ({args.source})")
    print("\n".join(check_summary_lines(result)))
    warning = overlap_warning(result)
    if warning:
        print(warning)
    if args.json:
        write_json(args.json, {"dataset": str(args.source), **result})
        print(f"  written: {args.json}")
    return 1 if args.strict and warning else 0


def _data_mnist(args: argparse.Namespace) -> int:
    from cnnlab.data import load_mnist
    from cnnlab.data.exports import export_dataset

    if args.png and not args.out:
        raise CnnlabError("--png writes into the --out folder; give --out DIR")
    start = time.perf_counter()
    dataset = load_mnist(
        args.dir, split=args.split, seed=args.seed, test_fraction=args.test_fraction
    )
    print(f"{dataset.summary()}\n  loaded in {time.perf_counter() - start:.2f} s")
    source = dataset.provenance
    print(f"  source: {source.get('source', '?')} {source.get('path', '')}")
    if args.out:
        for kind, path in export_dataset(dataset, args.out, png=args.png).items():
            print(f"  {kind:8s} {path}")
    return 0


def _add_train_commands(commands: argparse._SubParsersAction) -> None:
    from cnnlab.training.config import preset_names

    train = commands.add_parser(
        "train",
        help="train a model on your images (the default recipe), or from a config or preset",
        description="Train a model. CONFIG is a YAML file or a preset: "
        f"{', '.join(preset_names())}; or DATA (a folder of images, a .csv or .npz, mnist, "
        "lines): the default recipe (preset 'default': a net chosen for the image size, a "
        "validation split choosing the weights kept, one-cycle AdamW, label smoothing, "
        "label-safe augmentation), the run named after the data.",
    )
    train.add_argument(
        "config", nargs="?", metavar="CONFIG|DATA", help="YAML file, preset name, or data"
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.lr=0.01",
    )
    train.add_argument("--out", type=Path, metavar="RUN_DIR", help="run folder (runs/<name>)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run exactly")
    train.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    train.add_argument("--quiet", action="store_true", help="print nothing while training")
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log to RUN_DIR/tensorboard (train.tensorboard=true; cnnlab[tensorboard])",
    )
    train.add_argument(
        "--recipe",
        metavar="PRESET",
        help="with DATA: the preset to start from instead of 'default' (e.g. default-long, "
        "about 4x the training time; or a study preset), the run still named after the data",
    )
    _add_trust_option(train)
    train.set_defaults(handler=_train)

    predict = commands.add_parser(
        "predict",
        help="predict classes with a trained run",
        description="INPUT is an image file, a folder of images, or an .npz with an 'images' "
        "array. Prints (or writes with --out) one CSV row per image.",
    )
    predict.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    predict.add_argument("input", type=Path, metavar="INPUT")
    predict.add_argument("--out", type=Path, metavar="CSV", help="write the CSV here")
    _add_trust_option(predict)
    predict.set_defaults(handler=_predict)


def _add_report_command(commands: argparse._SubParsersAction) -> None:
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
    report.add_argument("--out", type=Path, default=Path("report.html"), metavar="HTML")
    report.add_argument("--markdown", type=Path, metavar="MD", help="also a Markdown summary")
    report.add_argument("--figures", type=Path, metavar="DIR", help="also keep the PNG/SVG files")
    report.add_argument(
        "--inside",
        action="store_true",
        help="first run 'cnnlab visualize --score' (the scoreboard of explanation methods on "
        "128 test images) into RUN_DIR/visualize for runs without pictures there (or with "
        "pictures older than the model); 10 s to 2 minutes per run on a 2-core CPU",
    )
    _add_trust_option(report)
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from cnnlab.pipeline import report_runs

    out = report_runs(
        args.run_dirs,
        args.out,
        args.markdown,
        figures_dir=args.figures,
        inside=args.inside,
        log=print,
    )
    print(f"report written: {out}" + (f" (summary: {args.markdown})" if args.markdown else ""))
    return 0


def _add_visualize_command(commands: argparse._SubParsersAction) -> None:
    from cnnlab.visualize.methods import REGISTRY, chosen, drawn

    visualize = commands.add_parser(
        "visualize",
        help="look inside a trained run: activations, filters, Grad-CAM, saliency",
        description="Write activation grids, filter images (gradient ascent from a blank input, "
        "all filters of a layer in one batch), the heatmaps of the explanation methods ("
        + ", ".join(m.title for m in chosen(drawn()))
        + ") and their raw arrays into --out; --score ranks the explanation methods by "
        "evidence: localisation against the Lines masks, faithfulness (deletion and insertion "
        "curves, any dataset) and the randomisation check.",
    )
    visualize.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    visualize.add_argument(
        "--images",
        type=Path,
        metavar="FILE|DIR|NPZ",
        help="images to explain (default: 8 test images of the run's data)",
    )
    visualize.add_argument(
        "--layer",
        dest="layers",
        action="append",
        metavar="NAME",
        help="a layer, e.g. features.conv1 (repeatable; default: conv/pool)",
    )
    visualize.add_argument("--head", help="a head of a multi-head model (default: every head)")
    visualize.add_argument(
        "--class",
        dest="target",
        metavar="K",
        help="class index or name to explain (default: the predicted one)",
    )
    visualize.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (RUN_DIR/visualize)"
    )
    visualize.add_argument(
        "--score",
        action="store_true",
        help="the scoreboard of explanation methods (masks, faithfulness, randomisation)",
    )
    visualize.add_argument(
        "--method",
        dest="methods",
        action="append",
        choices=list(REGISTRY),
        metavar="NAME",
        help="an explanation method to draw and score (repeatable; default: those with a "
        f"picture, and the scored ones with --score): {', '.join(REGISTRY)}",
    )
    _add_trust_option(visualize)
    visualize.set_defaults(handler=_visualize)


def _visualize(args: argparse.Namespace) -> int:
    from cnnlab.predict import read_images
    from cnnlab.runfolder import RunFolder
    from cnnlab.training import load_run
    from cnnlab.visualize import print_scores, visualize_run

    images = None
    if args.images is not None:
        images, _ = read_images(args.images, load_run(args.run_dir).preprocess)
    target = int(args.target) if args.target is not None and args.target.isdigit() else args.target
    out = args.out or RunFolder(args.run_dir).visualize
    summary = visualize_run(
        args.run_dir,
        out,
        images=images,
        layers=args.layers,
        head=args.head,
        target_class=target,
        score=args.score,
        methods=args.methods,
    )
    print(f"pictures and arrays written to {out}")
    if args.score and summary.get("scores"):
        print_scores(summary["scores"]["rows"])
    return 0


def _add_models_command(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models",
        help="list the model families, their options, layers and parameter counts",
        description="Without NAME: every model family with its options. With NAME: its layers "
        "and parameter counts for MNIST-shaped (1x28x28, 10 classes) input, or for --channels "
        "and --classes.",
    )
    models.add_argument("name", nargs="?", metavar="NAME")
    models.add_argument("--channels", type=int, default=1)
    models.add_argument("--classes", type=int, default=10)
    models.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model option, e.g. channels=[32,64]",
    )
    models.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from cnnlab.models import create_model, describe, model_names, model_options
    from cnnlab.overrides import parse_set

    if args.name is None:
        for name in model_names():
            options = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items())
            print(f"{name}: {options or 'no options'}")
        return 0
    options = parse_set(args.options, f"model {args.name!r}", example="channels=[32,64]")
    model = create_model(args.name, args.channels, args.classes, **options)
    print(f"{args.name} for {args.channels}x28x28 input, {args.classes} classes:")
    print(describe(model))
    return 0


def _add_evaluate_command(commands: argparse._SubParsersAction) -> None:
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
    _add_trust_option(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from cnnlab.evaluate import evaluate_run, result_files, summary_lines

    metrics = evaluate_run(args.run_dir, split=args.split, dataset=args.dataset, name=args.name)
    print("\n".join(summary_lines(metrics)))
    transfer = metrics.get("transfer")
    files = result_files(args.run_dir, args.split, transfer["name"] if transfer else None)
    print(f"  written: {files[0]}")
    return 0


def _add_errors_command(commands: argparse._SubParsersAction) -> None:
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
    _add_trust_option(errors)
    errors.set_defaults(handler=_errors)


def _errors(args: argparse.Namespace) -> int:
    from cnnlab.evaluate import evaluate_run
    from cnnlab.evaluate.errors import error_lines
    from cnnlab.runfolder import RunFolder, read_json

    if args.top < 1:
        raise CnnlabError(f"--top must be at least 1, got {args.top}")
    folder = RunFolder(args.run_dir)
    files = folder.errors(args.split)
    if not folder.evaluated(args.split):
        evaluate_run(args.run_dir, split=args.split)
    print("\n".join(error_lines(read_json(files.summary), args.top)))
    print(f"  every misclassified image: {files.table}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from cnnlab.training import train
    from cnnlab.training.config import preset_names
    from cnnlab.training.recipe import RECIPE, is_data_source, recipe_config

    if (args.config is None) == (args.resume is None):
        raise CnnlabError("give either CONFIG (a YAML file or preset) or --resume RUN_DIR")
    if args.resume is not None and (args.overrides or args.out or args.tensorboard):
        raise CnnlabError(
            "--resume continues a run as it was: --set, --out and --tensorboard do not apply"
        )
    board = ("train.tensorboard=true",) if args.tensorboard else ()
    config, overrides = args.config, (*args.overrides, *board)
    if config is not None and is_data_source(config):  # your own images: the default recipe
        config, overrides = recipe_config(config, overrides, args.recipe or RECIPE), ()
    elif args.recipe is not None:
        raise CnnlabError("--recipe goes with DATA (a folder, .csv, .npz, mnist or lines)")
    elif config is not None and config not in preset_names() and not Path(config).exists():
        raise CnnlabError(
            f"{config!r}: no such file or folder. Give DATA (a folder of images, a .csv or "
            f".npz, mnist or lines) or CONFIG (a YAML file or a preset: "
            f"{', '.join(preset_names())})"
        )
    train(
        config,
        out=args.out,
        overrides=overrides,
        resume=args.resume,
        quiet=args.quiet,
        device=args.device,
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from cnnlab.predict import predict, predictions_csv, write_predictions

    predictions = predict(args.run_dir, args.input)
    if args.out:
        write_predictions(args.out, predictions)
        print(f"{len(predictions)} predictions written to {args.out}")
    else:
        sys.stdout.write(predictions_csv(predictions))
    return 0


def _add_study_command(commands: argparse._SubParsersAction) -> None:
    from cnnlab.study.spec import study_names

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
{", ".join(study_names()) or "none"}.

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
    study.add_argument(
        "--out", type=Path, metavar="DIR", help="study folder (studies/<name>[-quick])"
    )
    study.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (1)")
    study.add_argument(
        "--quick", action="store_true", help="the study's quick settings (fewer seeds, less data)"
    )
    study.add_argument(
        "--seeds", type=_int_list, metavar="S,S", help="seeds to run, e.g. 0,1,2 (the study's)"
    )
    study.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key of every run, e.g. data.mnist_dir=DIR",
    )
    _add_executor_options(study)
    study.add_argument(
        "--tensorboard",
        action="store_true",
        help="log every run for TensorBoard (tensorboard --logdir DIR/runs compares them)",
    )
    study.add_argument("--quiet", action="store_true", help="print only errors")
    study.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # retired
    study.set_defaults(handler=_study)


def _add_executor_options(parser: argparse.ArgumentParser) -> None:
    from cnnlab.execution import EXECUTORS

    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: worker processes here (default); ray: a Ray cluster (pip install "
        "'cnnlab[ray]')",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="with --executor ray: the cluster (host:port, or auto); a local Ray without it",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per run (local: cores // jobs; ray: the CPUs each run asks, 1)",
    )


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


def _add_lr_find_command(commands: argparse._SubParsersAction) -> None:
    finder = commands.add_parser(
        "lr-find",
        help="the learning-rate range test: loss against an exponentially growing rate",
        description="Train CONFIG's model for up to --steps batches while the learning rate "
        "grows exponentially from --min to --max (the config's optimiser, loss and batch; its "
        "schedule replaced by the ramp), stopping once the smoothed loss passes 4x its best. "
        "Draws loss against rate with a suggestion marked: the rate where the smoothed loss "
        "falls fastest. The suggestion is a heuristic to read off the curve (its reliability "
        "is disputed); seeded by the config; writes the plot (and --json) only, no run folder.",
    )
    finder.add_argument("config", metavar="CONFIG", help="YAML file or preset name")
    finder.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    finder.add_argument("--steps", type=int, default=200, help="batches at most (200)")
    finder.add_argument("--min", type=float, default=1e-7, dest="lr_min", help="first rate")
    finder.add_argument("--max", type=float, default=10.0, dest="lr_max", help="last rate")
    finder.add_argument(
        "--plot", type=Path, metavar="PNG", help="where to draw it (lr-find-<name>.png)"
    )
    finder.add_argument("--json", type=Path, metavar="FILE", help="also write the curve here")
    finder.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    finder.set_defaults(handler=_lr_find)


def _lr_find(args: argparse.Namespace) -> int:
    from cnnlab.fileio import write_json
    from cnnlab.training import load_config
    from cnnlab.training.lr_finder import lr_find, plot_range_test

    config = load_config(args.config, args.overrides)
    result = lr_find(
        config, steps=args.steps, lr_min=args.lr_min, lr_max=args.lr_max, device=args.device
    )
    plot = args.plot or Path(f"lr-find-{config.name}.png")
    plot_range_test(result, plot, f"learning-rate range test: {config.name}")
    if args.json is not None:
        write_json(args.json, result.to_dict())
    end = "stopped early: the loss passed 4x its best" if result.stopped_early else "all steps"
    print(
        f"{config.name}: {len(result.lrs)} steps, rate {result.lrs[0]:.2g} to "
        f"{result.lrs[-1]:.2g} ({end}); lowest smoothed loss {min(result.smoothed):.4f}"
    )
    if result.suggestion is None:
        print("no suggestion: too few steps; read the curve")
    else:
        print(
            f"suggestion: {result.suggestion:.2g} (steepest fall of the smoothed loss; a "
            "heuristic: read the curve)"
        )
    print(f"plot: {plot}")
    return 0


def _add_export_command(commands: argparse._SubParsersAction) -> None:
    from cnnlab.export import CHECK_IMAGES, FORMATS, TOLERANCE

    export = commands.add_parser(
        "export",
        help="the run's model as ONNX (checked in onnxruntime) or torch.export .pt2",
        description="Write RUN's model with its preprocessing inside (uint8 images in, logits "
        "or one output per head out) to RUN/export/model.<format> with a card beside it "
        "(model.<format>.json: input, preprocessing, outputs, the check), after checking it on "
        f"up to --check-images of the run's test images: onnxruntime (or torch.export.load) "
        f"against PyTorch, every output within {TOLERANCE:g} and every prediction the same; a "
        "file that fails is not kept. ONNX needs pip install 'cnnlab[export]'.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN")
    export.add_argument("--format", choices=FORMATS, default="onnx", help="(onnx)")
    export.add_argument("--out", type=Path, metavar="FILE", help="(RUN/export/model.<format>)")
    export.add_argument(
        "--check-images", type=int, default=CHECK_IMAGES, metavar="N", help=f"({CHECK_IMAGES})"
    )
    _add_trust_option(export)
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from cnnlab.export import export_run

    result = export_run(args.run_dir, args.format, args.out, args.check_images)
    checker = "onnxruntime" if args.format == "onnx" else "torch.export.load"
    print(
        f"{result.path}: outputs {', '.join(result.outputs)}; checked in {checker} on "
        f"{result.images} test images: largest difference {result.max_difference:.2g}, same "
        f"predictions\ncard: {result.card}"
    )
    return 0


def _add_status_command(commands: argparse._SubParsersAction) -> None:
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
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from cnnlab.jobs.status import job_status
    from cnnlab.runfolder import STATES

    status = job_status(args.folder)
    shown = ("waiting", "failed", *STATES) if args.all else ("training", "interrupted", "failed")
    print("\n".join(status.lines(shown)))
    return 0


def _add_reproduce_command(commands: argparse._SubParsersAction) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help="the whole CNN study end to end: data, every model, the variations, one report",
        description="Generate Lines, load MNIST, train every model of the study (part1 and "
        "part2 on MNIST and Lines, the multi-head nets), evaluate and look inside each, run the "
        "variation studies and write DIR/report.html with a front page that sets the results "
        "beside the original study's. Finished steps are not redone when run again; an "
        "interrupted training is resumed. Uses a GPU when there is one.",
    )
    reproduce.add_argument(
        "--out", type=Path, default=Path("reproduction"), metavar="DIR", help="(reproduction)"
    )
    reproduce.add_argument(
        "--quick",
        action="store_true",
        help="a few thousand images and 2 epochs per run: a few minutes, labelled as quick",
    )
    reproduce.add_argument(
        "--mnist-dir",
        type=Path,
        metavar="DIR",
        help="folder of the MNIST IDX files ($CNNLAB_MNIST_DIR; else downloaded and checked)",
    )
    reproduce.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    reproduce.add_argument(
        "--jobs",
        type=int,
        default=2,
        metavar="N",
        help="runs trained at once, each in a process with cores/N threads (2; the six "
        "models train one at a time on a GPU)",
    )
    _add_executor_options(reproduce)
    reproduce.add_argument("--no-studies", action="store_true", help="skip the variation studies")
    reproduce.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key of every training (e.g. data.train_limit=500)",
    )
    reproduce.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from cnnlab.reproduce import reproduce

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
    )
    print(f"open {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from cnnlab.version import __version__

    parser = _Parser(
        prog="cnnlab",
        description="Build, train, evaluate and look inside convolutional networks.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(commands)
    _add_train_commands(commands)
    _add_lr_find_command(commands)
    _add_evaluate_command(commands)
    _add_errors_command(commands)
    _add_models_command(commands)
    _add_report_command(commands)
    _add_visualize_command(commands)
    _add_study_command(commands)
    _add_reproduce_command(commands)
    _add_status_command(commands)
    _add_export_command(commands)
    _add_trust_command(commands)
    return parser


def _add_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="import and run the model code a run folder's config names (model.name "
        "package.module:factory) even if you did not train it here; only for folders you trust",
    )


def _add_trust_command(commands: argparse._SubParsersAction) -> None:
    trust = commands.add_parser(
        "trust",
        help="record that you trust run folders: the model code their config names may run",
        description="A run folder is data: cnnlab imports the model code its config names "
        "(model.name package.module:factory) only for runs you trained here or trust. This "
        "records RUN_DIR as trusted, as its config reads now (a later change to it, or a "
        "move, needs trust again). Read the config first: the code named runs as you.",
    )
    trust.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    trust.set_defaults(handler=_trust)


def _trust(args: argparse.Namespace) -> int:
    from cnnlab.models.registry import is_import_path
    from cnnlab.runfolder import RunFolder
    from cnnlab.runfolder.trust import record_trust
    from cnnlab.training.config import load_config

    for run_dir in args.run_dirs:
        folder = RunFolder(run_dir)
        folder.require(finished=False)
        name = load_config(folder.config, import_models=False).model["name"]
        if not is_import_path(name):
            print(f"{run_dir}: model {name!r} is one of cnnlab's own; nothing to trust")
            continue
        record_trust(folder.path, folder.config, name)
        print(f"{run_dir}: trusted; opening it imports and runs {name!r} from your Python path")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return 2, never a stack trace."""
    try:
        from cnnlab.runfolder.trust import trusting_code

        args = build_parser().parse_args(argv)
        trusted = (
            trusting_code() if getattr(args, "trust_code", False) else contextlib.nullcontext()
        )
        with trusted:
            return int(args.handler(args) or 0)
    except Interrupted as exc:  # a training (or a study) saved a checkpoint and stopped
        print(f"cnnlab: {exc}", file=sys.stderr)
        return 130
    except CnnlabError as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cnnlab ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
