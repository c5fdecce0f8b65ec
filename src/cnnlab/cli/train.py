"""``cnnlab train``, ``cnnlab predict`` and ``cnnlab lr-find``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.cli import options
from cnnlab.errors import CnnlabError
from cnnlab.overrides import preset_names

if TYPE_CHECKING:  # torch stays out of --help
    from collections.abc import Mapping, Sequence

    from cnnlab.predict import Prediction

PRESETS = "presets"
"""The run-config presets' package folder (``cnnlab.training.config.PRESETS``, read here without
loading torch; tests/test_cli_help.py checks the two agree)."""


def add(commands: options.Commands) -> None:
    """The ``train``, ``predict`` and ``lr-find`` commands."""
    _add_train(commands)
    _add_predict(commands)
    _add_lr_find(commands)


def _add_train(commands: options.Commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a model on your images (the default recipe), or from a config or preset",
        description="Train a model. CONFIG is a YAML file or a preset: "
        f"{', '.join(preset_names(PRESETS))}; or DATA (a folder of images, a .csv or .npz, "
        "mnist, lines): the default recipe (preset 'default': a net chosen for the image size, "
        "a validation split choosing the weights kept, one-cycle AdamW, label smoothing, "
        "label-safe augmentation), the run named after the data.",
    )
    train.add_argument(
        "config", nargs="?", metavar="CONFIG|DATA", help="YAML file, preset name, or data"
    )
    options.config_set(train, "override a config key, e.g. train.lr=0.01")
    options.out(train, "RUN_DIR", "run folder (runs/<name>)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run exactly")
    options.device(train)
    options.quiet(train, "print nothing while training")
    options.json_file(
        train,
        "at the end write the run folder and its last epoch's metrics as JSON to FILE (-: on "
        "stdout, and nothing else there: the progress lines go to stderr)",
    )
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
    options.trust_code(train)
    train.set_defaults(handler=_train_command)


def _train_command(args: argparse.Namespace) -> int:
    from cnnlab.training import train
    from cnnlab.training.recipe import RECIPE, is_data_source, recipe_config

    if (args.config is None) == (args.resume is None):
        raise CnnlabError("give either CONFIG (a YAML file or preset) or --resume RUN_DIR")
    if args.resume is not None and (args.overrides or args.out or args.tensorboard):
        raise CnnlabError(
            "--resume continues a run as it was: --set, --out and --tensorboard do not apply"
        )
    board = ("train.tensorboard=true",) if args.tensorboard else ()
    config, overrides = args.config, (*args.overrides, *board)
    presets = preset_names(PRESETS)
    if config is not None and is_data_source(config):  # your own images: the default recipe
        config, overrides = recipe_config(config, overrides, args.recipe or RECIPE), ()
    elif args.recipe is not None:
        raise CnnlabError("--recipe goes with DATA (a folder, .csv, .npz, mnist or lines)")
    elif config is not None and config not in presets and not Path(config).exists():
        raise CnnlabError(
            f"{config!r}: no such file or folder. Give DATA (a folder of images, a .csv or "
            f".npz, mnist or lines) or CONFIG (a YAML file or a preset: {', '.join(presets)})"
        )
    # --json -: stdout is the JSON document's, so the progress lines go to stderr
    shown = contextlib.redirect_stdout(sys.stderr) if options.json_to_stdout(args) else None
    with shown or contextlib.nullcontext():
        run = train(
            config,
            out=args.out,
            overrides=overrides,
            resume=args.resume,
            quiet=args.quiet,
            device=args.device,
        )
    if os.environ.get("RANK", "0") in ("", "0"):  # under torchrun: the first process reports
        history = run.history
        options.report(
            args,
            {
                "run": str(run.path),
                "name": run.config.name,
                "epochs": len(history),
                "final": history[-1] if history else {},
            },
        )
    return 0


def _add_predict(commands: options.Commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="predict classes with a trained run",
        description="INPUT is an image file, a folder of images, or an .npz with an 'images' "
        "array. Prints (or writes with --out) one CSV row per image: input, class_index, "
        "class_name, probability (and each head's level and probability for a multi-head run).",
    )
    predict.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    predict.add_argument("input", type=Path, metavar="INPUT")
    options.out(predict, "CSV", "write the CSV here (-: on stdout, as without --out)")
    options.json_file(
        predict,
        "write the predictions as JSON to FILE, a list of {input, class_index, class_name, "
        "probability[, top][, probabilities][, heads]} (-: on stdout instead of the CSV, and "
        "nothing else there)",
    )
    predict.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help="also the K most probable classes per image, best first, K from 1 to the number "
        "of classes: CSV columns class_index_2, class_name_2, probability_2 ... for ranks "
        "2..K (rank 1 stays class_index, class_name, probability), JSON a 'top' list of "
        "{class_index, class_name, probability}. Multi-head runs: per head, its K best levels "
        "(<head>_2, <head>_probability_2 ...; JSON heads.<head>.top; all of a head's levels "
        "when it has fewer), K from 1 to the most levels of a head",
    )
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="also every class's probability, in the run's class order: CSV columns "
        "p_<class name> (p_<index> if two names give one column), JSON a 'probabilities' "
        "mapping class name -> probability. Multi-head runs: per head, <head>_p_<level> "
        "(JSON heads.<head>.probabilities)",
    )
    options.quiet(
        predict, "print nothing on stdout but the CSV when there is no --out (it is the result)"
    )
    options.device(predict, default="cpu")
    predict.add_argument(
        "--weights",
        choices=("kept", "best", "last"),
        default="kept",
        help="kept: the weights the run kept (train.keep; the default, what evaluate and "
        "export use); best: its checkpoint best on validation; last: its last epoch's",
    )
    options.trust_code(predict)
    predict.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from cnnlab.predict import predict, predictions_csv, write_predictions
    from cnnlab.training.run import load_run

    csv_to_stdout = args.out is None or str(args.out) == options.STDOUT
    if args.out is not None and csv_to_stdout and options.json_to_stdout(args):
        raise CnnlabError("--out - and --json - both ask for stdout: write one of them to a file")
    run = load_run(args.run_dir, args.device or "cpu", args.weights)
    predictions = predict(run, args.input)
    heads = predictions[0].heads if predictions else {}  # a multi-head run: K per head
    _check_top_k(args.top_k, [len(run.factor_levels[h]) for h in heads], len(run.class_names))
    names = {"class_names": run.class_names, "factor_levels": run.factor_levels}
    extra = {"probabilities": args.probabilities, **names}
    lines = []
    if not csv_to_stdout:
        write_predictions(args.out, predictions, top=args.top_k or 1, **extra)
        lines.append(f"{len(predictions)} predictions written to {args.out}")
    elif not options.json_to_stdout(args):  # the result itself: printed even with --quiet
        sys.stdout.write(predictions_csv(predictions, top=args.top_k or 1, **extra))
    # the JSON has a 'top' list whenever --top-k is given, --top-k 1 too
    records = [_prediction_record(p, top=args.top_k, **extra) for p in predictions]
    options.report(args, records, lines)
    return 0


def _check_top_k(k: int | None, head_levels: list[int], classes: int) -> None:
    """``--top-k K`` within 1 and the run's classes (a multi-head run: its largest head's
    levels)."""
    most = max(head_levels) if head_levels else classes
    if k is not None and not 1 <= k <= most:
        what = f"a head has at most {most} levels" if head_levels else f"{most} classes"
        raise CnnlabError(f"--top-k {k}: expected 1 to {most} (this run: {what})")


def _prediction_record(
    prediction: Prediction,
    *,
    top: int | None = None,
    probabilities: bool = False,
    class_names: Sequence[Any] = (),
    factor_levels: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """A :class:`cnnlab.predict.Prediction` as data: the CSV's columns, and for a multi-head
    model each head's level and probability; with ``top`` a 'top' list of its ``top`` most
    probable classes, with ``probabilities`` every class's (per head for a multi-head model)."""
    from cnnlab.predict import probability_keys, top_k

    record: dict[str, Any] = {
        "input": prediction.source,
        "class_index": prediction.index,
        "class_name": prediction.name,
        "probability": prediction.probability,
    }
    if not prediction.heads:
        if top is not None:
            record["top"] = [
                {"class_index": r.index, "class_name": r.name, "probability": r.probability}
                for r in top_k(prediction, top, class_names)
            ]
        if probabilities:
            if prediction.probabilities is None:
                raise CnnlabError(f"{prediction.source}: this prediction has no probabilities")
            keys = probability_keys(class_names)
            record["probabilities"] = dict(zip(keys, prediction.probabilities, strict=True))
    if prediction.heads:
        record["heads"] = {}
        for head, (level, probability) in prediction.heads.items():
            data: dict[str, Any] = {"level": level, "probability": probability}
            levels = (factor_levels or {}).get(head, ())
            if top is not None:
                ranked = top_k(prediction, top, levels, head=head)
                data["top"] = [{"level": r.name, "probability": r.probability} for r in ranked]
            if probabilities:
                every = prediction.head_probabilities[head]
                data["probabilities"] = dict(zip(probability_keys(levels), every, strict=True))
            record["heads"][head] = data
    return record


