"""A folder of image files, one sub-folder per class, as an :class:`ImageDataset`.

Two layouts: ``ROOT/<class>/*.png`` (split here: seeded, stratified, ``test_fraction`` of each
class to test) or ``ROOT/train/<class>/...`` and ``ROOT/test/<class>/...`` (used as given; both
must hold the same classes); with them, a ``ROOT/val/<class>/...`` folder is the validation
split (classes of train/ only; then ``data.val_fraction`` stays 0). Class names are the folder
names, sorted (as numbers when every name is a whole number). Only files directly inside a class
folder with an image suffix count; hidden files and folders are skipped.
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.cache import decode_cached
from cnnlab.data.dataset import ImageDataset, Split, stratified_split
from cnnlab.data.images import IMAGE_SUFFIXES, image_files, shown
from cnnlab.errors import CnnlabError

SPLIT_FOLDERS = ("train", "test", "val")


def sort_class_names(names: set[str] | Sequence[str]) -> tuple[str, ...]:
    """Class names in a stable order: numerically when all are whole numbers, else by text."""
    unique = set(names)
    if unique and all(n.isdecimal() for n in unique):
        return tuple(sorted(unique, key=lambda n: (*_number_key(n), n)))
    return tuple(sorted(unique))


def _number_key(name: str) -> tuple[int, str]:
    """A whole number's order as (digit count, digits), as int(name) orders it: int() refuses
    names of over 4300 digits (a CSV label can be that long)."""
    digits = "".join(str(unicodedata.decimal(c)) for c in name).lstrip("0")
    return len(digits), digits


def is_image_folder(root: Path) -> bool:
    """Whether ``root`` holds at least one visible sub-folder (a class or ``train``/``test``)."""
    return any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())


def load_folder(
    root: str | Path,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageDataset:
    """The images under ``root`` (either layout, see the module docstring), decoded once."""
    root = Path(root)
    split_dirs = {name: root / name for name in SPLIT_FOLDERS if (root / name).is_dir()}
    provenance: dict[str, Any] = {"source": str(root), "format": "image folder"}
    if "train" in split_dirs or "test" in split_dirs:
        names, files, labels, split = _split_folders(root, split_dirs)
        layout = (
            "train/, val/ and test/ folders" if "val" in split_dirs else "train/ and test/ folders"
        )
        provenance.update(layout=layout, split="as given")
    else:
        classes = _class_files(root)
        names = sort_class_names(classes)
        files, labels = [], []
        for index, name in enumerate(names):
            files += classes[name]
            labels += [index] * len(classes[name])
        split = None
        provenance["layout"] = "one folder per class"
    return build_dataset(
        root.name or str(root),
        files,
        np.asarray(labels, dtype=np.int64),
        names,
        split,
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
        channels=channels,
        provenance=provenance,
        what=str(root),
        base=root,
    )


def _split_folders(
    root: Path, split_dirs: dict[str, Path]
) -> tuple[tuple[str, ...], list[Path], list[int], np.ndarray]:
    """The class names, files, labels and each file's part of a folder holding ``train/`` and
    ``test/`` (and perhaps ``val/``) folders of class folders, after checking they agree."""
    missing = [name for name in ("train", "test") if name not in split_dirs]
    if missing:
        raise CnnlabError(
            f"{root}: has {'train' if missing == ['test'] else 'test'}/ but no "
            f"{missing[0]}/ folder; give both train/ and test/ or only class folders"
        )
    train_classes = _class_files(split_dirs["train"])
    test_classes = _class_files(split_dirs["test"])
    if set(train_classes) != set(test_classes):
        only_train = _names(set(train_classes) - set(test_classes))
        only_test = _names(set(test_classes) - set(train_classes))
        raise CnnlabError(
            f"{root}: train/ and test/ hold different classes (only in train/: "
            f"{only_train}; only in test/: {only_test})"
        )
    names = sort_class_names(train_classes)
    parts = {"train": train_classes, "test": test_classes}
    if "val" in split_dirs:
        parts["val"] = _class_files(split_dirs["val"])
        unknown = sorted(set(parts["val"]) - set(names))
        if unknown:
            raise CnnlabError(f"{split_dirs['val']}: classes not in train/: {_names(unknown)}")
    files: list[Path] = []
    labels: list[int] = []
    part_of: list[str] = []
    for part, classes in parts.items():
        for index, name in enumerate(names):
            found = classes.get(name, [])
            files += found
            labels += [index] * len(found)
            part_of += [part] * len(found)
    return names, files, labels, np.asarray(part_of)


def _names(names: set[str] | list[str]) -> str:
    """Class names for a one-line message, sorted."""
    return ", ".join(shown(name) for name in sorted(names)) or "none"


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, for each visible sub-folder; empty classes are refused."""
    dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise CnnlabError(
            f"{folder}: no class folders (expected {folder}/<class>/*.png, or train/ and test/ "
            "folders of class folders)"
        )
    classes = {}
    for d in dirs:
        files = image_files(d)
        if not files:
            raise CnnlabError(
                f"{shown(d)}: class folder with no images ({', '.join(IMAGE_SUFFIXES)} files "
                "directly inside it)"
            )
        classes[d.name] = files
    return classes


