"""Run configs: YAML files or shipped presets, ``--set key=value`` overrides, strict validation.

Every key is checked where the config enters (:func:`config_from_dict`): its type, then its
range; a bad value is one :class:`~cnnlab.errors.CnnlabError` line naming the key, the value and
what is expected. Where a float is expected, text of a number with an exponent (``1e-3``, which
YAML 1.1 reads as text) is taken as that number; other text is refused.
"""

from __future__ import annotations

import dataclasses
import math
import re
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

    ``dataset`` is ``mnist``, ``lines``, or a path (see :func:`cnnlab.data.load_dataset`).
    ``image_size``/``channels`` (None: as the data is) make every image that size and that many
    channels (1 grey, 3 RGB) where a source of files allows it. ``test_fraction`` splits a
    source that has no split of its own (seeded, stratified). ``val_fraction`` takes a seeded,
    stratified validation split from the training images: ``best.pt`` and every other choice
    during training are made on it, never on the test split. ``train_limit``/``test_limit`` keep
    a seeded random subset (quick runs, tests). ``holdout`` keeps factor combinations out of
    training and tests on them (see cnnlab.data.holdout). ``upright`` (None: as the data says;
    MNIST is) tells cnnlab the classes change meaning when a picture is mirrored or turned
    (digits, letters, text): augmentation and test-time views then leave mirrors and turns out.
    """

    dataset: str = "mnist"
    mnist_dir: str | None = None
    mnist_split: str = "study"
    lines: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    channels: int | None = None
    test_fraction: float = 0.2
    val_fraction: float = 0.0
    train_limit: int | None = None
    test_limit: int | None = None
    holdout: dict[str, Any] = field(default_factory=dict)
    upright: bool | None = None


@dataclass
class TrainConfig:
    """Optimisation: epochs, batch, optimiser, schedule, loss, light augmentation, precision.

    ``precision``: ``fp32``, ``bf16`` (bfloat16 autocast of the forward pass) or ``auto``
    (``bf16`` where the hardware computes it natively, else ``fp32``); see
    :mod:`cnnlab.training.precision`. ``patience`` > 0 stops early: after that many epochs
    whose validation accuracy did not beat the best by more than ``min_delta``; the run then
    keeps the weights of its best epoch on validation (it needs a validation split).
    ``keep``: which epoch's weights the run keeps (what evaluate, report, predict, visualize
    and export use): ``auto`` (``best`` where there is a validation split, else ``last``),
    ``best`` (the epoch best on validation; needs a validation split) or ``last`` (the last
    epoch's; ``best`` anyway with early stopping). ``run.json`` records the epoch kept and why.
    ``tensorboard`` also logs the run for TensorBoard (:mod:`cnnlab.training.tensorboard`).
    ``augment``: a named set (``none``, ``light``, ``standard``, ``strong``, ``degrade``) or a
    list of operations and sets (:mod:`cnnlab.training.augment`), applied to every training
    batch after ``augment_shift``. ``ema`` > 0 keeps an exponential moving average of the
    weights with that decay per step (e.g. 0.999) and evaluates, saves and chooses with it.
    ``tta``: test-time views (``none``, ``flip``, or a list of ``hflip``/``vflip``;
    :mod:`cnnlab.models.tta`) averaged into every evaluation and prediction of the run.
    ``freeze``: names (or name prefixes) of the model's layers whose weights do not train;
    ``trunk_lr_factor`` multiplies the rate of every layer but the classifier head (fine-tuning,
    see ``model.init_from``).
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
    augment: str | list = "none"
    ema: float = 0.0
    tta: str | list = "none"
    freeze: list = field(default_factory=list)
    trunk_lr_factor: float = 1.0
    eval_batch_size: int = 256
    precision: str = "fp32"
    patience: int = 0
    min_delta: float = 0.0
    keep: str = "auto"
    tensorboard: bool = False


INIT_FROM = "init_from"
"""The ``model`` key naming the weights a run starts from (fine-tuning)."""


@dataclass
class ModelConfig:
    """The ``model`` section: ``name`` (a family of the registry, ``auto`` for a net chosen
    for the data once it is loaded, or ``package.module:Class`` for your own), ``options``
    (the section's other keys: the family's keyword arguments) and ``init_from`` (a run folder
    or ``.safetensors`` whose tensors start the net; see :mod:`cnnlab.training.finetune`).
    Written and read as one flat mapping, as in ``config.yaml``."""

    name: str = "part1"
    options: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> ModelConfig:
        """The section as a config file holds it (``name``, options, ``init_from``)."""
        options = {k: v for k, v in section.items() if k not in ("name", INIT_FROM)}
        return cls(section.get("name"), options, section.get(INIT_FROM))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping ``config.yaml`` holds."""
        start = {INIT_FROM: self.init_from} if self.init_from is not None else {}
        return {"name": self.name, **self.options, **start}


@dataclass
class RunConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run folder."""

    name: str = "run"
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """The config as ``config.yaml`` holds it."""
        return {**dataclasses.asdict(self), "model": self.model.to_dict()}


PRESETS = "presets"  # the package folder of the run-config presets

AUTO_MODEL = "auto"
"""``model.name`` asking for a net chosen for the data once it is loaded
(:func:`cnnlab.training.recipe.resolve_model`)."""

CHOICES = {
    "train.optimizer": ("adam", "adamw", "sgd", "rmsprop"),
    "train.scheduler": ("none", "step", "exponential", "cosine", "onecycle"),
    "train.loss": ("cross_entropy", "mse"),
    "train.precision": ("fp32", "bf16", "auto"),
    "train.keep": ("auto", "best", "last"),
    "data.mnist_split": ("study", "official"),
}

SEED_MAX = 100_000_000
"""The largest ``seed``. The engine derives each batch's generator seed as
``(seed * 1_000_003 + epoch) * 100_003 + batch``, which must fit torch's 64-bit seeds
(``torch.manual_seed`` takes at most 2**64 - 1): with up to :data:`EPOCHS_MAX` epochs that allows
seeds up to about 1.8e8; 1e8 leaves room."""

EPOCHS_MAX = 1_000_000
"""The most epochs (and ``lr_step_epochs``): below 1,000,003, so (seed, epoch) pairs give
distinct batch orders (see :data:`SEED_MAX`)."""

BATCH_MAX = 1_000_000
"""The largest ``batch_size``/``eval_batch_size``: more than any split's size (a batch larger
than the split is the whole split), small enough to refuse a typo."""

NAME_MAX = 255  # a folder name's length on common file systems
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
_EXPONENT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")
"""A number with an exponent (``1e-3``, ``5E-4``, ``1.5e3``): YAML 1.1 reads these as text."""

IMAGE_SIZES = {"mnist": 28}
"""Image sides known before loading, for :func:`augment_shift_max` (Lines: its
``image_size``)."""
SHIFT_MAX_UNKNOWN_SIZE = 32
"""``augment_shift``'s bound for a dataset path, whose image size is known only once loaded."""


def preset_names() -> tuple[str, ...]:
    """The run-config presets shipped in the package."""
    return _overrides.preset_names(PRESETS)


def load_config(
    source: str | Path, overrides: typing.Sequence[str] = (), *, import_models: bool = True
) -> RunConfig:
    """A config from a YAML file or preset name, with ``key=value`` overrides applied in order
    (see :func:`cnnlab.overrides.parse_set`). ``import_models=False``: a ``model.name`` import
    path is checked as text only, never imported (a run folder's config: see
    :mod:`cnnlab.runfolder.trust`)."""
    text, origin, _ = _overrides.read_source(source, PRESETS, "config")
    raw = _overrides.load_yaml_mapping(text, origin, "config keys")
    changes = _overrides.parse_set(overrides, origin)
    _drop_other_models_options(raw, changes)
    _overrides.apply_overrides(raw, changes, f"{origin}: --set")
    return config_from_dict(raw, origin, import_models=import_models)


def _drop_other_models_options(raw: dict[str, Any], changes: dict[str, Any]) -> None:
    """A ``--set model.name=...`` naming another model than the file's: the file's model
    options belong to its model, so they are dropped, not passed on to the new one (options
    given with ``--set model.<option>`` are kept)."""
    name = changes.get("model.name")
    model = raw.get("model")
    if name is None or not isinstance(model, dict) or model.get("name") == name:
        return
    kept = (INIT_FROM,)  # about where the weights come from, not the architecture
    raw["model"] = {k: v for k, v in model.items() if k in kept}


def default_run_dir(config: RunConfig) -> Path:
    """``runs/<name>``, where a run goes without ``--out``; refused when the name is not a plain
    folder name (it could point elsewhere: ``../x``)."""
    if not (len(config.name) <= NAME_MAX and _FOLDER_NAME.fullmatch(config.name)):
        raise CnnlabError(
            f"name {config.name!r} is not a plain folder name (letters, digits, '.', '_' or "
            "'-', not starting with '.'), so it cannot name the run folder runs/<name>: give "
            "--out, or another name"
        )
    return Path("runs") / config.name


def config_from_dict(
    raw: dict[str, Any], origin: str = "config", *, import_models: bool = True
) -> RunConfig:
    """Build and validate a :class:`RunConfig`; unknown keys and bad values are refused
    (``import_models``: see :func:`load_config`)."""
    _overrides.check_value(raw, origin)  # as a YAML file's values are: no bombs, no cycles
    config = _build(RunConfig, raw, origin, "")
    _validate(config, origin, import_models)
    return config


def save_config(config: RunConfig, path: Path) -> None:
    from cnnlab.fileio import atomic_open

    with atomic_open(path) as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)


