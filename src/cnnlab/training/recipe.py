"""The default recipe for your own images: ``cnnlab train DATA`` with no preset.

The ``default`` preset holds the recipe (a validation split, a one-cycle schedule, label
smoothing, the ``standard`` augmentation where it keeps labels true, the weights chosen on
validation); ``model.name: auto`` is resolved here, once the data is loaded, to a net for its
image size, and the run records the net it got. Runs are named after the data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.data.registry import DATASET_NAMES
from cnnlab.models.tta import SETS as VIEW_SETS
from cnnlab.training.config import (
    AUTO_MODEL,
    RunConfig,
    config_from_dict,
    load_config,
    preset_names,
)

RECIPE = "default"
"""The preset ``cnnlab train DATA`` starts from."""

RESIDUAL_FROM = 16
"""The smallest image side (px) given the residual net; smaller images get a plain convnet."""


def is_data_source(text: str) -> bool:
    """Whether ``train``'s argument names data rather than a config: a built-in dataset or an
    existing folder, ``.npz`` or ``.csv`` (a preset of the same name wins)."""
    if text in preset_names():
        return False
    if text in DATASET_NAMES:
        return True
    path = Path(text)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in (".npz", ".csv"))


def run_name_for(data: str) -> str:
    """A run's name after its data: the folder's or file's name as a plain folder name."""
    stem = Path(data.rstrip("/\\")).stem if data not in DATASET_NAMES else data
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip(".-") or "data"
    return name[:100]


def recipe_config(data: str, overrides: Sequence[str] = (), preset: str = RECIPE) -> RunConfig:
    """The default recipe (or another ``preset``) for ``data``, with ``overrides``
    (``key=value``) on top; the run named after the data."""
    given = (f"data.dataset={json.dumps(data)}", f"name={json.dumps(run_name_for(data))}")
    return load_config(preset, (*given, *overrides))


def choose_model(channels: int, num_classes: int, image_size: tuple[int, int]) -> dict[str, Any]:
    """The model section the recipe picks for images of ``image_size`` (H, W): a small ResNet
    (ResNet-14: on Fashion-MNIST it beat ResNet-20 and a wider ResNet-8 on validation for the
    same 10 minutes) from :data:`RESIDUAL_FROM` px, else a two-stage convnet."""
    if min(image_size) >= RESIDUAL_FROM:
        return {"name": "resnet", "depth": [2, 2, 2]}
    return {
        "name": "convnet",
        "channels": [32, 64],
        "convs_per_stage": 2,
        "kernel_size": 3,
        "downsample": "maxpool" if min(image_size) >= 8 else "none",
        "batchnorm": True,
        "dense": [128],
        "dense_dropout": 0.3,
    }


def resolve_model(
    config: RunConfig, channels: int, num_classes: int, image_size: tuple[int, int]
) -> RunConfig:
    """``config`` with ``model.name: auto`` replaced by :func:`choose_model`'s net (other
    keys of the model section, such as ``init_from``, kept); any other config unchanged."""
    if config.model.name != AUTO_MODEL:
        return config
    extra = {k: v for k, v in config.model.to_dict().items() if k != "name"}
    model = {**choose_model(channels, num_classes, image_size), **extra}
    return config_from_dict({**config.to_dict(), "model": model}, "model.name: auto")


def as_requested(recorded: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    """A run's ``recorded`` config (a dict) with what the run resolved once its data was loaded
    put back as ``requested`` asked for it, where it is a resolution of that request:
    ``model.name: auto`` (the net chosen, the other model keys kept) and a named ``train.tta``
    (the views it gave). Compare the result with ``requested`` to tell another config."""
    model, wanted = recorded.get("model", {}), requested.get("model", {})
    out = dict(recorded)
    if wanted.get("name") == AUTO_MODEL and all(
        model.get(k) == v for k, v in wanted.items() if k != "name"
    ):
        out["model"] = wanted
    tta, asked = recorded.get("train", {}).get("tta"), requested.get("train", {}).get("tta")
    if isinstance(asked, str) and isinstance(tta, list) and set(tta) <= set(VIEW_SETS[asked]):
        out["train"] = {**recorded["train"], "tta": asked}
    return out


__all__ = [
    "RECIPE",
    "as_requested",
    "choose_model",
    "is_data_source",
    "recipe_config",
    "resolve_model",
]
