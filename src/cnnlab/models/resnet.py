"""The ``resnet`` family: He et al. (2016)'s small-image ResNet (the CIFAR one), any size.

A 3x3 stem convolution (no max-pool: images are small), stages of basic blocks, global average
pooling, dropout and one linear layer ``fc`` that returns logits. Layers carry readable names
(``stem.conv``, ``layer1.0.conv1``, ``layer2.0.shortcut.conv``, ``fc`` ...) so that activations,
filters and Grad-CAM can name them. The last block's ``conv2`` is the last convolution (where
error analysis draws Grad-CAM); a stage (``layer3``) may be named too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.registry import register_model

MIN_SIZE = 4
"""A stage downsamples only while its output stays at least this many pixels on each side."""


class Add(nn.Module):
    """The residual sum as a layer of its own: hooks see where the two paths merge (so layer
    geometry and filter paths never mistake the block's last ReLU for a per-channel step)."""

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return x + shortcut


class BasicBlock(nn.Module):
    """conv1 3x3 -> bn1 -> relu1 -> conv2 3x3 -> bn2, plus the shortcut -> add -> relu2.

    The shortcut is the identity, or a 1x1 convolution and batch norm (``shortcut.conv``,
    ``shortcut.bn``) when the block changes the channels or the resolution (``stride`` 2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        # Defined first, so that conv2 is the block's last convolution in definition order:
        # the last of the model's is where its Grad-CAM defaults to (``default_layers()[-1]``).
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(self.add(out, self.shortcut(x)))


class ResNet(nn.Sequential):
    """``stem`` -> ``layer1`` ... ``layerN`` -> ``pool`` -> ``flatten`` -> ``drop`` -> ``fc``.

    ``forward`` returns logits; softmax lives in the loss and in prediction.
    """


@register_model("resnet")
def resnet(
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] = (28, 28),
    depth: Sequence[int] = (3, 3, 3),
    width: int = 16,
    dropout: float = 0.0,
) -> ResNet:
    """A small-image ResNet: ``depth`` lists the basic blocks of each stage; the first stage has
    ``width`` channels and each later one twice as many. The defaults are He et al.'s ResNet-20
    (0.27 M parameters; 186 MFLOP per 28x28 training image): wider or deeper nets cost an epoch
    of Fashion-MNIST well over a minute on two CPU cores.

    The first block of each later stage halves the resolution (stride 2) while the result stays
    at least :data:`MIN_SIZE` pixels on each side (8x8 images: 8 -> 4 -> 4; 28x28: 28 -> 14 -> 7;
    32x32: 32 -> 16 -> 8). ``dropout`` comes before ``fc``. Convolutions start with Kaiming
    initialisation and each block's last batch norm with zero scale, so blocks begin as identities.
    """
    if isinstance(depth, str | int) or not depth:
        raise ValueError(f"depth must be a list of blocks per stage, e.g. [2, 2, 2], got {depth!r}")
    if any(not isinstance(n, int) or n < 1 for n in depth):
        raise ValueError(f"depth must count at least 1 block in every stage, got {list(depth)}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive number of channels, got {width!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        stem=nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(width),
                relu=nn.ReLU(),
            )
        )
    )
    size = list(image_size)
    previous = width
    for stage, blocks in enumerate(depth, start=1):
        channels = width * 2 ** (stage - 1)
        stride = 2 if stage > 1 and min(size) >= 2 * MIN_SIZE else 1
        if stride == 2:
            size = [(s + 1) // 2 for s in size]
        layers[f"layer{stage}"] = nn.Sequential(
            *(
                BasicBlock(previous if i == 0 else channels, channels, stride if i == 0 else 1)
                for i in range(blocks)
            )
        )
        previous = channels
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["drop"] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
    layers["fc"] = nn.Linear(previous, num_classes)
    model = ResNet(layers)
    _initialise(model)
    return model


def _initialise(model: nn.Module) -> None:
    """Kaiming (fan-out, ReLU) convolutions; zero scale on every block's ``bn2``."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
