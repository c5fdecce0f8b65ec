"""Layers by name, and forward hooks that are always removed (context managers).

A layer is named by its full module path (``features.conv1``) or by any unique dotted suffix of
it (``conv1``); the short name a layer is shown under is its shortest unique suffix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError

SPATIAL_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
"""The layers shown by default: convolutions and fixed-window pooling (not global pooling)."""


def short_names(model: nn.Module) -> dict[str, str]:
    """Full module name -> its shortest unique dotted suffix, for every named submodule."""
    full = [name for name, _ in model.named_modules() if name]
    out: dict[str, str] = {}
    for name in full:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if sum(1 for other in full if _has_suffix(other, suffix)) == 1:
                out[name] = suffix
                break
    return out


def default_layers(model: nn.Module) -> list[str]:
    """Short names of every convolution and pooling layer, in definition order."""
    names = short_names(model)
    return [
        names[name]
        for name, module in model.named_modules()
        if name and isinstance(module, SPATIAL_LAYERS)
    ]


MIN_MAP = 4
"""The smallest map side (px) at which a heatmap can still say *where*: a 1x1 or 2x2 map is
one or four flat tiles over the whole image."""


@dataclass(frozen=True)
class ExplanationLayer:
    """The layer a run's heatmaps are drawn at by default: ``name`` (None: the model has no
    conv or pool layer), its map ``size`` (H, W), how it is shown (``label``) and a ``note``
    when no layer's map is at least :data:`MIN_MAP` px on each side."""

    name: str | None
    size: tuple[int, int] | None = None
    label: str = ""
    note: str | None = None


def explanation_layer(model: nn.Module, input_shape: tuple[int, int, int]) -> ExplanationLayer:
    """The deepest conv or pool layer whose map is at least :data:`MIN_MAP` px on each side for
    inputs of ``(C, H, W)`` (one probe forward pass), else the largest map with a note saying
    the heatmaps cannot show where."""
    layers = resolve_layers(model)
    if not layers:
        return ExplanationLayer(None)
    probe = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = forward_to(model, probe, layers)
    finally:
        model.train(was_training)
    sizes = {name: (int(out.shape[-2]), int(out.shape[-1])) for name, out in outputs.items()}
    wide = [name for name, size in sizes.items() if min(size) >= MIN_MAP]
    if wide:
        name, note = wide[-1], None
    else:
        name = max(sizes, key=lambda n: min(sizes[n]))
        note = (
            f"no conv or pool layer of this model keeps a map of at least {MIN_MAP}x{MIN_MAP} px "
            f"on {input_shape[1]}x{input_shape[2]} images; the heatmaps at {name} "
            f"({sizes[name][0]}x{sizes[name][1]}) cannot show where the net looked"
        )
    return ExplanationLayer(name, sizes[name], layer_label(model, name, layers[name]), note)


def layer_label(model: nn.Module, name: str, module: nn.Module) -> str:
    """A layer as titles show it: its short name, with its type where the name is a bare index
    (``3 (Conv2d)``: a user's ``nn.Sequential``)."""
    bare = name.split(".")[-1].isdigit()
    return f"{name} ({type(module).__name__})" if bare else name


def resolve_layers(model: nn.Module, names: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """Short name -> module for ``names`` (default: :func:`default_layers`), in model order.

    Raises :class:`CnnlabError` naming the valid layers when a name matches none or several.
    """
    modules = dict(model.named_modules())
    shorts = short_names(model)
    if names is None:
        names = default_layers(model)
    chosen: dict[str, str] = {}
    for name in names:
        matches = [full for full in modules if full and _has_suffix(full, name)]
        exact = [full for full in matches if full == name]
        if exact:
            matches = exact
        if len(matches) != 1:
            valid = ", ".join(default_layers(model)) or "none"
            why = "matches no layer" if not matches else f"is ambiguous ({', '.join(matches)})"
            raise CnnlabError(f"layer {name!r} {why}; conv/pool layers: {valid}")
        chosen[matches[0]] = shorts[matches[0]]
    order = [full for full in modules if full in chosen]
    return {chosen[full]: modules[full] for full in order}


def _has_suffix(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


@contextlib.contextmanager
def recording(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Record each module's output (with its autograd graph) into the yielded dict.

    The hooks are removed when the block ends, also when it raises.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(_recorder(store, name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _recorder(store: dict[str, torch.Tensor], name: str):
    def hook(module: nn.Module, args: object, output: torch.Tensor) -> None:
        store[name] = output

    return hook


class _Enough(Exception):
    """Raised inside a hook to end a forward pass once every wanted output is recorded."""


def forward_to(
    model: nn.Module, inputs: torch.Tensor, modules: Mapping[str, nn.Module]
) -> dict[str, torch.Tensor]:
    """The outputs of ``modules`` for ``inputs``; the forward pass stops at the last of them.

    Later layers (a large dense layer, say) are never computed. Gradients flow as usual.
    """
    store: dict[str, torch.Tensor] = {}
    wanted = set(modules)
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, args: object, output: torch.Tensor) -> None:
            store[name] = output
            if wanted <= store.keys():
                raise _Enough

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        with contextlib.suppress(_Enough):
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    missing = wanted - store.keys()
    if missing:
        raise CnnlabError(f"layer(s) {', '.join(sorted(missing))} never ran in the forward pass")
    return store


def input_of(model: nn.Module, inputs: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """What ``module`` receives when the model runs on ``inputs``; the pass stops there."""
    store: list[torch.Tensor] = []

    def hook(m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        store.append(args[0])
        raise _Enough

    handle = module.register_forward_pre_hook(hook)
    try:
        with contextlib.suppress(_Enough):
            model(inputs)
    finally:
        handle.remove()
    if not store:
        raise CnnlabError("the layer never ran in the forward pass")
    return store[0]


class _GuidedGradient(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _guide(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
    return _GuidedGradient.apply(output)


@contextlib.contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Guided backpropagation inside the block: every ``nn.ReLU`` passes back only positive
    gradients where its input was positive. Yields how many ReLUs are guided."""
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                handles.append(module.register_forward_hook(_guide))
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()


def execution_order(model: nn.Module, inputs: torch.Tensor) -> list[nn.Module]:
    """The leaf modules in the order they run on ``inputs`` (one no-grad forward pass)."""
    order: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda m, a, o: order.append(m))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return order


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient, for an image where nothing gets through, also flows where the unit
    is off as long as it pushes the unit up (Lucid's "redirected ReLU")."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        relu_grad = grad * (x > 0)
        redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)
        alive = relu_grad.flatten(1).norm(dim=1) > 0
        keep = alive.view(-1, *[1] * (grad.ndim - 1))
        return torch.where(keep, relu_grad, redirected).contiguous()


def _redirect(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor):
    return _RedirectedReLU.apply(args[0])


@contextlib.contextmanager
def redirected_relus(model: nn.Module) -> Iterator[int]:
    """Inside the block every ``nn.ReLU`` lets a dead unit's gradient through (see
    :class:`_RedirectedReLU`), so optimisation can start where a unit is off everywhere."""
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                handles.append(module.register_forward_hook(_redirect))
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode inside the block; its previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
