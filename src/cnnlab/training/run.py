"""``train`` and ``load_run``: a run folder from a config, and a ready model from a run folder.

A run folder holds ``config.yaml`` (resolved), ``run.json`` (provenance and status),
``history.csv`` (one row per epoch), ``checkpoints/last.pt`` and ``checkpoints/best.pt``,
and ``model.safetensors`` (final weights).
"""

from __future__ import annotations

import csv
import io
import json
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data.check import check_dataset, overlap_warning
from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.data.holdout import apply_holdout
from cnnlab.data.registry import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_open, jsonable, write_json
from cnnlab.models import create_model, parameter_count
from cnnlab.models.inference import Preprocess, batched_outputs
from cnnlab.training.checkpoint import load_checkpoint, load_weights, save_weights
from cnnlab.training.config import RunConfig, config_from_dict, load_config, save_config
from cnnlab.training.distributed import init_distributed, shutdown_distributed
from cnnlab.training.engine import HISTORY_COLUMNS, Engine, Interrupted, Position
from cnnlab.training.progress import Progress


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

    def predict_proba(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities for uint8 (N, C, H, W) images (single-head models)."""
        logits = batched_outputs(self.model, images, self.preprocess, batch_size)
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
    """The run's dataset, with ``train_limit``/``test_limit`` applied (seeded subsets)."""
    d = config.data
    dataset = load_dataset(
        d.dataset,
        seed=config.seed,
        mnist_dir=d.mnist_dir,
        mnist_split=d.mnist_split,
        lines=d.lines,
    )
    if d.holdout:
        dataset = apply_holdout(dataset, d.holdout, config.seed)
    if d.train_limit is None and d.test_limit is None:
        return dataset
    return ImageDataset(
        name=dataset.name,
        train=_limit(dataset.train, d.train_limit, config.seed),
        test=_limit(dataset.test, d.test_limit, config.seed + 1),
        class_names=dataset.class_names,
        factor_levels=dataset.factor_levels,
        provenance={**dataset.provenance, "train_limit": d.train_limit, "test_limit": d.test_limit},
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
) -> Run:
    """Train a model as ``config`` says (a RunConfig, YAML path or preset name).

    With ``resume`` (a run folder), continue that run exactly where its last checkpoint left
    it; the result is bit-identical to an uninterrupted run.
    """
    if resume is not None:
        run_dir = Path(resume)
        config = _read_run_config(run_dir)
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    else:
        if not isinstance(config, RunConfig):
            config = load_config(config, overrides)
        elif overrides:
            raise CnnlabError("overrides apply to a config file or preset, not a RunConfig")
        run_dir = Path(out) if out is not None else Path("runs") / config.name
        if (run_dir / "config.yaml").exists():
            raise CnnlabError(
                f"{run_dir} already holds a run; choose another --out, or continue it with "
                f"--resume {run_dir}"
            )
        state = None
    if device is not None:
        config.device = device

    torch_device = resolve_device(config.device)
    dist = init_distributed(torch_device)
    if torch_device.type == "cuda" and dist.enabled:
        torch_device = torch.device("cuda", dist.local_rank)
    progress = Progress(enabled=not quiet and dist.is_main)
    try:
        return _train(config, run_dir, state, torch_device, dist, progress)
    finally:
        shutdown_distributed()


def _train(config, run_dir, state, device, dist, progress) -> Run:
    torch.manual_seed(config.seed)
    dataset = prepare_dataset(config)
    model_options = {k: v for k, v in config.model.items() if k != "name"}
    model = create_model(
        config.model["name"],
        dataset.channels,
        dataset.num_classes,
        dataset.image_size,
        **model_options,
    )
    engine = Engine(config, dataset, model, device, dist, run_dir, progress)
    position = engine.restore(state) if state is not None else Position()
    info = _run_info(config, dataset, engine, dist.world_size)
    if dist.is_main:
        _prepare_folder(run_dir, config, info, resumed=state is not None)
        progress.message(
            f"{'Resuming' if state else 'Training'} {config.model['name']} "
            f"({info['model']['parameters']:,d} parameters) on {dataset.name}: "
            f"{len(dataset.train)} train / {len(dataset.test)} test images, "
            f"{config.train.epochs} epochs, device {device} ({engine.precision})"
            + (f", {dist.world_size} processes" if dist.enabled else "")
            + (f", from epoch {position.epoch + 1}" if state else "")
        )
        warning = overlap_warning(info["data_check"])
        if warning:
            progress.message(warning)

    def after_epoch(pos: Position) -> None:
        if dist.is_main:
            write_history(run_dir / "history.csv", pos.history)

    try:
        position = engine.fit(position, on_epoch=after_epoch)
    except Interrupted:
        if dist.is_main:
            _set_status(run_dir, "interrupted")
        raise
    except CnnlabError:
        if dist.is_main:
            _set_status(run_dir, "diverged")
        raise
    if dist.is_main:
        save_weights(run_dir / "model.safetensors", engine.model)
        write_history(run_dir / "history.csv", position.history)
        info = json.loads((run_dir / "run.json").read_text())
        info.update(
            status="finished",
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            train_seconds=sum(r["seconds"] for r in position.history),
            final={k: position.history[-1][k] for k in ("test_loss", "test_acc")},
        )
        write_json(run_dir / "run.json", info)
        progress.message(
            f"Done: test accuracy {position.history[-1]['test_acc']:.4f}; run folder {run_dir}"
        )
    dist.barrier()
    return Run(
        run_dir,
        config,
        position.history,
        engine.model.eval(),
        engine.preprocess,
        dataset.class_names,
    )


def _run_info(
    config: RunConfig, dataset: ImageDataset, engine: Engine, world: int
) -> dict[str, Any]:
    from cnnlab import __version__

    return {
        "status": "running",
        "name": config.name,
        "seed": config.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {
            "cnnlab": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "git_commit": _git_commit(),
        "hardware": {
            "device": str(engine.device),
            "device_name": torch.cuda.get_device_name(engine.device)
            if engine.device.type == "cuda"
            else platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "precision": engine.precision,
            "world_size": world,
        },
        "dataset": {
            "name": dataset.name,
            "train": len(dataset.train),
            "test": len(dataset.test),
            "class_names": list(dataset.class_names),
            "factor_levels": {k: list(v) for k, v in dataset.factor_levels.items()},
            "provenance": jsonable(dataset.provenance),
        },
        "data_check": check_dataset(dataset),
        "preprocess": engine.preprocess.to_dict(),
        "model": {"name": config.model["name"], "parameters": parameter_count(engine.model)},
    }


def _prepare_folder(run_dir: Path, config: RunConfig, info: dict[str, Any], resumed: bool) -> None:
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(
            f"--out {run_dir}: cannot create the run folder ({exc.strerror})"
        ) from None
    if resumed:
        _set_status(run_dir, "running")
        return
    save_config(config, run_dir / "config.yaml")
    write_json(run_dir / "run.json", info)


def _set_status(run_dir: Path, status: str) -> None:
    path = run_dir / "run.json"
    if path.is_file():
        info = json.loads(path.read_text())
        info["status"] = status
        write_json(path, info)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    columns = list(history[0]) if history else list(HISTORY_COLUMNS)
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (row[k] if k == "epoch" else f"{row[k]:.6g}") for k in columns})
    with atomic_open(path) as handle:
        handle.write(buffer.getvalue())


