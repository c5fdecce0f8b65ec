"""MNIST (and look-alikes in the same IDX layout): find, download, verify and load."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, Split, stratified_split
from cnnlab.data.idx import read_idx
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path


@dataclass(frozen=True)
class MnistFile:
    """One of the four files: its canonical ``.gz`` name and that file's MD5."""

    name: str
    md5: str

    @property
    def raw_names(self) -> tuple[str, str]:
        """Uncompressed spellings: ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte``."""
        stem = self.name.removesuffix(".gz")
        return stem, stem.replace("-idx", ".idx")


MNIST_FILES: dict[str, MnistFile] = {
    "train_images": MnistFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": MnistFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": MnistFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": MnistFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
SPLITS = ("study", "official")
DEFAULT_CLASS_NAMES = tuple(str(digit) for digit in range(10))
_CHUNK = 1 << 20


class _FetchError(Exception):
    """One mirror failed for one file; the message says why."""


def default_cache_dir() -> Path:
    """``$CNNLAB_CACHE/mnist``, or ``~/.cache/cnnlab/mnist``."""
    root = os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab"
    return Path(root).expanduser() / "mnist"


def mirror_urls(mirrors: Sequence[str] | None = None) -> tuple[str, ...]:
    """Base URLs to try in order: ``mirrors``, else ``$CNNLAB_MNIST_MIRRORS``, else the defaults."""
    if mirrors is None:
        env = os.environ.get("CNNLAB_MNIST_MIRRORS", "")
        mirrors = [url.strip() for url in env.split(",") if url.strip()] or DEFAULT_MIRRORS
    if not mirrors:
        raise CnnlabError("no MNIST mirrors given")
    return tuple(url if url.endswith("/") else url + "/" for url in mirrors)


def download_mnist(
    cache_dir: Path | None = None, mirrors: Sequence[str] | None = None, timeout: float = 30
) -> Path:
    """Make sure the four MNIST ``.gz`` files are in ``cache_dir`` with the right MD5.

    Missing or damaged files are fetched from the mirrors in order, streamed into a
    temporary file and renamed into place only once their MD5 matches. Returns the folder.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    _fetch_missing(cache, mirror_urls(mirrors), timeout)
    return cache


def find_mnist_files(directory: Path) -> dict[str, Path]:
    """Each part's file in ``directory`` (``.gz`` or raw), keyed like :data:`MNIST_FILES`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CnnlabError(f"MNIST folder {directory} does not exist")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for part, spec in MNIST_FILES.items():
        candidates = [spec.name, *spec.raw_names]
        path = next((directory / n for n in candidates if (directory / n).is_file()), None)
        if path is None:
            missing.append(spec.name)
        else:
            found[part] = path
    if missing:
        raise CnnlabError(
            f"MNIST folder {directory} is missing {', '.join(missing)} (.gz or uncompressed)"
        )
    return found


def load_mnist(
    directory: str | Path | None = None,
    *,
    split: str = "study",
    seed: int = 0,
    test_fraction: float = 0.4,
    name: str = "mnist",
    class_names: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    download: bool = True,
) -> ImageDataset:
    """MNIST (or any folder of the four IDX files) as an :class:`ImageDataset`.

    The folder is ``directory``, else ``$CNNLAB_MNIST_DIR``, else the download cache
    (fetched if needed and ``download`` is true). ``split="study"`` pools all images and
    holds out a stratified ``test_fraction`` chosen by ``seed``; ``split="official"`` keeps
    the shipped train/test split. Images are (N, 1, H, W) uint8. Each file is checked as
    it is read (:func:`cnnlab.data.idx.read_idx`): never decompressed beyond what its header
    announces, refused when empty, over 1 GiB, short or long, in one line naming it.
    """
    if split not in SPLITS:
        raise CnnlabError(f"unknown MNIST split {split!r}: choose one of {', '.join(SPLITS)}")
    if split == "study" and not 0.0 < test_fraction < 1.0:
        raise CnnlabError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    names = tuple(class_names) if class_names is not None else DEFAULT_CLASS_NAMES
    files, provenance = _locate(directory, cache_dir, download)
    train = _read_pair(files["train_images"], files["train_labels"], len(names))
    test = _read_pair(files["test_images"], files["test_labels"], len(names))
    _check_same_size(files, train[0], test[0])
    if split == "study":
        train, test = _study_split(train, test, test_fraction, seed)
    provenance |= {
        "files": {path.name: _file_digest(path, "sha256") for path in files.values()},
        "split": split,
        "seed": seed if split == "study" else None,
        "test_fraction": test_fraction if split == "study" else None,
    }
    return ImageDataset(
        name=name,
        train=_to_split(*train),
        test=_to_split(*test),
        class_names=names,
        provenance=provenance,
    )


def _locate(
    directory: str | Path | None, cache_dir: Path | None, download: bool
) -> tuple[dict[str, Path], dict[str, Any]]:
    """The four files and where they came from, by the precedence in :func:`load_mnist`."""
    folder = directory if directory is not None else os.environ.get("CNNLAB_MNIST_DIR") or None
    if folder is not None:
        path = Path(folder).expanduser().resolve()
        return find_mnist_files(path), {"source": "folder", "path": str(path)}
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).resolve()
    fetched: dict[str, str] = {}
    if download:
        fetched = _fetch_missing(cache, mirror_urls(), timeout=30)
    elif not all((cache / spec.name).is_file() for spec in MNIST_FILES.values()):
        raise CnnlabError(
            f"MNIST is not in the cache {cache} and download is off: name a folder, "
            "set CNNLAB_MNIST_DIR or allow the download"
        )
    files = {part: cache / spec.name for part, spec in MNIST_FILES.items()}
    return files, {"source": "download", "path": str(cache), "fetched": fetched}


