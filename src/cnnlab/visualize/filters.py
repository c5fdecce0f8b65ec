"""Filter visualisation: the input that maximises each filter's mean activation.

Every filter of a layer is optimised at once, as one batch of images (one image per filter):
filter ``f``'s objective reads channel ``f`` of image ``f`` only, and images do not interact in
eval mode, so one forward/backward pass gives every image its own gradient. Images start blank
(constant: the training images' mean colour) at the model's input size and channels; pixels
stay in [0, 1] through a sigmoid. The same call gives the same images (seeded jitter and noise).

Why the defaults. The mean over positions of a linear filter's output only sees an image's
average colour and its border, so maximising it gives a flat image with a frame. The objective
reads the filter's *activation* instead (the ReLU the network applies after the layer) and each
image keeps its blank's average (``zero_mean``), so only patterns can raise it. A unit that is
off on the blank image has no gradient: ReLUs let it through where nothing else would
(``redirect``). Steps follow the gradient scaled to unit RMS per image (``"ascent"``); Adam's
per-pixel scaling blows tiny gradients up into pixel noise on 28x28 images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import SGD, Adam

from cnnlab.errors import CnnlabError
from cnnlab.models.inference import Preprocess
from cnnlab.visualize.geometry import ELEMENTWISE, layer_geometry
from cnnlab.visualize.hooks import (
    eval_mode,
    execution_order,
    forward_to,
    input_of,
    redirected_relus,
    resolve_layers,
    short_names,
)


@dataclass(frozen=True)
class FilterSettings:
    """How filter images are optimised.

    ``blank`` is the constant start on the [0, 1] pixel scale (None: the training mean colour).
    ``objective`` is ``"activation"`` (the ReLU right after the layer, when only per-channel
    layers such as batch norm come between; else the layer's output) or ``"output"``.
    ``interior``: the mean runs over the positions whose receptive field lies inside the image
    (zero padding is no pattern anyone drew). ``optimiser`` is ``"ascent"`` (steps of ``lr``
    along each image's RMS-scaled gradient) or ``"adam"``. ``redirect`` is how many steps
    (None: all) ReLUs pass a dead unit's gradient. ``zero_mean`` keeps each image's average.
    ``jitter`` rolls the images by up to that many pixels each step; ``tv`` and ``l2`` weigh the
    total variation and the squared distance from the blank against the objective; ``noise``
    adds seeded Gaussian noise (logit scale) to the blank start. ``fourier`` optimises a
    spectrum scaled by ``1 / frequency ** decay`` instead of pixels (a decorrelated
    parameterisation that favours smooth, large patterns).
    """

    steps: int = 256
    lr: float = 0.1
    seed: int = 0
    blank: float | None = None
    objective: str = "activation"
    optimiser: str = "ascent"
    zero_mean: bool = True
    interior: bool = True
    own_channel: bool = True
    redirect: int | None = None
    jitter: int = 1
    tv: float = 0.0
    l2: float = 0.0
    noise: float = 0.0
    fourier: bool = False
    decay: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0 or (self.blank is not None and not 0 < self.blank < 1):
            raise CnnlabError("filter settings: need steps >= 1, lr > 0 and 0 < blank < 1")
        if min(self.jitter, self.redirect or 0, self.tv, self.l2, self.noise) < 0:
            raise CnnlabError("filter settings: jitter, redirect, tv, l2 and noise must be >= 0")
        if self.objective not in ("activation", "output"):
            raise CnnlabError(f"filter objective must be activation or output: {self.objective!r}")
        if self.optimiser not in ("ascent", "adam"):
            raise CnnlabError(f"filter optimiser must be ascent or adam: {self.optimiser!r}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class FilterImages:
    """The optimised images of one layer's filters.

    ``images`` (F, C, H, W) are pixels in [0, 1] as optimised (not rescaled). ``activation`` is
    each filter's mean activation on its image and ``blank_activation`` on the blank start;
    ``objective_layer`` names the output the objective read.
    """

    layer: str
    objective_layer: str
    filters: tuple[int, ...]
    images: torch.Tensor
    activation: torch.Tensor
    blank_activation: torch.Tensor
    settings: FilterSettings


def visualize_filters(
    model: nn.Module,
    layer: str,
    preprocess: Preprocess,
    *,
    filters: Sequence[int] | None = None,
    settings: FilterSettings | None = None,
) -> FilterImages:
    """Gradient ascent on the mean activation of each of ``layer``'s filters (default: all).

    The images have the model's input size and channels (``preprocess``) and are normalised as
    the training images were. Channels the training data never varied (normalising std >= 1,
    as cnnlab records a constant channel) stay at their constant value.
    """
    settings = settings or FilterSettings()
    with eval_mode(model):
        objective = _Objective(model, layer, preprocess, filters, settings)
        image = _Image(len(objective.filters), objective.blank, objective.frozen, settings)
        if settings.optimiser == "adam":
            optimiser: torch.optim.Optimizer = Adam([image.param], lr=settings.lr)
        else:
            optimiser = SGD([image.param], lr=settings.lr, foreach=False)
        with torch.no_grad():
            blank_activation = objective(image.pixels())
        _ascend(model, objective, image, optimiser, settings, blank_activation)
        with torch.no_grad():
            final = image.pixels()
            activation = objective(final)
    return FilterImages(
        objective.layer,
        objective.reads,
        objective.filters,
        final.detach().cpu(),
        activation.detach().cpu(),
        blank_activation.detach().cpu(),
        settings,
    )


def _ascend(
    model: nn.Module,
    objective: _Objective,
    image: _Image,
    optimiser: torch.optim.Optimizer,
    settings: FilterSettings,
    start: torch.Tensor,
) -> None:
    """``settings.steps`` steps of ascent on the objective, all images at once."""
    redirect = settings.steps if settings.redirect is None else settings.redirect
    generator = torch.Generator().manual_seed(settings.seed)
    previous = start
    with torch.enable_grad():
        for step in range(settings.steps):
            pixels = image.pixels()
            if settings.jitter:
                dy, dx = torch.randint(
                    -settings.jitter, settings.jitter + 1, (2,), generator=generator
                ).tolist()
                pixels = torch.roll(pixels, shifts=(dy, dx), dims=(2, 3))
            # Redirecting changes nothing once every filter is on: skip its cost then.
            if step < redirect and bool((previous <= 0).any()):
                with redirected_relus(model):
                    gain = objective(pixels)
            else:
                gain = objective(pixels)
            previous = gain.detach()
            loss = -gain.sum()
            if settings.tv:
                loss = loss + settings.tv * _total_variation(pixels).sum()
            if settings.l2:
                distance = (pixels - objective.blank).pow(2).mean((1, 2, 3))
                loss = loss + settings.l2 * distance.sum()
            (grad,) = torch.autograd.grad(loss, [image.param])
            if settings.optimiser == "ascent":  # each image's step: unit RMS
                dims = tuple(range(1, grad.ndim))
                norm = torch.linalg.vector_norm(grad, dim=dims, keepdim=True)
                grad = grad * (math.sqrt(grad[0].numel()) / norm.clamp_min(1e-12))
            image.param.grad = grad
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)


class _Objective:
    """Each image's mean activation of its own filter: ``(pixels (F, C, H, W)) -> (F,)``."""

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        preprocess: Preprocess,
        filters: Sequence[int] | None,
        settings: FilterSettings,
    ) -> None:
        (self.layer, module), *_ = resolve_layers(model, [layer]).items()
        self.model = model
        device = _device(model)
        c, (h, w) = preprocess.channels, preprocess.image_size
        mean = torch.tensor(preprocess.mean, device=device).view(1, c, 1, 1)
        std = torch.tensor(preprocess.std, device=device).view(1, c, 1, 1)
        self.inverse, self.offset = 1 / std, -mean / std
        self.frozen = std >= 1.0
        self.blank = (
            mean.expand(1, c, h, w)
            if settings.blank is None
            else torch.full((1, c, h, w), settings.blank, device=device)
        )
        probe_input = (self.blank - mean) / std
        self.target = _objective_module(model, module, settings, probe_input)
        self.reads = short_names(model).get(_full_name(model, self.target), self.layer)
        with torch.no_grad():
            probe = forward_to(model, probe_input, {"target": self.target})["target"]
        n_channels = probe.shape[1]
        index = torch.arange(n_channels) if filters is None else torch.as_tensor(list(filters))
        if index.numel() == 0 or index.min() < 0 or index.max() >= n_channels:
            raise CnnlabError(
                f"layer {self.layer!r} has filters 0..{n_channels - 1}; got {index.tolist()}"
            )
        self.filters = tuple(index.tolist())
        self.rows = torch.arange(index.numel(), device=device)
        self.channels = index.to(device)
        self.window: tuple[slice, slice] = (slice(None), slice(None))
        geometry = layer_geometry(model, module, (c, h, w)) if settings.interior else None
        if geometry is not None:
            self.window = geometry.inside(tuple(probe.shape[-2:]), (h, w))
        path = _channel_path(model, self.target, probe_input) if settings.own_channel else None
        self.own = _OwnChannel(path, self.channels) if path is not None else None

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.offset, pixels, self.inverse)  # (pixels - mean) / std
        if self.own is None:
            out = forward_to(self.model, x, {"target": self.target})["target"]
            out = out[self.rows, self.channels]
        else:
            out = self.own(input_of(self.model, x, self.own.conv))
        return out[:, self.window[0], self.window[1]].mean(dim=(-2, -1))


