"""The training loop: whole dataset in memory, exact resume, every rank its shard of a batch."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from cnnlab.data.dataset import ImageDataset
from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.models.fusion import inference_model
from cnnlab.models.inference import Preprocess
from cnnlab.models.tta import averaged, resolve_tta
from cnnlab.runfolder import RunFolder
from cnnlab.training.augment import Augmenter, expand, random_shift
from cnnlab.training.config import RunConfig
from cnnlab.training.distributed import Distributed
from cnnlab.training.interrupt import StopRequest
from cnnlab.training.objectives import objective_for
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.precision import as_float, autocast, resolve_precision
from cnnlab.training.progress import Progress

EMA_STATISTICS_IMAGES = 4096
"""Training images (a fixed seeded sample) on which the moving average's BatchNorm statistics
are recomputed before each evaluation: averaged running statistics do not fit averaged weights
(a ResNet on 6,000 MNIST images, 3 epochs, ``ema`` 0.95: 0.934 with them, 0.952 recomputed,
0.955 for the trained weights; at 0.999 on Fashion-MNIST the average stayed at chance)."""

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
"""``history.csv``'s columns without a validation split (with one, ``val_loss`` and
``val_acc`` follow the train columns; objectives add their own per split)."""


@dataclass
class Position:
    """Where a run stands: completed epochs, batches done in the current one, partial sums."""

    epoch: int = 0
    batch: int = 0
    sums: list[float] = field(default_factory=list)  # loss*n, correct, n, *extra (objective)
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The batch order of an epoch: a permutation fixed by (seed, epoch) alone."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The generator of a batch's augmentation: fixed by (seed, epoch, batch) alone."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 100_003 + batch)


@dataclass(frozen=True)
class Step:
    """One optimiser step as the callbacks see it: its epoch and batch (from 0), its loss and
    the epoch's running sums so far (loss*n, correct, n, then the objective's extras)."""

    epoch: int
    batch: int
    loss: float
    sums: torch.Tensor


class Callback:
    """A hook into :meth:`Engine.fit`; every method does nothing unless overridden.

    Called in the order given: ``before_fit``, then per epoch ``before_epoch``, ``after_step``
    after every optimiser step and ``after_epoch`` once the epoch is evaluated and its row is
    in the position's history, and ``end_fit`` however the fit ends (finished, stopped,
    interrupted or failed). A callback ends the fit with :meth:`Engine.request_stop`. The ones
    cnnlab uses: :mod:`cnnlab.training.callbacks`."""

    def before_fit(self, engine: Engine, position: Position) -> None:
        """Before the first step (of a new or resumed run)."""

    def before_epoch(self, engine: Engine, position: Position) -> None:
        """Before an epoch's first step (or its next one, when resumed inside it)."""

    def after_step(self, engine: Engine, step: Step) -> None:
        """After each optimiser step, before the loss is checked for divergence."""

    def after_epoch(self, engine: Engine, position: Position) -> None:
        """After an epoch is evaluated; ``position.history[-1]`` is its row."""

    def on_interrupt(self, engine: Engine, position: Position) -> None:
        """Ctrl-C or SIGTERM stopped the fit between two steps, inside an epoch."""

    def end_fit(self, engine: Engine, position: Position) -> None:
        """The fit ends, whichever way (also on an error)."""