def augment_shift_max(config: RunConfig, lines_size: int | None = None) -> int:
    """The largest ``train.augment_shift`` for ``config``'s dataset: half the image side, as a
    larger shift can move the image's centre out of the frame (and each pixel of shift pads
    every image of a batch by two rows and columns)."""
    size = lines_size if config.data.dataset == "lines" else IMAGE_SIZES.get(config.data.dataset)
    return SHIFT_MAX_UNKNOWN_SIZE if size is None else size // 2


# -- types ----------------------------------------------------------------------------------------


def _build(cls: type, raw: Any, origin: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        key = prefix.rstrip(".") or "config"
        raise CnnlabError(f"{origin}: {key} must be a mapping, got {_show(raw)}")
    _overrides.check_known(raw, (f.name for f in dataclasses.fields(cls)), origin, prefix)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        kind = hints[name]
        if kind is ModelConfig:  # an open mapping: the options are the family's to check
            values[name] = ModelConfig.from_section(_coerce(value, dict, origin, prefix + name))
        elif dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, origin, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, kind, origin, prefix + name)
    return cls(**values)


def _coerce(value: Any, kind: Any, origin: str, key: str) -> Any:
    """Check ``value`` against a simple annotation (int, float, str, bool, dict, X | None).

    bool is not a number; a float must be finite, and may be given as an int or as text of a
    number with an exponent (``1e-3``)."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None and type(None) in options:
        return None
    for option in options:
        base = typing.get_origin(option) or option
        if base is float:
            number = _as_float(value)
            if number is not None:
                if not math.isfinite(number):
                    raise CnnlabError(
                        f"{origin}: {key} must be a finite number, got {_show(value)}"
                    )
                return number
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool, dict, list) and isinstance(value, base):
            return value
    expected = " or ".join(_type_name(o) for o in options)
    raise CnnlabError(f"{origin}: {key} must be {expected}, got {_show(value)}")


def _as_float(value: Any) -> float | None:
    """A number (not a bool), or text of a number with an exponent, as a float; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str) and _EXPONENT.fullmatch(value):
        return float(value)
    return None


