"""Run configs: YAML files or shipped presets, ``--set key=value`` overrides, strict validation."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab import overrides as _overrides
from cnnlab.errors import CnnlabError


@dataclass
class DataConfig:
    """Which dataset, and how much of it.

    ``dataset`` is ``mnist``, ``lines``, a ``lines.npz`` path or a folder of IDX files.
    ``train_limit``/``test_limit`` keep a seeded random subset (quick runs, tests). ``holdout``
    keeps factor combinations out of training and tests on them (see cnnlab.data.holdout).
    """

    dataset: str = "mnist"
    mnist_dir: str | None = None
    mnist_split: str = "study"
    lines: dict[str, Any] = field(default_factory=dict)
    train_limit: int | None = None
    test_limit: int | None = None
    holdout: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation: epochs, batch, optimiser, schedule, loss, light augmentation, precision.

    ``precision``: ``fp32``, ``bf16`` (bfloat16 autocast of the forward pass) or ``auto``
    (``bf16`` where the hardware computes it natively, else ``fp32``); see
    :mod:`cnnlab.training.precision`.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    lr_gamma: float = 0.1
    lr_step_epochs: int = 5
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    head_weights: dict[str, Any] = field(default_factory=dict)
    augment_shift: int = 0
    eval_batch_size: int = 256
    precision: str = "fp32"


@dataclass
class RunConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run folder."""

    name: str = "run"
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "part1"})
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS = "presets"  # the package folder of the run-config presets

CHOICES = {
    "train.optimizer": ("adam", "adamw", "sgd", "rmsprop"),
    "train.scheduler": ("none", "step", "exponential", "cosine", "onecycle"),
    "train.loss": ("cross_entropy", "mse"),
    "train.precision": ("fp32", "bf16", "auto"),
    "data.mnist_split": ("study", "official"),
}


def preset_names() -> tuple[str, ...]:
    """The run-config presets shipped in the package."""
    return _overrides.preset_names(PRESETS)


def load_config(source: str | Path, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """A config from a YAML file or preset name, with ``key=value`` overrides applied in order
    (see :func:`cnnlab.overrides.parse_set`)."""
    text, origin, _ = _overrides.read_source(source, PRESETS, "config")
    raw = _overrides.load_yaml_mapping(text, origin, "config keys")
    _overrides.apply_overrides(raw, _overrides.parse_set(overrides, origin), f"{origin}: --set")
    return config_from_dict(raw, origin)


def config_from_dict(raw: dict[str, Any], origin: str = "config") -> RunConfig:
    """Build and validate a :class:`RunConfig`; unknown keys and bad values are refused."""
    config = _build(RunConfig, raw, origin, "")
    _validate(config, origin)
    return config


def save_config(config: RunConfig, path: Path) -> None:
    from cnnlab.fileio import atomic_open

    with atomic_open(path) as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)


def _build(cls: type, raw: Any, origin: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise CnnlabError(f"{origin}: {prefix.rstrip('.') or 'config'} must be a mapping")
    _overrides.check_known(raw, (f.name for f in dataclasses.fields(cls)), origin, prefix)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, origin, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, kind, origin, prefix + name)
    return cls(**values)


def _coerce(value: Any, kind: Any, origin: str, key: str) -> Any:
    """Check ``value`` against a simple annotation (int, float, str, bool, dict, X | None)."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None and type(None) in options:
        return None
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool, dict) and isinstance(value, base):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise CnnlabError(f"{origin}: {key} must be {expected}, got {value!r}")


def _validate(config: RunConfig, origin: str) -> None:
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise CnnlabError(f"{origin}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    t = config.train
    positive = {
        "train.epochs": t.epochs,
        "train.batch_size": t.batch_size,
        "train.eval_batch_size": t.eval_batch_size,
        "train.lr": t.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise CnnlabError(f"{origin}: {key} must be > 0, got {value}")
    if not 0 <= t.label_smoothing < 1:
        raise CnnlabError(
            f"{origin}: train.label_smoothing must be in [0, 1), got {t.label_smoothing}"
        )
    if t.augment_shift < 0:
        raise CnnlabError(f"{origin}: train.augment_shift must be >= 0, got {t.augment_shift}")
    if not isinstance(config.model.get("name"), str):
        raise CnnlabError(f"{origin}: model.name is required (e.g. part1, convnet)")
    if config.device not in ("auto", "cpu") and not config.device.startswith("cuda"):
        raise CnnlabError(f"{origin}: device must be auto, cpu or cuda[:N], got {config.device!r}")
