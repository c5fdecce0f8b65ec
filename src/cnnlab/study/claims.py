"""Claims: how any number of workers, on any machines sharing the study folder, split runs.

A worker owns a run while the folder ``claims/<run>.claim`` holds its token file
``claims/<run>.claim/<token>`` (a fresh uuid; host, pid and time inside). To claim, a worker
builds that folder under a name of its own (``claims/.<run>.claim.<token>.new``) and renames it
to ``<run>.claim``. A rename onto a folder that holds anything fails, so one worker gets in
while the run is free, also on NFS (the server renames atomically). The owner touches its token
file every ``HEARTBEAT_SECONDS`` while it trains, and releases by deleting its token file and then
the folder (``rmdir``, which only removes an empty folder).

A claim is stale, and may be taken over, when its worker is certainly gone: the token names this
host and a process id that no longer exists, or its heartbeat is older than ``stale_after``
seconds (a machine that crashed, lost the folder or was suspended; ``stale_after`` must be at
least three heartbeats). The heartbeat says the worker process is alive, not that it progresses:
a worker that hangs must be killed, after which its claim goes stale. Ages are measured on the
shared file system's own clock (the mtime of a file just touched there), and a token's mtime is
read from the opened file (NFS revalidates on open). Taking over deletes the stale token file,
then the empty folder, and claims as above.

Why two workers never own a run at once, however many take over together and however slow or
stale their reads (as long as a worker whose claim is judged stale is gone):

* Nothing of another worker is ever moved or put back. Its token file is only deleted by its own
  name, a uuid that no other file ever has: a late or mistaken delete can only hit that claim,
  judged stale, or nothing. Any other change to ``<run>.claim`` is a rename onto it or an
  ``rmdir``, which the file system refuses while the folder holds a token.
* A claim folder gets its one token before it is renamed into place and loses it only when its
  owner releases or it is judged stale. So ``<run>.claim`` is absent, empty (nobody's, a worker
  died half-way through releasing) or one owner's, and a rename that makes a worker the owner
  succeeds only when there was no owner.

A worker killed while building its claim leaves its ``.<run>.claim.<token>.new`` folder behind;
it blocks nothing (delete it when no worker runs). A plain file ``<run>.claim`` is a claim of an
older cnnlab: it is judged the same way and, when stale, deleted (``unlink`` never deletes a
folder, so it cannot hit a new claim). All workers of a study must run the same cnnlab.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

HEARTBEAT_SECONDS = 20.0
STALE_AFTER_SECONDS = 600.0
"""Default: a claim whose heartbeat is 10 minutes old belongs to a worker that is gone."""
MIN_STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
"""A shorter ``stale_after`` would hand runs of live workers (a late heartbeat) to others."""

_TAKEN = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR)
"""How a rename onto ``<run>.claim`` fails when someone holds it (or an older cnnlab's file)."""


def check_stale_after(stale_after: float) -> float:
    """``stale_after`` if it is long enough (see ``MIN_STALE_AFTER_SECONDS``), else an error."""
    if not stale_after >= MIN_STALE_AFTER_SECONDS:  # also refuses NaN
        raise CnnlabError(
            f"--stale-after must be at least {MIN_STALE_AFTER_SECONDS:g} seconds (three "
            f"heartbeats of {HEARTBEAT_SECONDS:g} s), got {stale_after}: a shorter one would "
            "hand the runs of live workers to other workers"
        )
    return stale_after


@dataclass
class Claim:
    """A claim this worker holds; ``release`` it when the run is done (or given up)."""

    path: Path
    token: str
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def token_path(self) -> Path:
        return self.path / self.token

    def start_heartbeat(self, every: float = HEARTBEAT_SECONDS) -> None:
        """Touch the token file every ``every`` seconds from a daemon thread, while it exists."""
        stop = self._stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    os.utime(self.token_path)
                except FileNotFoundError:
                    return  # released, or taken over: there is nothing of ours to touch
                except OSError:
                    continue  # the shared folder hiccuped: try again at the next beat

        self._thread = threading.Thread(target=beat, name=f"heartbeat {self.path.name}")
        self._thread.daemon = True
        self._thread.start()

    def held(self) -> bool:
        """Whether this worker's token file is still there (not released, not taken over)."""
        return self.token_path.exists()

    def release(self) -> None:
        """Delete the token file, then the claim folder (only if that is empty by then)."""
        if self._stop is not None:
            self._stop.set()
        try:
            os.unlink(self.token_path)
        except FileNotFoundError:
            return  # released before, or taken over: what is there now is not ours
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def claim_path(claims: Path, run: str) -> Path:
    return claims / f"{run}.claim"


def try_claim(claims: Path, run: str, stale_after: float = STALE_AFTER_SECONDS) -> Claim | None:
    """Claim ``run`` if nobody holds it (taking over a stale claim); ``None`` if held."""
    check_stale_after(stale_after)
    claims.mkdir(parents=True, exist_ok=True)
    path = claim_path(claims, run)
    return _install(path) if _clear_stale(path, stale_after) else None


def fs_now(folder: Path) -> float:
    """The current time on the file system that holds ``folder`` (mtime of a touched file)."""
    clock = folder / f".clock-{socket.gethostname()}-{os.getpid()}"
    try:
        clock.touch()
        return clock.stat().st_mtime
    except OSError:
        return time.time()


def _install(path: Path) -> Claim | None:
    """Build a claim folder under a name of our own and rename it to ``path``; None if held."""
    token = uuid.uuid4().hex
    new = path.with_name(f".{path.name}.{token}.new")
    new.mkdir()
    info = {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "claimed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        with open(new / token, "x") as handle:
            json.dump(info, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(new, path)
    except OSError as exc:
        (new / token).unlink(missing_ok=True)
        new.rmdir()
        if exc.errno in _TAKEN:
            return None
        raise
    return Claim(path, token)


def _clear_stale(path: Path, stale_after: float) -> bool:
    """Delete the claim at ``path`` if it is stale; whether the run may be free now."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return True  # nobody holds it
    except NotADirectoryError:
        return _clear_old_claim(path, stale_after)
    seen = [(path / name, _look(path / name)) for name in names]
    now = fs_now(path.parent) if seen else 0.0
    if any(look is not None and not _stale(*look, now, stale_after) for _, look in seen):
        return False
    for entry, _ in seen:  # the token of a worker that is gone (or a leftover of it)
        with contextlib.suppress(OSError):
            entry.unlink()
    with contextlib.suppress(OSError):
        os.rmdir(path)  # only while empty: a new owner's folder is never empty
    return True


def _clear_old_claim(path: Path, stale_after: float) -> bool:
    """The same for a claim file of an older cnnlab."""
    look = _look(path)
    if look is not None and not _stale(*look, fs_now(path.parent), stale_after):
        return False
    with contextlib.suppress(OSError):  # gone already, or a folder (a new claim) by now
        os.unlink(path)
    return True


def _look(path: Path) -> tuple[dict[str, Any], float] | None:
    """A token's JSON (``{}`` while it is being written) and mtime; None if it is gone."""
    try:
        with open(path, "rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError:  # unreadable: judged by its age alone
        try:
            return {}, path.stat().st_mtime
        except FileNotFoundError:
            return None
    try:
        info = json.loads(text)
    except ValueError:
        return {}, mtime
    return (info if isinstance(info, dict) else {}), mtime


def _stale(info: dict[str, Any], mtime: float, now: float, stale_after: float) -> bool:
    """Whether the worker of a token with ``info`` and ``mtime`` is gone (module docstring)."""
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return True
    return now - mtime > stale_after


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