class Engine:
    """Trains one model on one dataset with the optimiser, schedule and loss of a config."""

    def __init__(
        self,
        config: RunConfig,
        dataset: ImageDataset,
        model: nn.Module,
        device: torch.device,
        dist: Distributed,
        run_dir: Path | None,
        progress: Progress,
    ) -> None:
        self.config = config
        self.t = config.train
        self.dataset = dataset
        self.device = device
        self.dist = dist
        self.run_dir = run_dir
        self.progress = progress
        self.precision = resolve_precision(self.t.precision, device)
        # channels_last: oneDNN's fast path for convolutions, pooling and BatchNorm on the CPU.
        self.model = model.to(device, memory_format=torch.channels_last)
        self.trained = self.model
        if dist.enabled:
            if device.type == "cuda":  # batch statistics over the global batch (GPU only)
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.trained = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.preprocess = Preprocess(
            dataset.channels, dataset.image_size, dataset.mean, dataset.std
        )
        self.objective = objective_for(self.model, dataset, self.t)
        self.train_images = dataset.train.images.to(device)
        self.train_targets = {
            k: v.to(device) for k, v in self.objective.targets(dataset.train).items()
        }
        self.evaluated = self._evaluated_splits()
        self.keeps_best = bool(
            self.t.keep == "best" or self.t.patience or (self.t.keep == "auto" and self.val)
        )
        """Whether the run keeps the weights of its best epoch on validation (``train.keep``)."""
        self.augmenter = Augmenter(expand(self.t.augment), dataset, device)
        self.views, notes = resolve_tta(self.t.tta, dataset)
        for note in self.augmenter.notes + notes:
            progress.message(note)
        self.steps_per_epoch = math.ceil(len(dataset.train) / self.t.batch_size)
        self.optimizer = build_optimizer(self.model.parameters(), self.t)
        self.ema = (  # train.ema: the weights' moving average, what is evaluated and kept
            AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(self.t.ema), use_buffers=True
            )
            if self.t.ema > 0
            else None
        )
        self.scheduler = build_scheduler(self.optimizer, self.t, self.steps_per_epoch)
        self.stop_reason: str | None = None
        self.columns = self._columns()

    def _evaluated_splits(self) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """The splits measured after every epoch (validation if any, test) on the device;
        refused where ``train.keep: best`` or early stopping needs a validation split."""
        evaluated = {
            name: (
                split.images.to(self.device),
                {k: v.to(self.device) for k, v in self.objective.targets(split).items()},
            )
            for name, split in (("val", self.dataset.val), ("test", self.dataset.test))
            if split is not None
        }
        if self.t.keep == "best" and "val" not in evaluated:
            raise CnnlabError(
                "train.keep best: the best epoch is chosen on the validation split, and this "
                "data has none; set data.val_fraction (e.g. 0.1)"
            )
        if self.t.patience and "val" not in evaluated:
            raise CnnlabError(
                f"train.patience {self.t.patience}: early stopping watches the validation "
                "split, and this data has none; set data.val_fraction (e.g. 0.1)"
            )
        return evaluated

    @property
    def val(self) -> bool:
        """Whether the data has a validation split (measured after every epoch)."""
        return "val" in self.evaluated

    def _columns(self) -> tuple[str, ...]:
        """The history's columns: per split loss and accuracy, rate, seconds, the extras."""
        parts = ("train", *self.evaluated)
        return (
            "epoch",
            *(f"{part}_{name}" for part in parts for name in ("loss", "acc")),
            "lr",
            "seconds",
            *(f"{part}_{name}" for part in parts for name in self.objective.extra),
        )

    @property
    def kept(self) -> nn.Module:
        """The model whose weights are evaluated, chosen and saved: the moving average with
        ``train.ema``, else the trained model."""
        return self.ema.module if self.ema is not None else self.model

    def keep_weights_of(self, state: dict[str, Any]) -> None:
        """Put a checkpoint's kept weights (its moving average with ``train.ema``) back."""
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        else:
            self.model.load_state_dict(state["model"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])

    # -- state ----------------------------------------------------------------------------
    def state(self, position: Position) -> dict[str, Any]:
        return {
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": position.epoch,
            "batch": position.batch,
            "sums": torch.tensor(position.sums or self._zeros().tolist(), dtype=torch.float64),
            "seconds": position.seconds,
            "history": position.history,
        }

    def restore(self, state: dict[str, Any]) -> Position:
        """Continue from a checkpoint's state; a checkpoint of another model or config, or a
        damaged one, is one :class:`CnnlabError`."""
        try:
            self.model.load_state_dict(state["model"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            position = Position(
                epoch=int(state["epoch"]),
                batch=int(state["batch"]),
                sums=[float(v) for v in state["sums"]],
                seconds=float(state["seconds"]),
                history=list(state["history"]),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CnnlabError(
                f"{RunFolder(self.run_dir).checkpoint() if self.run_dir else 'checkpoint'}: does "
                f"not fit this run's model and config ({first})"
            ) from None
        if position.sums and len(position.sums) != len(self._zeros()):
            raise CnnlabError("the checkpoint's epoch sums do not fit this run's objective")
        return position

    def request_stop(self, reason: str) -> None:
        """End the fit after the current step (a callback's way to stop: early stopping, the
        LR range test); ``fit`` returns the position reached, nothing raised."""
        self.stop_reason = reason

    # -- loop -----------------------------------------------------------------------------
    def fit(self, position: Position, callbacks: Sequence[Callback] = ()) -> Position:
        """Train from ``position`` to the last epoch, or until a callback asks to stop,
        ``callbacks`` called around the steps (checkpoints too are a callback).

        Ctrl-C (or SIGTERM) stops between two steps or after an epoch's checkpoints, saves a
        checkpoint there and raises :class:`Interrupted`: resuming from it is bit-identical
        to a run never interrupted. A second signal stops at once, saving nothing."""
        hooks = list(callbacks)
        stop = StopRequest()
        self.stop_reason = None
        with stop.installed():
            try:
                for hook in hooks:
                    hook.before_fit(self, position)
                while position.epoch < self.t.epochs and self.stop_reason is None:
                    self.train_epoch(position, stop, hooks)
                    if self.stop_reason is not None:  # a callback ended it inside the epoch
                        break
                    if position.batch < self.steps_per_epoch:
                        for hook in hooks:
                            hook.on_interrupt(self, position)
                        raise Interrupted(
                            f"interrupted in epoch {position.epoch + 1} after {position.batch} "
                            "batches; checkpoint saved.",
                            self._resume_hint(),
                        )
                    self._end_epoch(position, hooks)
                    if self._stopping(stop) and position.epoch < self.t.epochs:
                        raise Interrupted(
                            f"interrupted after epoch {position.epoch}; checkpoint saved.",
                            self._resume_hint(),
                        )
            except KeyboardInterrupt:
                raise Interrupted(
                    "stopped at once (a second interrupt); nothing saved since the last "
                    "checkpoint.",
                    self._resume_hint(),
                ) from None
            finally:
                for hook in hooks:
                    hook.end_fit(self, position)
        return position

    def _end_epoch(self, position: Position, hooks: Sequence[Callback]) -> None:
        """Evaluate, record the epoch in the history and call the callbacks' ``after_epoch``."""
        self._refresh_ema_statistics()
        train = self.dist.sum(torch.tensor(position.sums, dtype=torch.float64))
        row = {
            "epoch": position.epoch + 1,
            **self._averages("train", train),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": position.seconds,
        }
        for name, (images, targets) in self.evaluated.items():
            row.update(self._averages(name, self.evaluate(images, targets)))
        position.history.append({k: row[k] for k in self.columns})
        position.epoch, position.batch = position.epoch + 1, 0
        position.sums, position.seconds = [], 0.0
        for hook in hooks:
            hook.after_epoch(self, position)

    @torch.no_grad()
    def _refresh_ema_statistics(self) -> None:
        """The moving average's BatchNorm statistics recomputed (cumulatively, as
        ``torch.optim.swa_utils.update_bn`` does) on :data:`EMA_STATISTICS_IMAGES` training
        images, the same ones every epoch and in every process."""
        norms = (nn.modules.batchnorm._BatchNorm,)
        if self.ema is None or not any(isinstance(m, norms) for m in self.ema.modules()):
            return
        order = epoch_order(len(self.dataset.train), self.config.seed, -1, self.device)
        index = order[:EMA_STATISTICS_IMAGES]
        size = self.t.eval_batch_size
        batches = (
            self._input(self.train_images.index_select(0, index[i : i + size]))
            for i in range(0, index.numel(), size)
        )
        update_bn(batches, self.ema.module)

    def best_epoch(self, history: list[dict[str, float]]) -> int | None:
        """The epoch with the best validation accuracy (None without a validation split):
        with early stopping the last one that beat every earlier one by more than
        ``min_delta``, else the latest of the highest."""
        if "val" not in self.evaluated or not history:
            return None
        best, epoch = -math.inf, None
        for row in history:
            better = (
                row["val_acc"] > best + self.t.min_delta
                if self.t.patience
                else (row["val_acc"] >= best)
            )
            if better:
                best, epoch = row["val_acc"], int(row["epoch"])
        return epoch

    def train_epoch(
        self, position: Position, stop: StopRequest, hooks: Sequence[Callback] = ()
    ) -> None:
        """The batch loop: train the rest of the current epoch, ``hooks`` called around the
        steps; return early, at a step boundary, on a stop request or a callback's
        :meth:`request_stop` (``position.batch`` then counts the batches done)."""
        t, seed, epoch = self.t, self.config.seed, position.epoch
        order = epoch_order(len(self.dataset.train), seed, epoch, self.device)
        self.trained.train()
        sums = torch.tensor(position.sums, dtype=torch.float64) if position.sums else self._zeros()
        for hook in hooks:
            hook.before_epoch(self, position)
        started = time.perf_counter() - position.seconds
        done = position.batch
        for batch in range(position.batch, self.steps_per_epoch):
            index = self.dist.shard(order[batch * t.batch_size : (batch + 1) * t.batch_size])
            loss, batch_sums = self._step(index, epoch, batch)
            sums += batch_sums
            done = batch + 1
            for hook in hooks:
                hook.after_step(self, Step(epoch, batch, loss, sums))
            if self.stop_reason is not None:
                break
            if not math.isfinite(loss):
                self._diverged(position, epoch, batch, loss)
            if self._stopping(stop) and done < self.steps_per_epoch:
                break
        position.batch, position.sums = done, sums.tolist()
        position.seconds = time.perf_counter() - started

    def _stopping(self, stop: StopRequest) -> bool:
        """Whether to stop here: asked in this process (or, under torchrun, in any)."""
        if not self.dist.enabled:
            return stop.requested
        flag = torch.tensor([float(stop.requested)], dtype=torch.float64)
        return bool(self.dist.sum(flag).item() > 0)

    def _resume_hint(self) -> str:
        return f"Resume with: cnnlab train --resume {self.run_dir}"

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        return self.preprocess(images).contiguous(memory_format=torch.channels_last)

    def _step(self, index: torch.Tensor, epoch: int, batch: int) -> tuple[float, torch.Tensor]:
        images = self.train_images.index_select(0, index)
        targets = {k: v.index_select(0, index) for k, v in self.train_targets.items()}
        mix = None
        if self.t.augment_shift > 0 or self.augmenter.active:
            generator = batch_generator(self.config.seed, epoch, batch)
            if self.t.augment_shift > 0:
                images = random_shift(images, self.t.augment_shift, generator)
            if self.augmenter.active:
                unit, targets, mix = self.augmenter(index, images, targets, generator)
                images = self.preprocess.standardize(unit)
        inputs = self._input(images) if images.dtype == torch.uint8 else images
        with autocast(self.precision, self.device):
            outputs = self.trained(inputs.contiguous(memory_format=torch.channels_last))
        loss, sums = self._score(as_float(outputs), targets, mix)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return float(loss.detach()), sums

    def _score(
        self,
        outputs: Any,
        targets: dict[str, torch.Tensor],
        mix: tuple[torch.Tensor, float] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective on a batch; on a mixed batch (mixup, cutmix) the blend of the scores
        against both images' targets, in the mixing's shares."""
        loss, sums = self.objective.score(outputs, targets)
        if mix is None:
            return loss, sums
        perm, share = mix
        other = {k: v.index_select(0, perm) for k, v in targets.items()}
        loss_b, sums_b = self.objective.score(outputs, other)
        return share * loss + (1 - share) * loss_b, share * sums + (1 - share) * sums_b

    def _zeros(self) -> torch.Tensor:
        return torch.zeros(3 + len(self.objective.extra), dtype=torch.float64)

    def _averages(self, part: str, sums: torch.Tensor) -> dict[str, float]:
        """Per-image means of an epoch's sums: loss, accuracy and the objective's extras."""
        values = (sums / sums[2]).tolist()
        names = ("loss", "acc", None, *self.objective.extra)
        return {f"{part}_{name}": v for name, v in zip(names, values, strict=True) if name}

    def _diverged(self, position: Position, epoch: int, batch: int, loss: float) -> None:
        where = (
            f"{RunFolder(self.run_dir).checkpoint()} (end of epoch {position.epoch})"
            if self.run_dir is not None and position.epoch > 0
            else "none (it diverged in the first epoch)"
        )
        raise CnnlabError(
            f"training diverged: the loss became {loss} in epoch {epoch + 1}, batch {batch + 1}. "
            f"Last good checkpoint: {where}. Try a lower train.lr (now {self.t.lr})."
        )

    @torch.inference_mode()
    def evaluate(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sums of the objective over a whole split (all processes), in large batches."""
        self.kept.eval()
        model = inference_model(self.kept, self.device)  # exact, built for speed
        index = self.dist.shard(torch.arange(images.shape[0], device=self.device))
        totals = self._zeros()
        for start in range(0, index.numel(), self.t.eval_batch_size):
            part = index[start : start + self.t.eval_batch_size]
            chosen = {k: v.index_select(0, part) for k, v in targets.items()}
            outputs = averaged(model, self._input(images.index_select(0, part)), self.views)
            totals += self.objective.score(outputs, chosen)[1]
        return self.dist.sum(totals)
