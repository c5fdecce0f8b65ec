"""``cnnlab trust``: record that the model code run folders name may run."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli import options


def add(commands: options.Commands) -> None:
    """The ``trust`` command."""
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
        name = load_config(folder.config, import_models=False).model.name
        if not is_import_path(name):
            print(f"{run_dir}: model {name!r} is one of cnnlab's own; nothing to trust")
            continue
        record_trust(folder.path, folder.config, name)
        print(f"{run_dir}: trusted; opening it imports and runs {name!r} from your Python path")
    return 0
