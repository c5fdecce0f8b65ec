"""Models by name: ``create_model("part1", 1, 10)`` (in_channels, num_classes).

A model family registers a factory; its keyword arguments are the model's config keys, so an
unknown or mistyped key is refused with the list of valid ones before anything is built.

``name`` may also be an import path ``package.module:factory``: a class, or a function
returning an ``nn.Module``, defined in the user's own code. Its keyword arguments are its
options; ``in_channels``, ``num_classes``, ``image_size`` and ``factor_levels`` (the data's
per-image factors and their levels, for multi-head models) are passed where its signature
names them (or one of :data:`ALIASES`). A module not importable from the working directory's
Python path is looked for in the working directory too.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from cnnlab.errors import CnnlabError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}
_DATA_ARGS = ("in_channels", "num_classes", "image_size", "factor_levels")
ALIASES: dict[str, tuple[str, ...]] = {
    "in_channels": ("in_chans", "num_channels", "n_channels"),
    "num_classes": ("n_classes",),
    "image_size": ("img_size", "input_size"),
    "factor_levels": (),
}
"""Other parameter names under which a factory may take the data's shape (timm-style first)."""
GIVEN = "<given> "
"""``model.name`` prefix of a module given to ``train(model=...)`` that cannot be rebuilt."""
_MARK = "__cnnlab_model_factory__"
FACTORY_RULE = (
    "a torch.nn.Module subclass, or a function marked @cnnlab.model_factory that returns one"
)
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_REBUILD_HINT = (
    "to evaluate, predict, visualize or resume it, define the model class in an importable "
    "module (a .py file on sys.path or PYTHONPATH) whose constructor needs no arguments "
    "beyond in_channels, num_classes and image_size, or name it in the config as "
    "model.name 'package.module:Class' with its options, and train again"
)


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()
"""The "default" :func:`model_options` shows for an option that has none."""


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make ``factory(in_channels, num_classes, image_size, **options)`` buildable."""

    def add(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = model_factory(factory)
        return factory

    return add


def model_factory(function: ModelFactory) -> ModelFactory:
    """Decorator: mark a function that returns a ``torch.nn.Module`` as one that
    ``model.name: package.module:function`` may call (a class needs no mark: any
    ``nn.Module`` subclass may be named). Nothing else is ever called by name."""
    if inspect.isfunction(function):
        setattr(function, _MARK, True)
    return function


def model_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def is_import_path(name: str) -> bool:
    """Whether ``name`` is meant as ``package.module:factory`` (it has a colon)."""
    return ":" in name and not name.startswith(GIVEN)


def model_options(name: str) -> dict[str, Any]:
    """The configurable options of a model and their defaults (:data:`REQUIRED` if none)."""
    params = _parameters(_factory(name))
    data = set(_data_params(params).values())
    return {
        p.name: REQUIRED if p.default is p.empty else p.default
        for p in params.values()
        if p.name not in data and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def create_model(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] | int = (28, 28),
    factor_levels: dict[str, tuple[Any, ...]] | None = None,
    /,
    **options: Any,
) -> nn.Module:
    """Build a registered model, or one named by import path, for data with ``in_channels``
    and ``num_classes`` (images of ``image_size``, (H, W); per-image factors with
    ``factor_levels``, where the data has them); ``options`` are its config keys."""
    if name.startswith(GIVEN):
        raise CnnlabError(
            f"model.name {name!r}: this run's model was given to train() as a module and "
            f"cannot be rebuilt; {_REBUILD_HINT}"
        )
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    where = _where(name)
    factory = _factory(name)
    params = _parameters(factory)
    shape = {
        "in_channels": in_channels,
        "num_classes": num_classes,
        "image_size": size,
        "factor_levels": dict(factor_levels or {}),
    }
    data = {param: shape[arg] for arg, param in _data_params(params).items()}
    _check_options(where, params, data, options, model_options(name))
    try:
        model = factory(**data, **options)
    except (TypeError, ValueError) as exc:
        raise CnnlabError(f"{where}: {exc}") from None
    except Exception as exc:  # the user's own code: say where, keep the traceback
        raise CnnlabError(
            f"{where}: building the model failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise CnnlabError(
            f"{where}: the factory returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return materialized(model, in_channels, size)


class ModelSection(Protocol):
    """A config's ``model`` section as :func:`build_model` reads it (the training layer's
    ``ModelConfig``): the family and its options."""

    name: str
    options: dict[str, Any]


def build_model(
    model: ModelSection,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] | int = (28, 28),
    factor_levels: dict[str, tuple[Any, ...]] | None = None,
) -> nn.Module:
    """The net a config's ``model`` section describes (its ``name`` resolved: not ``auto``),
    for data of this shape: the one way a config becomes a model."""
    return create_model(
        model.name, in_channels, num_classes, image_size, factor_levels, **model.options
    )


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options ``name``'s factory cannot take, before any data is loaded (as
    :func:`create_model` would)."""
    params = _parameters(_factory(name))
    data = dict.fromkeys(_data_params(params).values())
    _check_options(_where(name), params, data, options, model_options(name))


def _where(name: str) -> str:
    return f"model.name {name!r}" if is_import_path(name) else f"model {name!r}"


