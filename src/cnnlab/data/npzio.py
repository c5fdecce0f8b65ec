"""Byte-reproducible ``.npz`` writing and safe reading (never unpickles)."""

from __future__ import annotations

import lzma
import math
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, sha256_bytes

_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: same arrays, same bytes
MAX_NPZ_BYTES = 1 << 32
"""The most uncompressed array data one ``.npz`` may hold when read: 4 GiB, about 13 times
the study's 96,000-image ``lines.npz`` (about 300 MB with its masks)."""
ZIP_ERRORS = (
    OSError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    ValueError,  # a UnicodeDecodeError of a member's name too
    NotImplementedError,  # a compression method or a zip feature zipfile lacks
    RuntimeError,  # an encrypted member
)
"""What :mod:`zipfile` and the decompressors raise for archives they cannot read."""
_HEADER_ERRORS = (TypeError, tokenize.TokenError, OverflowError)
"""What numpy raises besides ValueError for ``.npy`` headers it cannot read: ``{[]: 1}``
(unhashable), ``[`` (its fallback tokenizer), a dimension past 2**63."""


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` that ``np.load`` reads, atomically and reproducibly."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", method, compresslevel=1) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def read_npz(
    path: str | Path, required: tuple[str, ...] = (), *, only_required: bool = False
) -> dict[str, np.ndarray]:
    """Read the arrays of an ``.npz`` without pickle; missing ``required`` names are an error.

    With ``only_required`` the other members are neither decompressed nor returned. Each
    array's header is read first: object (pickled) arrays, members that are not ``.npy``
    arrays, arrays whose header announces more data than their member holds, and archives
    whose arrays take more than :data:`MAX_NPZ_BYTES` in all are refused with one line
    naming the file and the array; nothing is decompressed beyond what the headers announce.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(path, archive)
            missing = [name for name in required if name not in members]
            if missing:
                found = ", ".join(_shown(name) for name in members) or "none"
                raise CnnlabError(f"{path}: missing array(s) {', '.join(missing)}; found {found}")
            wanted = {n: members[n] for n in (required if only_required else members)}
            total = sum(info.file_size for info in wanted.values())
            if total > MAX_NPZ_BYTES:
                raise CnnlabError(
                    f"{path}: its arrays ({', '.join(wanted)}) take {total} bytes uncompressed, "
                    f"more than the {MAX_NPZ_BYTES} bytes ({MAX_NPZ_BYTES / 2**30:g} GiB) "
                    "read here; refusing to load them"
                )
            return {name: _read_member(path, archive, name, info) for name, info in wanted.items()}
    except ZIP_ERRORS as exc:
        raise CnnlabError(f"{path}: not a readable .npz archive ({exc})") from None


def _shown(name: str) -> str:
    """A member's name for a one-line message (quoted when it holds a line break ...)."""
    return name if name.isprintable() else repr(name)


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Array name -> zip entry, refusing entries that are not ``.npy`` files."""
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise CnnlabError(
                f"{path}: member {info.filename!r} is not a .npy array "
                "(expected only NAME.npy entries, as numpy.savez writes)"
            )
        members[info.filename.removesuffix(".npy")] = info
    return members


def _read_member(
    path: Path, archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo
) -> np.ndarray:
    """One array, its header checked against the member's size before any data is read."""
    fmt = np.lib.format
    try:
        with archive.open(info) as member:
            version = fmt.read_magic(member)
            readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
            if version in readers:
                shape, _, dtype = readers[version](member)
                if dtype.hasobject:
                    raise CnnlabError(
                        f"{path}: array {name!r} holds Python objects ({dtype}); "
                        "refusing to unpickle it (expected plain numbers or text)"
                    )
                declared = math.prod(shape) * dtype.itemsize
                if declared > info.file_size:
                    dims = "x".join(map(str, shape)) or "scalar"
                    raise CnnlabError(
                        f"{path}: array {name!r} announces {dims} {dtype} = {declared} bytes, "
                        f"but its member holds only {info.file_size} bytes"
                    )
        with archive.open(info) as member:
            return fmt.read_array(member, allow_pickle=False)
    except MemoryError:
        raise CnnlabError(f"{path}: array {name!r} is too large for the memory here") from None
    except (*ZIP_ERRORS, *_HEADER_ERRORS) as exc:
        raise CnnlabError(f"{path}: array {name!r} is not readable ({exc})") from None


def array_digest(array: np.ndarray) -> dict[str, object]:
    """Shape, dtype and SHA-256 of an array's bytes, for dataset cards."""
    data = np.ascontiguousarray(array)
    return {"shape": list(data.shape), "dtype": str(data.dtype), "sha256": sha256_bytes(data.data)}