def _add_lr_find(commands: options.Commands) -> None:
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
    options.config_set(finder, "override a config key, e.g. train.batch_size=64")
    finder.add_argument("--steps", type=int, default=200, help="batches at most (200)")
    finder.add_argument("--min", type=float, default=1e-7, dest="lr_min", help="first rate")
    finder.add_argument("--max", type=float, default=10.0, dest="lr_max", help="last rate")
    options.out(finder, "PNG", "where to draw it (lr-find-<name>.png)", old="--plot")
    options.json_file(
        finder, "also write the curve as JSON to FILE (-: on stdout, and nothing else there)"
    )
    options.quiet(finder)
    options.device(finder)
    finder.set_defaults(handler=_lr_find)


def _lr_find(args: argparse.Namespace) -> int:
    from cnnlab.training import load_config
    from cnnlab.training.lr_finder import lr_find, plot_range_test

    config = load_config(args.config, args.overrides)
    result = lr_find(
        config, steps=args.steps, lr_min=args.lr_min, lr_max=args.lr_max, device=args.device
    )
    plot = args.out or Path(f"lr-find-{config.name}.png")
    plot_range_test(result, plot, f"learning-rate range test: {config.name}")
    end = "stopped early: the loss passed 4x its best" if result.stopped_early else "all steps"
    lines = [
        f"{config.name}: {len(result.lrs)} steps, rate {result.lrs[0]:.2g} to "
        f"{result.lrs[-1]:.2g} ({end}); lowest smoothed loss {min(result.smoothed):.4f}",
        "no suggestion: too few steps; read the curve"
        if result.suggestion is None
        else f"suggestion: {result.suggestion:.2g} (steepest fall of the smoothed loss; a "
        "heuristic: read the curve)",
        f"plot: {plot}",
    ]
    options.report(args, result.to_dict(), lines)
    return 0
