"""A cache of decoded image files, so that loading the same files again starts at once.

An entry is one ``.npy`` file (the uint8 (N, C, H, W) array :func:`~cnnlab.data.images.
decode_images` made) and a small JSON sidecar saying what it holds. Its name is a SHA-256 key
over everything that changes the result:

- the files' common folder (absolute), and for each file, in order, its name relative to that
  folder, its size in bytes and its modification time in nanoseconds;
- the settings ``image_size`` and ``channels``;
- the decode rule's version (:data:`~cnnlab.data.images.DECODE_VERSION`) and Pillow's version.

So touching, rewriting, renaming, adding or removing a file makes another key (the old entry is
simply not used again). A file rewritten with the same size within the file system's
timestamp granularity (a few milliseconds) could go unnoticed; ``touch`` it, or turn the cache
off.

The folder is ``$CNNLAB_CACHE/decoded``, or ``~/.cache/cnnlab/decoded`` when ``$CNNLAB_CACHE``
is unset (the root the MNIST download cache uses too). ``CNNLAB_DECODE_CACHE=off`` (or ``0``,
``false``, ``no``, ``none``) turns the cache off, and so does ``CNNLAB_CACHE=off``. The dataset
provenance's ``decode_cache`` says whether the pixels came from the cache. Entries are
written atomically and never trusted blindly: an entry is used only if its sidecar names the
same key, its array loads with ``np.load(allow_pickle=False)`` and has the sidecar's shape and
dtype, and its SHA-256 matches the sidecar's. Anything else (missing, truncated, garbled) is a
miss: the files are decoded and the entry rewritten. A cache folder that cannot be written, or
whose disk would keep less than :data:`MIN_FREE_BYTES` free, only costs the speed-up (never an
error). Nothing is evicted: delete the folder's files to reclaim the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data import images as images_module
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, sha256_bytes, write_json

ENV = "CNNLAB_CACHE"
"""The root of cnnlab's caches (as for the MNIST download cache, ``$CNNLAB_CACHE/mnist``)."""
SWITCH = "CNNLAB_DECODE_CACHE"
OFF_VALUES = ("off", "0", "false", "no", "none")
FORMAT = "cnnlab decoded images"
FORMAT_VERSION = 1
MIN_FREE_BYTES = 1 << 30
"""An entry is stored only if the cache's disk keeps at least this much free (1 GiB) after it."""


def cache_dir() -> Path | None:
    """The folder of cache entries, or None when the cache is turned off (module docstring)."""
    switch = os.environ.get(SWITCH, "").strip().lower()
    root = os.environ.get(ENV, "").strip()
    if switch in OFF_VALUES or root.lower() in OFF_VALUES:
        return None
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "cnnlab") / "decoded"


def cache_key(files: Sequence[Path], image_size: int | None, channels: int | None) -> str:
    """The hex key of ``files`` decoded with these settings (see the module docstring)."""
    import PIL

    # abspath once per folder, not per file (a dataset has few folders and many files)
    split = [os.path.split(os.fspath(f)) for f in files]
    folders = {folder: os.path.abspath(folder) for folder in {folder for folder, _ in split}}
    root = os.path.commonpath(list(folders.values()))
    cut = len(root.rstrip(os.sep)) + 1
    absolute = [os.path.join(folders[folder], name) for folder, name in split]
    digest = hashlib.sha256()
    head = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "decode_version": images_module.DECODE_VERSION,
        "pillow": PIL.__version__,
        "image_size": image_size,
        "channels": channels,
        "root": root,
        "files": len(absolute),
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    stat = os.stat
    digest.update(
        "".join(
            f"\n{path[cut:]}\0{st.st_size}\0{st.st_mtime_ns}"
            for path, st in ((path, stat(path)) for path in absolute)
        ).encode()
    )
    return digest.hexdigest()


def decode_cached(
    files: Sequence[Path],
    *,
    image_size: int | None,
    channels: int | None,
    what: str,
) -> tuple[images_module.Decoded, dict[str, Any]]:
    """``files`` decoded as :func:`~cnnlab.data.images.decode_images` does, from the cache when
    an entry is valid; also what the provenance records about the cache."""
    folder = cache_dir()
    if folder is None or not files:
        decoded = images_module.decode_images(
            files, image_size=image_size, channels=channels, what=what
        )
        reason = f"off (${SWITCH} or ${ENV})" if files else "no files"
        return decoded, {"used": False, "reason": reason}
    try:
        key = cache_key(files, image_size, channels)
    except OSError:  # a file gone or unreadable: decoding says which, in one line
        key = None
    if key is None:
        decoded = images_module.decode_images(
            files, image_size=image_size, channels=channels, what=what
        )
        return decoded, {"used": False, "reason": "a file could not be examined"}
    npy, sidecar = folder / f"{key}.npy", folder / f"{key}.json"
    hit = _read(npy, sidecar, key, len(files))
    if hit is not None:
        return hit, {"used": True}
    decoded = images_module.decode_images(
        files, image_size=image_size, channels=channels, what=what
    )
    stored = _write(npy, sidecar, key, decoded, image_size, channels)
    return decoded, {"used": False, "reason": "miss", "stored": stored}


def _read(npy: Path, sidecar: Path, key: str, count: int) -> images_module.Decoded | None:
    """The entry's decoded images, or None if it is missing or does not check out."""
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        shape = tuple(int(n) for n in info["shape"])
        if (
            info.get("format") != FORMAT
            or info.get("format_version") != FORMAT_VERSION
            or info.get("key") != key
            or info.get("dtype") != "uint8"
            or len(shape) != 4
            or shape[0] != count
        ):
            return None
        array = np.load(npy, mmap_mode="r", allow_pickle=False)
        if array.shape != shape or array.dtype != np.uint8:
            return None
        array = np.array(array, order="C")  # a copy in memory: no mapping kept open
        if sha256_bytes(memoryview(array).cast("B")) != info["sha256"]:
            return None
        return images_module.Decoded(
            torch.from_numpy(array),
            resized=int(info["resized"]),
            converted=int(info["converted"]),
            scaled=int(info["scaled"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError):
        return None


def _write(
    npy: Path,
    sidecar: Path,
    key: str,
    decoded: images_module.Decoded,
    image_size: int | None,
    channels: int | None,
) -> bool:
    """Store ``decoded`` under ``key``, atomically; False (and nothing left) if it fails."""
    array = np.ascontiguousarray(decoded.images.numpy())
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "key": key,
        "shape": list(array.shape),
        "dtype": "uint8",
        "sha256": sha256_bytes(memoryview(array).cast("B")),
        "image_size_setting": image_size,
        "channels_setting": channels,
        "resized": decoded.resized,
        "converted": decoded.converted,
        "scaled": decoded.scaled,
        "decode_version": images_module.DECODE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        npy.parent.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(npy.parent).free - array.nbytes < MIN_FREE_BYTES:
            return False  # never fill the disk for a speed-up
        with atomic_path(npy) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        write_json(sidecar, info)
    except (OSError, CnnlabError):  # an unwritable cache: decoding goes on without it
        with contextlib.suppress(OSError):
            npy.unlink(missing_ok=True)  # no array without its sidecar
        return False
    return True
