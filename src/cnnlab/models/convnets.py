"""The study's CNNs: the prescribed ``part1`` net and the configurable ``convnet`` family.

Layers carry readable names (``conv1``, ``bn1``, ``pool1``, ``fc1`` ...) so that activations,
filters and Grad-CAM can name them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.registry import register_model


class ConvNet(nn.Module):
    """``features`` (conv stages) -> ``classifier`` (flatten, dense layers, logits).

    ``forward`` returns logits; softmax lives in the loss and in prediction.
    """

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv_stages(
    in_channels: int,
    image_size: tuple[int, int],
    channels: Sequence[int],
    convs_per_stage: int,
    kernel_size: int,
    downsample: str,
    batchnorm: bool,
    dropout: float,
) -> tuple[nn.Sequential, int, list[int]]:
    """VGG-like conv stages; returns them with the output channels and spatial size."""
    if downsample not in ("maxpool", "stride", "none"):
        raise ValueError(f"downsample must be maxpool, stride or none, got {downsample!r}")
    if kernel_size < 1 or convs_per_stage < 1 or not channels:
        raise ValueError("kernel_size, convs_per_stage and channels must be positive")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    size = list(image_size)
    previous, n = in_channels, 0
    for stage, width in enumerate(channels, start=1):
        for i in range(convs_per_stage):
            n += 1
            stride = 2 if downsample == "stride" and i == convs_per_stage - 1 else 1
            # 'same' padding; an even kernel pads one side more (asymmetric), as Keras does.
            pad = kernel_size - 1
            if pad % 2:
                layers[f"pad{n}"] = nn.ZeroPad2d((pad // 2, pad - pad // 2) * 2)
                padding = 0
            else:
                padding = pad // 2
            layers[f"conv{n}"] = nn.Conv2d(
                previous, width, kernel_size, stride=stride, padding=padding, bias=not batchnorm
            )
            if batchnorm:
                layers[f"bn{n}"] = nn.BatchNorm2d(width)
            layers[f"relu{n}"] = nn.ReLU()
            previous = width
            if stride == 2:
                size = [(s + 1) // 2 for s in size]
        if downsample == "maxpool":
            layers[f"pool{stage}"] = nn.MaxPool2d(2, 2)
            size = [s // 2 for s in size]
        if dropout > 0:
            layers[f"drop{stage}"] = nn.Dropout(dropout)
    if min(size) < 1:
        raise ValueError(
            f"the image {tuple(image_size)} is too small for {len(channels)} downsampling stages"
        )
    return nn.Sequential(layers), previous, size


@register_model("part1")
def part1(
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] = (28, 28),
    kernel_size: int = 7,
    filters: int = 32,
    downsample: str = "maxpool",
    batchnorm: bool = True,
    dropout: float = 0.0,
    dense_units: int = 1024,
    dense_dropout: float = 0.0,
) -> ConvNet:
    """The study's prescribed net; the defaults are exactly the prescription.

    Conv 7x7, 32 filters, stride 1, no padding -> ReLU -> BatchNorm -> MaxPool 2x2 stride 2 ->
    Dense 1024 -> ReLU -> Dense N. On 28x28 inputs: 22x22x32 -> 11x11x32 = 3,872 features;
    3,977,866 parameters for MNIST (conv 1,600 + BN 64 + fc1 3,965,952 + fc2 10,250).

    The options make the study's variations of it: ``kernel_size`` and ``filters`` of the conv
    layer; ``downsample`` ``"maxpool"`` or ``"stride"`` (the conv itself has stride 2 and there
    is no pooling layer); ``batchnorm`` off drops ``bn1``; ``dropout`` after the pooled
    features and ``dense_dropout`` after the dense layer of ``dense_units`` units.
    """
    if downsample not in ("maxpool", "stride"):
        raise ValueError(f"downsample must be maxpool or stride, got {downsample!r}")
    if kernel_size < 1 or filters < 1 or dense_units < 1:
        raise ValueError("kernel_size, filters and dense_units must be positive")
    if any(s < kernel_size for s in image_size):
        raise ValueError(f"kernel_size {kernel_size} is larger than the image {image_size}")
    stride = 2 if downsample == "stride" else 1
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(in_channels, filters, kernel_size=kernel_size, stride=stride),
        relu1=nn.ReLU(),
    )
    if batchnorm:
        layers["bn1"] = nn.BatchNorm2d(filters)
    if downsample == "maxpool":
        layers["pool1"] = nn.MaxPool2d(2, 2)
        h, w = ((s - kernel_size + 1) // 2 for s in image_size)
    else:
        h, w = ((s - kernel_size) // 2 + 1 for s in image_size)
    if min(h, w) < 1:
        raise ValueError(f"the image {tuple(image_size)} is too small to pool after the conv")
    if dropout > 0:
        layers["drop1"] = nn.Dropout(dropout)
    head: OrderedDict[str, nn.Module] = OrderedDict(
        flatten=nn.Flatten(),
        fc1=nn.Linear(filters * h * w, dense_units),
        relu_fc1=nn.ReLU(),
    )
    if dense_dropout > 0:
        head["drop_fc1"] = nn.Dropout(dense_dropout)
    head["fc2"] = nn.Linear(dense_units, num_classes)
    return ConvNet(nn.Sequential(layers), nn.Sequential(head))


@register_model("convnet")
def convnet(
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] = (28, 28),
    channels: Sequence[int] = (32, 64),
    convs_per_stage: int = 2,
    kernel_size: int = 3,
    downsample: str = "maxpool",
    batchnorm: bool = True,
    dropout: float = 0.0,
    dense: Sequence[int] = (128,),
    dense_dropout: float = 0.0,
    head: str = "flatten",
) -> ConvNet:
    """A VGG-like family: stages of ``convs_per_stage`` 'same' convolutions (Conv -> BN -> ReLU).

    Each stage ends with a downsampling step: ``"maxpool"`` (2x2), ``"stride"`` (the stage's last
    conv has stride 2) or ``"none"``; then ``dropout``. ``head`` is ``"flatten"`` (dense layers on
    the flattened map) or ``"avgpool"`` (global average pooling first). ``dense`` lists hidden
    dense widths, each followed by ReLU and ``dense_dropout``.
    """
    if head not in ("flatten", "avgpool"):
        raise ValueError(f"head must be flatten or avgpool, got {head!r}")
    features, previous, size = conv_stages(
        in_channels,
        image_size,
        channels,
        convs_per_stage,
        kernel_size,
        downsample,
        batchnorm,
        dropout,
    )

    head_layers: OrderedDict[str, nn.Module] = OrderedDict()
    if head == "avgpool":
        head_layers["gap"] = nn.AdaptiveAvgPool2d(1)
        size = [1, 1]
    head_layers["flatten"] = nn.Flatten()
    width = previous * size[0] * size[1]
    for i, units in enumerate(dense, start=1):
        head_layers[f"fc{i}"] = nn.Linear(width, units)
        head_layers[f"relu_fc{i}"] = nn.ReLU()
        if dense_dropout > 0:
            head_layers[f"drop_fc{i}"] = nn.Dropout(dense_dropout)
        width = units
    head_layers[f"fc{len(dense) + 1}"] = nn.Linear(width, num_classes)
    return ConvNet(features, nn.Sequential(head_layers))
