"""The ``cnnlab`` command's entry point: a Ctrl-C while the program is still loading ends in
one line (``cnnlab: interrupted``, exit status 130), as it does later, never a traceback; one
that lands after the command has done its work (while Python shuts down) changes nothing."""

from __future__ import annotations

import signal
import sys


def main() -> int:
    try:
        from cnnlab.cli import main as run

        code = run()
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: exit without a traceback from atexit
    return code
