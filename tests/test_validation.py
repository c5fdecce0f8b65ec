"""The validation split: taken from the training images, measured every epoch, the only split
anything is chosen on (``best.pt``); the test split is measured and chooses nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data.identity import identity_groups
from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder
from cnnlab.training import load_config, train
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.run import prepare_dataset

TINY = (
    "data.dataset=lines",
    "data.lines={per_class: 12, test_fraction: 0.25}",
    "train.epochs=3",
    "train.batch_size=32",
    "data.val_fraction=0.25",
)


def test_validation_comes_from_training_images_stratified_and_distinct() -> None:
    config = load_config("part1-lines", TINY)
    whole = prepare_dataset(load_config("part1-lines", TINY[:-1]))
    data = prepare_dataset(config)
    assert data.val is not None and len(data.val) + len(data.train) == len(whole.train)
    assert len(data.test) == len(whole.test)
    counts = np.bincount(data.val.labels.numpy(), minlength=96)
    assert counts.sum() == round(0.25 * 864) and set(counts.tolist()) <= {2, 3}  # 9 a class
    groups = identity_groups(data.train.images, data.val.images)
    assert not set(groups[: len(data.train)]) & set(groups[len(data.train) :])
    again = prepare_dataset(config)
    assert torch.equal(again.val.images, data.val.images)  # the seed fixes it
    assert data.provenance["val"] == len(data.val)


def test_best_is_chosen_on_validation_and_the_test_split_chooses_nothing(tmp_path: Path) -> None:
    a = train("part1-lines", out=tmp_path / "a", overrides=TINY, quiet=True)
    b = train(
        "part1-lines", out=tmp_path / "b", overrides=(*TINY, "data.test_limit=40"), quiet=True
    )
    assert {"val_loss", "val_acc"} <= set(a.history[0])
    best = load_checkpoint(RunFolder(tmp_path / "a").checkpoint("best"))
    val = [r["val_acc"] for r in a.history]
    assert best["epoch"] == max(i + 1 for i, v in enumerate(val) if v == max(val))
    # another test split, the same training, the same choice: the test split is only measured
    other = load_checkpoint(RunFolder(tmp_path / "b").checkpoint("best"))
    assert other["epoch"] == best["epoch"]
    assert all(torch.equal(best["model"][k], other["model"][k]) for k in best["model"])
    assert [r["val_acc"] for r in b.history] == val
    assert [r["test_acc"] for r in b.history] != [r["test_acc"] for r in a.history]
    assert RunFolder(tmp_path / "a").read_info().dataset.val == 216


def test_a_fraction_that_starves_a_class_is_refused() -> None:
    config = load_config(
        "part1-lines", (*TINY[:-1], "data.lines={per_class: 2, test_fraction: 0.5}")
    )
    config.data.val_fraction = 0.9
    with pytest.raises(CnnlabError, match=r"data\.val_fraction 0\.9 leaves no training image"):
        prepare_dataset(config)


def test_the_validation_split_can_be_evaluated(tmp_path: Path) -> None:
    from cnnlab.evaluate import evaluate_run

    run = train("part1-lines", out=tmp_path / "v", overrides=(*TINY, "train.epochs=1"), quiet=True)
    metrics = evaluate_run(tmp_path / "v", split="val")
    assert metrics.n == 216 and metrics.accuracy == pytest.approx(run.history[-1]["val_acc"])
    assert RunFolder(tmp_path / "v").metrics("val").is_file()
    train("part1-lines", out=tmp_path / "nv", overrides=(*TINY[:-1], "train.epochs=1"), quiet=True)
    with pytest.raises(CnnlabError, match="no validation split"):
        evaluate_run(tmp_path / "nv", split="val")


def test_the_data_check_compares_the_test_split_with_the_validation_split() -> None:
    from cnnlab.data.check import check_dataset, check_summary_lines, overlap_warning

    data = prepare_dataset(load_config("part1-lines", TINY))
    check = check_dataset(data)
    assert check["validation"] == {"images": len(data.val), "test_in_val": 0}
    assert "216 images (from the training split)" in "\n".join(check_summary_lines(check))
    assert overlap_warning(check) is None
    leaky = dataclasses.replace(data, test=data.val)  # a test split made of validation images
    check = check_dataset(leaky)
    assert check["validation"]["test_in_val"] == len(data.val)
    assert "copies of validation images" in overlap_warning(check)
