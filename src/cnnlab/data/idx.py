"""Read IDX files (the MNIST format), gzip-compressed or raw, into NumPy arrays.

The header is read first and fixes how many bytes may follow: never more than that plus
:data:`SLACK_BYTES` is read or decompressed, so a small ``.gz`` that inflates to gigabytes
(a "gzip bomb") costs no more memory than the data its header announces. Headers that
announce more than :data:`MAX_IDX_BYTES` of data, or no data at all, are refused unread.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

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
MAX_IDX_BYTES = 1 << 30
"""The most data (after the header) one IDX file may announce: 1 GiB, about 20 times MNIST's
47 MB of training images and room for EMNIST ByClass (548 MB), the largest of the MNIST kin."""
SLACK_BYTES = 1 << 16
"""How far past the announced end is read to tell how much trailing data a file holds."""
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def read_idx(path: Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (``.gz`` or raw), in native byte order.

    Raises :class:`CnnlabError` with one line naming the file if it is missing, not valid
    gzip, not IDX, announces no data or more than :data:`MAX_IDX_BYTES`, or holds fewer or
    more bytes than its header announces. Reads at most the header, the announced data and
    :data:`SLACK_BYTES` more, however far the file would decompress.
    """
    path = Path(path)
    with _Stream(path) as stream:
        try:
            dtype, shape = _read_header(path, stream)
            data = _read_payload(path, stream, dtype, shape)
        except EOFError:
            raise CnnlabError(
                f"{path}: truncated gzip stream: the file ends before the end of the "
                f"compressed data ({path.stat().st_size} bytes)"
            ) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise CnnlabError(f"{path}: corrupt gzip stream: {exc}") from None
        except OSError as exc:
            raise CnnlabError(f"{path}: cannot read: {exc.strerror or exc}") from None
    array = data.view(dtype).reshape(shape)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


class _Stream:
    """The file, gunzipped on the fly when it is gzip (by suffix or by its first bytes)."""

    def __init__(self, path: Path) -> None:
        try:
            self._raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in __exit__
        except FileNotFoundError:
            raise CnnlabError(f"{path}: no such file") from None
        except OSError as exc:
            raise CnnlabError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self.stream: BinaryIO = self._raw
        try:
            magic = self._raw.read(2)
            self._raw.seek(0)
        except OSError as exc:
            self._raw.close()
            raise CnnlabError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if path.suffix == ".gz" and magic != _GZIP_MAGIC:
            self._raw.close()
            raise CnnlabError(
                f"{path}: not a gzip file: expected magic bytes 1f 8b, "
                f"found {magic.hex(' ') or 'an empty file'}"
            )
        if magic == _GZIP_MAGIC:
            self.stream = gzip.GzipFile(fileobj=self._raw, mode="rb")

    def __enter__(self) -> BinaryIO:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not self._raw:
            self.stream.close()
        self._raw.close()


def _read_exactly(stream: BinaryIO, size: int) -> np.ndarray:
    """Up to ``size`` bytes as uint8 (fewer only at the end of the stream), read in chunks
    into one buffer: memory for what arrives, never more than ``size``."""
    buffer = np.empty(size, dtype=np.uint8)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        got = stream.readinto(view[filled : filled + min(_CHUNK, size - filled)])
        if not got:
            break
        filled += got
    view.release()
    return buffer[:filled]


def _read_header(path: Path, stream: BinaryIO) -> tuple[np.dtype, tuple[int, ...]]:
    """Element type and shape from the IDX header at the start of ``stream``."""
    magic = _read_exactly(stream, 4).tobytes()
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
    dims = _read_exactly(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise CnnlabError(
            f"{path}: truncated: expected a {4 + 4 * ndim}-byte header for {ndim} dimensions, "
            f"found {4 + len(dims)} bytes"
        )
    shape = tuple(int(d) for d in dims.view(">u4"))
    return IDX_DTYPES[type_code], shape


def _read_payload(
    path: Path, stream: BinaryIO, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    """Exactly the data the header announces; refuses empty, absurd, short or long payloads."""
    dims = "x".join(map(str, shape))
    count = 1
    for d in shape:
        count *= d
    expected = count * dtype.itemsize
    if count == 0:
        raise CnnlabError(
            f"{path}: empty: its header announces {dims} {dtype.name}, no items at all "
            "(expected every dimension to be at least 1)"
        )
    if expected > MAX_IDX_BYTES:
        raise CnnlabError(
            f"{path}: its header announces {dims} {dtype.name} = {expected} bytes, more than "
            f"the {MAX_IDX_BYTES} bytes ({MAX_IDX_BYTES / 2**30:g} GiB) an IDX file may hold; "
            "refusing to read it"
        )
    data = _read_exactly(stream, expected)
    if len(data) < expected:
        raise CnnlabError(
            f"{path}: truncated: expected {expected} bytes of data after the header "
            f"({dims} {dtype.name}), found {len(data)}"
        )
    extra = len(_read_exactly(stream, SLACK_BYTES + 1))
    if extra:
        if extra <= SLACK_BYTES:
            problem, found = f"{extra} trailing bytes", f"{expected + extra}"
        else:  # stop reading: the rest could inflate without end
            problem, found = f"over {SLACK_BYTES} trailing bytes", f"over {expected + SLACK_BYTES}"
        raise CnnlabError(
            f"{path}: {problem}: expected {expected} bytes of data after the header "
            f"({dims} {dtype.name}), found {found}"
        )
    return data
