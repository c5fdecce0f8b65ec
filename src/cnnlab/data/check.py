"""``check_dataset``: exact duplicate images, test images copied from training, label conflicts.

Images are compared by their pixels (all channels), exactly, as
:func:`cnnlab.data.identity.identity_groups` decides.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.identity import identity_groups
from cnnlab.errors import CnnlabError

CHECK_VERSION = 1


def check_dataset(dataset: ImageDataset) -> dict[str, Any]:
    """Counts of images, distinct images, duplicates, test-in-train copies and label conflicts.

    The result is JSON-able; see :func:`check_summary_lines` and :func:`overlap_warning`.
    """
    start = time.perf_counter()
    train, test = dataset.train, dataset.test
    n_train, n_test = len(train), len(test)
    labels = torch.cat([train.labels, test.labels]).numpy()
    _check_labels(dataset, labels)
    ids = identity_groups(train.images, test.images)
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    distinct_train = int(np.unique(train_ids).size)
    distinct_test = int(np.unique(test_ids).size)
    test_in_train = int(np.isin(test_ids, train_ids).sum())
    groups, conflicted = _conflicts(ids, labels, dataset.num_classes)
    classes = dataset.num_classes
    return {
        "version": CHECK_VERSION,
        "images": {"train": n_train, "test": n_test},
        "distinct": {
            "train": distinct_train,
            "test": distinct_test,
            "all": int(ids.max()) + 1 if ids.size else 0,
        },
        "duplicates": {
            "within_train": n_train - distinct_train,
            "within_test": n_test - distinct_test,
            "test_in_train": test_in_train,
            "test_in_train_fraction": test_in_train / n_test if n_test else 0.0,
        },
        "conflicting_labels": {"groups": groups, "images": conflicted},
        "class_counts": {
            "train": np.bincount(labels[:n_train], minlength=classes).tolist(),
            "test": np.bincount(labels[n_train:], minlength=classes).tolist(),
        },
        "overlap": test_in_train > 0,
        **_validation(dataset, test.images),
        "seconds": round(time.perf_counter() - start, 4),
    }


def _validation(dataset: ImageDataset, test_images: torch.Tensor) -> dict[str, Any]:
    """With a validation split: its size and the test images equal to a validation image
    (choices made on the validation split would then be made on them)."""
    if dataset.val is None:
        return {}
    ids = identity_groups(dataset.val.images, test_images)
    n_val = len(dataset.val)
    return {
        "validation": {"images": n_val, "test_in_val": int(np.isin(ids[n_val:], ids[:n_val]).sum())}
    }


def _conflicts(ids: np.ndarray, labels: np.ndarray, classes: int) -> tuple[int, int]:
    """Distinct images that occur with more than one label, and how many images they hold."""
    if not ids.size:
        return 0, 0
    pairs = np.unique(ids * classes + labels)
    per_image = np.bincount(pairs // classes, minlength=int(ids.max()) + 1) > 1
    return int(per_image.sum()), int(per_image[ids].sum())


def _check_labels(dataset: ImageDataset, labels: np.ndarray) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= dataset.num_classes):
        raise CnnlabError(
            f"dataset {dataset.name}: labels must be class indices 0..{dataset.num_classes - 1}, "
            f"found {int(labels.min())}..{int(labels.max())}"
        )


def check_summary_lines(check: dict[str, Any]) -> list[str]:
    """A few plain lines for the terminal."""
    images, distinct = check["images"], check["distinct"]
    duplicates, conflicts = check["duplicates"], check["conflicting_labels"]
    counts = check["class_counts"]
    return [
        f"data check: train {images['train']:,d} images ({distinct['train']:,d} distinct) · "
        f"test {images['test']:,d} ({distinct['test']:,d} distinct)",
        f"  {duplicates['test_in_train']:,d} test images equal a training image "
        f"({_percent(duplicates['test_in_train_fraction'])}) · "
        f"{conflicts['images']:,d} images with conflicting labels",
        f"  classes {_range(counts['train'])} train, {_range(counts['test'])} test "
        f"· checked in {check['seconds']:.2f} s",
        *_validation_lines(check),
    ]


def _validation_lines(check: dict[str, Any]) -> list[str]:
    val = check.get("validation")
    if not val:
        return []
    return [
        f"  validation {val['images']:,d} images (from the training split) · "
        f"{val['test_in_val']:,d} test images equal a validation image"
    ]


def overlap_warning(check: dict[str, Any]) -> str | None:
    """One warning line when test images copy training images or labels conflict, else None."""
    parts = []
    duplicates, conflicts = check["duplicates"], check["conflicting_labels"]
    if duplicates["test_in_train"]:
        parts.append(
            f"{duplicates['test_in_train']:,d} of {check['images']['test']:,d} test images "
            f"({_percent(duplicates['test_in_train_fraction'])}) are pixel copies of training "
            "images: test accuracy measures memory, not generalisation"
        )
    copied = (check.get("validation") or {}).get("test_in_val", 0)
    if copied:
        parts.append(
            f"{copied:,d} test images are pixel copies of validation images: what is chosen "
            "on the validation split (the best checkpoint) is chosen on them too"
        )
    if conflicts["groups"]:
        parts.append(
            f"{conflicts['images']:,d} images ({conflicts['groups']:,d} distinct) carry more "
            "than one label: no model can classify them all correctly"
        )
    return "warning: " + "; ".join(parts) if parts else None


def _percent(fraction: float) -> str:
    value = 100 * fraction
    return f"{value:.2g}%" if 0 < value < 0.1 else f"{value:.1f}%"


def _range(counts: list[int]) -> str:
    return f"{min(counts):,d}-{max(counts):,d}" if counts else "none"
