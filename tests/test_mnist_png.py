"""MNIST written as a tree of PNG files trains like MNIST read from its IDX files.

The same images (a seeded subset of the study split, for time) reach training either way, in a
different order (the tree is read class by class), so the two runs agree within noise, not to
the last digit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from cli_helpers import assert_one_line_error, run

from cnnlab.data.exports import export_dataset
from cnnlab.runfolder import RunFolder
from cnnlab.training import load_config, train
from cnnlab.training.run import prepare_dataset

LIMITS = ("data.train_limit=6000", "data.test_limit=2000")
SHORT = ("train.epochs=2", "train.precision=fp32")


def _rows(split) -> np.ndarray:
    """Each image with its label as one sortable byte row, sorted (the split as a multiset)."""
    flat = split.images.reshape(len(split), -1).numpy()
    rows = np.concatenate([split.labels.numpy().astype(np.uint8)[:, None], flat], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_png_tree_trains_like_idx(mnist_dir: Path, tmp_path: Path) -> None:
    sets = (f"data.mnist_dir={mnist_dir}", *LIMITS, *SHORT)
    from_idx = prepare_dataset(load_config("part1-mnist", sets))
    paths = export_dataset(from_idx, tmp_path / "export", png=True)
    tree = paths["png"]
    assert sorted(p.name for p in tree.iterdir()) == ["test", "train"]
    from_png = prepare_dataset(load_config("part1-mnist", (f"data.dataset={tree}", *SHORT)))
    assert from_png.class_names == from_idx.class_names
    for part in ("train", "test"):
        assert np.array_equal(_rows(getattr(from_png, part)), _rows(getattr(from_idx, part)))
    assert not torch.equal(from_png.train.labels, from_idx.train.labels)  # another order

    accuracy = {}
    for name, extra in (("idx", sets), ("png", (f"data.dataset={tree}", *SHORT))):
        train("part1-mnist", out=tmp_path / name, overrides=extra, quiet=True)
        accuracy[name] = RunFolder(tmp_path / name).read_history()[-1]["test_acc"]
    assert accuracy["idx"] > 0.93, accuracy
    assert abs(accuracy["idx"] - accuracy["png"]) < 0.015, accuracy


def test_png_needs_out(mnist_dir: Path, capsys) -> None:
    code, out, err = run(capsys, "data", "mnist", "--mnist-dir", mnist_dir, "--png")
    assert_one_line_error(code, out, err, "--png", "--out")
