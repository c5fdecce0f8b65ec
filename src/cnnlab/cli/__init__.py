"""The ``cnnlab`` command: a thin layer over the same functions the Python API exposes.

One module per command group adds its commands to the parser; :mod:`cnnlab.cli.options` holds
the flags they share. Torch and the heavy modules load inside the handlers only, so ``--help``,
``--version`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import typing
from collections.abc import Sequence

from cnnlab.cli import data, evaluate, export, models, study, train, trust, visualize
from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.version import __version__


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (subcommand parsers inherit this)."""

    def error(self, message: str) -> typing.NoReturn:
        raise CnnlabError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The ``cnnlab`` parser with every command."""
    parser = _Parser(
        prog="cnnlab",
        description="Build, train, evaluate and look inside convolutional networks.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, train, evaluate, models, visualize, study, export, trust):
        group.add(commands)
    return parser


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
