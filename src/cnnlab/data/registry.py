"""``load_dataset``: one entry point from a dataset name or path to an :class:`ImageDataset`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cnnlab.data.arrays import is_image_npz, load_image_npz
from cnnlab.data.cifar import is_cifar_folder, load_cifar
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.folder import is_image_folder, load_folder
from cnnlab.data.lines import generate_lines, lines_config
from cnnlab.data.lines_files import load_lines
from cnnlab.data.manifest import load_manifest
from cnnlab.data.mnist import MNIST_FILES, load_mnist
from cnnlab.errors import CnnlabError

DATASET_NAMES = ("mnist", "lines")


def load_dataset(
    source: str | Path,
    *,
    seed: int = 0,
    mnist_dir: str | Path | None = None,
    mnist_split: str = "study",
    lines: dict[str, Any] | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.2,
) -> ImageDataset:
    """Load a dataset by name or path.

    - ``"mnist"``: MNIST from ``mnist_dir`` (or ``$CNNLAB_MNIST_DIR``, or a verified download),
      split ``mnist_split`` (``"study"``: 60/40 stratified, or ``"official"``);
    - ``"lines"``: the Lines dataset generated in memory with ``seed`` and ``lines`` options
      (LinesConfig fields, and ``variant``: a name from ``cnnlab.data.VARIANTS``);
    - a ``lines.npz`` file or a folder holding one: a saved Lines dataset;
    - an ``.npz`` with ``images`` and ``labels``: see :mod:`cnnlab.data.arrays`;
    - a ``.csv`` manifest ``path,label[,split]``: see :mod:`cnnlab.data.manifest`;
    - a folder of IDX files in MNIST's layout (Fashion-MNIST, KMNIST ...);
    - a folder of the CIFAR-10 or CIFAR-100 binary version: see :mod:`cnnlab.data.cifar`;
    - any other folder of class folders (or ``train/`` and ``test/``): see
      :mod:`cnnlab.data.folder`.

    ``image_size`` and ``channels`` (None: as the data is) and ``test_fraction`` (for sources
    without a split of their own) apply to the sources of files and the generic ``.npz``.
    """
    text = str(source)
    path = Path(source)
    files = {"seed": seed, "test_fraction": test_fraction}
    shape = {"image_size": image_size, "channels": channels}
    if text in DATASET_NAMES or not _is_files_source(path):
        dataset = _load_arrays(text, path, seed, mnist_dir, mnist_split, lines)
        return _check_shape(dataset, text, image_size, channels)
    if path.suffix == ".npz":
        return load_image_npz(path, **files, **shape)
    if path.suffix.lower() == ".csv":
        return load_manifest(path, **files, **shape)
    return load_folder(path, **files, **shape)


def _is_files_source(path: Path) -> bool:
    """An images ``.npz``, a CSV manifest, or a folder of class folders (not IDX, not Lines)."""
    if path.is_file():
        return path.suffix.lower() == ".csv" or (path.suffix == ".npz" and is_image_npz(path))
    return (
        path.is_dir()
        and not (path / "lines.npz").is_file()
        and not _has_idx_files(path)
        and not is_cifar_folder(path)
        and is_image_folder(path)
    )


def _load_arrays(
    text: str,
    path: Path,
    seed: int,
    mnist_dir: str | Path | None,
    mnist_split: str,
    lines: dict[str, Any] | None,
) -> ImageDataset:
    """MNIST, Lines (generated or saved) or an IDX folder: data with a fixed size."""
    if text == "mnist":  # digits: a mirrored 2 is no 2
        digits = load_mnist(mnist_dir, split=mnist_split, seed=seed)
        return dataclasses.replace(digits, upright=True)
    if text == "lines":
        return generate_lines(lines_config(**{"seed": seed, **(lines or {})})).to_dataset()
    if path.suffix == ".npz" or (path.is_dir() and (path / "lines.npz").is_file()):
        return load_lines(path).to_dataset({"source": str(path)})
    if path.is_dir() and is_cifar_folder(path):
        return load_cifar(path, seed=seed)
    if path.is_dir():
        return load_mnist(path, split=mnist_split, seed=seed, name=path.name)
    missing = "" if path.exists() else f"; there is no file or folder {text}"
    raise CnnlabError(
        f"dataset {text!r}: expected one of {', '.join(DATASET_NAMES)}, a lines.npz file, an "
        ".npz of images and labels, a .csv manifest, a folder of class folders, a CIFAR "
        f"binary folder, or a folder of IDX files{missing}"
    )


def _check_shape(
    dataset: ImageDataset, text: str, image_size: int | None, channels: int | None
) -> ImageDataset:
    """Refuse ``image_size``/``channels`` a fixed-size dataset does not already have."""
    h, w = dataset.image_size
    if image_size is not None and (h, w) != (image_size, image_size):
        raise CnnlabError(
            f"dataset {text!r}: data.image_size={image_size}, but its images are {w}x{h}; "
            "resizing applies to image folders, CSV manifests and images .npz files only "
            "(leave data.image_size unset)"
        )
    if channels is not None and channels != dataset.channels:
        raise CnnlabError(
            f"dataset {text!r}: data.channels={channels}, but its images have "
            f"{dataset.channels}; channel conversion applies to image folders, CSV manifests "
            "and images .npz files only (leave data.channels unset)"
        )
    return dataset


def _has_idx_files(folder: Path) -> bool:
    """Whether ``folder`` holds any of MNIST's four files (.gz or uncompressed)."""
    return any(
        (folder / name).is_file()
        for spec in MNIST_FILES.values()
        for name in (spec.name, *spec.raw_names)
    )
