"""Models by name: ``create_model("part1", in_channels=1, num_classes=10)``.

A model family registers a factory; its keyword arguments are the model's config keys, so an
unknown or mistyped key is refused with the list of valid ones before anything is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}
_DATA_ARGS = ("in_channels", "num_classes", "image_size")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make ``factory(in_channels, num_classes, image_size, **options)`` buildable."""

    def add(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def model_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def model_options(name: str) -> dict[str, Any]:
    """The configurable options of a model family and their defaults."""
    factory = _factory(name)
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.name not in _DATA_ARGS
    }


def create_model(
    name: str, in_channels: int, num_classes: int, image_size: tuple[int, int] = (28, 28), **options
) -> nn.Module:
    """Build a registered model for data with ``in_channels`` and ``num_classes``."""
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise CnnlabError(
            f"model {name!r}: unknown option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    try:
        return _factory(name)(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size, **options
        )
    except (TypeError, ValueError) as exc:
        raise CnnlabError(f"model {name!r}: {exc}") from None


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: nn.Module) -> str:
    """One line per layer with its parameter count, then the total."""
    rows = [
        f"  {name:<24s} {type(module).__name__:<18s} {parameter_count(module):>10,d}"
        for name, module in model.named_modules()
        if name and not list(module.children())
    ]
    return "\n".join([*rows, f"  {'total':<43s} {parameter_count(model):>10,d}"])


def _factory(name: str) -> ModelFactory:
    if name not in _REGISTRY:
        raise CnnlabError(f"model {name!r} is unknown; known models: {', '.join(model_names())}")
    return _REGISTRY[name]
