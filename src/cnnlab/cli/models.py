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
    models.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from cnnlab.models import create_model, describe, model_names, model_options
    from cnnlab.overrides import parse_set

    if args.name is None:
        for name in model_names():
            described = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items())
            print(f"{name}: {described or 'no options'}")
        return 0
    chosen = parse_set(args.options, f"model {args.name!r}", example="channels=[32,64]")
    model = create_model(args.name, args.channels, args.classes, **chosen)
    print(f"{args.name} for {args.channels}x28x28 input, {args.classes} classes:")
    print(describe(model))
    return 0
