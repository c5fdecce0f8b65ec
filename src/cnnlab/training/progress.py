"""Progress that behaves in a terminal, a notebook and a log file."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


class Progress:
    """A live bar per epoch where output is interactive; one line per epoch in a log file."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.interactive = enabled and (sys.stderr.isatty() or _in_notebook())
        self._bar: Any = None

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int = 0) -> None:
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
        if self._bar is not None:
            self._bar.update(batches)
            self._bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}", refresh=False)

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
