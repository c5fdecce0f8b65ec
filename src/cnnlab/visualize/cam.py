"""Grad-CAM at any conv/pool layer, Guided Grad-CAM, guided backpropagation and saliency.

All methods explain one score per image: a class logit, chosen per image (default: the
predicted class). For a multi-head model :func:`class_scores` picks the named head's logits;
a one-unit (sigmoid) head scores class 1 by its logit and class 0 by minus its logit. Heatmaps
for a batch come from one forward and one backward pass (two with the guided methods): images
do not interact in eval mode, so the gradient of the summed scores is each image's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.visualize.geometry import Geometry, layer_geometry, upsample
from cnnlab.visualize.hooks import eval_mode, guided_relus, recording, resolve_layers

Target = int | Sequence[int] | torch.Tensor | None

METHODS = ("gradcam", "guided_gradcam", "saliency", "guided_backprop")
"""``gradcam`` and ``guided_gradcam`` are per layer; ``saliency`` and ``guided_backprop`` are
gradients at the input."""

LAYER_METHODS = ("gradcam", "guided_gradcam")


@dataclass(frozen=True)
class Heatmap:
    """One method's heatmaps for N images.

    ``maps`` (N, H, W) is on the input grid and keeps the method's own scale (never min-max
    normalised); ``raw`` is what the method computed before that: the Grad-CAM map at the
    layer's resolution (N, h, w), or the input gradient (N, C, H, W).
    """

    method: str
    layer: str | None
    maps: torch.Tensor
    raw: torch.Tensor
    target: torch.Tensor
    score: torch.Tensor


def class_scores(
    outputs: torch.Tensor | dict[str, torch.Tensor], head: str | None = None, target: Target = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adapter from model outputs to one score per image: ``(scores (N,), classes (N,))``.

    ``outputs`` is a logits tensor or a multi-head model's dict of head logits (``head`` names
    one). ``target`` is a class index for every image, one per image, or None for the predicted
    class.
    """
    logits = head_logits(outputs, head)
    n, units = logits.shape
    levels = 2 if units == 1 else units
    if target is None:
        classes = (logits[:, 0] > 0).long() if units == 1 else logits.argmax(dim=1)
    else:
        classes = torch.as_tensor(target, dtype=torch.long, device=logits.device).expand(n)
        bad = (classes < 0) | (classes >= levels)
        if bad.any():
            where = f"head {head!r}" if head else "the model"
            raise CnnlabError(
                f"class {int(classes[bad][0])} is out of range: {where} has classes 0..{levels - 1}"
            )
    if units == 1:
        scores = torch.where(classes == 1, logits[:, 0], -logits[:, 0])
    else:
        scores = logits.gather(1, classes[:, None])[:, 0]
    return scores, classes.detach()


