"""Byte-reproducible ``.npz`` writing and safe reading (never unpickles)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, sha256_bytes

_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: same arrays, same bytes


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` that ``np.load`` reads, atomically and reproducibly."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", method, compresslevel=1) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def read_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` without pickle; missing ``required`` names are an error."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CnnlabError(f"{path}: not a readable .npz archive ({exc})") from None
    missing = [name for name in required if name not in arrays]
    if missing:
        raise CnnlabError(
            f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(arrays) or 'none'}"
        )
    return arrays


def array_digest(array: np.ndarray) -> dict[str, object]:
    """Shape, dtype and SHA-256 of an array's bytes, for dataset cards."""
    data = np.ascontiguousarray(array)
    return {"shape": list(data.shape), "dtype": str(data.dtype), "sha256": sha256_bytes(data.data)}
