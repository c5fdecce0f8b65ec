"""A user's model by import path through a variation study run by two worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cnnlab.study import run_study

MODULE = """
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self, in_channels, num_classes, image_size=(28, 28), width=4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(width * (image_size[0] // 2) * (image_size[1] // 2), num_classes)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))
"""


def test_a_user_model_trains_in_a_study_with_two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "usernets.py").write_text(MODULE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the worker processes import it too
    monkeypatch.syspath_prepend(str(tmp_path))
    study = {
        "name": "mine",
        "base": "part1-lines",
        "set": {
            "data.lines": {"per_class": 6, "test_fraction": 0.25},
            "train.epochs": 1,
            "train.batch_size": 64,
            "model": {"name": "usernets:Small"},
        },
        "seeds": [0],
        "variants": {"base": {}, "wide": {"model.width": 8}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    summary = run_study(path, out=tmp_path / "out", quiet=True, jobs=2)
    assert summary.runs_done == 2
    for variant, width in (("base", 4), ("wide", 8)):
        run = tmp_path / "out" / "runs" / f"{variant}-seed0"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["name"] == "usernets:Small"
        assert config["model"].get("width", 4) == width
        metrics = json.loads((run / "metrics-test.json").read_text())
        assert 0 <= metrics["accuracy"] <= 1