def materialized(model: nn.Module, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    """``model`` with its lazy layers (``nn.LazyLinear`` ...) given their shapes by one
    eval-mode forward pass of a blank image; a model without lazy layers is left as it is."""
    if not any(is_lazy(p) for p in model.parameters()):
        return model
    was_training = model.training
    device = next(model.parameters()).device
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_channels, *image_size, device=device))
    return model.train(was_training)


def given_model_name(
    model: nn.Module, in_channels: int, num_classes: int, image_size: tuple[int, int]
) -> str:
    """How a module given to ``train(model=...)`` is recorded as ``model.name``: its class's
    import path when that rebuilds the same architecture from the data's shape alone, else
    :data:`GIVEN` with the class and why it cannot be rebuilt."""
    cls = type(model)
    path = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__":
        why = "its class is defined in __main__ (a script or notebook)"
    elif "<locals>" in cls.__qualname__:
        why = "its class is defined inside a function"
    else:
        why = _rebuild_problem(model, path, in_channels, num_classes, image_size)
    if why is None:
        return path
    return f"{GIVEN}{cls.__module__}.{cls.__qualname__}: {why}"


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


def resolve_factory(name: str) -> ModelFactory:
    """The factory ``name`` stands for; a :class:`CnnlabError` naming ``model.name`` if none."""
    return _factory(name)


def _factory(name: str) -> ModelFactory:
    if is_import_path(name):
        return _import_factory(name)
    if name not in _REGISTRY:
        raise CnnlabError(
            f"model {name!r} is unknown; known models: {', '.join(model_names())}, "
            "or an import path package.module:factory"
        )
    return _REGISTRY[name]


def check_import_path(name: str) -> None:
    """Refuse ``name`` unless it has the form ``package.module:factory`` (imports nothing)."""
    if not _IMPORT_PATH.fullmatch(name):
        raise CnnlabError(
            f"model.name {name!r}: an import path is written package.module:factory "
            f"({FACTORY_RULE})"
        )


def _import_factory(name: str) -> ModelFactory:
    check_import_path(name)
    module_name, attr = name.split(":")
    try:
        obj: Any = _import_module(module_name)
    except Exception as exc:
        hint = " (is it on sys.path or PYTHONPATH?)" if isinstance(exc, ImportError) else ""
        raise CnnlabError(
            f"model.name {name!r}: cannot import {module_name!r}{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CnnlabError(f"model.name {name!r}: {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not is_model_factory(obj):
        raise CnnlabError(
            f"model.name {name!r}: {_kind(obj)} is not a model factory ({FACTORY_RULE})"
        )
    return obj


def is_model_factory(obj: Any) -> bool:
    """Whether ``obj`` may build a model: a ``torch.nn.Module`` subclass, or a plain function
    marked :func:`model_factory` (or registered). Checked before anything is called."""
    if inspect.isclass(obj):
        return issubclass(obj, nn.Module)
    return inspect.isfunction(obj) and getattr(obj, _MARK, False) is True


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return f"the class {obj.__qualname__}"
    if inspect.isfunction(obj):
        return f"the function {obj.__qualname__} (not marked @cnnlab.model_factory)"
    return f"{type(obj).__name__} {getattr(obj, '__name__', '')}".rstrip()


def _import_module(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != module_name.split(".")[0] or "" in sys.path or cwd in sys.path:
            raise
        sys.path.append(cwd)  # `cnnlab` scripts do not put the working directory on the path
        return importlib.import_module(module_name)


def _parameters(factory: ModelFactory) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):  # no signature (some builtins): options pass unchecked
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}


def _data_params(params: dict[str, inspect.Parameter]) -> dict[str, str]:
    """Data argument -> the name under which the factory takes it, where it does."""
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    found = {}
    for arg in _DATA_ARGS:
        match = next((n for n in (arg, *ALIASES[arg]) if n in named), None)
        if match is not None:
            found[arg] = match
    return found


def _check_options(
    where: str,
    params: dict[str, inspect.Parameter],
    data: dict[str, Any],
    options: dict[str, Any],
    valid: dict[str, Any],
) -> None:
    given_by_data = sorted(set(options) & set(data))
    if given_by_data:
        raise CnnlabError(
            f"{where}: option(s) {', '.join(given_by_data)} come from the data, not the config"
        )
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(options) - set(valid))
    if unknown and not any_keyword:
        raise CnnlabError(
            f"{where}: unknown option(s) {', '.join(map(_shown, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    missing = [k for k, v in valid.items() if v is REQUIRED and k not in options]
    if missing:
        raise CnnlabError(
            f"{where}: needs option(s) {', '.join(missing)} (set model.{missing[0]}: ...)"
        )


def _shown(name: str) -> str:
    """An option's name for a one-line message: quoted when it does not print."""
    return name if name.isprintable() else repr(name)


def _rebuild_problem(
    model: nn.Module, path: str, in_channels: int, num_classes: int, image_size: tuple[int, int]
) -> str | None:
    """Why ``path`` does not rebuild ``model`` from the data's shape alone; None if it does."""
    try:
        with torch.random.fork_rng(devices=[]):  # the run's random stream stays as it was
            rebuilt = create_model(path, in_channels, num_classes, image_size)
    except CnnlabError as exc:
        return f"it cannot be rebuilt from the data's shape alone ({exc})"
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if type(rebuilt) is not type(model) or shapes != {
        k: tuple(v.shape) for k, v in rebuilt.state_dict().items()
    }:
        return f"{path} built with its defaults is not the same architecture (other arguments?)"
    return None
