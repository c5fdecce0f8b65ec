"""The engine's callbacks: called in order around one batch loop, able to stop it, told when
the fit ends however it ends; the LR range test is one of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnlab.errors import Interrupted
from cnnlab.models.registry import build_model
from cnnlab.runfolder import RunFolder
from cnnlab.training import load_config
from cnnlab.training.callbacks import EarlyStopping
from cnnlab.training.distributed import Distributed
from cnnlab.training.engine import Callback, Engine, Position, Step
from cnnlab.training.lr_finder import lr_find
from cnnlab.training.progress import Progress
from cnnlab.training.run import prepare_dataset

SMALL = ("data.train_limit=300", "data.test_limit=50", "model.filters=4", "model.dense_units=16")


def _engine(mnist_dir: Path, *extra: str) -> Engine:
    config = load_config("part1-mnist", (*SMALL, f"data.mnist_dir={mnist_dir}", *extra))
    torch.manual_seed(config.seed)
    data = prepare_dataset(config)
    model = build_model(
        config.model, data.channels, data.num_classes, data.image_size, data.factor_levels
    )
    return Engine(config, data, model, torch.device("cpu"), Distributed(), None, Progress(False))


class Recorder(Callback):
    """Writes down every call it gets."""

    def __init__(self, stop_at: int | None = None, fail_after_epoch: bool = False) -> None:
        self.calls: list[tuple] = []
        self.stop_at, self.fail_after_epoch = stop_at, fail_after_epoch

    def before_fit(self, engine: Engine, position: Position) -> None:
        self.calls.append(("before_fit", position.epoch))

    def before_epoch(self, engine: Engine, position: Position) -> None:
        self.calls.append(("before_epoch", position.epoch))

    def after_step(self, engine: Engine, step: Step) -> None:
        self.calls.append(("after_step", step.epoch, step.batch))
        steps = sum(1 for call in self.calls if call[0] == "after_step")
        if self.stop_at is not None and steps == self.stop_at:
            engine.request_stop("the test asked")

    def after_epoch(self, engine: Engine, position: Position) -> None:
        self.calls.append(("after_epoch", position.epoch, position.history[-1]["epoch"]))
        if self.fail_after_epoch:
            raise RuntimeError("a callback failed")

    def end_fit(self, engine: Engine, position: Position) -> None:
        self.calls.append(("end_fit", position.epoch))


def test_callbacks_are_called_in_order_around_every_step(mnist_dir: Path) -> None:
    engine = _engine(mnist_dir, "train.epochs=2")
    recorder = Recorder()
    position = engine.fit(Position(), [recorder])
    per_epoch = engine.steps_per_epoch
    expected = [("before_fit", 0)]
    for epoch in range(2):
        expected.append(("before_epoch", epoch))
        expected += [("after_step", epoch, batch) for batch in range(per_epoch)]
        expected.append(("after_epoch", epoch + 1, epoch + 1))
    expected.append(("end_fit", 2))
    assert recorder.calls == expected
    assert position.epoch == 2 and len(position.history) == 2


def test_a_callback_stops_the_fit_between_two_steps(mnist_dir: Path) -> None:
    engine = _engine(mnist_dir, "train.epochs=3")
    recorder = Recorder(stop_at=engine.steps_per_epoch + 2)  # the third step of epoch 2
    position = engine.fit(Position(), [recorder])  # nothing raised: a stop, not an interrupt
    assert engine.stop_reason == "the test asked"
    assert (position.epoch, position.batch) == (1, 2)
    assert [c for c in recorder.calls if c[0] == "after_epoch"] == [("after_epoch", 1, 1)]
    assert recorder.calls[-1] == ("end_fit", 1)


def test_end_fit_is_called_when_the_fit_fails(mnist_dir: Path) -> None:
    engine = _engine(mnist_dir, "train.epochs=2")
    recorder = Recorder(fail_after_epoch=True)
    with pytest.raises(RuntimeError, match="a callback failed"):
        engine.fit(Position(), [recorder])
    assert recorder.calls[-1] == ("end_fit", 1)


def test_early_stopping_is_a_callback_that_stops_after_patience(mnist_dir: Path) -> None:
    engine = _engine(mnist_dir, "train.epochs=4", "data.val_fraction=0.2", "train.patience=1")
    engine.best_epoch = lambda history: 1 if history else None  # epoch 1 stays the best
    position = engine.fit(Position(), [EarlyStopping()])
    assert position.epoch == 2 and engine.stop_reason == "early stopping"
    resumed = engine.fit(position, [EarlyStopping()])  # resumed after its stop: trains nothing
    assert resumed.epoch == 2 and len(resumed.history) == 2


def test_the_range_test_runs_the_engines_loop_across_epochs(mnist_dir: Path) -> None:
    config = load_config("part1-mnist", (*SMALL, f"data.mnist_dir={mnist_dir}"))
    steps_per_epoch = -(-300 // config.train.batch_size)
    steps = 3 * steps_per_epoch + 1  # into a fourth epoch
    result = lr_find(config, steps=steps, lr_min=1e-6, lr_max=1e-4)  # too low to diverge
    assert len(result.lrs) == len(result.losses) == steps and not result.stopped_early
    assert result.lrs[-1] == pytest.approx(1e-4)


class StopAfterFirstEpoch(Callback):
    def __init__(self) -> None:
        self.steps = 0

    def after_step(self, engine: Engine, step: Step) -> None:
        self.steps += 1

    def after_epoch(self, engine: Engine, position: Position) -> None:
        engine.request_stop("one epoch is enough")


def test_train_takes_your_callbacks_and_a_stop_after_an_epoch_finishes_the_run(
    tmp_path: Path, mnist_dir: Path
) -> None:
    import cnnlab

    mine = StopAfterFirstEpoch()
    overrides = (*SMALL, f"data.mnist_dir={mnist_dir}", "train.epochs=3")
    run = cnnlab.train(
        "part1-mnist", out=tmp_path / "run", overrides=overrides, quiet=True, callbacks=[mine]
    )
    assert isinstance(mine, cnnlab.Callback)
    assert len(run.history) == 1 and mine.steps == -(-300 // run.config.train.batch_size)
    assert RunFolder(tmp_path / "run").state() == "trained"


def test_a_callback_stop_inside_an_epoch_leaves_the_run_resumable(
    tmp_path: Path, mnist_dir: Path
) -> None:
    import cnnlab

    recorder = Recorder(stop_at=2)
    overrides = (*SMALL, f"data.mnist_dir={mnist_dir}", "train.epochs=2")
    with pytest.raises(Interrupted, match=r"stopped by a callback \(the test asked\) in epoch 1"):
        cnnlab.train(
            "part1-mnist", out=tmp_path / "run", overrides=overrides, quiet=True,
            callbacks=[recorder],
        )  # fmt: skip
    assert RunFolder(tmp_path / "run").state() == "partial"
    resumed = cnnlab.train(None, resume=tmp_path / "run", quiet=True)
    assert len(resumed.history) == 2


def test_early_stopping_counts_patience_from_the_end_of_the_warm_up(mnist_dir: Path) -> None:
    # one-cycle over 8 epochs warms up for 2: epoch 1 the best, patience 1 would stop after
    # epoch 2 while the rate still rises; counted from the warm-up's end it stops after 3
    engine = _engine(
        mnist_dir, "train.epochs=8", "data.val_fraction=0.2", "train.patience=1",
        "train.scheduler=onecycle",
    )  # fmt: skip
    engine.best_epoch = lambda history: 1 if history else None
    position = engine.fit(Position(), [EarlyStopping()])
    assert position.epoch == 3 and engine.stop_reason == "early stopping"


def test_a_log_gets_plain_progress_lines_inside_a_long_epoch(
    mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnlab.training import progress as progress_module
    from cnnlab.training.callbacks import ProgressLines

    monkeypatch.setattr(progress_module, "LOG_EVERY", 0.0)  # every update: a line
    engine = _engine(mnist_dir, "train.epochs=1", "train.batch_size=8")  # 38 batches
    engine.progress = progress_module.Progress(enabled=True)
    engine.progress.interactive = False  # as in a log file
    engine.fit(Position(), [ProgressLines()])
    lines = [line for line in capsys.readouterr().out.splitlines() if "batches" in line]
    assert lines and lines[0].startswith("epoch 1/1: 20/38 batches, loss ")
    assert lines[0].endswith("s left in this epoch")
