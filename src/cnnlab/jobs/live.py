"""A job's live status beside its own lines: ``cnnlab study`` and ``cnnlab reproduce``."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from cnnlab.errors import CnnlabError
from cnnlab.jobs.status import JobStatus, job_status


class LiveStatus:
    """A job's status while it runs (see :func:`job_status`), shown beside its own lines.

    In a terminal: the headline and one line per training, redrawn in place every
    ``interval`` seconds below the lines the job says (``say``). Elsewhere (a log, CI): a plain
    line each time a run ends an epoch, with the job's headline. Use as a context manager.
    """

    def __init__(
        self,
        folder: Path,
        say: Callable[[str], None] = print,
        *,
        enabled: bool = True,
        interactive: bool | None = None,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.folder, self._say, self.enabled = folder, say, enabled
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval = interval or 1.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = 0
        self._epochs: dict[str, int] = {}

    def __enter__(self) -> LiveStatus:
        if self.enabled:
            self._epochs = {r.name: r.epoch for r in self._status().runs}
            self._thread = threading.Thread(target=self._loop, name="live status", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._erase()

    def say(self, line: str) -> None:
        """Print one of the job's own lines (above the live block in a terminal)."""
        with self._lock:
            self._erase()
            self._say(line)
            if self.interactive and self.enabled and not self._stop.is_set():
                self._draw(self._status())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            status = self._status()
            with self._lock:
                if self._stop.is_set():
                    return
                if self.interactive:
                    self._erase()
                    self._draw(status)
                else:
                    self._plain(status)

    def _status(self) -> JobStatus:
        try:
            return job_status(self.folder)
        except CnnlabError:  # the job's files are being written for the first time
            return JobStatus("job", self.folder, ())

    def _draw(self, status: JobStatus) -> None:
        lines = status.lines() if status.runs else []
        for line in lines:
            self.stream.write(line[: _width() - 1] + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the block's start, clear
            self.stream.flush()
            self._drawn = 0

    def _plain(self, status: JobStatus) -> None:
        for run in status.runs:
            if run.epoch > self._epochs.get(run.name, 0):
                self._epochs[run.name] = run.epoch
                self._say(f"[progress] {run.line()} | {status.headline()}")


def _width() -> int:
    return shutil.get_terminal_size((100, 20)).columns
