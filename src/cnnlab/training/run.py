"""``train`` and ``load_run``: a run folder from a config, and a ready model from a run folder.

What a run folder holds, and its records, are :mod:`cnnlab.runfolder`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data.check import check_dataset, overlap_warning
from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.data.holdout import apply_holdout
from cnnlab.data.registry import load_dataset
from cnnlab.data.validation import with_validation
from cnnlab.errors import CnnlabError
from cnnlab.fileio import jsonable
from cnnlab.hardware import cpu_name
from cnnlab.models import parameter_count
from cnnlab.models.inference import Preprocess, batched_outputs
from cnnlab.models.registry import (
    build_model,
    given_model_name,
    is_import_path,
    materialized,
)
from cnnlab.models.tta import describe as describe_views
from cnnlab.models.tta import resolve_tta
from cnnlab.runfolder import DatasetFacts, RunFolder, RunInfo, now
from cnnlab.runfolder.trust import record_trust, require_trust
from cnnlab.training import finetune
from cnnlab.training.augment import write_preview
from cnnlab.training.callbacks import (
    Checkpoints,
    HistoryFile,
    TensorBoardLog,
    standard_callbacks,
)
from cnnlab.training.checkpoint import load_checkpoint, load_weights, save_weights
from cnnlab.training.config import (
    INIT_FROM,
    RunConfig,
    config_from_dict,
    default_run_dir,
    load_config,
    save_config,
)
from cnnlab.training.distributed import init_distributed, shutdown_distributed
from cnnlab.training.engine import HISTORY_COLUMNS, Callback, Engine, Interrupted, Position
from cnnlab.training.optim import warmup_epochs
from cnnlab.training.progress import Progress
from cnnlab.training.recipe import resolve_model
from cnnlab.training.tensorboard import BoardLog
from cnnlab.version import __version__


@dataclass
class Run:
    """A finished (or resumed-and-finished) training run."""

    path: Path | None
    config: RunConfig
    history: list[dict[str, float]]
    model: nn.Module
    preprocess: Preprocess
    class_names: tuple[str, ...]
    factor_levels: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def views(self) -> list[str]:
        """The test-time views (``train.tta``) its predictions average over, as resolved
        when the run started."""
        tta = self.config.train.tta
        return [] if isinstance(tta, str) else list(tta)

    def outputs(
        self, images: torch.Tensor, batch_size: int = 256
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The model's outputs (logits, or a dict of head logits) for uint8 (N, C, H, W)
        images, with its preprocessing and test-time views."""
        device = next(self.model.parameters(), torch.empty(0)).device  # where load_run put it
        return batched_outputs(
            self.model, images, self.preprocess, batch_size, device, views=self.views
        )

    def predict_proba(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities for uint8 (N, C, H, W) images (single-head models)."""
        logits = self.outputs(images, batch_size)
        if isinstance(logits, dict):
            raise CnnlabError("a multi-head model has one probability per head: use predict()")
        return logits.softmax(dim=1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {name!r}: CUDA is not available on this machine; use cpu")
    return torch.device(name)


def prepare_dataset(config: RunConfig) -> ImageDataset:
    """The run's dataset: ``upright`` as configured, held-out combinations, seeded subsets
    (``train_limit``/``test_limit``) and the validation split (``val_fraction``) applied, in
    that order."""
    d = config.data
    dataset = load_dataset(
        d.dataset,
        seed=config.seed,
        mnist_dir=d.mnist_dir,
        mnist_split=d.mnist_split,
        lines=d.lines,
        image_size=d.image_size,
        channels=d.channels,
        test_fraction=d.test_fraction,
    )
    if d.upright is not None:
        dataset = dataclasses.replace(dataset, upright=d.upright)
    if d.holdout:
        dataset = apply_holdout(dataset, d.holdout, config.seed)
    if d.train_limit is not None or d.test_limit is not None:
        dataset = _limited(dataset, d.train_limit, d.test_limit, config.seed)
    return with_validation(dataset, d.val_fraction, config.seed)


def _limited(
    dataset: ImageDataset, train_limit: int | None, test_limit: int | None, seed: int
) -> ImageDataset:
    """Seeded subsets of the train and test splits (quick runs, tests)."""
    return dataclasses.replace(
        dataset,
        train=_limit(dataset.train, train_limit, seed),
        test=_limit(dataset.test, test_limit, seed + 1),
        provenance={**dataset.provenance, "train_limit": train_limit, "test_limit": test_limit},
    )


def _limit(split: Split, limit: int | None, seed: int) -> Split:
    if limit is None or limit >= len(split):
        return split
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=generator)[:limit].sort().values
    return split.subset(index)


def train(
    config: RunConfig | str | Path,
    *,
    out: str | Path | None = None,
    overrides: tuple[str, ...] = (),
    resume: str | Path | None = None,
    quiet: bool = False,
    device: str | None = None,
    model: nn.Module | None = None,
    callbacks: Sequence[Callback] = (),
) -> Run:
    """Train a model as ``config`` says (a RunConfig, YAML path or preset name).

    ``callbacks``: :class:`~cnnlab.training.engine.Callback` objects called after cnnlab's own
    (progress, checkpoints, early stopping, history, TensorBoard) around every step and epoch.
    One that stops the run (:meth:`~cnnlab.training.engine.Engine.request_stop`) after an
    epoch finishes it there, as early stopping does; inside an epoch, it leaves it resumable
    (:class:`~cnnlab.errors.Interrupted`, checkpoint saved).

    ``model``: a built module to train (in place, from its own weights) instead of the config's
    ``model`` section. The run records it as ``model.name``: its class's import path
    (``package.module:Class``) when that class, built from the data's shape alone, is the same
    architecture, so that the run can be loaded again; else ``<given> ...`` saying why not, and
    loading the run (evaluate, predict, visualize, resume) is refused with what to do.

    With ``resume`` (a run folder), continue that run exactly where its last checkpoint left
    it: the result is bit-identical to an uninterrupted run. A run stopped before its first
    checkpoint starts again from the beginning. One training at a time holds a run folder
    (:meth:`~cnnlab.runfolder.RunFolder.lock`).
    """
    config, run_dir, state = _settle(config, out, overrides, resume, model)
    if device is not None:
        config = config_from_dict({**config.to_dict(), "device": device}, "--device")

    torch_device = resolve_device(config.device)
    dist = init_distributed(torch_device)
    if torch_device.type == "cuda" and dist.enabled:
        torch_device = torch.device("cuda", dist.local_rank)
    progress = Progress(enabled=not quiet and dist.is_main)
    # a resumed run is held from the start; a new one from when its folder is made, whole
    lock = RunFolder(run_dir).lock() if resume and dist.is_main else contextlib.nullcontext()
    try:
        with lock, contextlib.ExitStack() as held:  # held: a new run's folder, once made
            return _train_in_folder(
                config, run_dir, state, torch_device, dist, progress, model, resume, held,
                callbacks,
            )  # fmt: skip
    finally:
        shutdown_distributed()


def _settle(
    config: RunConfig | str | Path,
    out: str | Path | None,
    overrides: tuple[str, ...],
    resume: str | Path | None,
    model: nn.Module | None,
) -> tuple[RunConfig, Path, dict[str, Any] | None]:
    """:func:`train`'s arguments checked and settled: the config, the run folder and the
    checkpoint state to continue from (None: a new run)."""
    if model is not None and not isinstance(model, nn.Module):
        raise CnnlabError(f"model= must be a torch.nn.Module, got {type(model).__name__}")
    if model is not None and resume is not None:
        raise CnnlabError("model= starts a new run; a resumed run rebuilds its own model")
    if resume is not None:
        run_dir = Path(resume)
        config = _read_run_config(run_dir)
        RunFolder(run_dir).require_resumable()
        state = _resume_state(RunFolder(run_dir))
    else:
        if not isinstance(config, RunConfig):
            config = load_config(config, overrides)
        elif overrides:
            raise CnnlabError("overrides apply to a config file or preset, not a RunConfig")
        else:  # built in Python: checked as a config file would be
            config = config_from_dict(config.to_dict(), "config")
        run_dir = Path(out) if out is not None else default_run_dir(config)
        RunFolder(run_dir).check_creatable()  # before the data is loaded; again when made
        if config.model.init_from is not None:
            finetune.check_source(config.model.init_from)
        state = None
    return config, run_dir, state


def _resume_state(folder: RunFolder) -> dict[str, Any] | None:
    """The checkpoint a resume continues from; None when the run never reached one (it was
    stopped in its first epoch, or killed): it starts again."""
    if not folder.checkpoint().is_file():
        return None
    folder.require(finished=False)
    folder.read_info()  # a damaged run.json: refused now, not after the training
    return load_checkpoint(folder.checkpoint())


def continue_run(
    config: RunConfig | str | Path,
    out: str | Path,
    *,
    overrides: tuple[str, ...] = (),
    device: str | None = None,
    quiet: bool = False,
) -> str:
    """Bring the run folder ``out`` to trained, whatever state it was left in: nothing to do
    when it has its final weights, an exact resume from its checkpoint, else (a start that
    never reached a checkpoint, or nothing yet) a training from the beginning. Returns the
    folder's :meth:`~cnnlab.runfolder.RunFolder.state` before."""
    folder = RunFolder(out)
    state = folder.state()
    if state == "diverged":
        raise CnnlabError(f"{out}: the run diverged (loss NaN or inf); remove it to try again")
    if state == "partial":
        train(None, resume=out, device=device, quiet=quiet)  # type: ignore[arg-type]
    elif state in ("absent", "started"):
        if state == "started":
            shutil.rmtree(folder.path)  # killed before its first checkpoint: nothing to keep
        train(config, out=out, overrides=overrides, device=device, quiet=quiet)
    return state


def _resolve_views(config: RunConfig, dataset: ImageDataset) -> RunConfig:
    """``config`` with ``train.tta`` as the list of views it gives on ``dataset``: what the
    run records, evaluates with and predicts with."""
    views, _ = resolve_tta(config.train.tta, dataset)
    if views == config.train.tta:
        return config
    plain = config.to_dict()
    return config_from_dict({**plain, "train": {**plain["train"], "tta": views}}, "train.tta")


def _train_in_folder(
    config, run_dir, state, device, dist, progress, given, resume, held, callbacks
) -> Run:
    """:func:`train` once its device and lock are settled: load the data, build (or take
    ``given``) the net, make or reopen the run folder (held from then on by ``held``), train
    from ``state`` and write the final records."""
    torch.manual_seed(config.seed)
    dataset = prepare_dataset(config)
    if dataset.num_classes < 2:
        raise CnnlabError(
            f"{dataset.name}: {dataset.num_classes} class ({', '.join(dataset.class_names)}); "
            "a classifier needs at least 2 classes to learn anything"
        )
    config, model = _net_for(config, dataset, given)
    config = _resolve_views(config, dataset)
    resumed = RunFolder(run_dir).read_info().model if state is not None else None
    tuning = finetune.prepare(model, config, dataset.channels, dataset.image_size, resumed)
    engine = Engine(config, dataset, model, device, dist, run_dir, progress)
    position = engine.restore(state) if state is not None else Position()
    info = _run_info(config, dataset, engine, dist.world_size)
    if tuning.record is not None:
        info = info.replace(model={**info.model, INIT_FROM: tuning.record})
    if dist.is_main:
        _prepare_folder(run_dir, config, info, state is not None, resume is not None, held)
        _announce(engine, info, position, tuning.lines, resumed=state is not None)
    position = _fit(engine, position, RunFolder(run_dir), callbacks)
    kept = _keep_best(engine, position, RunFolder(run_dir))
    if dist.is_main:
        _finish(engine, position, kept)
    dist.barrier()
    return Run(
        run_dir,
        config,
        position.history,
        engine.kept.eval(),
        engine.preprocess,
        dataset.class_names,
    )


def _net_for(
    config: RunConfig, dataset: ImageDataset, given: nn.Module | None
) -> tuple[RunConfig, nn.Module]:
    """The net to train and the config that records it: built from ``model`` (``auto``
    resolved for this data), or ``given``, recorded as how it can be rebuilt (or why it
    cannot) with what it started from."""
    shape = (dataset.channels, dataset.num_classes, dataset.image_size)
    if given is None:
        config = resolve_model(config, *shape)
        return config, build_model(config.model, *shape, dataset.factor_levels)
    model = materialized(given, dataset.channels, dataset.image_size)
    name = given_model_name(given, *shape)
    recorded = {**config.to_dict(), "model": {"name": name, INIT_FROM: config.model.init_from}}
    return config_from_dict(recorded, "train(model=...)"), model


def _announce(
    engine: Engine, info: RunInfo, position: Position, tuning: list[str], resumed: bool
) -> None:
    """The run's opening lines: what trains on what, fine-tuning, views, augmentation (and
    its preview picture, for the report), a warning on test copies of training images."""
    config, dataset, progress, dist = engine.config, engine.dataset, engine.progress, engine.dist
    progress.message(
        f"{'Resuming' if resumed else 'Training'} {config.model.name} "
        f"({info.model['parameters']:,d} parameters) on {dataset.name}: "
        f"{len(dataset.train)} train / "
        + (f"{len(dataset.val)} validation / " if dataset.val is not None else "")
        + f"{len(dataset.test)} test images, "
        f"{config.train.epochs} epochs, device {engine.device} ({engine.precision})"
        + (f", {dist.world_size} processes" if dist.enabled else "")
        + (f", from epoch {position.epoch + 1}" if resumed else "")
    )
    for line in tuning:
        progress.message(line)
    warm = warmup_epochs(config.train)
    if config.train.patience and warm:
        progress.message(
            f"Early stopping: patience {config.train.patience} epochs, counted from the end of "
            f"the one-cycle warm-up (epoch {warm}) at the earliest"
        )
    if engine.views:
        progress.message(describe_views(engine.views))
    if engine.augmenter.active:
        progress.message(f"Augmentation: {engine.augmenter.describe()}")
        if not resumed:  # what the net sees, for the report
            write_preview(engine.augmenter, RunFolder(engine.run_dir).augmented, config.seed)
    warning = overlap_warning(info.data_check)
    if warning:
        progress.message(warning)


def _fit(
    engine: Engine, position: Position, folder: RunFolder, given: Sequence[Callback]
) -> Position:
    """Train to the end, the history (and TensorBoard) written after each epoch, then the
    ``given`` callbacks; an interrupted or diverged run says so in its ``run.json``."""
    main = engine.dist.is_main
    callbacks: list[Callback] = [*standard_callbacks(), HistoryFile(folder, HISTORY_COLUMNS)]
    if engine.t.tensorboard and main:
        callbacks.append(TensorBoardLog(folder.tensorboard))
    try:
        position = engine.fit(position, [*callbacks, *given])
        if position.batch:  # a callback stopped it inside an epoch: resumable, not finished
            Checkpoints().on_interrupt(engine, position)
            raise Interrupted(
                f"stopped by a callback ({engine.stop_reason}) in epoch {position.epoch + 1} "
                f"after {position.batch} batches; checkpoint saved.",
                f"Resume with: cnnlab train --resume {engine.run_dir}",
            )
        return position
    except CnnlabError as exc:
        if main:  # Interrupted is a CnnlabError too
            folder.set_status("interrupted" if isinstance(exc, Interrupted) else "diverged")
        raise
    except Exception:  # a bug, out of memory, ...: the last checkpoint resumes it
        if main:
            folder.set_status("interrupted")
        raise


def _finish(engine: Engine, position: Position, kept: dict[str, float]) -> None:
    """The kept weights, the history and the final ``run.json``; the closing line."""
    config, folder = engine.config, RunFolder(engine.run_dir)
    save_weights(folder.weights, engine.kept)
    folder.write_history(position.history, HISTORY_COLUMNS)
    info = folder.read_info().finish(
        train_seconds=sum(r["seconds"] for r in position.history),
        final={k: kept[k] for k in ("test_loss", "test_acc")},
    )
    chosen = "best on validation" if engine.keeps_best else "last epoch"
    info = info.replace(
        weights={"epoch": int(kept["epoch"]), "epochs": len(position.history), "chosen": chosen}
    )
    if config.train.patience:
        info = info.replace(
            early_stopping={
                "patience": config.train.patience,
                "min_delta": config.train.min_delta,
                "best_epoch": int(kept["epoch"]),
                "counted_from_epoch": warmup_epochs(config.train),
                "stopped_after_epoch": position.epoch
                if position.epoch < config.train.epochs
                else None,
            }
        )
    folder.write_info(info)
    if config.train.tensorboard:  # the hyper-parameters beside the metrics, in the same run
        BoardLog(folder.tensorboard).finish(config.to_dict(), kept)
    kept_from = (
        f" ({'early stopping: ' if config.train.patience else ''}the weights of epoch "
        f"{int(kept['epoch'])}, the best on validation)"
        if engine.keeps_best
        else ""
    )
    engine.progress.message(
        f"Done: test accuracy {kept['test_acc']:.4f}{kept_from}; run folder {engine.run_dir}"
    )


def _keep_best(engine: Engine, position: Position, folder: RunFolder) -> dict[str, float]:
    """With early stopping, put the best epoch's weights (on validation) back into the model;
    the history row of the epoch whose weights the run keeps."""
    if not engine.keeps_best:
        return position.history[-1]
    best = engine.best_epoch(position.history)
    engine.keep_weights_of(load_checkpoint(folder.checkpoint("best")))
    return next(r for r in position.history if int(r["epoch"]) == best)


def _run_info(config: RunConfig, dataset: ImageDataset, engine: Engine, world: int) -> RunInfo:
    return RunInfo(
        status="running",
        name=config.name,
        seed=config.seed,
        started=now(),
        versions={
            "cnnlab": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        git_commit=_git_commit(),
        hardware={
            "device": str(engine.device),
            "device_name": torch.cuda.get_device_name(engine.device)
            if engine.device.type == "cuda"
            else cpu_name(),
            "cpu_threads": torch.get_num_threads(),
            "precision": engine.precision,
            "world_size": world,
        },
        dataset=DatasetFacts(
            name=dataset.name,
            train=len(dataset.train),
            test=len(dataset.test),
            val=len(dataset.val) if dataset.val is not None else 0,
            class_names=tuple(dataset.class_names),
            factor_levels={k: tuple(v) for k, v in dataset.factor_levels.items()},
            masks=dataset.test.masks is not None,
            provenance=jsonable(dataset.provenance),
        ),
        data_check=check_dataset(dataset),
        preprocess=engine.preprocess.to_dict(),
        model={"name": config.model.name, "parameters": parameter_count(engine.model)},
    )


def _prepare_folder(
    run_dir: Path,
    config: RunConfig,
    info: RunInfo,
    resumed: bool,
    existing: bool,
    held: contextlib.ExitStack,
) -> None:
    """A new run's folder made whole (config and run.json) and held for the training; an
    existing one (held already) marked running, or begun again where it never reached a
    checkpoint."""
    folder = RunFolder(run_dir)

    def fill(new: RunFolder) -> None:
        new.checkpoints.mkdir()
        save_config(config, new.config)
        new.write_info(info)

    if not existing:
        held.enter_context(folder.create(fill))
        if is_import_path(config.model.name):  # this user's code, trained here: trusted
            record_trust(run_dir, folder.config, config.model.name)
    elif resumed:
        folder.set_status("running")
    else:  # --resume of a run stopped before its first checkpoint: it starts again
        try:
            folder.checkpoints.mkdir(exist_ok=True)
        except OSError as exc:
            raise CnnlabError(f"{run_dir}: cannot write the run folder ({exc.strerror})") from None
        save_config(config, folder.config)
        folder.write_info(info)


def _read_run_config(run_dir: Path) -> RunConfig:
    """A run folder's config, read as data: the code it names is imported later, and only
    where the user trusts the folder (:mod:`cnnlab.runfolder.trust`)."""
    folder = RunFolder(run_dir)
    if not run_dir.is_dir():
        raise CnnlabError(f"{run_dir}: no such run folder")
    if not folder.config.is_file():
        raise CnnlabError(f"{run_dir}: not a run folder (no {folder.config.name})")
    config = load_config(folder.config, import_models=False)
    if is_import_path(config.model.name):
        require_trust(run_dir, folder.config, config.model.name)
    return config


WEIGHTS = ("kept", "best", "last")
"""Which weights :func:`load_run` loads: those the run kept (``train.keep``; what evaluate,
report, visualize and export use), or its ``best`` or ``last`` checkpoint's."""


def load_run(run_dir: str | Path, device: str = "cpu", weights: str = "kept") -> Run:
    """A trained model ready for inference, with its preprocessing and class names, on
    ``device`` (cpu, auto, cuda or cuda:N): its predictions run there. ``weights``: see
    :data:`WEIGHTS`."""
    run_dir = Path(run_dir)
    config = _read_run_config(run_dir)
    folder = RunFolder(run_dir)
    folder.require(finished=False)
    info = folder.read_info()
    preprocess = Preprocess.from_dict(info.preprocess)
    class_names = info.dataset.class_names
    try:
        model = build_model(
            config.model,
            preprocess.channels,
            len(class_names),
            preprocess.image_size,
            info.dataset.factor_levels,
        )
    except CnnlabError as exc:
        raise CnnlabError(f"{run_dir}: {exc}") from None
    if weights == "kept":
        load_weights(folder.weights, model)
    else:
        _load_checkpoint_weights(folder, weights, model, config.train.ema > 0)
    history = folder.read_history()
    where = resolve_device(device)
    model = model.to(where, memory_format=torch.channels_last).eval()
    return Run(run_dir, config, history, model, preprocess, class_names, info.dataset.factor_levels)


def _load_checkpoint_weights(folder: RunFolder, which: str, model: nn.Module, ema: bool) -> None:
    """The ``best`` or ``last`` checkpoint's weights (its moving average with ``train.ema``)
    into ``model``; a missing checkpoint or another name is one clear line."""
    if which not in WEIGHTS:
        raise CnnlabError(f"--weights {which!r}: expected one of {', '.join(WEIGHTS)}")
    path = folder.checkpoint(which)
    if not path.is_file():
        why = "it trained without a validation split" if which == "best" else "it has none"
        raise CnnlabError(f"{folder.path}: no {which} checkpoint ({why}); use --weights kept")
    state = load_checkpoint(path)
    if ema:  # the AveragedModel's state: the model's under "module.", plus its counter
        prefix = "module."
        state = {k[len(prefix) :]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    else:
        state = state["model"]
    model.load_state_dict(state)


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
