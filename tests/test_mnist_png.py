"""MNIST exported as a PNG tree and read back as an image folder: the same pictures with the same
labels, pixel for pixel, and a training on it learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset, load_mnist
from cnnlab.data.dataset import Split
from cnnlab.training import train

PER_CLASS = {"train": 60, "test": 20}


def export(split: Split, per_class: int, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` images of each digit as PNGs in ``folder/<digit>/``."""
    labels = split.labels.numpy()
    chosen = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(10)])
    for i in chosen.tolist():
        target = folder / str(int(labels[i]))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(split.images[i, 0].numpy()).save(target / f"{i:05d}.png")
    return split.images[chosen].numpy(), labels[chosen]


def as_set(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    return sorted(
        img.tobytes() + bytes([int(lab)]) for img, lab in zip(images, labels, strict=True)
    )


@pytest.fixture(scope="module")
def tree(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    mnist = load_mnist(mnist_dir, split="official")
    root = tmp_path_factory.mktemp("mnist-png")
    exported = {
        name: export(getattr(mnist, name), PER_CLASS[name], root / name) for name in PER_CLASS
    }
    return {"root": root, "exported": exported}


def test_the_png_tree_reads_back_pixel_for_pixel(tree: dict) -> None:
    data = load_dataset(tree["root"])
    assert data.class_names == tuple(str(k) for k in range(10)) and data.channels == 1
    for name in PER_CLASS:
        split = getattr(data, name)
        images, labels = tree["exported"][name]
        assert as_set(split.images.numpy(), split.labels.numpy()) == as_set(images, labels)


def test_training_on_the_png_tree_learns(tree: dict, tmp_path: Path) -> None:
    common = ("train.epochs=3", "train.batch_size=32", "train.augment_shift=0")
    run = train(
        "part1-mnist",
        out=tmp_path / "png",
        overrides=(f"data.dataset={tree['root']}", *common),
        quiet=True,
    )
    assert run.history[-1]["test_acc"] >= 0.7  # 600 digits, 3 epochs: well above chance (0.1)
