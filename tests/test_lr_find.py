"""``cnnlab lr-find``: the range test is seeded, restores the model, stops when the loss blows
up, suggests the steepest fall, and draws its plot without leaving a run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.training import load_config
from cnnlab.training.lr_finder import DIVERGE_FACTOR, lr_find, suggest

SMALL = ("data.train_limit=500", "data.test_limit=100", "model.filters=4", "model.dense_units=32")


def small_config(mnist_dir: Path):
    return load_config("part1-mnist", (*SMALL, f"data.mnist_dir={mnist_dir}"))


def test_the_range_test_is_seeded_and_puts_the_weights_back(mnist_dir: Path) -> None:
    config = small_config(mnist_dir)
    model = create_model("part1", 1, 10, filters=4, dense_units=32)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = lr_find(config, model=model, steps=30, lr_min=1e-5, lr_max=1.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not model.training  # its mode too
    second = lr_find(config, model=model, steps=30, lr_min=1e-5, lr_max=1.0)
    assert first.losses == second.losses  # seeded: the same batches, the same start
    assert first.lrs[0] == pytest.approx(1e-5)
    ratios = [b / a for a, b in zip(first.lrs, first.lrs[1:], strict=False)]
    assert ratios == pytest.approx([(1.0 / 1e-5) ** (1 / 29)] * len(ratios))


def test_it_stops_when_the_loss_blows_up(mnist_dir: Path) -> None:
    result = lr_find(small_config(mnist_dir), steps=120, lr_min=1e-4, lr_max=1e4)
    assert result.stopped_early and len(result.lrs) < 120
    finite = [s for s in result.smoothed if math.isfinite(s)]
    last = result.smoothed[-1]
    assert not math.isfinite(last) or last > DIVERGE_FACTOR * min(finite)


def test_the_suggestion_is_the_steepest_fall() -> None:
    lrs = [10 ** (-7 + k * 0.1) for k in range(80)]  # 1e-7 .. ~1e1
    smoothed = [2.0 - math.tanh((math.log10(r) + 3) * 2) for r in lrs]  # steepest at 1e-3
    assert suggest(lrs, smoothed) == pytest.approx(1e-3, rel=0.3)
    assert suggest(lrs[:8], smoothed[:8]) is None  # too few points once the ends are skipped


def test_cli_draws_the_plot_and_writes_no_run_folder(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["lr-find", "part1-mnist", "--steps", "40", "--json", "curve.json"]
    args += [f"--set={s}" for s in (*SMALL, f"data.mnist_dir={mnist_dir}")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "suggestion: " in out and "a heuristic" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.json", "lr-find-part1-mnist.png"]
    with Image.open(tmp_path / "lr-find-part1-mnist.png") as image:
        assert image.size[0] > 300
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert len(curve["lrs"]) == len(curve["losses"]) <= 40
    assert main(["lr-find", "part1-mnist", "--min", "0"]) == 2
    assert "0 < --min < --max" in capsys.readouterr().err
    with pytest.raises(CnnlabError, match="steps >= 2"):
        lr_find("part1-mnist", steps=1)
