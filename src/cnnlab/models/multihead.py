"""The study's Task 2 network: one shared conv trunk, one head per factor of the image.

On Lines, ``length``, ``width`` and ``color`` heads end in one unit (sigmoid in the loss:
binary cross-entropy); ``angle`` ends in 12 units (softmax in the loss: cross-entropy). On other
data with factors (a CSV manifest with several label columns) there is one head per factor, a
sigmoid unit for two levels, a softmax for more. ``forward`` returns a dict of named head logits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from cnnlab.models.convnets import conv_stages
from cnnlab.models.registry import register_model

STUDY_HEADS = {"length": 2, "width": 2, "color": 2, "angle": 12}


class MultiHeadNet(nn.Module):
    """``features`` -> flatten -> ``shared`` dense -> one small MLP per head.

    ``heads`` maps each head to its number of levels (2 means a single sigmoid unit).
    """

    def __init__(
        self,
        features: nn.Sequential,
        shared: nn.Sequential,
        head_layers: nn.ModuleDict,
        heads: Mapping[str, int],
    ) -> None:
        super().__init__()
        self.features = features
        self.shared = shared
        self.head_layers = head_layers
        self.heads = dict(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.shared(self.features(x))
        return {name: layer(shared) for name, layer in self.head_layers.items()}


def default_heads(factor_levels: Mapping[str, Sequence[object]]) -> dict[str, int]:
    """One head per factor of the data, with its number of levels: the study's four Lines
    heads, in the study's order, when the data has those factors (or none)."""
    if not factor_levels or set(factor_levels) == set(STUDY_HEADS):
        return dict(STUDY_HEADS)
    return {name: len(levels) for name, levels in factor_levels.items()}


@register_model("multihead")
def multihead(
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] = (28, 28),
    factor_levels: Mapping[str, Sequence[object]] | None = None,
    channels: Sequence[int] = (32,),
    convs_per_stage: int = 1,
    kernel_size: int = 7,
    downsample: str = "maxpool",
    batchnorm: bool = True,
    dropout: float = 0.0,
    shared: Sequence[int] = (256,),
    head_hidden: int = 64,
    heads: Mapping[str, int] | None = None,
) -> MultiHeadNet:
    """A conv trunk (the ``convnet`` stages), shared dense layers, and a head per factor.

    Each head is Dense ``head_hidden`` -> ReLU -> Dense (1 unit for two levels, else one per
    level). ``heads`` defaults to one per factor of the data (:func:`default_heads`).
    ``num_classes`` (the 96 combined classes) is not used: the heads name their own.
    """
    heads = dict(heads or default_heads(factor_levels or {}))
    if any(levels < 2 for levels in heads.values()):
        raise ValueError(f"every head needs at least 2 levels, got {heads}")
    features, width, size = conv_stages(
        in_channels,
        image_size,
        channels,
        convs_per_stage,
        kernel_size,
        downsample,
        batchnorm,
        dropout,
    )
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    features_out = width * size[0] * size[1]
    for i, units in enumerate(shared, start=1):
        layers[f"fc{i}"] = nn.Linear(features_out, units)
        layers[f"relu_fc{i}"] = nn.ReLU()
        features_out = units
    head_layers = nn.ModuleDict(
        {
            name: nn.Sequential(
                OrderedDict(
                    fc=nn.Linear(features_out, head_hidden),
                    relu=nn.ReLU(),
                    out=nn.Linear(head_hidden, 1 if levels == 2 else levels),
                )
            )
            for name, levels in heads.items()
        }
    )
    return MultiHeadNet(features, nn.Sequential(layers), head_layers, heads)
