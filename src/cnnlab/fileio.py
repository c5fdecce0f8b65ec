"""Small file helpers: every write is atomic (temporary file, then rename)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cnnlab.errors import CnnlabError

_UMASK = os.umask(0)
os.umask(_UMASK)


def usual_permissions(path: Path) -> None:
    """Give a file or folder made by ``tempfile`` (0600 / 0700) the permissions the umask
    gives a new one."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Nothing half-written is ever left under the final name, and the temporary file is
    removed if the block raises.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise _cannot_write(final, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    usual_permissions(tmp)  # mkstemp makes 0600
    try:
        yield tmp
        if tmp.exists():  # some writers replace the file: give the usual permissions again
            usual_permissions(tmp)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise _cannot_write(final, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def _cannot_write(path: Path, exc: OSError) -> CnnlabError:
    why = (
        "a part of the path is a file, not a folder"
        if isinstance(exc, FileExistsError | NotADirectoryError)
        else exc.strerror or str(exc)
    )
    return CnnlabError(f"{path}: cannot write there ({why})")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (anything else becomes its ``str``)."""
    return json.loads(json.dumps(value, default=str))


def sha256_bytes(data: bytes | memoryview) -> str:
    """Hex SHA-256 of a buffer."""
    return hashlib.sha256(data).hexdigest()