def read_history(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _read_run_config(run_dir: Path) -> RunConfig:
    if not run_dir.is_dir():
        raise CnnlabError(f"{run_dir}: no such run folder")
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise CnnlabError(f"{run_dir}: not a run folder (no config.yaml)")
    import yaml

    return config_from_dict(yaml.safe_load(path.read_text()) or {}, str(path))


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """A trained model ready for inference, with its preprocessing and class names."""
    run_dir = Path(run_dir)
    config = _read_run_config(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise CnnlabError(f"{run_dir}: not a run folder (no run.json)")
    info = json.loads(info_path.read_text())
    preprocess = Preprocess.from_dict(info["preprocess"])
    class_names = tuple(info["dataset"]["class_names"])
    options = {k: v for k, v in config.model.items() if k != "name"}
    model = create_model(
        config.model["name"],
        preprocess.channels,
        len(class_names),
        preprocess.image_size,
        **options,
    )
    load_weights(run_dir / "model.safetensors", model)
    history_path = run_dir / "history.csv"
    history = read_history(history_path) if history_path.is_file() else []
    levels = {k: tuple(v) for k, v in info["dataset"].get("factor_levels", {}).items()}
    model = model.to(device, memory_format=torch.channels_last).eval()
    return Run(run_dir, config, history, model, preprocess, class_names, levels)


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
