"""TensorBoard logs of a run, in ``RUN/tensorboard/`` (optional: ``pip install
'cnnlab[tensorboard]'``; ``train.tensorboard: true`` or ``--tensorboard``).

Each epoch's history row becomes scalars at step = epoch: ``loss/train``, ``loss/val``,
``loss/test``, ``acc/...``, ``lr`` and a multi-head run's figures per head (``length_acc/test``,
...). When the run finishes, its hyper-parameters (the config, flattened) with the kept epoch's
metrics go into the same event files, so TensorBoard's HPARAMS view shows the run as itself,
not as a stray second run (``SummaryWriter.add_hparams`` would make one), and a study's runs
(``tensorboard --logdir STUDY/runs``) are compared there side by side. A resumed run appends
to the same folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

INSTALL_HINT = "train.tensorboard needs TensorBoard: pip install 'cnnlab[tensorboard]'"
SPLITS = ("train", "val", "test")


class BoardLog:
    """The TensorBoard writer of one run."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CnnlabError(INSTALL_HINT) from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def epoch(self, row: dict[str, float]) -> None:
        """One epoch's row of ``history.csv`` as scalars."""
        step = int(row["epoch"])
        for key, value in row.items():
            if key not in ("epoch", "seconds"):
                self.writer.add_scalar(tag(key), value, step)
        self.writer.flush()

    def finish(self, config: dict[str, Any], kept: dict[str, float]) -> None:
        """The hyper-parameters with the kept epoch's metrics, in this run's own files."""
        from torch.utils.tensorboard.summary import hparams

        metrics = {
            f"hparam/{key}": float(kept[key])
            for key in ("test_acc", "test_loss", "val_acc", "val_loss")
            if key in kept
        }
        experiment, start, end = hparams(flatten(config), metrics)
        files = self.writer._get_file_writer()  # the run's own event files (not a subfolder)
        for summary in (experiment, start, end):
            files.add_summary(summary)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, int(kept["epoch"]))
        self.close()

    def close(self) -> None:
        self.writer.close()


def tag(column: str) -> str:
    """``train_loss`` -> ``loss/train``: TensorBoard groups the splits of one measure."""
    part, _, measure = column.partition("_")
    return f"{measure}/{part}" if part in SPLITS and measure else column


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.001}}`` -> ``{"train.lr": 0.001}``; values TensorBoard cannot show
    (lists, None) as text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out
