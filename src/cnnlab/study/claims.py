"""Claim files: how any number of workers, on any machines sharing the study folder, split runs.

A worker owns a run while ``claims/<run>.claim`` exists with its token inside. The file is
created with ``O_CREAT | O_EXCL``, which exactly one creator wins, also on NFS (v3 and later).
The owner touches it every ``HEARTBEAT_SECONDS`` while it trains and deletes it when done.

A claim is stale, and may be taken over, when its worker is certainly gone: the claim names this
host and a process id that no longer exists, or its heartbeat is older than ``stale_after``
seconds (a machine that crashed, lost the folder or was suspended). The heartbeat says the
worker process is alive, not that it progresses: a worker that hangs must be killed, after which
its claim goes stale. Ages are measured on the shared file system's own clock (the mtime of a
file just touched there), so clocks that differ between machines do not matter. Taking over
renames the stale file away (one renamer wins) and checks that what it moved is the stale claim
it judged; a fresh claim moved by a lost race is put back.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 20.0
STALE_AFTER_SECONDS = 600.0
"""Default: a claim whose heartbeat is 10 minutes old belongs to a worker that is gone."""


@dataclass
class Claim:
    """A claim this worker holds; ``release`` it when the run is done (or given up)."""

    path: Path
    token: str
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    def start_heartbeat(self, every: float = HEARTBEAT_SECONDS) -> None:
        """Touch the claim file every ``every`` seconds from a daemon thread."""
        self._stop = threading.Event()

        def beat() -> None:
            while not self._stop.wait(every):
                if self.held():
                    with contextlib.suppress(OSError):
                        os.utime(self.path)

        self._thread = threading.Thread(target=beat, name=f"heartbeat {self.path.name}")
        self._thread.daemon = True
        self._thread.start()

    def held(self) -> bool:
        """Whether the claim file still carries this worker's token."""
        info = read_claim(self.path)
        return info is not None and info.get("token") == self.token

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self.held():
            self.path.unlink(missing_ok=True)


def claim_path(claims: Path, run: str) -> Path:
    return claims / f"{run}.claim"


def try_claim(claims: Path, run: str, stale_after: float = STALE_AFTER_SECONDS) -> Claim | None:
    """Claim ``run`` if nobody holds it (taking over a stale claim); ``None`` if held."""
    claims.mkdir(parents=True, exist_ok=True)
    path = claim_path(claims, run)
    claim = _create(path)
    if claim is not None:
        return claim
    info = read_claim(path)
    if not is_stale(path, info, stale_after):
        return None
    _take_away(path, info)
    return _create(path)


def read_claim(path: Path) -> dict[str, Any] | None:
    """The claim's JSON, ``{}`` while it is being written, ``None`` when there is no claim."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def is_stale(path: Path, info: dict[str, Any] | None, stale_after: float) -> bool:
    """Whether the worker holding ``path`` is gone (see the module docstring)."""
    if info is None:
        return False  # released meanwhile: claim it normally
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return True
    try:
        age = fs_now(path.parent) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > stale_after


def fs_now(folder: Path) -> float:
    """The current time on the file system that holds ``folder`` (mtime of a touched file)."""
    clock = folder / f".clock-{socket.gethostname()}-{os.getpid()}"
    try:
        clock.touch()
        return clock.stat().st_mtime
    except OSError:
        return time.time()


def _create(path: Path) -> Claim | None:
    token = uuid.uuid4().hex
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    info = {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "claimed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return Claim(path, token)


def _take_away(path: Path, judged: dict[str, Any]) -> None:
    """Move a stale claim aside; if a fresh one was moved instead, put it back."""
    grave = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return  # another worker took it away first
    moved = read_claim(grave) or {}
    if judged and moved.get("token") != judged.get("token"):
        with contextlib.suppress(OSError):
            os.link(grave, path)  # never replaces a claim made meanwhile
    grave.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
