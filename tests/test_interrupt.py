"""Ctrl-C at any instant of a real training, then ``--resume``: bit for bit the uninterrupted run
(BatchNorm's running statistics included); nothing dead-ends; one training per run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import cnnlab.training.callbacks as callbacks_module
from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder
from cnnlab.training import train
from cnnlab.training.engine import Engine

TINY = (
    "data.dataset=lines",
    "data.lines={per_class: 12, test_fraction: 0.25}",
    "train.epochs=3",
    "train.batch_size=32",  # 27 steps an epoch
)


def tiny(out: Path) -> object:
    return train("part1-lines", out=out, overrides=TINY, quiet=True)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every interrupted one must equal."""
    out = tmp_path_factory.mktemp("whole") / "run"
    tiny(out)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert any("running_mean" in k for k in wa)  # BatchNorm statistics are compared too
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different
    ha, hb = (
        [{k: v for k, v in r.items() if k != "seconds"} for r in RunFolder(p).read_history()]
        for p in (a, b)
    )
    assert ha == hb and len(ha) == 3


def signal_on_call(monkeypatch, owner, name: str, at: int, signals: int = 1, after=True) -> None:
    """Deliver SIGINT (``signals`` times) at the ``at``-th call of ``owner.name``, after the
    original ran (``after``) or before it."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        fire = calls["n"] == at
        if fire and not after:
            for _ in range(signals):
                signal.raise_signal(signal.SIGINT)
        result = original(*args, **kwargs)
        if fire and after:
            for _ in range(signals):
                signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(owner, name, wrapped)


@pytest.mark.parametrize(
    ("owner", "name", "at", "after", "message"),
    [
        # inside a step: the forward pass went through BatchNorm (its running statistics
        # moved), the weights are not updated yet
        (nn.BatchNorm2d, "forward", 40, True, r"interrupted in epoch 2 after 13 batches"),
        # in epoch 1, between two steps
        (Engine, "_step", 5, True, r"interrupted in epoch 1 after 5 batches"),
        # while the end-of-epoch checkpoint is written
        (callbacks_module, "save_checkpoint", 1, False, r"interrupted after epoch 1"),
    ],
    ids=["inside-a-step", "between-steps-epoch-1", "inside-checkpoint-write"],
)
def test_interrupt_anywhere_resumes_bit_for_bit(
    whole: Path, tmp_path: Path, monkeypatch, owner, name, at, after, message
) -> None:
    cut = tmp_path / "cut"
    signal_on_call(monkeypatch, owner, name, at, after=after)
    with pytest.raises(CnnlabError, match=message + r".*Resume with: cnnlab train --resume"):
        tiny(cut)
    monkeypatch.undo()
    folder = RunFolder(cut)
    assert folder.status() == "interrupted" and folder.state() == "partial"
    train(None, resume=cut, quiet=True)
    assert_same_run(whole, cut)


def test_a_second_interrupt_stops_at_once_and_resumes_from_the_last_checkpoint(
    whole: Path, tmp_path: Path, monkeypatch
) -> None:
    cut = tmp_path / "cut"
    signal_on_call(monkeypatch, nn.BatchNorm2d, "forward", 40, signals=2)
    with pytest.raises(CnnlabError, match="stopped at once"):
        tiny(cut)
    monkeypatch.undo()
    assert RunFolder(cut).state() == "partial"  # the checkpoint of epoch 1
    train(None, resume=cut, quiet=True)
    assert_same_run(whole, cut)


def test_a_run_killed_before_its_first_checkpoint_starts_again(
    whole: Path, tmp_path: Path, monkeypatch
) -> None:
    cut = tmp_path / "cut"
    original = Engine._step

    def killed(self, index, epoch, batch):
        if batch == 3:
            raise SystemExit("killed")  # as SIGKILL: nothing saved, nothing updated
        return original(self, index, epoch, batch)

    monkeypatch.setattr(Engine, "_step", killed)
    with pytest.raises(SystemExit):
        tiny(cut)
    monkeypatch.undo()
    folder = RunFolder(cut)
    assert json.loads(folder.info.read_text())["status"] == "running"
    assert folder.status() == "interrupted"  # nobody holds it: the record does not lie
    assert folder.state() == "started"
    train(None, resume=cut, quiet=True)
    assert_same_run(whole, cut)


def test_one_training_per_run_folder(whole: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    folder = RunFolder(cut)
    with folder.lock():
        assert folder.locked()
        with pytest.raises(CnnlabError, match=rf"{cut}: in use by cnnlab \(pid {os.getpid()}"):
            tiny(cut)
        with pytest.raises(CnnlabError, match="in use by"), folder.lock():
            pass
    assert not folder.locked()
    tiny(cut)  # free again: the first training proceeds
    assert_same_run(whole, cut)
    with folder.lock():  # a resume from another process: the same refusal, in one line
        other = subprocess.run(
            [sys.executable, "-m", "cnnlab", "train", "--resume", str(cut)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert other.returncode == 2, other.stderr
    holder = f"cnnlab: error: {cut}: in use by cnnlab (pid {os.getpid()} on "
    assert other.stderr.startswith(holder) and other.stderr.count("\n") == 1


def test_resume_of_a_damaged_folder_is_refused_before_training(tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    folder = RunFolder(cut)
    tiny(cut)
    folder.info.write_text("{not json")
    with pytest.raises(CnnlabError, match=r"run\.json: cannot read"):
        train(None, resume=cut, quiet=True)
    folder.info.unlink()
    with pytest.raises(CnnlabError, match=r"not a run folder \(no run.json\)"):
        train(None, resume=cut, quiet=True)
    folder.config.write_text("model: [unclosed")
    with pytest.raises(CnnlabError, match=r"config\.yaml: not valid YAML"):
        train(None, resume=cut, quiet=True)


def test_ctrl_c_to_a_real_process_resumes_bit_for_bit(whole: Path, tmp_path: Path) -> None:
    """A real SIGINT at an instant nobody chose, to the command-line tool."""
    cut = tmp_path / "cut"
    command = [sys.executable, "-m", "cnnlab", "train", "part1-lines", "--out", str(cut)]
    command += [arg for item in TINY for arg in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not RunFolder(cut).checkpoint().is_file() and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(process.communicate()[0].decode())
        time.sleep(0.01)  # until the first checkpoint is written: then in epoch 2
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130, output  # it was still training: saved and stopped
    assert "Resume with: cnnlab train --resume" in output
    train(None, resume=cut, quiet=True)
    assert_same_run(whole, cut)
