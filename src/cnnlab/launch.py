"""The ``cnnlab`` command's entry point: a Ctrl-C while the program is still loading ends in
one line (``cnnlab: interrupted``, exit status 130), as it does later, never a traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from cnnlab.cli import main as run
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    return run()
