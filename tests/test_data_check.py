"""The data check: exact duplicates, test images copied from training, label conflicts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.data import check_dataset, check_summary_lines, overlap_warning
from cnnlab.data import identity as identity_module
from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.errors import CnnlabError
from cnnlab.training import run as run_module
from cnnlab.training import train
from cnnlab.training.run import prepare_dataset

SHAPE = (3, 4, 5)  # 60 bytes: not a multiple of 8, so the rows are padded


def distinct_images(count: int) -> torch.Tensor:
    """``count`` different random images; image i starts with the byte i."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, *SHAPE), dtype=torch.uint8, generator=generator)
    images[:, 0, 0, 0] = torch.arange(count, dtype=torch.uint8)
    return images


def make_dataset(
    train_images: torch.Tensor,
    train_labels: list[int],
    test_images: torch.Tensor,
    test_labels: list[int],
    classes: int = 3,
) -> ImageDataset:
    return ImageDataset(
        name="planted",
        train=Split(train_images, torch.tensor(train_labels, dtype=torch.int64)),
        test=Split(test_images, torch.tensor(test_labels, dtype=torch.int64)),
        class_names=tuple(f"c{i}" for i in range(classes)),
    )


def planted() -> ImageDataset:
    """Duplicates within train, within test, across splits, and two label conflicts.

    b6 equals b5 but for one pixel of the last channel, so it is a different image.
    """
    b = distinct_images(9)
    b[6] = b[5]
    b[6, 2, 3, 4] ^= 1
    train_index, train_labels = [0, 1, 0, 2, 3, 3, 5, 6], [0, 1, 0, 2, 0, 1, 2, 2]
    test_index, test_labels = [1, 2, 2, 7, 7, 8, 0], [1, 2, 2, 0, 0, 1, 2]
    return make_dataset(b[train_index], train_labels, b[test_index], test_labels)


PLANTED = {
    "version": 1,
    "images": {"train": 8, "test": 7},
    "distinct": {"train": 6, "test": 5, "all": 8},
    "duplicates": {
        "within_train": 2,
        "within_test": 2,
        "test_in_train": 4,
        "test_in_train_fraction": pytest.approx(4 / 7),
    },
    # b3 (labels 0, 1) and b0 (0, 0 in train, 2 in test)
    "conflicting_labels": {"groups": 2, "images": 5},
    "class_counts": {"train": [3, 2, 3], "test": [2, 2, 3]},
    "overlap": True,
}


def without_seconds(check: dict) -> dict:
    assert isinstance(check["seconds"], float) and check["seconds"] >= 0
    return {k: v for k, v in check.items() if k != "seconds"}


def constant_hash(rows: np.ndarray) -> np.ndarray:
    return np.zeros(rows.shape[0], dtype=np.int64)


def parity_hash(rows: np.ndarray) -> np.ndarray:
    return (rows[:, 1] % 2).astype(np.int64)


@pytest.mark.parametrize("hash_fn", [None, constant_hash, parity_hash])
def test_planted_duplicates_are_counted_exactly(monkeypatch, hash_fn) -> None:
    """Exact counts, also when every image (or many) share one hash value."""
    if hash_fn is not None:
        monkeypatch.setattr(identity_module, "_row_hashes", hash_fn)
    check = check_dataset(planted())
    assert without_seconds(check) == PLANTED
    assert json.loads(json.dumps(check)) == check


def reference(dataset: ImageDataset) -> dict:
    """The same counts by brute force over Python byte strings."""
    keys = {
        name: [bytes(image.numpy().tobytes()) for image in split.images]
        for name, split in (("train", dataset.train), ("test", dataset.test))
    }
    labels = dataset.train.labels.tolist() + dataset.test.labels.tolist()
    seen: dict[bytes, set[int]] = {}
    for key, label in zip(keys["train"] + keys["test"], labels, strict=True):
        seen.setdefault(key, set()).add(label)
    in_train = set(keys["train"])
    conflicted = {key for key, found in seen.items() if len(found) > 1}
    return {
        "distinct": {
            "train": len(in_train),
            "test": len(set(keys["test"])),
            "all": len(seen),
        },
        "test_in_train": sum(key in in_train for key in keys["test"]),
        "conflicts": (
            len(conflicted),
            sum(key in conflicted for key in keys["train"] + keys["test"]),
        ),
    }


@pytest.mark.parametrize("hash_fn", [None, constant_hash, parity_hash])
def test_many_duplicates_match_brute_force(monkeypatch, hash_fn) -> None:
    """Binary 1x2x3 images (64 possible) with random labels: the check agrees with brute force."""
    if hash_fn is not None:
        monkeypatch.setattr(identity_module, "_row_hashes", hash_fn)
    generator = torch.Generator().manual_seed(1)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 2, (n, 1, 2, 3), dtype=torch.uint8, generator=generator) * 255

    def labels(n: int) -> list[int]:
        return torch.randint(0, 4, (n,), generator=generator).tolist()

    dataset = make_dataset(images(300), labels(300), images(150), labels(150), classes=4)
    check, expected = check_dataset(dataset), reference(dataset)
    assert check["distinct"] == expected["distinct"]
    assert check["duplicates"]["within_train"] == 300 - expected["distinct"]["train"]
    assert check["duplicates"]["within_test"] == 150 - expected["distinct"]["test"]
    assert check["duplicates"]["test_in_train"] == expected["test_in_train"]
    conflicts = check["conflicting_labels"]
    assert (conflicts["groups"], conflicts["images"]) == expected["conflicts"]
    assert expected["distinct"]["all"] <= 64 and conflicts["groups"] > 0