def _fetch_missing(cache: Path, mirrors: Sequence[str], timeout: float) -> dict[str, str]:
    """Fetch every file absent from ``cache`` or failing its MD5; returns name -> URL used."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"cannot create the cache folder {cache}: {exc.strerror}") from None
    fetched = {}
    for spec in MNIST_FILES.values():
        target = cache / spec.name
        if target.is_file() and _file_digest(target, "md5") == spec.md5:
            continue
        target.unlink(missing_ok=True)
        fetched[spec.name] = _fetch_from_mirrors(spec, target, mirrors, timeout)
    return fetched


def _fetch_from_mirrors(
    spec: MnistFile, target: Path, mirrors: Sequence[str], timeout: float
) -> str:
    """Download ``spec`` to ``target`` from the first mirror that serves the right bytes."""
    failures = []
    for base in mirrors:
        url = base + spec.name
        try:
            with atomic_path(target) as tmp:
                _fetch(url, tmp, spec.md5, timeout)
        except _FetchError as exc:
            failures.append(f"{base} ({exc})")
        else:
            return url
    raise CnnlabError(
        f"could not download {spec.name}: tried {'; '.join(failures)}. Without a network, "
        "point cnnlab at a folder of the four MNIST IDX files: cnnlab reproduce --mnist-dir DIR, "
        "cnnlab data mnist --dir DIR, --set data.mnist_dir=DIR, or CNNLAB_MNIST_DIR=DIR"
    )


def _fetch(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Stream ``url`` into ``dest`` and check its MD5; raise _FetchError saying what failed."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            announced, received = response.headers.get("Content-Length"), 0
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _FetchError(f"HTTP error {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _FetchError(f"no network or server unreachable: {_reason(exc.reason)}") from None
    except TimeoutError:
        raise _FetchError(f"timed out after {timeout:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _FetchError(f"download failed: {_reason(exc)}") from None
    if announced is not None and received != int(announced):
        raise _FetchError(f"transfer broken off after {received} of {announced} bytes")
    if digest.hexdigest() != md5:
        raise _FetchError(f"checksum mismatch: expected MD5 {md5}, got {digest.hexdigest()}")


def _reason(reason: object) -> str:
    """A short text for an exception or reason object."""
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _read_pair(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) from one pair of files, checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise CnnlabError(
            f"{images_path}: expected uint8 images of shape (N, H, W), "
            f"found {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise CnnlabError(
            f"{labels_path}: expected integer labels of shape (N,), "
            f"found {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise CnnlabError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} holds "
            f"{len(labels)} labels (in {images_path.parent})"
        )
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise CnnlabError(
            f"{labels_path}: label {labels[bad][0]} is out of range for {num_classes} classes "
            f"(0..{num_classes - 1}); pass class_names for other data sets"
        )
    return images, labels.astype(np.int64)


def _check_same_size(files: dict[str, Path], train: np.ndarray, test: np.ndarray) -> None:
    """Train and test images must share one height and width."""
    if train.shape[1:] != test.shape[1:]:
        raise CnnlabError(
            f"{files['train_images'].name} holds {train.shape[1]}x{train.shape[2]} images but "
            f"{files['test_images'].name} holds {test.shape[1]}x{test.shape[2]}"
        )


def _study_split(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    test_fraction: float,
    seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Pool both shipped splits and hold out a stratified ``test_fraction`` by ``seed``."""
    images = np.concatenate([train[0], test[0]])
    labels = np.concatenate([train[1], test[1]])
    is_test = stratified_split(labels, test_fraction, seed)
    return (images[~is_test], labels[~is_test]), (images[is_test], labels[is_test])


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """(N, H, W) uint8 and (N,) int64 arrays -> a Split of (N, 1, H, W) tensors."""
    return Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels))


def _file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
