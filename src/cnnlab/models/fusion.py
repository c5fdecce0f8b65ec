"""An inference copy of a model with its batch norms folded away: same outputs, less work.

Four rewrites, each exact up to float rounding:

- ``Conv -> BN``: the BN is folded into the convolution (``torch.nn.utils.fusion``).
- ``ReLU -> BN -> MaxPool`` (the study's ``part1`` order): a per-channel affine map with a
  positive scale commutes with max pooling, so the BN moves after the pool, on 4x fewer values.
- ``BN -> Flatten -> Linear`` (the same BN, now last of ``features``): folded into the Linear's
  weights and bias.
- ``Flatten -> Linear``: flattens in (H, W, C) order, with the Linear's columns permuted to
  match, so a channels-last feature map is flattened without a copy.

ReLUs become in-place; the folded BNs are removed (an ``Identity`` left in a ``Sequential``
would make ``optimize_for_inference`` convert layouts around it). A BN whose scale is not
positive everywhere is left where it is.

:func:`inference_model` then hands a CPU model to torch's own ``optimize_for_inference``
(oneDNN layouts, weights packed once): on part1 that doubles MNIST evaluation throughput.

Any model may come here (a user's own): the first two rewrites and in-place ReLUs apply only
inside plain ``nn.Sequential`` containers, where a layer's output feeds nothing but the next
layer; the last two only to a :class:`~cnnlab.models.convnets.ConvNet`, whose ``forward`` is
known. A model that cannot be copied or fused is run as it is, with a note (once per class).
"""

from __future__ import annotations

import copy
import itertools
import sys

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cnnlab.models.convnets import ConvNet

_FRESH = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)
"""Layers whose output is a new tensor: a ReLU right after one may work in place."""
_noted: set[str] = set()


@torch.no_grad()
def fused_for_inference(model: nn.Module) -> nn.Module:
    """A fused eval-mode copy of ``model`` (the model itself is not changed)."""
    fused = copy.deepcopy(model).eval()
    sequentials = [m for m in fused.modules() if _plain_sequential(m)]
    for seq in sequentials:
        _fuse_sequential(seq)
    if type(fused).forward is ConvNet.forward:  # classifier(features(x)), nothing between
        features, classifier = fused.features, fused.classifier
        if _plain_sequential(features) and _plain_sequential(classifier):
            _fold_into_linear(features, classifier)
            _flatten_channels_last(features, classifier)
    for seq in sequentials:  # folded-away layers: no op left behind
        for name in [n for n, m in seq._modules.items() if isinstance(m, nn.Identity)]:
            del seq._modules[name]
        layers = list(seq._modules.values())
        for before, layer in itertools.pairwise(layers):
            if isinstance(layer, nn.ReLU) and isinstance(before, _FRESH):
                layer.inplace = True
    return fused


def inference_model(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """The fastest exact inference copy of ``model`` for ``device``: :func:`fused_for_inference`,
    then on the CPU ``torch.fx.experimental.optimization.optimize_for_inference``."""
    try:
        fused = fused_for_inference(model)
    except Exception as exc:  # a user's model this cannot copy or rewrite: run it as it is
        return _plain(model, exc)
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return fused
    from torch.fx.experimental.optimization import optimize_for_inference

    try:
        return optimize_for_inference(fused)
    except Exception:  # a model that fx cannot trace: the fused copy is exact and fast too
        return fused


def _plain(model: nn.Module, exc: Exception) -> nn.Module:
    """``model`` in eval mode (a copy where it can be copied), noting once per class why."""
    name = f"{type(model).__module__}.{type(model).__qualname__}"
    if name not in _noted:
        _noted.add(name)
        print(
            f"note: {name} runs unfused for inference ({type(exc).__name__}: {exc})",
            file=sys.stderr,
        )
    try:
        return copy.deepcopy(model).eval()
    except Exception:
        return model.eval()


def _plain_sequential(module: nn.Module) -> bool:
    """An ``nn.Sequential`` whose forward is Sequential's own (each layer feeds the next)."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


class FlattenHWC(nn.Module):
    """Flatten (N, C, H, W) in (H, W, C) order: a view for a channels-last tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def _scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BN as ``y = scale * x + shift`` per channel."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _foldable(bn: nn.Module) -> bool:
    return isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and not bn.training


def _fuse_sequential(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    for i in range(len(names) - 1):
        first, second = seq._modules[names[i]], seq._modules[names[i + 1]]
        if isinstance(first, nn.Conv2d) and _foldable(second):
            seq._modules[names[i]] = fuse_conv_bn_eval(first, second)  # type: ignore[arg-type]
            seq._modules[names[i + 1]] = nn.Identity()
    for i in range(len(names) - 2):
        relu, bn, pool = (seq._modules[n] for n in names[i : i + 3])
        if (
            isinstance(relu, nn.ReLU)
            and _foldable(bn)
            and isinstance(pool, nn.MaxPool2d)
            and bool((_scale_shift(bn)[0] > 0).all())  # type: ignore[arg-type]
        ):
            seq._modules[names[i + 1]], seq._modules[names[i + 2]] = pool, bn


def _fold_into_linear(features: nn.Sequential, classifier: nn.Sequential) -> None:
    last = list(features._modules)[-1]
    head = list(classifier._modules.values())
    bn = features._modules[last]
    if not (_foldable(bn) and len(head) >= 2):
        return
    if not (isinstance(head[0], nn.Flatten) and isinstance(head[1], nn.Linear)):
        return
    linear: nn.Linear = head[1]
    scale, shift = _scale_shift(bn)  # type: ignore[arg-type]
    positions = linear.in_features // scale.numel()  # flatten order: channel-major
    weight = linear.weight.view(linear.out_features, scale.numel(), positions)
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    linear.bias = nn.Parameter(bias + (weight * shift[None, :, None]).sum(dim=(1, 2)))
    linear.weight = nn.Parameter((weight * scale[None, :, None]).reshape_as(linear.weight))
    features._modules[last] = nn.Identity()


def _flatten_channels_last(features: nn.Sequential, classifier: nn.Sequential) -> None:
    names = list(classifier._modules)
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    if len(names) < 2 or not convs:
        return
    flatten, linear = classifier._modules[names[0]], classifier._modules[names[1]]
    channels = convs[-1].out_channels  # later layers (BN, ReLU, pooling) keep the channels
    if not (
        isinstance(flatten, nn.Flatten)
        and isinstance(linear, nn.Linear)
        and linear.in_features % channels == 0
    ):
        return
    positions = linear.in_features // channels
    weight = linear.weight.view(linear.out_features, channels, positions).transpose(1, 2)
    linear.weight = nn.Parameter(weight.reshape(linear.out_features, -1).contiguous())
    classifier._modules[names[0]] = FlattenHWC()