def test_distinct_images_give_zeros() -> None:
    b = distinct_images(12)
    check = check_dataset(make_dataset(b[:8], [0, 1, 2, 0, 1, 2, 0, 1], b[8:], [2, 1, 0, 0]))
    assert check["distinct"] == {"train": 8, "test": 4, "all": 12}
    assert check["duplicates"] == {
        "within_train": 0,
        "within_test": 0,
        "test_in_train": 0,
        "test_in_train_fraction": 0.0,
    }
    assert check["conflicting_labels"] == {"groups": 0, "images": 0}
    assert check["class_counts"] == {"train": [3, 3, 2], "test": [2, 1, 1]}
    assert check["overlap"] is False
    assert overlap_warning(check) is None


def test_empty_test_split() -> None:
    b = distinct_images(3)
    check = check_dataset(make_dataset(b[[0, 1, 0]], [0, 1, 0], b[:0], []))
    assert check["images"] == {"train": 3, "test": 0}
    assert check["duplicates"]["within_train"] == 1
    assert check["duplicates"]["test_in_train_fraction"] == 0.0
    assert check["overlap"] is False


def test_warning_and_summary_lines() -> None:
    check = check_dataset(planted())
    warning = overlap_warning(check)
    assert warning is not None and warning.startswith("warning: ")
    assert "4 of 7 test images (57.1%) are pixel copies of training images" in warning
    assert "5 images (2 distinct) carry more than one label" in warning
    lines = check_summary_lines(check)
    assert all(isinstance(line, str) and "\n" not in line for line in lines)
    text = "\n".join(lines)
    assert "train 8 images (6 distinct)" in text and "test 7 (5 distinct)" in text
    assert "4 test images equal a training image" in text
    assert "5 images with conflicting labels" in text
    assert "classes 2-3 train, 2-3 test" in text


def test_conflicts_alone_warn() -> None:
    b = distinct_images(4)
    check = check_dataset(make_dataset(b[[0, 0, 1]], [0, 1, 2], b[2:], [0, 1]))
    warning = overlap_warning(check)
    assert check["overlap"] is False and warning is not None
    assert "pixel copies" not in warning and "2 images (1 distinct)" in warning


def test_labels_outside_the_classes_are_refused() -> None:
    b = distinct_images(4)
    with pytest.raises(CnnlabError, match=r"class indices 0\.\.2, found 0\.\.5"):
        check_dataset(make_dataset(b[:2], [0, 5], b[2:], [1, 2]))


def test_training_records_the_check(tmp_path: Path, capsys, monkeypatch) -> None:
    """run.json holds the check of the data trained on; the overlap warning is printed."""

    def with_copies(config):  # the first 5 test images become copies of training images
        dataset = prepare_dataset(config)
        images, labels = dataset.test.images.clone(), dataset.test.labels.clone()
        images[:5], labels[:5] = dataset.train.images[:5], dataset.train.labels[:5]
        return replace(dataset, test=Split(images, labels))

    monkeypatch.setattr(run_module, "prepare_dataset", with_copies)
    overrides = (
        "data.dataset=lines",
        "data.lines={per_class: 12, test_fraction: 0.25}",
        "data.train_limit=192",
        "data.test_limit=96",
        "train.epochs=1",
        "train.batch_size=32",
    )
    run = train("part1-lines", out=tmp_path / "run", overrides=overrides)
    out = capsys.readouterr().out
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "finished"
    recorded = info["data_check"]
    assert recorded["images"] == {"train": 192, "test": 96}
    assert without_seconds(recorded) == without_seconds(check_dataset(with_copies(run.config)))
    assert recorded["overlap"] and recorded["duplicates"]["test_in_train"] >= 5
    warning = overlap_warning(recorded)
    assert warning is not None and warning in out


def test_mnist(mnist_dir: Path) -> None:
    """The study split of real MNIST: 42,000 / 28,000 images, each distinct, labels consistent."""
    check = check_dataset(cnnlab.load_dataset("mnist", mnist_dir=mnist_dir))
    print("\n".join(check_summary_lines(check)))
    print(json.dumps(check["duplicates"]), json.dumps(check["conflicting_labels"]))
    assert check["version"] == 1 and json.loads(json.dumps(check)) == check
    assert check["images"] == {"train": 42_000, "test": 28_000}
    assert [len(v) for v in check["class_counts"].values()] == [10, 10]
    assert sum(check["class_counts"]["train"]) == 42_000
    assert sum(check["class_counts"]["test"]) == 28_000
    # what the check finds on MNIST (the README quotes it): no pixel-identical images at all
    assert check["distinct"] == {"train": 42_000, "test": 28_000, "all": 70_000}
    assert check["duplicates"]["test_in_train"] == 0 and check["overlap"] is False
    assert check["conflicting_labels"] == {"groups": 0, "images": 0}
    assert overlap_warning(check) is None