def build_dataset(
    name: str,
    files: Sequence[Path],
    labels: np.ndarray,
    class_names: tuple[str, ...],
    split: np.ndarray | None,
    *,
    seed: int,
    test_fraction: float,
    image_size: int | None,
    channels: int | None,
    provenance: dict[str, Any],
    what: str,
    factors: dict[str, np.ndarray] | None = None,
    factor_levels: dict[str, tuple[Any, ...]] | None = None,
    base: Path | None = None,
) -> ImageDataset:
    """Files with labels decoded to a dataset. ``split`` names each file's part (``train``,
    ``test``, ``val``) or is a boolean test mask; None splits by ``seed``. ``factors`` (each
    file's level index per factor) and their ``factor_levels`` go along where the data has them;
    each image's ``sources`` entry is its file, relative to ``base``.

    The decoded pixels come from :mod:`cnnlab.data.cache` when the same files were decoded
    with the same settings before (``$CNNLAB_CACHE=off`` turns that off); the provenance's
    ``decode_cache`` says whether they did."""
    if not files:
        raise CnnlabError(f"{what}: no images (an empty dataset)")
    split = _parts(split, labels, seed, test_fraction, what, provenance)
    decoded, cache_note = decode_cached(files, image_size=image_size, channels=channels, what=what)
    provenance.update(decoded.provenance(image_size, channels))
    provenance["decode_cache"] = cache_note
    provenance["files"] = len(files)
    images, targets = decoded.images, torch.from_numpy(labels)
    per_image = {name: torch.from_numpy(values) for name, values in (factors or {}).items()}
    names = np.asarray([_relative(f, base) for f in files], dtype=object)

    def subset(which: str) -> Split:
        mask = split == which
        chosen = torch.from_numpy(mask)
        factors = {n: v[chosen] for n, v in per_image.items()}
        return Split(images[chosen], targets[chosen], factors, None, names[mask])

    return ImageDataset(
        name=name,
        train=subset("train"),
        test=subset("test"),
        class_names=class_names,
        factor_levels=dict(factor_levels or {}),
        provenance=provenance,
        val=subset("val") if (split == "val").any() else None,
    )


def _parts(
    split: np.ndarray | None,
    labels: np.ndarray,
    seed: int,
    test_fraction: float,
    what: str,
    provenance: dict[str, Any],
) -> np.ndarray:
    """Each image's part (``train``, ``test``, ``val``): as given, or a seeded stratified
    split (recorded in ``provenance``); refused where train or test would be empty."""
    if split is None:
        split = stratified_split(labels, test_fraction, seed)
        provenance["split"] = f"seeded stratified: test_fraction {test_fraction}, seed {seed}"
    if split.dtype == bool:
        split = np.where(split, "test", "train")
    for part in ("train", "test"):
        mask = split == part
        if not mask.any():
            raise CnnlabError(
                f"{what}: the {part} split would hold no images ({len(labels)} images, "
                f"test_fraction {test_fraction}); add images or change data.test_fraction"
            )
    return split


def _relative(file: Path, base: Path | None) -> str:
    """``file`` as the user knows it: relative to ``base`` (the folder or the CSV's folder)."""
    if base is not None:
        with contextlib.suppress(ValueError):
            return Path(file).relative_to(base).as_posix()
    return str(file)