def _type_name(kind: Any) -> str:
    base = typing.get_origin(kind) or kind
    names = {type(None): "null", dict: "a mapping", list: "a list", tuple: "a list"}
    return names.get(base, getattr(base, "__name__", str(base)))


def _show(value: Any) -> str:
    """``repr(value)``, cut short: a message stays one readable line."""
    return _overrides.short_repr(value)


def _need(ok: bool, origin: str, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise CnnlabError(f"{origin}: {key} must be {expected}, got {_show(value)}")


def _validate(config: RunConfig, origin: str, import_models: bool = True) -> None:
    """Every key's range (types are :func:`_coerce`'s); dict values are stored coerced."""
    _need(
        0 < len(config.name) <= NAME_MAX and config.name.isprintable(),
        origin,
        "name",
        f"printable text of 1 to {NAME_MAX} characters",
        config.name,
    )
    _need(0 <= config.seed <= SEED_MAX, origin, "seed", f"in 0..{SEED_MAX:,}", config.seed)
    _need(
        bool(_DEVICE.fullmatch(config.device)),
        origin,
        "device",
        "auto, cpu or cuda[:N]",
        config.device,
    )
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise CnnlabError(f"{origin}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    lines_size = _validate_data(config, origin)
    _validate_model(config, origin, import_models)
    _validate_train(config, origin, augment_shift_max(config, lines_size))


def _validate_data(config: RunConfig, origin: str) -> int | None:
    """The data section; returns the Lines image size when the dataset is Lines."""
    d = config.data
    _need(d.dataset != "", origin, "data.dataset", "mnist, lines or a path", d.dataset)
    _need(d.mnist_dir != "", origin, "data.mnist_dir", "a folder or null", d.mnist_dir)
    size = d.image_size
    _need(size is None or 4 <= size <= 512, origin, "data.image_size", "null or 4..512 px", size)
    _need(
        d.channels in (None, 1, 3), origin, "data.channels", "null, 1 (grey) or 3 (RGB)", d.channels
    )
    _need(0 < d.test_fraction < 1, origin, "data.test_fraction", "in (0, 1)", d.test_fraction)
    _need(0 <= d.val_fraction < 1, origin, "data.val_fraction", "in [0, 1)", d.val_fraction)
    for key in ("train_limit", "test_limit"):
        value = getattr(d, key)
        _need(
            value is None or value >= 1,
            origin,
            f"data.{key}",
            "null (every image) or a number of images >= 1",
            value,
        )
    lines = None
    if d.lines or d.dataset == "lines":
        d.lines, lines = _lines_options(d.lines, config.seed, origin)
    if d.holdout:
        d.holdout = _holdout(d.holdout, d.dataset, lines, origin)
    return None if lines is None or d.dataset != "lines" else lines.image_size


def _lines_options(options: dict[str, Any], seed: int, origin: str) -> tuple[dict[str, Any], Any]:
    """``data.lines`` options checked against :class:`~cnnlab.data.lines.LinesConfig` (keys,
    types, then its own validation); returns them coerced, and the config they make."""
    from cnnlab.data.lines import LinesConfig, lines_config

    fields = [f.name for f in dataclasses.fields(LinesConfig) if f.init]
    _overrides.check_known(options, ("variant", *fields), origin, "data.lines.")
    hints = {**typing.get_type_hints(LinesConfig), "variant": str}
    coerced: dict[str, Any] = {}
    for name, value in options.items():
        key, kind = f"data.lines.{name}", hints[name]
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            _need(
                isinstance(value, list | tuple), origin, key, f"a list of {_type_name(item)}", value
            )
            coerced[name] = [_coerce(v, item, origin, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            coerced[name] = _coerce(value, kind, origin, key)
    if "seed" in coerced:
        value = coerced["seed"]
        _need(0 <= value <= SEED_MAX, origin, "data.lines.seed", f"in 0..{SEED_MAX:,}", value)
    try:
        lines = lines_config(**{"seed": seed, **coerced})
    except CnnlabError as exc:  # LinesConfig's messages start with the option: "noise: ..."
        message = str(exc)
        option = message.split(":", 1)[0]
        where = f"data.lines.{message}" if option in hints else f"data.lines: {message}"
        raise CnnlabError(f"{origin}: {where}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise CnnlabError(f"{origin}: data.lines: {_overrides.one_line(exc)}") from None
    return coerced, lines


def _holdout(spec: dict[str, Any], dataset: str, lines: Any, origin: str) -> dict[str, Any]:
    """``data.holdout`` (:func:`cnnlab.data.holdout.check_holdout`), the Lines dataset's
    factors and levels included; other datasets' once loaded."""
    from cnnlab.data.holdout import check_holdout

    if dataset == "mnist":
        raise CnnlabError(f"{origin}: data.holdout needs a dataset with factors; mnist has none")
    levels = lines.levels if dataset == "lines" and lines is not None else None
    if "random_fraction" in spec:  # 1e-1 as YAML 1.1 text, too
        key = "data.holdout.random_fraction"
        spec = {**spec, "random_fraction": _coerce(spec["random_fraction"], float, origin, key)}
    try:
        return check_holdout(spec, levels)
    except CnnlabError as exc:
        raise CnnlabError(f"{origin}: {exc}") from None


def _validate_model(config: RunConfig, origin: str, import_models: bool) -> None:
    """``model.name``: a registered family, or an import path (imported now, errors come early;
    with ``import_models`` False only its form is checked); a ``<given> ...`` name (a module
    given to ``train``) is refused only when it is rebuilt."""
    from cnnlab.models import model_names
    from cnnlab.models.registry import GIVEN, check_import_path, is_import_path, resolve_factory

    start = config.model.init_from
    _need(
        start is None or (isinstance(start, str) and start.strip() != ""),
        origin,
        f"model.{INIT_FROM}",
        "a run folder or .safetensors file, or null",
        start,
    )
    name = config.model.name
    known = ", ".join(sorted((AUTO_MODEL, *model_names())))
    if not isinstance(name, str):
        raise CnnlabError(
            f"{origin}: model.name must be a model name ({known}) or an "
            f"import path package.module:factory, got {_show(name)}"
        )
    if name.startswith(GIVEN) or name == AUTO_MODEL:
        return
    if is_import_path(name):
        try:
            check_import_path(name) if not import_models else resolve_factory(name)
        except CnnlabError as exc:
            raise CnnlabError(f"{origin}: {exc}") from None
        return
    if name not in model_names():
        raise CnnlabError(
            f"{origin}: model.name: model {name!r} is unknown; known models: {known}, or an "
            "import path package.module:factory"
        )


# long: one check per train.* key, in TrainConfig's order, each naming its key
def _validate_train(config: RunConfig, origin: str, shift_max: int) -> None:
    t = config.train
    counts = {
        "train.epochs": (t.epochs, EPOCHS_MAX),
        "train.batch_size": (t.batch_size, BATCH_MAX),
        "train.eval_batch_size": (t.eval_batch_size, BATCH_MAX),
        "train.lr_step_epochs": (t.lr_step_epochs, EPOCHS_MAX),
    }
    for key, (value, most) in counts.items():
        _need(0 < value <= most, origin, key, f"> 0 and <= {most:,}", value)
    _need(t.lr > 0, origin, "train.lr", "> 0", t.lr)
    _need(
        0 <= t.patience <= EPOCHS_MAX, origin, "train.patience", "in 0..epochs (0: off)", t.patience
    )
    _need(0 <= t.min_delta < 1, origin, "train.min_delta", "in [0, 1) (accuracy)", t.min_delta)
    if t.optimizer == "sgd":  # Nesterov momentum (see training.optim) needs momentum > 0
        _need(0 < t.momentum < 1, origin, "train.momentum", "in (0, 1) for sgd", t.momentum)
    else:
        _need(0 <= t.momentum < 1, origin, "train.momentum", "in [0, 1)", t.momentum)
    _need(t.weight_decay >= 0, origin, "train.weight_decay", ">= 0", t.weight_decay)
    _need(
        0 < t.lr_gamma <= 1,
        origin,
        "train.lr_gamma",
        "in (0, 1] (the factor by which the learning rate decays)",
        t.lr_gamma,
    )
    _need(
        0 <= t.label_smoothing < 1, origin, "train.label_smoothing", "in [0, 1)", t.label_smoothing
    )
    _need(
        0 <= t.augment_shift <= shift_max,
        origin,
        "train.augment_shift",
        f"in 0..{shift_max} px for dataset {config.data.dataset} (at most half the image side)",
        t.augment_shift,
    )
    _need(0 <= t.ema < 1, origin, "train.ema", "in [0, 1) (0: off; e.g. 0.999)", t.ema)
    _need(
        0 <= t.trunk_lr_factor <= 1,
        origin,
        "train.trunk_lr_factor",
        "in [0, 1] (the trunk's rate as a fraction of train.lr)",
        t.trunk_lr_factor,
    )
    for i, name in enumerate(t.freeze):
        _need(
            isinstance(name, str) and name != "",
            origin,
            f"train.freeze[{i}]",
            "a layer name or name prefix (text, e.g. features.conv1)",
            name,
        )
    from cnnlab.models.tta import check_tta
    from cnnlab.training.augment import check_augment

    try:
        t.augment = check_augment(t.augment)
        t.tta = check_tta(t.tta)
    except CnnlabError as exc:
        raise CnnlabError(f"{origin}: {exc}") from None
    weights = {}
    for head, weight in t.head_weights.items():
        if not isinstance(head, str) or not head:
            raise CnnlabError(
                f"{origin}: train.head_weights must map head names (text) to weights, "
                f"got the name {_show(head)}"
            )
        key = f"train.head_weights.{_overrides.shown(head)}"
        weights[head] = _coerce(weight, float, origin, key)
        _need(weights[head] >= 0, origin, key, ">= 0", weights[head])
    t.head_weights = weights
