"""TensorBoard logs, read back with TensorBoard's own reader: every epoch's scalars (per head
too), the hyper-parameters in the run's own event files, a resumed run without doubled steps,
and a study whose runs TensorBoard compares."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.importorskip(
    "tensorboard", reason="TensorBoard logs need: pip install 'cnnlab[tensorboard]'"
)
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2

from cnnlab.cli import main
from cnnlab.errors import Interrupted
from cnnlab.runfolder import RunFolder
from cnnlab.training import train
from cnnlab.training.engine import Engine

SMALL = (
    "data.train_limit=300",
    "data.test_limit=100",
    "data.val_fraction=0.2",
    "train.epochs=3",
    "train.batch_size=60",
    "model.filters=4",
    "model.dense_units=16",
)


def read(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(RunFolder(run).tensorboard), size_guidance={"scalars": 0})
    events.Reload()
    return events


def hyperparameters(events: EventAccumulator) -> dict[str, object]:
    """The hparams plugin's session start: the run's hyper-parameters."""
    content = events.PluginTagToContent("hparams")
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            values = data.session_start_info.hparams
            return {
                k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                for k, v in values.items()
            }
    return {}


def test_every_epoch_and_the_hyperparameters_are_in_the_runs_own_files(
    tmp_path: Path, mnist_dir: Path, capsys
) -> None:
    run = tmp_path / "run"
    args = ["train", "part1-mnist", "--out", str(run), "--tensorboard", "--quiet"]
    assert main([*args, *(f"--set={s}" for s in (*SMALL, f"data.mnist_dir={mnist_dir}"))]) == 0
    events = read(run)
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "acc/train", "loss/val", "acc/val", "loss/test", "acc/test", "lr"} <= tags
    history = RunFolder(run).read_history()
    logged = events.Scalars("acc/test")
    assert [e.step for e in logged] == [1, 2, 3]
    assert [e.value for e in logged] == pytest.approx([r["test_acc"] for r in history])
    assert events.Scalars("hparam/test_acc")[0].value == pytest.approx(history[-1]["test_acc"])
    params = hyperparameters(events)
    assert params["train.lr"] == pytest.approx(0.001) and params["model.name"] == "part1"
    assert params["data.train_limit"] == 300
    assert [p for p in RunFolder(run).tensorboard.iterdir() if p.is_dir()] == []  # no stray run


def test_a_resumed_run_logs_each_epoch_once(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, calls, original = tmp_path / "run", {"n": 0}, Engine._step

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 4 + 2:  # 4 steps per epoch: in epoch 2
            signal.raise_signal(signal.SIGINT)
        return original(self, *args)

    overrides = (*SMALL, f"data.mnist_dir={mnist_dir}", "train.tensorboard=true")
    monkeypatch.setattr(Engine, "_step", interrupting)
    with pytest.raises(Interrupted):
        train("part1-mnist", overrides=overrides, out=run, quiet=True)
    monkeypatch.setattr(Engine, "_step", original)
    train(None, resume=run, quiet=True)  # type: ignore[arg-type]
    assert [e.step for e in read(run).Scalars("loss/train")] == [1, 2, 3]


def test_a_multihead_run_logs_its_heads(tmp_path: Path) -> None:
    run = tmp_path / "heads"
    overrides = ("data.lines={per_class: 10}", "train.epochs=1", "train.tensorboard=true")
    train("multihead-lines", overrides=overrides, out=run, quiet=True)
    tags = set(read(run).Tags()["scalars"])
    assert {f"{head}_acc/test" for head in ("length", "width", "color", "angle")} <= tags


def test_a_study_gives_tensorboard_one_run_per_training(tmp_path: Path, mnist_dir: Path) -> None:
    import yaml

    spec = {
        "name": "board",
        "base": "part1-mnist",
        "set": {
            "data.mnist_dir": str(mnist_dir),
            "data.train_limit": 200,
            "data.test_limit": 100,
            "train.epochs": 1,
            "model.filters": 4,
            "model.dense_units": 16,
        },
        "seeds": [0],
        "variants": {"base": {}, "slower": {"train.lr": 0.0005}},
    }
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "study"
    assert main(["study", str(path), "--out", str(out), "--tensorboard", "--quiet"]) == 0
    lrs = {}
    for name in ("base-seed0", "slower-seed0"):
        lrs[name] = hyperparameters(read(out / "runs" / name))["train.lr"]
    assert lrs == pytest.approx({"base-seed0": 0.001, "slower-seed0": 0.0005})
