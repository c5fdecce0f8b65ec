"""Attribution methods from Captum, as cnnlab :class:`~cnnlab.visualize.cam.Heatmap` objects.

Integrated Gradients, Occlusion, DeepLIFT and GradientSHAP explain one score per image at the
input; ``layer_gradcam`` is Captum's Grad-CAM at a named layer (a cross-check of cnnlab's own).
Every method explains the logit :func:`~cnnlab.visualize.cam.class_scores` explains: the model
(or one head of a multi-head model) is wrapped by :class:`HeadForward` into (N, K) logits, a
one-unit sigmoid head into the two columns ``[-z, z]``, so target 0 scores ``-z`` and target 1
scores ``z``.

Channel reduction: ``raw`` is the (N, C, H, W) attribution and ``maps`` its **sum over
channels**, sign kept (positive: evidence for the class). Summing keeps completeness (the map of
Integrated Gradients or DeepLIFT adds up to score(x) - score(baseline)); for Occlusion, whose
window spans every channel, each channel holds the same value, so ``maps`` is C times it.

Baselines live in the model's normalised input space: 0 there is the training mean image.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from captum.attr import DeepLift, GradientShap, IntegratedGradients, LayerGradCam, Occlusion
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.visualize.cam import Heatmap, Target, class_scores, explain, head_logits
from cnnlab.visualize.geometry import layer_geometry, upsample
from cnnlab.visualize.hooks import eval_mode, resolve_layers
from cnnlab.visualize.methods import REGISTRY, lookup

ATTRIBUTION_METHODS = tuple(m.name for m in REGISTRY.values() if not m.from_pass)
"""The methods computed from the model (Captum's, in :mod:`~cnnlab.visualize.methods`);
:func:`attribute` takes these and the gradient methods of :func:`~cnnlab.visualize.cam.explain`."""

Baseline = float | torch.Tensor | None


class HeadForward(nn.Module):
    """``model`` with its output turned into the (N, K) logits of ``head``.

    A one-unit (sigmoid) head becomes ``[-z, z]``: column c is the score
    :func:`~cnnlab.visualize.cam.class_scores` gives class c.
    """

    def __init__(self, model: nn.Module, head: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = head_logits(self.model(x), self.head)
        return torch.cat([-logits, logits], dim=1) if logits.shape[1] == 1 else logits


def attribute(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str,
    *,
    layer: str | None = None,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 32,
    seed: int = 0,
    **options: Any,
) -> Heatmap:
    """``method``'s heatmaps for ``inputs`` (normalised (N, C, H, W)): any method of
    :mod:`~cnnlab.visualize.methods`, at ``layer`` for a CAM-style one.

    ``target``: None (the predicted class), a class for every image, or one per image.
    ``options`` go to the method's own function (``n_steps``, ``window``, ``baseline`` ...);
    ``seed`` to a method that draws at random (``gradient_shap``).
    """
    described = lookup(method)
    if described.layer and layer is None:
        raise CnnlabError(f"{method} needs a layer")
    if not described.layer and layer is not None:
        raise CnnlabError(f"{method} works at the input and takes no layer (got {layer!r})")
    if described.from_pass:
        if options:
            raise CnnlabError(f"{method} has no option(s) {', '.join(sorted(options))}")
        maps = explain(
            model,
            inputs,
            [] if layer is None else [layer],
            methods=(method,),
            head=head,
            target=target,
            batch_size=batch_size,
        )
        return next(iter(maps.values()))
    function = described.function
    allowed = set(inspect.signature(function).parameters) - {"model", "inputs"}
    if layer is not None:
        options["layer"] = layer
    if "seed" in allowed:
        options["seed"] = seed
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise CnnlabError(f"{method} has no option(s) {', '.join(unknown)}")
    return function(model, inputs, head=head, target=target, batch_size=batch_size, **options)


def integrated_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    head: str | None = None,
    target: Target = None,
    baseline: Baseline = None,
    n_steps: int = 32,
    internal_batch_size: int = 256,
    batch_size: int = 32,
) -> Heatmap:
    """Integrated Gradients from ``baseline`` (default 0) along ``n_steps`` Gauss-Legendre
    points; at most ``internal_batch_size`` images on the path go through one forward pass."""

    def run(forward: nn.Module, x: torch.Tensor, classes: torch.Tensor, start: int) -> torch.Tensor:
        rows = max(internal_batch_size, x.shape[0])
        return IntegratedGradients(forward).attribute(
            x,
            baselines=_baseline(baseline, inputs, start, x),
            target=classes,
            n_steps=n_steps,
            internal_batch_size=rows,
        )

    return _input_method("integrated_gradients", model, inputs, run, head, target, batch_size)


def occlusion(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    head: str | None = None,
    target: Target = None,
    baseline: Baseline = None,
    window: int | tuple[int, int] = 4,
    stride: int | tuple[int, int] = 2,
    perturbations_per_eval: int = 16,
    batch_size: int = 32,
) -> Heatmap:
    """Occlusion: the score's drop when a ``window`` (all channels) slides over the image in
    steps of ``stride`` and is replaced by ``baseline`` (default 0), averaged per pixel."""
    wh, ww = _pair(window)
    sh, sw = _pair(stride)

    def run(forward: nn.Module, x: torch.Tensor, classes: torch.Tensor, start: int) -> torch.Tensor:
        channels = x.shape[1]
        return Occlusion(forward).attribute(
            x,
            sliding_window_shapes=(channels, wh, ww),
            strides=(channels, sh, sw),
            baselines=_baseline(baseline, inputs, start, x),
            target=classes,
            perturbations_per_eval=perturbations_per_eval,
        )

    return _input_method("occlusion", model, inputs, run, head, target, batch_size)


def deeplift(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    head: str | None = None,
    target: Target = None,
    baseline: Baseline = None,
    batch_size: int = 32,
) -> Heatmap:
    """DeepLIFT (rescale rule) from ``baseline`` (default 0).

    Captum needs every non-linearity module called once per forward pass and not in place; a
    model that breaks this (``nn.ReLU(inplace=True)``, one ReLU module called at several
    places) is explained through a copy with fresh, non-inplace modules (:func:`deeplift_ready`).
    Non-linearities called as functions (``torch.relu`` in ``forward``) are invisible to Captum:
    it back-propagates plain gradients through them.
    """

    def run(forward: nn.Module, x: torch.Tensor, classes: torch.Tensor, start: int) -> torch.Tensor:
        return DeepLift(forward).attribute(
            x, baselines=_baseline(baseline, inputs, start, x), target=classes
        )

    return _input_method("deeplift", model, inputs, run, head, target, batch_size, deeplift_ready)


def gradient_shap(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    head: str | None = None,
    target: Target = None,
    baselines: torch.Tensor | None = None,
    n_samples: int = 16,
    stdevs: float = 0.1,
    seed: int = 0,
    batch_size: int = 32,
) -> Heatmap:
    """GradientSHAP: input-times-gradient at ``n_samples`` random points between a noisy input
    (Gaussian, ``stdevs`` in normalised units) and a baseline drawn from ``baselines``
    ((B, C, H, W); default the zero image).

    The draws come from ``seed`` alone: the global torch and NumPy generators (which Captum
    draws from) are seeded inside the call and restored after it.
    """
    reference = torch.zeros_like(inputs[:1]) if baselines is None else baselines.to(inputs)
    if reference.ndim != inputs.ndim or reference.shape[1:] != inputs.shape[1:]:
        raise CnnlabError(
            f"baselines must be (B, {', '.join(map(str, inputs.shape[1:]))}), "
            f"got {tuple(reference.shape)}"
        )

    def run(forward: nn.Module, x: torch.Tensor, classes: torch.Tensor, start: int) -> torch.Tensor:
        return GradientShap(forward).attribute(
            x, baselines=reference, n_samples=n_samples, stdevs=stdevs, target=classes
        )

    with seeded(seed, inputs.device):
        return _input_method("gradient_shap", model, inputs, run, head, target, batch_size)


def captum_layer_gradcam(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    *,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 32,
) -> Heatmap:
    """Captum's ``LayerGradCam`` at ``layer``, after ReLU: ``raw`` at the layer's resolution
    (N, h, w), ``maps`` upsampled to the input grid the way cnnlab's Grad-CAM is."""
    name, module = next(iter(resolve_layers(model, [layer]).items()))
    with eval_mode(model):  # its probe pass must not move BatchNorm's running statistics
        geometry = layer_geometry(model, module, tuple(inputs.shape[1:]))
    size = (inputs.shape[2], inputs.shape[3])

    def run(forward: nn.Module, x: torch.Tensor, classes: torch.Tensor, start: int) -> torch.Tensor:
        cam = LayerGradCam(forward, module).attribute(x, target=classes, relu_attributions=True)
        return cam[:, 0]

    heatmap = _input_method("layer_gradcam", model, inputs, run, head, target, batch_size)
    maps = upsample(heatmap.raw, size, geometry)
    return Heatmap("layer_gradcam", name, maps, heatmap.raw, heatmap.target, heatmap.score)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch's and NumPy's global generators inside the block; restore both after."""
    devices = [device] if device is not None and device.type == "cuda" else []
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(state)


def deeplift_ready(model: nn.Module, probe: torch.Tensor) -> nn.Module:
    """``model`` itself if Captum's DeepLift can hook it as it is, else a copy that it can.

    In the copy every in-place non-linearity is made out-of-place, and one called k > 1 times
    per forward pass (``probe``: one input) is replaced by k fresh copies used in turn.
    """
    calls = _nonlinear_calls(model, probe)
    inplace = any(getattr(m, "inplace", False) for m in model.modules() if _nonlinear(m))
    if not inplace and all(n <= 1 for n in calls.values()):
        return model
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if _nonlinear(module) and getattr(module, "inplace", False):
            module.inplace = False
    reused = {id(m): n for m, n in _nonlinear_calls(twin, probe).items() if n > 1}
    if reused:
        _unshare(twin, reused)
    return twin


class _Unshared(nn.Module):
    """Stands in for a non-linearity called several times per forward: call i uses copy i."""

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.calls = 0

    def forward(self, *args: Any) -> Any:
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args)


def _unshare(model: nn.Module, reused: dict[int, int]) -> None:
    stand_ins: dict[int, _Unshared] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in reused:
                if id(child) not in stand_ins:
                    stand_ins[id(child)] = _Unshared(child, reused[id(child)])
                setattr(parent, name, stand_ins[id(child)])
    units = list(stand_ins.values())

    def restart(module: nn.Module, args: object) -> None:
        for unit in units:
            unit.calls = 0

    model.register_forward_pre_hook(restart)


def _nonlinear(module: nn.Module) -> bool:
    return type(module) in SUPPORTED_NON_LINEAR


def _nonlinear_calls(model: nn.Module, probe: torch.Tensor) -> dict[nn.Module, int]:
    counts: dict[nn.Module, int] = {}

    def count(module: nn.Module, args: object) -> None:
        counts[module] = counts.get(module, 0) + 1

    handles = [m.register_forward_pre_hook(count) for m in model.modules() if _nonlinear(m)]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    return counts


Runner = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def _input_method(
    method: str,
    model: nn.Module,
    inputs: torch.Tensor,
    run: Runner,
    head: str | None,
    target: Target,
    batch_size: int,
    prepare: Callable[[nn.Module, torch.Tensor], nn.Module] | None = None,
) -> Heatmap:
    """Run ``run`` over batches of ``batch_size`` images, eval mode, classes resolved."""
    _check(inputs, target, batch_size)
    raws, classes, scores = [], [], []
    with eval_mode(model), torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"captum\.")
        warnings.filterwarnings("ignore", message=r"\s*Setting forward, backward hooks")
        warnings.filterwarnings("ignore", message=r"internal batch size")
        subject = prepare(model, inputs[:1].detach()) if prepare else model
        forward = HeadForward(subject, head)
        for start in range(0, inputs.shape[0], batch_size):
            x = inputs[start : start + batch_size].detach()
            with torch.no_grad():
                score, chosen = class_scores(model(x), head, _slice(target, start, x.shape[0]))
            raws.append(run(forward, x, chosen, start).detach())
            classes.append(chosen)
            scores.append(score)
    raw = torch.cat(raws)
    maps = raw.sum(dim=1) if raw.ndim == 4 else raw
    return Heatmap(method, None, maps, raw, torch.cat(classes), torch.cat(scores))


def _check(inputs: torch.Tensor, target: Target, batch_size: int) -> None:
    if inputs.ndim != 4 or inputs.shape[0] == 0:
        raise CnnlabError(
            f"inputs must be a non-empty (N, C, H, W) batch, got {tuple(inputs.shape)}"
        )
    if batch_size < 1:
        raise CnnlabError(f"batch_size must be at least 1, got {batch_size}")
    if target is not None and not isinstance(target, int):
        count = torch.as_tensor(target).numel()
        if count not in (1, inputs.shape[0]):
            raise CnnlabError(f"{count} targets for {inputs.shape[0]} images")


def _slice(target: Target, start: int, n: int) -> Target:
    if target is None or isinstance(target, int):
        return target
    values = torch.as_tensor(target, dtype=torch.long)
    return values.reshape(()) if values.numel() == 1 else values[start : start + n]


def _baseline(
    baseline: Baseline, inputs: torch.Tensor, start: int, x: torch.Tensor
) -> torch.Tensor:
    """The baseline for the batch ``x`` (rows ``start``.. of ``inputs``), shaped like it."""
    if baseline is None:
        return torch.zeros_like(x)
    value = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if value.ndim == 4 and value.shape[0] == inputs.shape[0] and value.shape[0] > 1:
        value = value[start : start + x.shape[0]]
    try:
        return value.expand_as(x).clone()
    except RuntimeError:
        raise CnnlabError(
            f"a baseline of shape {tuple(value.shape)} does not fit inputs {tuple(inputs.shape)}"
        ) from None


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
