"""Progress that behaves in a terminal, a notebook and a log file."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

LOG_EVERY = 30.0
"""Seconds between two plain progress lines inside an epoch where output is a log file."""


class Progress:
    """A live bar per epoch where output is interactive; in a log file one line per epoch, and
    inside a long epoch a plain line every :data:`LOG_EVERY` seconds with its ETA."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.interactive = enabled and (sys.stderr.isatty() or _in_notebook())
        self._bar: Any = None
        self._epoch: tuple[int, int, int, int] = (0, 0, 0, 0)  # epoch, epochs, total, done
        self._from = 0  # the batches done when the epoch (or its resumption) started
        self._started = self._said = 0.0

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int = 0) -> None:
        self._epoch, self._from = (epoch, epochs, total, done), done
        self._started = self._said = time.perf_counter()
        if self.interactive:
            self._bar = tqdm(
                total=total,
                initial=done,
                desc=f"epoch {epoch}/{epochs}",
                unit="batch",
                leave=False,
                dynamic_ncols=True,
            )

    def update(self, batches: int, loss: float, accuracy: float) -> None:
        epoch, epochs, total, done = self._epoch
        self._epoch = (epoch, epochs, total, done + batches)
        if self._bar is not None:
            self._bar.update(batches)
            self._bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}", refresh=False)
        elif (
            self.enabled
            and time.perf_counter() - self._said >= LOG_EVERY
            and done + batches < 0.9 * total  # not a line just before the epoch's own
        ):
            self._said = time.perf_counter()
            print(self._line(loss, accuracy), flush=True)

    def _line(self, loss: float, accuracy: float) -> str:
        """``epoch 3/18: 200/422 batches, loss 0.4123, acc 0.8870, about 25 s left``."""
        epoch, epochs, total, done = self._epoch
        elapsed = time.perf_counter() - self._started
        left = elapsed / max(done - self._from, 1) * (total - done)
        return (
            f"epoch {epoch}/{epochs}: {done}/{total} batches, loss {loss:.4f}, acc "
            f"{accuracy:.4f}, about {left:.0f} s left in this epoch"
        )

    def end_epoch(self, line: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.enabled:
            print(line, flush=True)

    def message(self, line: str) -> None:
        if self.enabled:
            print(line, flush=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
