"""Ctrl-C while training, made safe: the loop stops only between steps.

Python raises ``KeyboardInterrupt`` wherever the program happens to be: inside a forward pass
(BatchNorm's running statistics already updated, the weights not yet), inside ``optimizer.step``
or while a checkpoint is written. A checkpoint saved from there does not describe any point of
an uninterrupted run. While :class:`StopRequest` is installed, SIGINT and SIGTERM only set a
flag; the engine looks at it after each step and after each epoch's checkpoints, saves and
stops. A second signal stops at once (nothing is saved: the last checkpoint stays the one to
resume from).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Whether the user asked the training to stop (see the module docstring)."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt  # the second signal: stop now
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Catch the signals in this block (only possible in the main thread; elsewhere the
        default behaviour stays)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous: dict[int, Any] = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
