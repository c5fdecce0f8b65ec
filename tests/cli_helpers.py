"""Running the ``cnnlab`` command inside a test, and what a one-line error looks like."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main

Capsys = pytest.CaptureFixture[str]


def run(capsys: Capsys, *args: str | Path) -> tuple[int, str, str]:
    """``cnnlab ARGS`` in this process: exit code, stdout, stderr (argparse exits count too)."""
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    """Exit 2, nothing on stdout, and one line on stderr that names what is wrong."""
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cnnlab: error: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
