"""Read IDX files (the MNIST format), gzip-compressed or raw, into NumPy arrays."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError

# IDX type codes -> big-endian element types ("THE IDX FILE FORMAT", yann.lecun.com/exdb/mnist).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (``.gz`` or raw), in native byte order.

    Raises :class:`CnnlabError` with one line naming the file if it is missing, not valid
    gzip, not IDX, or holds fewer or more bytes than its header announces.
    """
    path = Path(path)
    data = _decompressed_bytes(path)
    dtype, shape, offset = _parse_header(path, data)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - offset
    if found != expected:
        problem = "truncated" if found < expected else f"{found - expected} trailing bytes"
        dims = "x".join(map(str, shape))
        raise CnnlabError(
            f"{path}: {problem}: expected {expected} bytes of data after the header "
            f"({dims} {dtype.name}), found {found}"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=offset)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _decompressed_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when it is gzip (by suffix or by its first bytes)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CnnlabError(f"{path}: no such file") from None
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.suffix != ".gz" and not data.startswith(_GZIP_MAGIC):
        return data
    if not data.startswith(_GZIP_MAGIC):
        raise CnnlabError(
            f"{path}: not a gzip file: expected magic bytes 1f 8b, "
            f"found {data[:2].hex(' ') or 'an empty file'}"
        )
    try:
        return gzip.decompress(data)
    except EOFError:
        raise CnnlabError(
            f"{path}: truncated gzip stream: the file ends before the end of the compressed data "
            f"({len(data)} bytes)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise CnnlabError(f"{path}: corrupt gzip stream: {exc}") from None


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Element type, shape and payload offset from the IDX header at the start of ``data``."""
    magic = data[:4]
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[3] == 0:
        raise CnnlabError(
            f"{path}: not an IDX file: expected magic bytes 00 00 <type> <ndim>, "
            f"found {magic.hex(' ') or 'an empty file'}"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_DTYPES)
        raise CnnlabError(
            f"{path}: unsupported IDX data type 0x{type_code:02x} (expected one of {known})"
        )
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise CnnlabError(
            f"{path}: truncated: expected a {offset}-byte header for {ndim} dimensions, "
            f"found {len(data)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[type_code], shape, offset
