"""Ctrl-C while the ``cnnlab`` command is still starting (its imports) ends in one line, never a
traceback, whenever it lands."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENTRY = (
    "import sys; sys.argv = ['cnnlab', 'models', 'part1']; from cnnlab.launch import main; "
    "sys.exit(main())"
)


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.6, 1.0, 1.3, 1.6])
def test_ctrl_c_during_start_up_says_one_line(tmp_path: Path, delay: float) -> None:
    """The command as the installed ``cnnlab`` script runs it; the signal lands at ``delay``
    seconds: in the imports, in the work, or while Python shuts down (its exit handlers), and
    the answer must be the same whenever it lands."""
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err
    if process.returncode != 0:  # it was stopped (or Python itself had not started yet)
        assert process.returncode in (130, -signal.SIGINT), (process.returncode, err)
        assert err in ("", "cnnlab: interrupted\n"), err
    else:  # it had finished
        assert "total" in out


def test_the_package_loads_lazily_and_its_verbs_stay_functions() -> None:
    code = (
        "import sys, cnnlab; assert 'torch' not in sys.modules, 'torch imported'; "
        "import cnnlab.predict, cnnlab.reproduce; from cnnlab import predict, reproduce, train; "
        "assert callable(predict) and callable(reproduce) and callable(cnnlab.predict); "
        "print(sorted(set(cnnlab.__all__) - set(dir(cnnlab))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # every public name is there
