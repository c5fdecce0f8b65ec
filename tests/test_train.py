"""The training engine: run folder, determinism, exact resume, divergence, bad configs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import read_history
from cnnlab.training import load_config, load_run, train
from cnnlab.training.engine import Engine

TINY_LINES = (
    "data.dataset=lines",
    "data.lines={per_class: 12, test_fraction: 0.25}",
    "train.epochs=3",
    "train.batch_size=32",
)


def tiny(tmp_path: Path, name: str, *extra: str) -> object:
    return train("part1-lines", out=tmp_path / name, overrides=(*TINY_LINES, *extra), quiet=True)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def same_history(a: list[dict], b: list[dict]) -> bool:
    drop = {"seconds"}
    return [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]


def test_run_folder_holds_everything(tmp_path: Path) -> None:
    run = tiny(tmp_path, "a")
    folder = tmp_path / "a"
    for name in ("config.yaml", "run.json", "history.csv", "model.safetensors"):
        assert (folder / name).is_file(), name
    assert (folder / "checkpoints" / "last.pt").is_file()
    assert not (folder / "checkpoints" / "best.pt").exists()  # no validation split: no choice
    rows = read_history(folder / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "lr",
        "seconds",
    }
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["dataset"]["train"] == 864 and info["dataset"]["test"] == 288
    assert info["preprocess"]["channels"] == 3
    assert len(run.history) == 3 and rows[-1]["test_acc"] == pytest.approx(
        run.history[-1]["test_acc"], abs=1e-6
    )
    # the resolved config round-trips
    again = load_config(folder / "config.yaml")
    assert again == run.config


def test_same_seed_same_run_other_seed_other_run(tmp_path: Path) -> None:
    a, b = tiny(tmp_path, "a"), tiny(tmp_path, "b")
    assert same_history(a.history, b.history)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = tiny(tmp_path, "c", "seed=1")
    assert not same_history(a.history, c.history)


@pytest.mark.parametrize("stop_at", [27, 35], ids=["end-of-epoch-1", "mid-epoch-2"])
def test_resume_is_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: int
) -> None:
    """Stopped (Ctrl-C) at some step and resumed, a run ends exactly as an uninterrupted one."""
    whole = tiny(
        tmp_path, "whole", "train.augment_shift=2", "model.name=convnet", "model.dropout=0.2"
    )
    original = Engine._step
    steps = {"n": 0}

    def interrupting_step(self, *args):
        if steps["n"] == stop_at:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C: the loop stops after this step
        steps["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(Engine, "_step", interrupting_step)
    with pytest.raises(
        CnnlabError, match=r"interrupted in epoch .* Resume with: cnnlab train --resume"
    ):
        tiny(tmp_path, "cut", "train.augment_shift=2", "model.name=convnet", "model.dropout=0.2")
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["status"] == "interrupted"
    monkeypatch.setattr(Engine, "_step", original)
    resumed = train(None, resume=tmp_path / "cut", quiet=True)
    assert same_history(whole.history, resumed.history)
    wa, wb = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_history(tmp_path / "cut" / "history.csv")[-1]["epoch"] == 3


def test_nan_loss_stops_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Engine._step
    calls = {"n": 0}

    def poisoned(self, *args):
        calls["n"] += 1
        loss, correct = original(self, *args)
        return (float("nan") if calls["n"] > 30 else loss), correct

    monkeypatch.setattr(Engine, "_step", poisoned)
    with pytest.raises(
        CnnlabError, match=r"diverged: the loss became nan in epoch 2.*last\.pt \(end of epoch 1\)"
    ):
        tiny(tmp_path, "nan")
    state = torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert json.loads((tmp_path / "nan" / "run.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("train.lrr=0.1",), "unknown key.*train.lrr; valid keys in train: epochs, batch_size"),
        (
            ("colour=red",),
            "unknown key.*colour; valid keys: name, seed, device, data, model, train",
        ),
        (("train.lr=fast",), "train.lr must be float, got 'fast'"),
        (("train.epochs=0",), "train.epochs must be > 0"),
        (("train.optimizer=adamax",), "train.optimizer must be one of adam, adamw, sgd, rmsprop"),
        (("model.depth=3",), "model 'part1': unknown option.*depth; valid options: kernel_size"),
        (
            ("model.name=resnet9",),
            "model 'resnet9' is unknown; known models: auto, convnet, multihead, part1, resnet",
        ),
        (("data.dataset=cifar",), "dataset 'cifar': expected one of mnist, lines"),
        (("train.precision=fp16",), "train.precision must be one of fp32, bf16, auto"),
    ],
)
def test_bad_configs_are_refused(tmp_path: Path, overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        train("part1-lines", out=tmp_path / "bad", overrides=overrides, quiet=True)
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_an_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    tiny(tmp_path, "a", "train.epochs=1")
    with pytest.raises(CnnlabError, match=r"already holds a run.*--resume"):
        tiny(tmp_path, "a", "train.epochs=1")


def test_load_run_gives_a_ready_model(tmp_path: Path) -> None:
    run = tiny(tmp_path, "a", "train.epochs=1")
    loaded = load_run(tmp_path / "a")
    images = torch.zeros(5, 3, 28, 28, dtype=torch.uint8)
    images[:, 0, 10:12, 5:20] = 255
    assert torch.allclose(loaded.predict_proba(images), run.predict_proba(images), atol=1e-6)
    assert loaded.class_names[85] == "len15_wid3_ang090_blue"


def test_load_run_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match=r"no such run folder"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match=r"not a run folder"):
        load_run(tmp_path / "empty")
    tiny(tmp_path, "a", "train.epochs=1")
    (tmp_path / "a" / "model.safetensors").unlink()
    with pytest.raises(CnnlabError, match=r"no model weights here"):
        load_run(tmp_path / "a")
    (tmp_path / "a" / "checkpoints" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CnnlabError, match=r"not a readable cnnlab checkpoint"):
        train(None, resume=tmp_path / "a", quiet=True)


def test_models_command_lists_layers_and_parameters(capsys) -> None:
    from cnnlab.cli import main

    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "part1: kernel_size=7, filters=32" in listing and "convnet: channels=" in listing
    assert main(["models", "part1"]) == 0
    assert "3,977,866" in capsys.readouterr().out  # the prescribed net on MNIST
    assert main(["models", "part1", "--channels", "3", "--classes", "96"]) == 0
    assert "4,069,152" in capsys.readouterr().out  # ... and on Lines
    assert main(["models", "convnet", "--option", "depth=3"]) == 2


def test_bf16_trains_in_float32_weights_deterministically_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 autocasts the forward pass only: float32 weights, same seed same run, exact resume."""
    bf16 = ("train.precision=bf16", "train.epochs=2")
    a, b = tiny(tmp_path, "a", *bf16), tiny(tmp_path, "b", *bf16)
    fp32 = tiny(tmp_path, "fp32", "train.precision=fp32", "train.epochs=2")
    assert same_history(a.history, b.history)
    assert not same_history(a.history, fp32.history)  # the forward pass did run in bfloat16
    assert a.history[-1]["train_acc"] > 0.25  # and it learns (chance: 1/96)
    assert {v.dtype for v in weights(tmp_path / "a").values()} <= {torch.float32, torch.int64}
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["hardware"]["precision"] == "bf16"

    original, steps = Engine._step, {"n": 0}

    def interrupting_step(self, *args):
        if steps["n"] == 40:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C: the loop stops after this step
        steps["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(Engine, "_step", interrupting_step)
    with pytest.raises(CnnlabError, match="interrupted"):
        tiny(tmp_path, "cut", *bf16)
    monkeypatch.setattr(Engine, "_step", original)
    resumed = train(None, resume=tmp_path / "cut", quiet=True)
    assert same_history(a.history, resumed.history)
    wa, wc = weights(tmp_path / "a"), weights(tmp_path / "cut")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_native(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    from cnnlab.training import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert precision.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"
