"""``cnnlab models``: the model families, their options, layers and parameter counts."""

from __future__ import annotations

import argparse

from cnnlab.cli import options


def add(commands: options.Commands) -> None:
    """The ``models`` command."""
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
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model option, e.g. channels=[32,64] (repeatable)",
    )
    options.renamed(models, "--set", "--option")  # --set names config keys everywhere else
    options.json_file(
        models,
        "write the result as JSON to FILE: a list of {name, options}, or with NAME {name, "
        "channels, classes, options, parameters, layers} (-: on stdout, and nothing else there)",
    )
    options.quiet(models)
    models.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from cnnlab.models import (
        create_model,
        describe,
        model_names,
        model_options,
        parameter_count,
    )
    from cnnlab.overrides import parse_set

    if args.name is None:
        families = [{"name": name, "options": model_options(name)} for name in model_names()]
        lines = [
            f"{family['name']}: "
            + (", ".join(f"{k}={v!r}" for k, v in family["options"].items()) or "no options")
            for family in families
        ]
        options.report(args, families, lines)
        return 0
    chosen = parse_set(args.options, f"model {args.name!r}", example="channels=[32,64]")
    model = create_model(args.name, args.channels, args.classes, **chosen)
    layers = [
        {"name": name, "type": type(module).__name__, "parameters": parameter_count(module)}
        for name, module in model.named_modules()
        if name and not list(module.children())
    ]
    result = {
        "name": args.name,
        "channels": args.channels,
        "classes": args.classes,
        "options": chosen,
        "parameters": parameter_count(model),
        "layers": layers,
    }
    title = f"{args.name} for {args.channels}x28x28 input, {args.classes} classes:"
    options.report(args, result, [title, describe(model)])
    return 0
