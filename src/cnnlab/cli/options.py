"""The options several commands share, one function per flag, so that the same thing has the
same flag everywhere; old spellings stay as hidden aliases that say the new one."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

Commands = argparse._SubParsersAction
"""What ``add_subparsers`` returns: each command module adds its commands to it."""

DEVICE_HELP = "auto (default), cpu, cuda or cuda:N"

STDOUT = "-"
"""``--json -``: the JSON document on stdout, and nothing else there."""

JSON_HELP = "write the result as JSON to FILE (-: on stdout, and nothing else there)"
QUIET_HELP = "print nothing on stdout but the result asked for (errors still go to stderr)"


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


def json_file(parser: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    """``--json FILE``: also write the command's result as JSON (``-``: on stdout only, as
    :func:`report` writes it)."""
    parser.add_argument("--json", type=Path, metavar="FILE", help=help)


def quiet(parser: argparse.ArgumentParser, help: str = QUIET_HELP) -> None:
    """``--quiet``: print less."""
    parser.add_argument("--quiet", action="store_true", help=help)


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (what a run config's ``device`` takes); an
    argparse type. Whether CUDA is there is the command's to say."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def device(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--device``: where torch runs (``default``: what no flag means to the command)."""
    if default == "auto":
        help = DEVICE_HELP
    else:
        help = f"{default} (default), auto (a GPU when there is one), cuda or cuda:N"
    parser.add_argument("--device", type=device_name, metavar="DEVICE", help=help)


def reporting(parser: argparse.ArgumentParser, *, runs_model: bool = False) -> None:
    """``--json FILE|-`` and ``--quiet`` of a command that reports a result; with
    ``runs_model`` also ``--device`` (default: the CPU)."""
    json_file(parser)
    quiet(parser)
    if runs_model:
        device(parser, default="cpu")


def json_to_stdout(args: argparse.Namespace) -> bool:
    """Whether ``--json -`` asks for the JSON document on stdout."""
    value = getattr(args, "json", None)
    return value is not None and str(value) == STDOUT


def silent(args: argparse.Namespace) -> bool:
    """Whether a command's human lines stay off stdout: ``--quiet``, or ``--json -`` (stdout
    holds the JSON document only)."""
    return bool(getattr(args, "quiet", False)) or json_to_stdout(args)


def say(args: argparse.Namespace, *lines: str) -> None:
    """Print ``lines`` on stdout unless :func:`silent`."""
    if not silent(args):
        for line in lines:
            print(line)


def progress_log(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Where a command's progress lines go: stdout; stderr with ``--json -`` (stdout is the
    JSON's); nowhere with ``--quiet``."""
    if getattr(args, "quiet", False):
        return None
    if json_to_stdout(args):
        return lambda line: print(line, file=sys.stderr)
    return print


def report(args: argparse.Namespace, result: object, lines: Iterable[str] = ()) -> None:
    """A handler's output: ``result`` as JSON where ``--json`` says (``-``: stdout; a file:
    written atomically, before the lines), and ``lines`` on stdout unless :func:`silent`.

    ``result`` is plain data; anything JSON has no type for (a path, say) is written as its
    text."""
    import json

    from cnnlab.fileio import atomic_open, jsonable

    target = getattr(args, "json", None)
    if target is not None:
        text = json.dumps(jsonable(result), indent=2) + "\n"
        if json_to_stdout(args):
            sys.stdout.write(text)
        else:
            with atomic_open(target) as handle:
                handle.write(text)
    say(args, *lines)


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
