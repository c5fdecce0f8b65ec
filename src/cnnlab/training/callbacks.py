"""What happens around the training steps, one small :class:`Callback` each.

:meth:`Engine.fit <cnnlab.training.engine.Engine.fit>` runs one batch loop and calls its
callbacks in order (the hooks: :class:`~cnnlab.training.engine.Callback`). ``cnnlab train``
gives :func:`standard_callbacks` (progress lines, checkpoints, early stopping), then the
history file and TensorBoard (``training/run.py``); the LR range test is a callback of its
own (``lr_finder.py``), stopping the loop with :meth:`Engine.request_stop` once it is done.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.runfolder import RunFolder
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.engine import Callback, Engine, Position, Step
from cnnlab.training.optim import warmup_epochs

PROGRESS_EVERY = 20
"""Batches between two updates of the progress bar."""


class ProgressLines(Callback):
    """An epoch's live bar and its closing line (:mod:`cnnlab.training.progress`)."""

    def before_epoch(self, engine: Engine, position: Position) -> None:
        engine.progress.start_epoch(
            position.epoch + 1, engine.t.epochs, engine.steps_per_epoch, position.batch
        )

    def after_step(self, engine: Engine, step: Step) -> None:
        if step.batch % PROGRESS_EVERY == PROGRESS_EVERY - 1:
            loss, correct, n = (step.sums[i].item() for i in range(3))
            engine.progress.update(PROGRESS_EVERY, loss / n, correct / n)

    def after_epoch(self, engine: Engine, position: Position) -> None:
        row = position.history[-1]
        measured = "  ".join(
            f"{part} loss {row[f'{part}_loss']:.4f} acc {row[f'{part}_acc']:.4f}"
            for part in ("train", *engine.evaluated)
        )
        engine.progress.end_epoch(
            f"epoch {int(row['epoch'])}/{engine.t.epochs}  {measured}  ({row['seconds']:.1f} s)"
        )


class Checkpoints(Callback):
    """``checkpoints/last.pt`` after every epoch and where an interrupt stops the run;
    ``best.pt`` when the epoch is the best on validation (never chosen on test). Only the main
    process writes, and only in a run folder."""

    def after_epoch(self, engine: Engine, position: Position) -> None:
        self._save(engine, "last", position)
        if "val" in engine.evaluated and engine.best_epoch(position.history) == position.epoch:
            self._save(engine, "best", position)

    def on_interrupt(self, engine: Engine, position: Position) -> None:
        self._save(engine, "last", position)

    @staticmethod
    def _save(engine: Engine, name: str, position: Position) -> None:
        if engine.run_dir is not None and engine.dist.is_main:
            save_checkpoint(RunFolder(engine.run_dir).checkpoint(name), engine.state(position))


class EarlyStopping(Callback):
    """With ``train.patience``: stop once that many epochs have passed since the best on
    validation, counted from the end of the warm-up at the earliest (a rate still rising is no
    sign of a plateau). A function of the history alone, so a resumed run decides as the
    uninterrupted one (one resumed after its stop trains nothing)."""

    def before_fit(self, engine: Engine, position: Position) -> None:
        self._check(engine, position)

    def after_epoch(self, engine: Engine, position: Position) -> None:
        self._check(engine, position)

    @staticmethod
    def _check(engine: Engine, position: Position) -> None:
        best = engine.best_epoch(position.history)
        if not engine.t.patience or best is None:
            return
        if position.epoch - max(best, warmup_epochs(engine.t)) >= engine.t.patience:
            engine.request_stop("early stopping")


class HistoryFile(Callback):
    """``history.csv`` rewritten after every epoch (the main process only): what ``cnnlab
    status`` and a job's live lines read while the run trains."""

    def __init__(self, folder: RunFolder, columns: tuple[str, ...]) -> None:
        self.folder, self.columns = folder, columns

    def after_epoch(self, engine: Engine, position: Position) -> None:
        if engine.dist.is_main:
            self.folder.write_history(position.history, self.columns)


class TensorBoardLog(Callback):
    """Each epoch's row as TensorBoard scalars in ``RUN/tensorboard/`` (main process only)."""

    def __init__(self, folder: Path) -> None:
        from cnnlab.training.tensorboard import BoardLog

        self.board = BoardLog(folder)

    def after_epoch(self, engine: Engine, position: Position) -> None:
        self.board.epoch(position.history[-1])

    def end_fit(self, engine: Engine, position: Position) -> None:
        self.board.close()


def standard_callbacks() -> list[Callback]:
    """What every training in a run folder has: the progress lines, the checkpoints and early
    stopping (with ``train.patience``), in that order."""
    return [ProgressLines(), Checkpoints(), EarlyStopping()]


__all__ = [
    "Checkpoints",
    "EarlyStopping",
    "HistoryFile",
    "ProgressLines",
    "TensorBoardLog",
    "standard_callbacks",
]
