"""The learning-rate range test (Smith, 2015; fastai's and Lightning's ``lr_find``).

Train a config's model for up to ``steps`` batches while the learning rate grows exponentially
from ``lr_min`` to ``lr_max``, with the config's optimiser, loss, batch size and precision (its
schedule is replaced by the ramp); stop early once the smoothed loss passes ``DIVERGE_FACTOR``
times its best. The suggestion is the rate where the smoothed loss falls fastest (per decade of
rate), as Lightning suggests it: a heuristic to read off the curve, not a result (its
reliability is disputed, e.g. Lightning-AI/pytorch-lightning issues on ``lr_find``); a rate
somewhat below the loss minimum is the usual reading. Seeded by the config's seed; the model's
weights and buffers are put back afterwards, and nothing is written unless asked.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.training.config import RunConfig, load_config
from cnnlab.training.engine import Callback, Engine, Position, Step
from cnnlab.training.interrupt import StopRequest

DIVERGE_FACTOR = 4.0
SMOOTHING = 0.05
"""Weight of the newest loss in the exponential moving average (fastai's ``beta`` = 0.95)."""
SKIP = 5
"""Points left out at each end when looking for the steepest descent (noisy ends)."""


@dataclass(frozen=True)
class RangeTest:
    """The learning rates tried, the loss at each (raw and smoothed), and the suggestion."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float | None
    stopped_early: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "lrs": list(self.lrs),
            "losses": list(self.losses),
            "smoothed": list(self.smoothed),
            "suggestion": self.suggestion,
            "stopped_early": self.stopped_early,
        }


def lr_find(
    config: RunConfig | str | Path,
    *,
    overrides: tuple[str, ...] = (),
    model: nn.Module | None = None,
    steps: int = 200,
    lr_min: float = 1e-7,
    lr_max: float = 10.0,
    device: str | None = None,
) -> RangeTest:
    """Run the range test for ``config`` (a config, YAML file or preset, with ``overrides``)
    on its model (or ``model``, whose weights are restored afterwards)."""
    from cnnlab.models.registry import build_model
    from cnnlab.training.distributed import Distributed
    from cnnlab.training.progress import Progress
    from cnnlab.training.recipe import resolve_model
    from cnnlab.training.run import prepare_dataset, resolve_device

    if not (steps >= 2 and 0 < lr_min < lr_max and math.isfinite(lr_max)):
        raise CnnlabError(
            f"lr-find needs steps >= 2 and 0 < --min < --max, got steps {steps}, "
            f"--min {lr_min}, --max {lr_max}"
        )
    if not isinstance(config, RunConfig):
        config = load_config(config, overrides)
    torch.manual_seed(config.seed)
    dataset = prepare_dataset(config)
    if model is None:
        config = resolve_model(config, dataset.channels, dataset.num_classes, dataset.image_size)
        model = build_model(
            config.model,
            dataset.channels,
            dataset.num_classes,
            dataset.image_size,
            dataset.factor_levels,
        )
    saved = copy.deepcopy(model.state_dict())
    was_training = model.training
    where = resolve_device(device or config.device)
    engine = Engine(config, dataset, model, where, Distributed(), None, Progress(enabled=False))
    for group in engine.optimizer.param_groups:
        group["initial_lr"] = group["lr"] = lr_min
    factor = (lr_max / lr_min) ** (1 / (steps - 1))
    engine.scheduler = torch.optim.lr_scheduler.LambdaLR(  # the ramp replaces the schedule
        engine.optimizer, lambda step: factor**step
    )
    recorder = _Recorder(steps, lr_min, factor)
    try:
        position = Position()
        while engine.stop_reason is None:  # the engine's batch loop, epoch after epoch
            engine.train_epoch(position, StopRequest(), [recorder])
            position = Position(epoch=position.epoch + 1)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    lrs, smoothed = recorder.lrs, recorder.smoothed
    return RangeTest(
        tuple(lrs), tuple(recorder.losses), tuple(smoothed), suggest(lrs, smoothed), recorder.early
    )


class _Recorder(Callback):
    """The range test as a callback: each step's rate and loss (raw and smoothed); stops the
    loop after ``steps`` steps, or early once the loss diverges."""

    def __init__(self, steps: int, lr_min: float, factor: float) -> None:
        self.steps, self.lr_min, self.factor = steps, lr_min, factor
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.average, self.best, self.early = 0.0, math.inf, False

    def after_step(self, engine: Engine, step: Step) -> None:
        done = len(self.lrs)
        self.lrs.append(self.lr_min * self.factor**done)  # the rate this step trained at
        self.losses.append(step.loss)
        self.average = (1 - SMOOTHING) * self.average + SMOOTHING * step.loss
        value = self.average / (1 - (1 - SMOOTHING) ** (done + 1))  # bias-corrected
        self.smoothed.append(value)
        self.best = min(self.best, value)
        if not math.isfinite(step.loss) or value > DIVERGE_FACTOR * self.best:
            self.early = done < self.steps - 1
            engine.request_stop("the loss diverged")
        elif done + 1 == self.steps:
            engine.request_stop("every step taken")


def suggest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest per decade of rate (None: too few
    finite points to say)."""
    points = [(math.log10(r), s) for r, s in zip(lrs, smoothed, strict=True) if math.isfinite(s)]
    points = points[SKIP : len(points) - SKIP]
    if len(points) < 3:
        return None
    slopes = [
        (points[i + 1][1] - points[i - 1][1]) / (points[i + 1][0] - points[i - 1][0])
        for i in range(1, len(points) - 1)
    ]
    steepest = min(range(len(slopes)), key=slopes.__getitem__)
    return 10 ** points[steepest + 1][0]


def plot_range_test(result: RangeTest, path: Path, title: str) -> Path:
    """Loss against learning rate (log axis), the suggestion marked, saved to ``path``."""
    from matplotlib.figure import Figure

    from cnnlab.fileio import atomic_path

    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.subplots()
    axes.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="loss per batch")
    axes.plot(result.lrs, result.smoothed, color="C0", label="smoothed")
    if result.suggestion is not None:
        axes.axvline(result.suggestion, color="C3", linestyle="--")
        axes.annotate(
            f"suggestion {result.suggestion:.2g}\n(a heuristic: read the curve)",
            (result.suggestion, 0.97),
            xycoords=("data", "axes fraction"),
            xytext=(4, 0),
            textcoords="offset points",
            va="top",
            color="C3",
        )
    axes.set_xscale("log")
    smooth = [s for s in result.smoothed if math.isfinite(s)]
    raw = [s for s in result.losses if math.isfinite(s)]
    if smooth:
        top = min(max(smooth), DIVERGE_FACTOR * min(smooth))
        axes.set_ylim(min([*smooth, *raw]) * 0.9, top * 1.1)
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.legend(loc="lower left")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    return Path(path)