_PER_CHANNEL = (*ELEMENTWISE, nn.MaxPool2d, nn.AvgPool2d, nn.ZeroPad2d, nn.ConstantPad2d)


def _channel_path(
    model: nn.Module, target: nn.Module, probe: torch.Tensor
) -> list[nn.Module] | None:
    """[the last convolution, the per-channel layers after it, ..., ``target``], or None."""
    order = execution_order(model, probe)
    if target not in order or order.count(target) > 1:
        return None
    end = order.index(target)
    for start in range(end, -1, -1):
        layer = order[start]
        if isinstance(layer, nn.Conv2d):
            plain = layer.padding_mode == "zeros" and layer.groups == 1
            return order[start : end + 1] if plain else None
        if not isinstance(layer, _PER_CHANNEL) or order.count(layer) > 1:
            return None
        if isinstance(layer, nn.BatchNorm2d) and layer.running_mean is None:
            return None  # batch statistics: images would mix
    return None


class _OwnChannel:
    """Image i through a channel path for channel ``channels[i]`` only: (N, h, w).

    The convolution runs depthwise over the images' channels, each with its own filter's
    slice, and sums them: the same values as the full layer's channel, at a fraction of the
    work (oneDNN's depthwise kernels beat a grouped convolution several times over on CPU).
    Batch norm becomes each image's own scale and shift. Other layers see (N, 1, h, w), so
    per-image logic (the redirected ReLU) still sees one image per row.
    """

    def __init__(self, path: list[nn.Module], channels: torch.Tensor) -> None:
        self.conv, self.rest = path[0], path[1:]
        weight = self.conv.weight.detach()[channels]  # (N, C, kh, kw)
        self.weight = weight.reshape(-1, 1, *weight.shape[2:]).contiguous()
        bias = self.conv.bias
        self.bias = None if bias is None else bias.detach()[channels].view(-1, 1, 1, 1)
        self.affine: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, layer in enumerate(self.rest):
            if isinstance(layer, nn.BatchNorm2d):
                scale = (layer.running_var[channels] + layer.eps).rsqrt()
                if layer.weight is not None:
                    scale = scale * layer.weight.detach()[channels]
                shift = -layer.running_mean[channels] * scale
                if layer.bias is not None:
                    shift = shift + layer.bias.detach()[channels]
                self.affine[i] = (scale.view(-1, 1, 1, 1), shift.view(-1, 1, 1, 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        conv = self.conv
        out = F.conv2d(
            x.reshape(1, n * c, h, w),
            self.weight,
            None,
            conv.stride,
            conv.padding,
            conv.dilation,
            groups=n * c,
        )
        out = out.view(n, c, *out.shape[2:]).sum(dim=1, keepdim=True)
        if self.bias is not None:
            out = out + self.bias
        for i, layer in enumerate(self.rest):
            if i in self.affine:
                scale, shift = self.affine[i]
                out = torch.addcmul(shift, out, scale)
            else:
                out = layer(out)  # hooks run (redirected ReLUs)
        return out[:, 0]


def _objective_module(
    model: nn.Module, module: nn.Module, settings: FilterSettings, probe: torch.Tensor
) -> nn.Module:
    """The module whose output the objective reads: the layer, or the ReLU right after it."""
    if settings.objective == "output":
        return module
    order = execution_order(model, probe)
    if module not in order:
        return module
    for later in order[order.index(module) + 1 :]:
        if isinstance(later, nn.ReLU):
            return later
        if not isinstance(later, ELEMENTWISE):
            break
    return module


class _Image:
    """The optimised images: pixels through a sigmoid, or a 1/f-scaled Fourier spectrum.

    Zero parameters give the blank image (``noise`` > 0: a seeded perturbation of it). With
    ``zero_mean`` each image's logits keep a zero mean per channel; ``frozen`` channels always
    equal the blank.
    """

    def __init__(
        self, n: int, blank: torch.Tensor, frozen: torch.Tensor, settings: FilterSettings
    ) -> None:
        _, c, h, w = blank.shape
        self.size = (h, w)
        self.blank, self.frozen = blank, frozen
        self.bias = torch.logit(blank.clamp(1e-3, 1 - 1e-3))
        self.fourier, self.zero_mean = settings.fourier, settings.zero_mean
        if self.fourier:
            fy = torch.fft.fftfreq(h, device=blank.device)[:, None]
            fx = torch.fft.rfftfreq(w, device=blank.device)[None, :]
            frequency = (fy**2 + fx**2).sqrt().clamp_min(1.0 / max(h, w))
            scale = frequency.pow(-settings.decay)
            self.scale = scale / scale.max() * math.sqrt(h * w) / 4
            param_shape: tuple[int, ...] = (n, c, h, w // 2 + 1, 2)
        else:
            param_shape = (n, c, h, w)
        generator = torch.Generator().manual_seed(settings.seed + 1)
        start = torch.randn(param_shape, generator=generator) * settings.noise
        self.param = start.to(blank.device).requires_grad_(True)

    def pixels(self) -> torch.Tensor:
        if self.fourier:
            spectrum = torch.view_as_complex(self.param) * self.scale
            if self.zero_mean:
                spectrum = spectrum.clone()
                spectrum[:, :, 0, 0] = 0
            logits = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        else:
            logits = self.param
            if self.zero_mean:
                logits = logits - logits.mean(dim=(2, 3), keepdim=True)
        pixels = torch.sigmoid(logits + self.bias)
        return torch.where(self.frozen, self.blank, pixels)


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per image."""
    dy = (x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2, 3))
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean((1, 2, 3))
    return dy + dx


def _full_name(model: nn.Module, module: nn.Module) -> str:
    return next((name for name, m in model.named_modules() if m is module), "")


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def display_images(images: torch.Tensor) -> torch.Tensor:
    """Each image stretched to [0, 1] on its own (for display only), (F, C, H, W)."""
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-8)
