"""``cnnlab --help``, every command's ``--help``, ``--version`` and usage errors answer without
importing torch; old flag spellings still work and name the new one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnlab.cli import build_parser, export, study, train
from cnnlab.version import __version__
from tests.cli_helpers import run

COMMANDS = [
    ["data", "lines"],
    ["data", "mnist"],
    ["data", "check"],
    *([name] for name in build_parser()._subparsers._group_actions[0].choices if name != "data"),
]


def _without_torch(argv: list[str]) -> str:
    """Run ``main(argv)`` in a fresh interpreter; its output, after checking torch stayed out."""
    code = (
        "import sys; from cnnlab.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("argv", [["--help"], *([*c, "--help"] for c in COMMANDS)], ids=str)
def test_help_without_torch(argv: list[str]) -> None:
    assert "usage: cnnlab" in _without_torch(argv)


def test_version_and_usage_errors_without_torch() -> None:
    assert _without_torch(["--version"]).strip() == f"cnnlab {__version__}"
    assert "invalid choice" in _without_torch(["evaluate", "run", "--split", "dev"])


def test_mirrored_constants_agree() -> None:
    """What the parser reads without torch is what the modules that own it say."""
    import cnnlab.export
    from cnnlab.study.spec import study_names
    from cnnlab.training.config import preset_names

    assert (export.FORMATS, export.TOLERANCE, export.CHECK_IMAGES) == (
        cnnlab.export.FORMATS,
        cnnlab.export.TOLERANCE,
        cnnlab.export.CHECK_IMAGES,
    )
    assert train.preset_names(train.PRESETS) == preset_names()
    assert study.preset_names(study.PRESETS) == study_names()


@pytest.mark.parametrize(
    ("old", "new", "argv"),
    [
        ("--dir", "--mnist-dir", ["data", "mnist", "--dir", "nowhere"]),
        ("--split", "--mnist-split", ["data", "check", "nowhere", "--split", "official"]),
        ("--set", "--option", ["models", "nowhere", "--set", "depth=3"]),
        ("--plot", "--out", ["lr-find", "nowhere", "--plot", "x.png"]),
    ],
)
def test_old_spellings_still_work_with_a_note(capsys, old: str, new: str, argv: list[str]) -> None:
    code, _, err = run(capsys, *argv)
    note, *rest = err.splitlines()
    assert note == f"cnnlab: note: {old} is now {new}; the old spelling goes in the next release"
    assert code == 2 and rest and "nowhere" in rest[0]  # the value reached the command
