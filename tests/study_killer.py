"""A study whose runs last a few seconds each, and a watcher that kills the process training
one of them in the middle (SIGKILL: no checkpoint, no goodbye), for the executor tests."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import torch
import yaml

from cnnlab.runfolder import RunFolder
from cnnlab.training import load_config, train

EPOCHS = 3


def write_slow_study(
    folder: Path,
    mnist_dir: Path,
    seeds: tuple[int, ...] = (0, 1),
    both: bool = True,
    epochs: int = EPOCHS,
) -> Path:
    """Two variants (one without ``both``) x ``seeds`` of a narrower part1 on 1,000 MNIST
    images, ``epochs`` epochs (about half a second each on one thread)."""
    spec = {
        "name": "slow",
        "base": "part1-mnist",
        "set": {
            "data.mnist_dir": str(mnist_dir),
            "data.train_limit": 1000,
            "data.test_limit": 200,
            "train.epochs": epochs,
            "train.batch_size": 50,
            "model.dense_units": 256,
        },
        "seeds": list(seeds),
        "variants": {"base": {}, **({"kernel-5": {"model.kernel_size": 5}} if both else {})},
    }
    path = folder / "slow.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class Killer(threading.Thread):
    """Watches ``runs``: kills the process of the first run caught training after its first
    epoch's checkpoint. Reads files only (taking the run lock to look would race with the
    trainings)."""

    def __init__(self, runs: Path) -> None:
        super().__init__(daemon=True)
        self.runs = runs
        self.killed: str | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            training = [d for d in self._folders() if _status(d) == "running" and _alive(d)]
            for folder in training if self.killed is None else []:
                if _epochs(folder) == 1 and RunFolder(folder).checkpoint().is_file():
                    pid = _holder(folder)
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        self.killed = folder.name
                        break
            time.sleep(0.02)

    def _folders(self) -> list[Path]:
        return sorted(self.runs.iterdir()) if self.runs.is_dir() else []


def check_each_run_trained_once(runs: Path, names: list[str], epochs: int = EPOCHS) -> None:
    """Every run finished with each epoch in its history once."""
    for name in names:
        assert _status(runs / name) == "finished", name
        with open(runs / name / "history.csv") as handle:
            trained = [row["epoch"] for row in csv.DictReader(handle)]
        assert trained == [str(e) for e in range(1, epochs + 1)], (name, trained)


def history_without_times(folder: Path) -> list[dict[str, str]]:
    with open(folder / "history.csv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def train_alone(folder: Path, out: Path) -> Path:
    """Train ``folder``'s config from scratch in this process on one thread (as the workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_config(RunFolder(folder).config), out=out, quiet=True)
    finally:
        torch.set_num_threads(threads)
    return out


def _status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def _epochs(folder: Path) -> int:
    try:
        return max(0, len((folder / "history.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def _alive(folder: Path) -> bool:
    """Whether the process named in the run's lock file lives (a killed run still says
    ``running`` in ``run.json``)."""
    pid = _holder(folder)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # killed, not yet reaped by its parent


def _holder(folder: Path) -> int | None:
    try:
        found = re.search(r"pid (\d+)", RunFolder(folder).lock_file.read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None
