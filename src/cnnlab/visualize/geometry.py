"""Where a layer's pixels sit on the input, and maps brought back to the input's size.

A conv or pool layer's output pixel ``i`` is centred on input coordinate ``offset + stride * i``
(for a 7x7 'valid' convolution, offset 3 and stride 1; a 2x2 max pool after it adds 0.5 and
doubles the stride). Upsampling along that map keeps a heatmap on the pixels that produced it;
stretching a 22x22 map over 28x28 would shift its edges by up to 3 px.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.visualize.hooks import execution_order, forward_to

ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Dropout2d,
)


@dataclass(frozen=True)
class Geometry:
    """Input coordinate of a layer pixel's centre: ``offset + stride * index``, per axis (y, x);
    ``field`` is the size of its receptive field in input pixels."""

    offset: tuple[float, float] = (0.0, 0.0)
    stride: tuple[float, float] = (1.0, 1.0)
    field: tuple[int, int] = (1, 1)

    def inside(self, size: tuple[int, int], image: tuple[int, int]) -> tuple[slice, slice]:
        """The layer pixels (of a ``size`` map) whose receptive field lies inside ``image``;
        the whole map on an axis where none does."""
        out = []
        for axis in (0, 1):
            half = (self.field[axis] - 1) / 2
            centres = [self.offset[axis] + self.stride[axis] * i for i in range(size[axis])]
            ok = [i for i, c in enumerate(centres) if c - half >= 0 and c + half <= image[axis] - 1]
            out.append(slice(ok[0], ok[-1] + 1) if ok else slice(None))
        return out[0], out[1]


def layer_geometry(
    model: nn.Module, module: nn.Module, input_shape: tuple[int, int, int]
) -> Geometry | None:
    """The geometry of ``module``'s output for inputs of ``(C, H, W)``; None if unknown.

    Folds the layers that run before it (in execution order) through their kernel, stride,
    padding and dilation; checks the predicted size against the real one. A layer it cannot
    fold (one that is not conv, pool, padding or elementwise) gives None. Results are cached
    per layer (weakly: they go with the model).
    """
    key = (id(model), tuple(input_shape))
    known = _CACHE.setdefault(module, {})
    if key not in known:
        known[key] = _layer_geometry(model, module, input_shape)
    return known[key]


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Geometry | None]] = (
    weakref.WeakKeyDictionary()
)


def _layer_geometry(
    model: nn.Module, module: nn.Module, input_shape: tuple[int, int, int]
) -> Geometry | None:
    probe = torch.zeros(1, *input_shape, device=_device(model))
    order = execution_order(model, probe)
    with torch.no_grad():
        out = forward_to(model, probe, {"layer": module})["layer"]
    offset, stride, field = [0.0, 0.0], [1.0, 1.0], [1, 1]
    size = list(input_shape[1:])
    for layer in order:
        step = _fold(layer, size)
        if step is None:
            return None
        shift, s, extent, size = step
        for axis in (0, 1):
            offset[axis] += stride[axis] * shift[axis]
            field[axis] += int((extent[axis] - 1) * stride[axis])
            stride[axis] *= s[axis]
        if layer is module:
            break
    if tuple(size) != tuple(out.shape[-2:]):
        return None
    return Geometry((offset[0], offset[1]), (stride[0], stride[1]), (field[0], field[1]))


def _fold(
    layer: nn.Module, size: list[int]
) -> tuple[tuple[float, float], tuple[int, int], tuple[int, int], list[int]] | None:
    """(centre shift, stride, kernel extent, output size) of one layer; None if not foldable."""
    if isinstance(layer, ELEMENTWISE):
        return (0.0, 0.0), (1, 1), (1, 1), size
    if isinstance(layer, nn.ZeroPad2d | nn.ConstantPad2d):
        left, right, top, bottom = layer.padding
        padded = [size[0] + top + bottom, size[1] + left + right]
        return (-float(top), -float(left)), (1, 1), (1, 1), padded
    if isinstance(layer, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        kernel = _pair(layer.kernel_size)
        stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        dilation = _pair(getattr(layer, "dilation", 1))
        padding = layer.padding
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel, strict=True))
        padding = _pair(padding)
        if getattr(layer, "ceil_mode", False):
            return None
        shift = tuple(
            -p + d * (k - 1) / 2 for p, d, k in zip(padding, dilation, kernel, strict=True)
        )
        if isinstance(layer, nn.Conv2d) and layer.padding == "same":
            out = list(size)
        else:
            out = [
                (n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, p, d, k, s in zip(size, padding, dilation, kernel, stride, strict=True)
            ]
        extent = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True))
        return (shift[0], shift[1]), (stride[0], stride[1]), (extent[0], extent[1]), out
    return None


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def upsample(
    maps: torch.Tensor, size: tuple[int, int], geometry: Geometry | None = None
) -> torch.Tensor:
    """(N, h, w) layer maps -> (N, H, W) on the input grid, bilinear, values unscaled.

    With a :class:`Geometry` each input pixel samples the layer at its own position (edges
    held); without, the map is stretched over the input.
    """
    x = maps[:, None].float()
    if geometry is None:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, 0]
    axes = []
    for axis in (0, 1):
        n = maps.shape[1 + axis]
        centre = torch.arange(size[axis], dtype=torch.float32, device=maps.device)
        index = (centre - geometry.offset[axis]) / geometry.stride[axis]
        axes.append(index * 2 / (n - 1) - 1 if n > 1 else torch.zeros_like(index))
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(maps.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
