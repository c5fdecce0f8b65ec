"""A generic ``.npz`` of images and labels as an :class:`ImageDataset`.

Arrays: ``images`` uint8, ``labels`` (N,) integers 0..K-1, optionally ``class_names`` (K,)
text and ``split`` (N,) text ``train``/``test`` (without it the images are split by the seed,
stratified). ``images`` may be (N, H, W) grey, or 4-D: channels-last (N, H, W, C) when the last
axis is 1 or 3, else channels-first (N, C, H, W) when axis 1 is 1 or 3. A Lines ``.npz``
(array ``label``, singular) is told apart by :func:`is_image_npz` and loaded elsewhere.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, Split, stratified_split
from cnnlab.data.images import MAX_DATASET_BYTES, conform_array
from cnnlab.data.npzio import ZIP_ERRORS, read_npz
from cnnlab.errors import CnnlabError

OPTIONAL = ("class_names", "split")


def is_image_npz(path: Path) -> bool:
    """Whether the archive holds ``images`` and ``labels`` (a generic images ``.npz``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except ZIP_ERRORS:
        return False  # the loader that reads it says what is wrong
    return {"images.npy", "labels.npy"} <= names


def load_image_npz(
    path: str | Path,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageDataset:
    """The images and labels of a generic ``.npz`` (see the module docstring)."""
    path = Path(path)
    arrays = read_npz(path, ("images", "labels"))
    images = _channels_last(arrays["images"], path)
    labels = _labels(arrays["labels"], images.shape[0], path)
    names = _class_names(arrays.get("class_names"), labels, path)
    is_test = _split(arrays.get("split"), labels, seed, test_fraction, path)
    n, h, w, c = images.shape
    size = (image_size or h) * (image_size or w) * (channels or c) * n
    if size > MAX_DATASET_BYTES:
        raise CnnlabError(
            f"{path}: the images would take {size / 2**30:.1f} GiB as uint8, more than the "
            f"{MAX_DATASET_BYTES / 2**30:g} GiB cap"
        )
    decoded = conform_array(images, image_size, channels, str(path))
    provenance = {
        "source": str(path),
        "format": "images npz",
        **decoded.provenance(image_size, channels),
    }
    provenance["split"] = (
        "as given (split array)"
        if "split" in arrays
        else f"seeded stratified: test_fraction {test_fraction}, seed {seed}"
    )
    mask = torch.from_numpy(is_test)
    targets = torch.from_numpy(labels)
    return ImageDataset(
        name=path.stem,
        train=Split(decoded.images[~mask], targets[~mask]),
        test=Split(decoded.images[mask], targets[mask]),
        class_names=names,
        provenance=provenance,
    )


def _channels_last(images: np.ndarray, path: Path) -> np.ndarray:
    if images.dtype != np.uint8:
        raise CnnlabError(f"{path}: array 'images' is {images.dtype}; expected uint8")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise CnnlabError(
            f"{path}: array 'images' has shape {images.shape}; expected (N, H, W), "
            "(N, H, W, C) or (N, C, H, W) with C 1 or 3"
        )
    if images.shape[-1] not in (1, 3):
        if images.shape[1] not in (1, 3):
            raise CnnlabError(
                f"{path}: array 'images' has shape {images.shape}: neither its last axis nor "
                "axis 1 is 1 or 3 channels"
            )
        images = np.moveaxis(images, 1, -1)
    if images.shape[0] == 0:
        raise CnnlabError(f"{path}: array 'images' holds no images (an empty dataset)")
    return images


def _labels(labels: np.ndarray, n: int, path: Path) -> np.ndarray:
    if labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise CnnlabError(
            f"{path}: array 'labels' is {labels.dtype} {labels.shape}; expected ({n},) integers"
        )
    if labels.min() < 0:
        raise CnnlabError(f"{path}: array 'labels' holds negative values ({labels.min()})")
    return labels.astype(np.int64)


def _class_names(names: np.ndarray | None, labels: np.ndarray, path: Path) -> tuple[str, ...]:
    top = int(labels.max())
    if names is None:
        return tuple(str(k) for k in range(top + 1))
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise CnnlabError(f"{path}: array 'class_names' must be one text per class")
    if top >= names.size:
        raise CnnlabError(
            f"{path}: label {top} but only {names.size} class_names (labels are 0..K-1)"
        )
    result = tuple(str(n) for n in names.tolist())
    if len(set(result)) != len(result):
        raise CnnlabError(f"{path}: array 'class_names' repeats a name")
    return result


def _split(
    split: np.ndarray | None, labels: np.ndarray, seed: int, test_fraction: float, path: Path
) -> np.ndarray:
    if split is None:
        is_test = stratified_split(labels, test_fraction, seed)
    else:
        values = set(np.unique(split).tolist()) if split.dtype.kind in "US" else {None}
        if split.shape != labels.shape or not values <= {"train", "test"}:
            raise CnnlabError(
                f"{path}: array 'split' must be ({labels.size},) text, each train or test"
            )
        is_test = split == "test"
    for part, mask in (("train", ~is_test), ("test", is_test)):
        if not mask.any():
            raise CnnlabError(f"{path}: the {part} split would hold no images")
    return np.asarray(is_test, dtype=bool)
