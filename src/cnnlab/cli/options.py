"""The options several commands share, one function per flag, so that the same thing has the
same flag everywhere; old spellings stay as hidden aliases that say the new one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Commands = argparse._SubParsersAction
"""What ``add_subparsers`` returns: each command module adds its commands to it."""

DEVICE_HELP = "auto (default), cpu, cuda or cuda:N"


def int_list(text: str) -> tuple[int, ...]:
    """``"7,15"`` as ``(7, 15)``; an argparse type."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, got {text!r}"
        ) from None


class _Renamed(argparse.Action):
    """An old spelling: stores its value where the new flag does and says the new name."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"cnnlab: note: {option_string} is now {self.new}; the old spelling goes in the "
            "next release",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def renamed(parser: argparse.ArgumentParser, old: str, new: str, **kwargs: Any) -> None:
    """``old`` as a hidden alias of the option ``new`` already on ``parser`` (same type and
    choices)."""
    action = next(a for a in parser._actions if new in a.option_strings)
    parser.add_argument(
        old,
        action=_Renamed,
        new=new,
        dest=action.dest,
        type=action.type,
        choices=action.choices,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        **kwargs,
    )


def out(
    parser: argparse.ArgumentParser,
    metavar: str,
    help: str,
    *,
    old: str | None = None,
    **kwargs: Any,
) -> None:
    """``--out PATH``: where a command writes (``old``: its former spelling)."""
    parser.add_argument("--out", type=Path, metavar=metavar, help=help, **kwargs)
    if old:
        renamed(parser, old, "--out")


def config_set(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable): a config key, into ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def json_file(parser: argparse.ArgumentParser, help: str) -> None:
    """``--json FILE``: also write the command's result as JSON."""
    parser.add_argument("--json", type=Path, metavar="FILE", help=help)


def quiet(parser: argparse.ArgumentParser, help: str) -> None:
    """``--quiet``: print less."""
    parser.add_argument("--quiet", action="store_true", help=help)


def device(parser: argparse.ArgumentParser) -> None:
    """``--device``: where torch runs."""
    parser.add_argument("--device", help=DEVICE_HELP)


def mnist_dir(parser: argparse.ArgumentParser, help: str, *, old: str | None = None) -> None:
    """``--mnist-dir DIR``: the folder of the MNIST IDX files (``old``: its former spelling)."""
    parser.add_argument("--mnist-dir", type=Path, metavar="DIR", help=help)
    if old:
        renamed(parser, old, "--mnist-dir")


def mnist_split(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--mnist-split``: how MNIST is split (``--split`` before)."""
    parser.add_argument("--mnist-split", choices=("study", "official"), default="study", help=help)
    renamed(parser, "--split", "--mnist-split")


def trust_code(parser: argparse.ArgumentParser) -> None:
    """``--trust-code``: run the model code a run folder names (see ``cnnlab.runfolder.trust``)."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="import and run the model code a run folder's config names (model.name "
        "package.module:factory) even if you did not train it here; only for folders you trust",
    )


def executor(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--address`` and ``--threads``: where the runs of a job train."""
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
