"""Shared fixtures: the real MNIST folder named by ``CNNLAB_MNIST_DIR``."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# The tests' own cache folder (decoded image folders, ...), never the user's ~/.cache; worker
# processes that tests start inherit it.
os.environ["CNNLAB_CACHE"] = tempfile.mkdtemp(prefix="cnnlab-test-cache-")
atexit.register(shutil.rmtree, os.environ["CNNLAB_CACHE"], ignore_errors=True)
# Ctrl-C as a terminal's foreground job gets it. A shell without job control starts a background
# command (`pytest ... &`, as CI runners and scripts may) with SIGINT ignored, and every process
# it starts inherits that: the `cnnlab study` a Ctrl-C test signals would then ignore the Ctrl-C
# and finish. Python leaves an ignored SIGINT ignored; here it is Python's usual handler again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Their own state folder (the run folders trusted to run code), never the user's.
os.environ["CNNLAB_STATE"] = tempfile.mkdtemp(prefix="cnnlab-test-state-")
atexit.register(shutil.rmtree, os.environ["CNNLAB_STATE"], ignore_errors=True)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The absolute folder of the four real MNIST ``.gz`` files (read-only: never write there).

    ``CNNLAB_MNIST_DIR`` may be relative to the repository root; tests are skipped if it is unset.
    """
    value = os.environ.get("CNNLAB_MNIST_DIR")
    if not value:
        pytest.skip("CNNLAB_MNIST_DIR is not set: point it at a folder of the MNIST IDX files")
    path = (REPO_ROOT / Path(value).expanduser()).resolve()
    if not path.is_dir():
        pytest.fail(f"CNNLAB_MNIST_DIR={value} resolves to {path}, which is not a folder")
    return path
