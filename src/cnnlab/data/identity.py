"""Which images are the same picture: the one owner of image identity in cnnlab.

Two images are the same iff every pixel of every channel is equal. Each image gets a 64-bit
hash in one vectorised pass (its bytes as 32-bit words, times fixed random odd 64-bit
multipliers, summed with wrap-around); images with equal hashes are then compared pixel by
pixel, so a hash collision can never join two different images. Used by ``cnnlab data check``
and by the Lines generator's split.
"""

from __future__ import annotations

import numpy as np
import torch

_SEED = 0x5EED_C4EC
_CHUNK = 8192  # rows per vectorised block, to bound temporary memory

Images = np.ndarray | torch.Tensor


def identity_groups(*parts: Images) -> np.ndarray:
    """Dense ids 0..K-1 over the images of all ``parts`` in order: equal ids iff equal pixels.

    Each part is an array or tensor of N images of one shape (any layout, any dtype).
    """
    return _content_ids(_pixel_rows(*parts))


def _content_ids(rows: np.ndarray) -> np.ndarray:
    """Dense ids 0..K-1 for (N, B) uint8 rows, B a multiple of 8: equal ids iff equal rows."""
    hashes = _row_hashes(rows)
    _, first, ids = np.unique(hashes, return_index=True, return_inverse=True)
    ids = ids.reshape(-1).astype(np.int64)
    representative = first[ids]
    members = np.flatnonzero(representative != np.arange(ids.size))
    differ = members[~_rows_equal(rows, members, representative[members])]
    if differ.size:  # hash collisions: number the colliding images exactly, after the others
        voids = np.ascontiguousarray(rows[differ]).view(np.dtype((np.void, rows.shape[1])))
        _, extra = np.unique(voids.reshape(-1), return_inverse=True)
        ids[differ] = first.size + extra.reshape(-1)
    return ids


def _row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row: its 32-bit words times random odd multipliers, summed (wrapping)."""
    words = rows.view(np.uint32)
    rng = np.random.default_rng(_SEED)
    multipliers = rng.integers(-(2**63), 2**63 - 1, size=words.shape[1], dtype=np.int64) | 1
    out = np.empty(rows.shape[0], dtype=np.int64)
    for begin in range(0, rows.shape[0], _CHUNK):
        block = words[begin : begin + _CHUNK].astype(np.int64)
        out[begin : begin + _CHUNK] = block @ multipliers
    return out


def _rows_equal(rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether ``rows[a[i]]`` equals ``rows[b[i]]`` exactly, for each i."""
    words = rows.view(np.uint64)
    out = np.empty(a.size, dtype=bool)
    for begin in range(0, a.size, _CHUNK):
        end = begin + _CHUNK
        out[begin:end] = (words[a[begin:end]] == words[b[begin:end]]).all(axis=1)
    return out


def _pixel_rows(*parts: Images) -> np.ndarray:
    """The images of all ``parts`` as one (N, B) uint8 array, zero-padded to B % 8 == 0."""
    arrays = [p.numpy() if isinstance(p, torch.Tensor) else np.asarray(p) for p in parts]
    flat = [_as_bytes(a) for a in arrays]
    size = flat[0].shape[1]
    if len(flat) == 1 and size % 8 == 0:
        return flat[0]  # already whole 64-bit words: no copy
    rows = np.zeros((sum(f.shape[0] for f in flat), -(-size // 8) * 8), dtype=np.uint8)
    begin = 0
    for part in flat:
        if part.shape[1] != size:
            raise ValueError(f"images of {part.shape[1]} bytes beside images of {size} bytes")
        rows[begin : begin + part.shape[0], :size] = part
        begin += part.shape[0]
    return rows


def _as_bytes(images: np.ndarray) -> np.ndarray:
    """(N, ...) images -> (N, B) uint8 rows of their bytes (N may be 0)."""
    contiguous = np.ascontiguousarray(images)
    row_bytes = int(np.prod(contiguous.shape[1:], dtype=np.int64)) * contiguous.itemsize
    return contiguous.view(np.uint8).reshape(contiguous.shape[0], row_bytes)
