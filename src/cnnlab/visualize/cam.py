"""The gradient methods: Grad-CAM at any conv/pool layer, Guided Grad-CAM, guided
backpropagation and saliency (and any other method of :mod:`~cnnlab.visualize.methods` marked
``from_pass``, as Grad-CAM++).

All methods explain one score per image: a class logit, chosen per image (default: the
predicted class). For a multi-head model :func:`class_scores` picks the named head's logits;
a one-unit (sigmoid) head scores class 1 by its logit and class 0 by minus its logit. Heatmaps
for a batch come from one forward and one backward pass, a :class:`Pass` (and one guided
backward pass with the guided methods): images do not interact in eval mode, so the gradient of
the summed scores is each image's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.visualize.geometry import Geometry, layer_geometry, upsample
from cnnlab.visualize.hooks import eval_mode, guided_relus, recording, resolve_layers
from cnnlab.visualize.methods import REGISTRY, chosen

Target = int | Sequence[int] | torch.Tensor | None

METHODS = tuple(m.name for m in REGISTRY.values() if m.from_pass)
"""The gradient methods of :func:`explain`, computed from one :class:`Pass` (``from_pass`` in
:mod:`~cnnlab.visualize.methods`); the CAM-style ones per layer."""


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
    methods: Sequence[str] | None = None,
    head: str | None = None,
    target: Target = None,
    batch_size: int = 256,
) -> dict[tuple[str, str | None], Heatmap]:
    """Heatmaps of ``methods`` (default :data:`METHODS`: every gradient method) for ``inputs``
    (the model's normalised (N, C, H, W) input).

    CAM-style methods are computed at each of ``layers`` (names as in
    :func:`~cnnlab.visualize.hooks.resolve_layers`); keys are ``(method, layer)``, with layer
    None for input-gradient methods, in registry order. Every method and layer of a batch comes
    from the same :class:`Pass`.
    """
    wanted = chosen(METHODS if methods is None else methods)
    other = [m.name for m in wanted if not m.from_pass]
    if other:
        raise CnnlabError(
            f"{', '.join(other)}: not a gradient method of explain(); use attribute()"
        )
    modules = resolve_layers(model, layers) if layers else {}
    at_layers = [m.title for m in wanted if m.layer]
    at_input = len(at_layers) < len(wanted)
    if modules and not at_layers:
        modules = {}
    if at_layers and not modules:
        raise CnnlabError(f"{', '.join(at_layers)}: a CAM-style method needs at least one layer")
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
            shared = Pass(model, chunk, modules, geometry, head, chunk_target, at_input)
            part = {}
            for m in wanted:
                for layer in m.at(modules):
                    maps, raw = m.function(shared, layer)
                    part[m.name, layer] = Heatmap(
                        m.name, layer, maps, raw, shared.classes, shared.scores
                    )
            parts.append(part)
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


class Pass:
    """One batch's forward pass and the backward passes its gradient methods ask for.

    Per layer its ``activations`` and their :attr:`gradients` (d score / d activation), the
    :attr:`input_gradient` (d score / d input; taken with the layers' when ``input_gradient``)
    and the :attr:`guided` input gradient (guided backpropagation). Each backward pass is made
    when a method first asks for its result, at most once.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        modules: dict[str, nn.Module],
        geometry: dict[str, Geometry | None],
        head: str | None,
        target: Target,
        input_gradient: bool,
    ) -> None:
        self.model, self.inputs, self.head, self.geometry = model, inputs, head, geometry
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad(), recording(modules) as acts:
            scores, self.classes = class_scores(model(x), head, target)
        self.scores = scores.detach()
        self.activations = {name: acts[name].detach() for name in modules}
        self._wrt = [acts[name] for name in modules] + ([x] if input_gradient else [])
        self._input = input_gradient
        self._total = scores.sum()

    @cached_property
    def _found(self) -> list[torch.Tensor]:
        """The one plain backward pass (it frees the graph): gradients of the summed scores."""
        found = torch.autograd.grad(self._total, self._wrt, allow_unused=True) if self._wrt else ()
        # A layer the score does not depend on (in another head's branch) has no gradient.
        return [
            torch.zeros_like(t) if g is None else g for t, g in zip(self._wrt, found, strict=True)
        ]

    @cached_property
    def gradients(self) -> dict[str, torch.Tensor]:
        """d score / d activation per layer."""
        layers = len(self.activations)
        return dict(zip(self.activations, self._found[:layers], strict=True))

    @property
    def input_gradient(self) -> torch.Tensor:
        """d score / d input."""
        if not self._input:
            raise CnnlabError("this pass took no input gradient (input_gradient=False)")
        return self._found[-1].detach()

    @cached_property
    def guided(self) -> torch.Tensor:
        """d score / d input with only positive gradients through the ReLUs."""
        x = self.inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad(), guided_relus(self.model):
            scores, _ = class_scores(self.model(x), self.head, self.classes)
            (grad,) = torch.autograd.grad(scores.sum(), [x])
        return grad

    def upsample(self, layer: str, maps: torch.Tensor) -> torch.Tensor:
        """``layer``'s (N, h, w) maps on the input grid, along the layer's geometry."""
        return upsample(maps, (self.inputs.shape[2], self.inputs.shape[3]), self.geometry[layer])

    def cam(self, layer: str, weights: torch.Tensor) -> torch.Tensor:
        """The (N, h, w) class activation map of ``layer``: ReLU of its activation maps
        weighted by ``weights`` (N, C, 1, 1)."""
        return torch.relu((weights * self.activations[layer]).sum(dim=1))


def gradcam_maps(shared: Pass, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM: ReLU of the activation maps weighted by their mean gradients."""
    cam = shared.cam(layer, shared.gradients[layer].mean(dim=(2, 3), keepdim=True))
    return shared.upsample(layer, cam), cam


def guided_gradcam_maps(shared: Pass, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Guided backpropagation times the upsampled Grad-CAM (maps: the largest |value| over
    channels)."""
    cam, _ = gradcam_maps(shared, layer)
    weighted = shared.guided * cam[:, None]
    return weighted.abs().amax(1), weighted


def saliency_maps(shared: Pass, layer: None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The input gradient; maps: its largest |value| over channels."""
    grad = shared.input_gradient
    return grad.abs().amax(1), grad


def guided_backprop_maps(shared: Pass, layer: None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided input gradient; maps: its largest |value| over channels."""
    grad = shared.guided
    return grad.abs().amax(1), grad


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