def head_logits(
    outputs: torch.Tensor | dict[str, torch.Tensor], head: str | None = None
) -> torch.Tensor:
    """The (N, K) logits of ``head`` (a multi-head model) or of the model (``head`` None)."""
    if isinstance(outputs, dict):
        if head is None or head not in outputs:
            got = "no head given" if head is None else f"no head {head!r}"
            raise CnnlabError(f"{got}: this multi-head model has heads {', '.join(outputs)}")
        return outputs[head]
    if head is not None:
        raise CnnlabError(f"head {head!r}: this model has one output, not named heads")
    return outputs


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str] = (),
    *,
    methods: Sequence[str] = METHODS,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 256,
) -> dict[tuple[str, str | None], Heatmap]:
    """Heatmaps of ``methods`` for ``inputs`` (the model's normalised (N, C, H, W) input).

    Grad-CAM and Guided Grad-CAM are computed at each of ``layers`` (names as in
    :func:`~cnnlab.visualize.hooks.resolve_layers`); keys are ``(method, layer)``, with layer
    None for input-gradient methods. Every layer comes from the same forward/backward pass.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise CnnlabError(f"unknown method(s) {', '.join(unknown)}; choose from {METHODS}")
    modules = resolve_layers(model, layers) if layers else {}
    if modules and not set(methods) & set(LAYER_METHODS):
        modules = {}
    if set(methods) & set(LAYER_METHODS) and not modules:
        raise CnnlabError("Grad-CAM needs at least one layer")
    if inputs.ndim != 4 or inputs.shape[0] == 0:
        raise CnnlabError(
            f"inputs must be a non-empty (N, C, H, W) batch, got {tuple(inputs.shape)}"
        )
    if target is not None and not isinstance(target, int):
        count = torch.as_tensor(target).numel()
        if count not in (1, inputs.shape[0]):
            raise CnnlabError(f"{count} targets for {inputs.shape[0]} images")
    shape = tuple(inputs.shape[1:])
    parts: list[dict[tuple[str, str | None], Heatmap]] = []
    with eval_mode(model):  # the geometry probes too: no BatchNorm statistics move
        geometry = {name: layer_geometry(model, m, shape) for name, m in modules.items()}
        for start in range(0, inputs.shape[0], batch_size):
            chunk = inputs[start : start + batch_size]
            chunk_target = _slice_target(target, start, chunk.shape[0])
            parts.append(
                _explain_batch(model, chunk, modules, geometry, methods, head, chunk_target)
            )
    return {key: _cat([p[key] for p in parts]) for key in parts[0]}


def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    *,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 256,
) -> Heatmap:
    """Grad-CAM at ``layer``: ReLU of the activation maps weighted by their mean gradients."""
    maps = explain(
        model,
        inputs,
        [layer],
        methods=("gradcam",),
        head=head,
        target=target,
        batch_size=batch_size,
    )
    return maps[("gradcam", layer_key(model, layer))]


def guided_grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    *,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 256,
) -> Heatmap:
    """Guided backpropagation times the upsampled Grad-CAM of ``layer`` (``maps``: the largest
    |value| over channels)."""
    maps = explain(
        model,
        inputs,
        [layer],
        methods=("guided_gradcam",),
        head=head,
        target=target,
        batch_size=batch_size,
    )
    return maps[("guided_gradcam", layer_key(model, layer))]


def saliency(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 256,
) -> Heatmap:
    """Plain gradient saliency: the largest |d score / d input| over channels."""
    maps = explain(
        model, inputs, methods=("saliency",), head=head, target=target, batch_size=batch_size
    )
    return maps[("saliency", None)]


def guided_backprop(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 256,
) -> Heatmap:
    """Guided backpropagation: input gradients with only positive gradients through ReLUs."""
    maps = explain(
        model, inputs, methods=("guided_backprop",), head=head, target=target, batch_size=batch_size
    )
    return maps[("guided_backprop", None)]


def layer_key(model: nn.Module, layer: str) -> str:
    """The short name :func:`explain` files ``layer``'s heatmaps under."""
    return next(iter(resolve_layers(model, [layer])))


def _explain_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    modules: dict[str, nn.Module],
    geometry: dict[str, Geometry | None],
    methods: Sequence[str],
    head: str | None,
    target: Target,
) -> dict[tuple[str, str | None], Heatmap]:
    size = (inputs.shape[2], inputs.shape[3])
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad(), recording(modules) as acts:
        scores, classes = class_scores(model(x), head, target)
        names = list(modules)
        wrt = [acts[name] for name in names]
        if "saliency" in methods:
            wrt.append(x)
        found = torch.autograd.grad(scores.sum(), wrt, allow_unused=True) if wrt else ()
        # A layer the score does not depend on (in another head's branch) has no gradient.
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, found, strict=True)]
    scores = scores.detach()
    out: dict[tuple[str, str | None], Heatmap] = {}
    cams: dict[str, torch.Tensor] = {}
    for name, grad in zip(names, grads[: len(names)], strict=True):
        activation = acts[name].detach()
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * activation).sum(dim=1))
        cams[name] = upsample(cam, size, geometry[name])
        if "gradcam" in methods:
            out[("gradcam", name)] = Heatmap("gradcam", name, cams[name], cam, classes, scores)
    if "saliency" in methods:
        g = grads[-1].detach()
        out[("saliency", None)] = Heatmap("saliency", None, g.abs().amax(1), g, classes, scores)
    if {"guided_gradcam", "guided_backprop"} & set(methods):
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad(), guided_relus(model):
            guided_scores, _ = class_scores(model(x), head, classes)
            (g,) = torch.autograd.grad(guided_scores.sum(), [x])
        if "guided_backprop" in methods:
            out[("guided_backprop", None)] = Heatmap(
                "guided_backprop", None, g.abs().amax(1), g, classes, scores
            )
        if "guided_gradcam" in methods:
            for name, cam in cams.items():
                weighted = g * cam[:, None]
                out[("guided_gradcam", name)] = Heatmap(
                    "guided_gradcam", name, weighted.abs().amax(1), weighted, classes, scores
                )
    return out


def _slice_target(target: Target, start: int, n: int) -> Target:
    if target is None or isinstance(target, int):
        return target
    values = torch.as_tensor(target, dtype=torch.long)
    return values.reshape(()) if values.numel() == 1 else values[start : start + n]


def _cat(parts: list[Heatmap]) -> Heatmap:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Heatmap(
        first.method,
        first.layer,
        torch.cat([p.maps for p in parts]),
        torch.cat([p.raw for p in parts]),
        torch.cat([p.target for p in parts]),
        torch.cat([p.score for p in parts]),
    )
