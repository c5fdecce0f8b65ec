"""Data-parallel training under torchrun: 2 CPU processes (gloo) against one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.runfolder import read_history
from cnnlab.training import train

OVERRIDES = (
    "data.dataset=lines",
    "data.lines={per_class: 12, test_fraction: 0.25}",
    "train.epochs=2",
    "train.batch_size=32",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path: Path) -> None:
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "cnnlab",
        "train",
        "part1-lines",
        *sets,
        "--out",
        str(tmp_path / "ddp"),
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    single = train("part1-lines", out=tmp_path / "one", overrides=OVERRIDES, quiet=True)
    ddp = read_history(tmp_path / "ddp" / "history.csv")
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert info["hardware"]["world_size"] == 2 and info["status"] == "finished"
    assert len(ddp) == len(single.history) == 2
    for mine, theirs in zip(ddp, single.history, strict=True):
        # Same global batches and averaged gradients; only BatchNorm statistics are per rank
        # on the CPU (SyncBatchNorm needs GPUs), so results agree closely, not bit for bit.
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=0.03)
        assert mine["test_loss"] == pytest.approx(theirs["test_loss"], rel=0.05)
        assert abs(mine["test_acc"] - theirs["test_acc"]) <= 0.1
    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files == [
        ".cnnlab-lock",  # taken by rank 0 alone
        "checkpoints",
        "config.yaml",
        "history.csv",
        "model.safetensors",
        "run.json",
    ]
