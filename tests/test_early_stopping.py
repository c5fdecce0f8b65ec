"""Early stopping on the validation split: it stops after ``patience`` epochs without a better
validation accuracy, keeps the best epoch's weights, records why, and resumes exactly."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.runfolder import RunFolder
from cnnlab.training import load_config, train
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.engine import Engine

SMALL = (
    "data.train_limit=600",
    "data.test_limit=200",
    "data.val_fraction=0.2",
    "train.epochs=6",
    "train.batch_size=50",
    "model.filters=4",
    "model.dense_units=32",
)
NEVER_BETTER = ("train.patience=2", "train.min_delta=0.99")
"""No epoch can beat the first by 0.99: the best stays epoch 1 and training stops after 3."""


def small(mnist_dir: Path, *extra: str) -> tuple[str, ...]:
    return (*SMALL, f"data.mnist_dir={mnist_dir}", *extra)


def untimed(folder: Path) -> list[dict[str, float]]:
    return [
        {k: v for k, v in r.items() if k != "seconds"} for r in RunFolder(folder).read_history()
    ]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(RunFolder(folder).weights))


def test_it_stops_keeps_the_best_epoch_and_says_so(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "run"
    train("part1-mnist", overrides=small(mnist_dir, *NEVER_BETTER), out=out, quiet=True)
    folder = RunFolder(out)
    history = folder.read_history()
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]  # of 6
    info = json.loads(folder.info.read_text())
    assert info["early_stopping"] == {
        "patience": 2,
        "min_delta": 0.99,
        "best_epoch": 1,
        "counted_from_epoch": 0,  # cosine: no warm-up
        "stopped_after_epoch": 3,
    }
    assert info["final"]["test_acc"] == history[0]["test_acc"]
    best = load_checkpoint(folder.checkpoint("best"))
    assert best["epoch"] == 1
    kept = weights(out)
    assert all(torch.equal(kept[k], best["model"][k]) for k in kept)  # epoch 1's weights
    last = load_checkpoint(folder.checkpoint("last"))["model"]
    assert not all(torch.equal(kept[k], last[k]) for k in kept)  # not the last epoch's


def test_without_early_stopping_every_epoch_runs(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "run"
    train("part1-mnist", overrides=small(mnist_dir, "train.epochs=2"), out=out, quiet=True)
    info = json.loads(RunFolder(out).info.read_text())
    assert info["early_stopping"] is None and len(RunFolder(out).read_history()) == 2


def test_a_stopped_early_run_resumes_exactly(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = small(mnist_dir, *NEVER_BETTER)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train("part1-mnist", overrides=overrides, out=whole, quiet=True)
    original, calls = Engine._step, {"n": 0}

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 2 * 10 + 4:  # 10 steps per epoch: in epoch 3
            signal.raise_signal(signal.SIGINT)
        return original(self, *args)

    monkeypatch.setattr(Engine, "_step", interrupting)
    with pytest.raises(Interrupted, match="interrupted in epoch 3"):
        train("part1-mnist", overrides=overrides, out=cut, quiet=True)
    monkeypatch.setattr(Engine, "_step", original)
    train(None, resume=cut, quiet=True)  # type: ignore[arg-type]
    a, b = weights(whole), weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [
        {k: v for k, v in r.items() if k != "seconds"} for r in RunFolder(whole).read_history()
    ]
    assert strip == [
        {k: v for k, v in r.items() if k != "seconds"} for r in RunFolder(cut).read_history()
    ]
    assert json.loads(RunFolder(cut).info.read_text())["early_stopping"]["best_epoch"] == 1


def test_it_needs_a_validation_split_and_sane_values(tmp_path: Path, mnist_dir: Path) -> None:
    no_val = (*small(mnist_dir, "train.patience=2"), "data.val_fraction=0")
    with pytest.raises(CnnlabError, match="early stopping watches the validation split"):
        train("part1-mnist", overrides=no_val, out=tmp_path / "run", quiet=True)
    with pytest.raises(CnnlabError, match=r"train\.patience must be in 0\.\.epochs"):
        load_config("part1-mnist", ("train.patience=-1",))
    with pytest.raises(CnnlabError, match=r"train\.min_delta must be in \[0, 1\)"):
        load_config("part1-mnist", ("train.min_delta=1.5",))
