"""The weights a run keeps (issue 30): with a validation split, the epoch best on validation
(``train.keep: auto``), recorded in ``run.json`` and shown in the report; without one, the last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.runfolder import RunFolder
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.engine import Engine

SMALL = ("data.train_limit=400", "data.test_limit=100", "model.filters=4", "model.dense_units=16")


def _train(tmp: Path, mnist_dir: Path, *extra: str) -> Path:
    out = tmp / "run"
    overrides = (*SMALL, f"data.mnist_dir={mnist_dir}", "train.epochs=3", *extra)
    cnnlab.train("part1-mnist", out=out, overrides=overrides, quiet=True)
    return out


def _same_weights(run: Path, checkpoint: str) -> bool:
    model = cnnlab.load_run(run).model
    saved = load_checkpoint(RunFolder(run).checkpoint(checkpoint))["model"]
    return all(torch.equal(v, saved[k].to(v.dtype)) for k, v in model.state_dict().items())


def test_with_a_validation_split_the_best_epoch_is_kept_and_said(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # epoch 1 the best on validation, whatever the numbers: the rule, not the luck, is tested
    monkeypatch.setattr(Engine, "best_epoch", lambda self, history: 1 if history else None)
    run = _train(tmp_path, mnist_dir, "data.val_fraction=0.25")
    history = RunFolder(run).read_history()
    info = json.loads(RunFolder(run).info.read_text())
    assert info["weights"] == {"epoch": 1, "epochs": 3, "chosen": "best on validation"}
    assert _same_weights(run, "best") and not _same_weights(run, "last")
    assert info["final"]["test_acc"] == pytest.approx(history[0]["test_acc"])
    page = tmp_path / "report.html"
    cnnlab.report_runs([run], page)
    assert "epoch 1 of 3: best on validation" in page.read_text()


def test_without_a_validation_split_the_last_epoch_is_kept(tmp_path: Path, mnist_dir: Path) -> None:
    run = _train(tmp_path, mnist_dir)
    info = json.loads(RunFolder(run).info.read_text())
    assert info["weights"] == {"epoch": 3, "epochs": 3, "chosen": "last epoch"}
    assert not RunFolder(run).checkpoint("best").exists()


def test_keep_last_keeps_the_last_epoch_even_with_validation(
    tmp_path: Path, mnist_dir: Path
) -> None:
    run = _train(tmp_path, mnist_dir, "data.val_fraction=0.25", "train.keep=last")
    info = json.loads(RunFolder(run).info.read_text())
    assert info["weights"]["chosen"] == "last epoch" and info["weights"]["epoch"] == 3
    assert _same_weights(run, "last")


def test_load_run_and_predict_choose_the_weights(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.cli import main
    from cnnlab.errors import CnnlabError

    monkeypatch.setattr(Engine, "best_epoch", lambda self, history: 1 if history else None)
    run = _train(tmp_path, mnist_dir, "data.val_fraction=0.25")
    state = {k: v.clone() for k, v in cnnlab.load_run(run).model.state_dict().items()}
    best = cnnlab.load_run(run, weights="best").model.state_dict()
    last = cnnlab.load_run(run, weights="last").model.state_dict()
    assert all(torch.equal(state[k], best[k]) for k in state)  # kept = best here
    assert not all(torch.equal(state[k], last[k]) for k in state)
    images = tmp_path / "images.npz"
    import numpy as np

    np.savez(images, images=np.random.default_rng(0).integers(0, 255, (20, 28, 28, 1), np.uint8))
    outputs = {}
    for which in ("kept", "last"):
        out = tmp_path / f"{which}.json"
        assert main(["predict", str(run), str(images), "--weights", which, "--json", str(out),
                     "--probabilities", "--quiet"]) == 0  # fmt: skip
        outputs[which] = json.loads(out.read_text())
    assert outputs["kept"] != outputs["last"]
    plain = _train(tmp_path / "plain", mnist_dir)
    with pytest.raises(CnnlabError, match="no best checkpoint"):
        cnnlab.load_run(plain, weights="best")
