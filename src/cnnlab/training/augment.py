"""Augmentation: named operations on whole batches, on the training device, seeded per batch.

``train.augment`` is a set name (:data:`SETS`) or a list whose items are operation names, set
names, or one-key mappings ``{operation: {param: value}}``, applied in order to every training
batch. Each batch's random draws come from a generator seeded by (seed, epoch, batch) alone,
so a run is reproducible and a resumed run continues exactly. Nothing loops over images in
Python: every operation draws its parameters for the whole batch and applies them as tensor
operations (kornia's where it has the operation).

Labels stay true (:mod:`cnnlab.data.factors`): an operation that would change a factor of the
data is mapped exactly (a mirrored line at 30 degrees is labelled 150) or refused in one line; a
named set leaves such operations out, with a note. ``mixup`` and ``cutmix`` blend two images of
the batch and the loss blends their targets (every head of a multi-head net).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.factors import PHOTOMETRIC, UPRIGHT_EFFECTS, LabelRules
from cnnlab.errors import CnnlabError

SETS: dict[str, list[Any]] = {
    "none": [],
    "light": ["crop", "hflip"],
    "standard": ["crop", "hflip", "erasing"],
    "strong": ["crop", "hflip", "trivialaugment", "erasing"],
    "degrade": ["jpeg", "harden", "blur", "noise", "subpixel"],
}
"""Named sets: ``light`` and ``standard`` are the classic small-image recipe (pad-and-crop,
left-right flips; random erasing), ``strong`` adds TrivialAugment, ``degrade`` what a codec, a
sensor or another renderer does to a picture (JPEG, blur, noise, hard edges, sub-pixel shifts)."""

OPERATIONS: dict[str, dict[str, Any]] = {
    "hflip": {"p": 0.5},
    "vflip": {"p": 0.5},
    "rotate90": {"p": 0.5},
    "crop": {"pad": None, "p": 1.0},
    "affine": {"degrees": 10.0, "translate": 0.1, "scale": [0.9, 1.1], "shear": 0.0, "p": 1.0},
    "color": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.0, "hue": 0.0, "p": 0.8},
    "erasing": {"p": 0.25, "area": [0.02, 0.25]},
    "trivialaugment": {},
    "randaugment": {"n": 2, "m": 10},
    "mixup": {"alpha": 0.2, "p": 1.0},
    "cutmix": {"alpha": 1.0, "p": 1.0},
    "jpeg": {"quality": [30, 95], "p": 0.5},
    "noise": {"std": 0.1, "p": 0.5},
    "blur": {"sigma": [0.1, 0.8], "p": 0.25},
    "harden": {"threshold": [0.4, 0.6], "p": 0.25},
    "subpixel": {"shift": 0.5, "p": 0.5},
}
"""Every operation and its parameters' defaults (``p``: the share of images it touches; ranges
``[lo, hi]`` are drawn uniformly per image). ``crop`` pads by ``pad`` pixels (None: an eighth
of the image side) and crops back at a random place; ``rotate90`` turns by a random number of
quarter turns; ``affine`` degrees/shear are maxima, ``translate`` a fraction of the side;
``color`` factors are maximal relative changes (``hue`` a fraction of a half turn);
``erasing`` fills a rectangle of ``area`` (a fraction of the image) with noise; ``mixup`` and
``cutmix`` draw their mixing share from Beta(alpha, alpha) per batch (both listed: each batch
takes one); ``jpeg`` stores a picture at a quality in ``quality`` (real JPEG, from copies of
the training images made once, so it comes before every other operation); ``noise`` adds
Gaussian noise of a standard deviation up to ``std`` (on the 0..1 scale; each picture one of a
fixed bank of noise fields); ``harden`` draws hard
edges, as a renderer without anti-aliasing does: a pixel's channel is fully on where it
reaches ``threshold`` (on the 0..1 scale), else off; ``subpixel`` shifts by up to
``shift`` pixels."""

_EFFECTS: dict[str, Callable[[dict[str, Any]], tuple[str, ...]]] = {
    "hflip": lambda p: ("mirror",),
    "vflip": lambda p: ("mirror",),
    "rotate90": lambda p: ("turn",),
    "crop": lambda p: ("move",),
    "affine": lambda p: tuple(
        e
        for e, on in (
            ("rotate", p["degrees"] > 0),
            ("shear", p["shear"] > 0),
            ("scale", list(p["scale"]) != [1.0, 1.0]),
            ("move", p["translate"] > 0),
        )
        if on
    ),
    "color": lambda p: ("hue",) if p["hue"] > 0 or p["saturation"] > 0 else (PHOTOMETRIC,),
    "erasing": lambda p: ("cut",),
    "trivialaugment": lambda p: ("rotate", "shear", "move", "hue", "cut"),
    "randaugment": lambda p: ("rotate", "shear", "move", "hue", "cut"),
    "mixup": lambda p: (PHOTOMETRIC,),
    "cutmix": lambda p: ("cut",),
}
"""What each operation can do to a picture's factors (:data:`cnnlab.data.factors.EFFECTS`);
the rest are photometric."""

MIXING = ("mixup", "cutmix")

_RANGES: dict[str, tuple[float, float]] = {
    "p": (0.0, 1.0),
    "degrees": (0.0, 180.0),
    "translate": (0.0, 0.5),
    "scale": (0.1, 10.0),
    "shear": (0.0, 45.0),
    "brightness": (0.0, 1.0),
    "contrast": (0.0, 1.0),
    "saturation": (0.0, 1.0),
    "hue": (0.0, 0.5),
    "area": (0.0, 1.0),
    "n": (1, 10),
    "m": (0, 30),
    "alpha": (0.01, 10.0),
    "quality": (1, 100),
    "std": (0.0, 1.0),
    "sigma": (0.01, 5.0),
    "threshold": (0.05, 0.95),
    "shift": (0.0, 2.0),
    "pad": (1, 64),
}


# -- the config's form ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One operation with its parameters; ``from_set`` names the set it came from."""

    name: str
    params: dict[str, Any]
    from_set: str | None = None


def check_augment(spec: Any) -> str | list[Any]:
    """``train.augment`` checked (names, parameter types and ranges); returned with its
    numbers coerced, in the form it was given. One :class:`CnnlabError` line per mistake."""
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, list):
        raise CnnlabError(f"train.augment must be a set name or a list, got {spec!r}")
    checked = []
    for i, item in enumerate(items):
        where = "train.augment" if isinstance(spec, str) else f"train.augment[{i}]"
        if isinstance(item, str):
            _known(item, where)
            checked.append(item)
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            if name in SETS:
                raise CnnlabError(f"{where}: set {name!r} takes no parameters; list operations")
            _known(name, where)
            checked.append({name: _params(name, params if params is not None else {}, where)})
        else:
            raise CnnlabError(
                f"{where} must be an operation or set name, or {{operation: {{param: value}}}}, "
                f"got {item!r}"
            )
    return spec if isinstance(spec, str) else checked


def expand(spec: str | list[Any]) -> list[Op]:
    """The operations ``spec`` names, sets expanded, parameters completed."""
    items = [spec] if isinstance(spec, str) else spec
    ops: list[Op] = []
    for item in items:
        if isinstance(item, str) and item in SETS:
            ops += [Op(name, dict(OPERATIONS[name]), item) for name in SETS[item]]
        elif isinstance(item, str):
            ops.append(Op(item, dict(OPERATIONS[item])))
        else:
            name, params = next(iter(item.items()))
            ops.append(Op(name, {**OPERATIONS[name], **params}))
    return ops


def _known(name: str, where: str) -> None:
    if name not in SETS and name not in OPERATIONS:
        raise CnnlabError(
            f"{where}: unknown augmentation {name!r}; sets: {', '.join(SETS)}; operations: "
            f"{', '.join(OPERATIONS)}"
        )


def _params(name: str, params: Any, where: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise CnnlabError(f"{where}: {name}'s parameters must be a mapping, got {params!r}")
    defaults = OPERATIONS[name]
    out = {}
    for key, value in params.items():
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise CnnlabError(f"{where}: {name} has no parameter {key!r}; parameters: {known}")
        out[key] = _param(f"{where}.{name}.{key}", key, value, defaults[key])
    return out


def _param(where: str, key: str, value: Any, default: Any) -> Any:
    lo, hi = _RANGES[key]
    whole = isinstance(lo, int) and not isinstance(lo, bool)

    def number(v: Any) -> float | int:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (whole and v != int(v)) or not lo <= v <= hi:
            kind = "a whole number" if whole else "a number"
            raise CnnlabError(f"{where} must be {kind} in {lo}..{hi}, got {value!r}")
        return int(v) if whole else float(v)

    if isinstance(default, list):
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value, value]
        if not (isinstance(value, list) and len(value) == 2):
            raise CnnlabError(f"{where} must be a number or a range [low, high], got {value!r}")
        pair = [number(v) for v in value]
        if pair[0] > pair[1]:
            raise CnnlabError(f"{where}: the range's low end exceeds its high end: {value!r}")
        return pair
    if default is None and value is None:
        return None
    return number(value)


# -- applying it ----------------------------------------------------------------------------------


@dataclass
class Batch:
    """A training batch on its way through the operations: float images on [0, 1], the
    indices of its images in the training split, its labels and factor labels, and the
    mixing of two images (a permutation of the batch and the share of the first). ``images``
    belongs to the batch (never a view of the data): an operation may change it in place."""

    images: torch.Tensor
    index: torch.Tensor
    labels: torch.Tensor
    factors: dict[str, torch.Tensor]
    mix: tuple[torch.Tensor, float] | None = None

    @property
    def n(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Augmenter:
    """``train.augment`` bound to a dataset: refused where it would make labels false; the
    JPEG copies made once. Call it on a batch of training indices."""

    ops: list[Op]
    dataset: ImageDataset
    device: torch.device
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rules = LabelRules(self.dataset)
        kept = []
        for op in self.ops:
            problem = next(
                (r for e in _effects(op) if (r := rules.refusal(op.name, e)) is not None), None
            )
            if problem is None and op.name == "rotate90" and not _square(self.dataset):
                problem = f"{op.name}: the images are not square"
            if problem is None:
                kept.append(op)
            elif op.from_set is not None:
                self.notes.append(f"augment {op.from_set}: {problem}: left out")
            else:
                raise CnnlabError(f"train.augment: {problem}; leave it out for this data")
        self.ops, self.rules = kept, rules
        turned = [op.name for op in kept if op.from_set and set(_effects(op)) & UPRIGHT_EFFECTS]
        if turned and not self.dataset.upright and not self.dataset.factor_levels:
            self.notes.append(
                f"augment {kept[0].from_set}: keeps {', '.join(turned)} (mirrors or turns); if "
                "a mirrored or turned picture is another class (digits, letters, text), set "
                "data.upright=true"
            )
        self.size = tuple(self.dataset.image_size)
        self.jpeg = next((op for op in self.ops if op.name == "jpeg"), None)
        self.banks = _jpeg_banks(self.dataset.train.images, self.jpeg, self.device)
        noise = any(op.name == "noise" for op in self.ops)
        self.noise = (
            _noise_bank(self.dataset.train.images.shape[1:], self.device) if noise else None
        )
        self.mixers = [op for op in self.ops if op.name in MIXING]
        self.steps = [op for op in self.ops if op.name not in (*MIXING, "jpeg")]

    @property
    def active(self) -> bool:
        return bool(self.ops)

    def describe(self) -> str:
        """The operations in effect, one line."""
        if not self.ops:
            return "no augmentation"
        return ", ".join(op.name + _shown_params(op) for op in self.ops)

    def __call__(
        self,
        index: torch.Tensor,
        images: torch.Tensor,
        targets: dict[str, torch.Tensor],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[torch.Tensor, float] | None]:
        """Augment the uint8 ``images`` of training ``index`` (targets: ``label`` and/or factor
        names); returns float images on [0, 1], the targets (relabelled where an operation maps
        them) and the mixing, if any."""
        split = self.dataset.train
        factors = {
            k: split.factors[k].to(self.device).index_select(0, index) for k in split.factors
        }
        labels = targets.get("label", split.labels.to(self.device).index_select(0, index))
        if self.jpeg is not None:
            images = _apply_jpeg(images, index, self.banks, self.jpeg.params["p"], generator)
        batch = Batch(images.float().div_(255.0), index, labels, factors)
        for op in self.steps:
            batch = _APPLY[op.name](self, batch, op.params, generator)
        if self.mixers:
            op = self.mixers[int(torch.randint(len(self.mixers), (1,), generator=generator))]
            batch = _APPLY[op.name](self, batch, op.params, generator)
        out = {
            k: (batch.labels if k == "label" else batch.factors.get(k, v))
            for k, v in targets.items()
        }
        return batch.images, out, batch.mix


def _effects(op: Op) -> tuple[str, ...]:
    return _EFFECTS.get(op.name, lambda p: (PHOTOMETRIC,))(op.params)


def _square(dataset: ImageDataset) -> bool:
    h, w = dataset.image_size
    return h == w


def _shown_params(op: Op) -> str:
    changed = {k: v for k, v in op.params.items() if v != OPERATIONS[op.name][k]}
    return "(" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")" if changed else ""


# -- the operations -------------------------------------------------------------------------------


def _chosen(batch: Batch, p: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(batch.n, generator=generator) < p).to(batch.images.device)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), new, old)


def _relabel(
    aug: Augmenter, batch: Batch, chosen: torch.Tensor, effect: str, k: int = 1, kind: str = "h"
) -> torch.Tensor:
    """Relabel ``chosen`` images for a mapped effect; the images that may change."""
    mapping = aug.rules.mapping(effect, k, kind)
    changed, batch.labels, batch.factors = aug.rules.apply(
        mapping, chosen, batch.labels, batch.factors
    )
    return changed


def _flip(axis: int, kind: str) -> Callable[..., Batch]:
    def apply(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
        chosen = _relabel(aug, batch, _chosen(batch, p["p"], g), "mirror", kind=kind)
        batch.images = _where(chosen, batch.images.flip(axis), batch.images)
        return batch

    return apply


def _rotate90(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    turns = torch.randint(1, 4, (batch.n,), generator=g).to(batch.images.device)
    chosen = _chosen(batch, p["p"], g)
    out = batch.images
    for k in (1, 2, 3):
        mask = _relabel(aug, batch, chosen & (turns == k), "turn", k=k)
        out = _where(mask, torch.rot90(batch.images, k, dims=(-2, -1)), out)
    batch.images = out
    return batch


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random whole number of pixels in [-max_shift, max_shift]
    (zeros come in): pad-and-crop."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(images.device)
    rows = (torch.arange(h, device=images.device)[None, :] + offsets[0][:, None])[:, None, :, None]
    cols = (torch.arange(w, device=images.device)[None, :] + offsets[1][:, None])[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def _crop(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    pad = p["pad"] if p["pad"] is not None else max(1, min(aug.size) // 8)
    shifted = random_shift(batch.images, pad, g)
    batch.images = _where(_chosen(batch, p["p"], g), shifted, batch.images)
    return batch


def _kornia(module: Any, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A kornia module (which draws from torch's global generator) run on a seed drawn from
    ``g``, leaving the global generator as it was."""
    seed = int(torch.randint(2**62, (1,), generator=g))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return module(images)


def _affine(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    import kornia.augmentation as K

    module = K.RandomAffine(
        degrees=p["degrees"],
        translate=(p["translate"], p["translate"]) if p["translate"] > 0 else None,
        scale=tuple(p["scale"]) if list(p["scale"]) != [1.0, 1.0] else None,
        shear=p["shear"] if p["shear"] > 0 else None,
        p=p["p"],
    )
    batch.images = _kornia(module, batch.images, g)
    return batch


def _grey(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _color(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    x, n, shape = batch.images, batch.n, (-1, 1, 1, 1)

    def factor(amount: float) -> torch.Tensor:
        return _uniform(n, 1 - amount, 1 + amount, g).to(x.device).view(shape)

    out = x * factor(p["brightness"])
    mean = _grey(out).mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * factor(p["contrast"]) + mean
    if p["saturation"] > 0 and x.shape[1] == 3:
        grey = _grey(out)
        out = grey + (out - grey) * factor(p["saturation"])
    if p["hue"] > 0 and x.shape[1] == 3:
        from kornia.enhance import adjust_hue

        turn = _uniform(n, -p["hue"], p["hue"], g).to(x.device) * math.pi
        out = adjust_hue(out.clamp(0, 1), turn)
    batch.images = _where(_chosen(batch, p["p"], g), out.clamp(0, 1), x)
    return batch


def _boxes(n: int, h: int, w: int, area: torch.Tensor, g: torch.Generator, aspect: bool = True):
    """Per image a rectangle of ``area`` (fraction of the image): (top, left, height, width)."""
    ratio = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), g)) if aspect else torch.ones(n)
    bh = (area * h * w * ratio).sqrt().round().clamp(1, h).long()
    bw = (area * h * w / ratio).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, generator=g) * (h - bh + 1)).long()
    left = (torch.rand(n, generator=g) * (w - bw + 1)).long()
    return top, left, bh, bw


def _box_mask(top, left, bh, bw, h: int, w: int, device: torch.device) -> torch.Tensor:
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    r = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
    c = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
    return (r[:, :, None] & c[:, None, :])[:, None].to(device)


def _erasing(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    x = batch.images
    n, _, h, w = x.shape
    area = _uniform(n, *p["area"], g)
    mask = _box_mask(*_boxes(n, h, w, area, g), h, w, x.device)
    mask = mask & _chosen(batch, p["p"], g).view(-1, 1, 1, 1)
    noise = torch.rand(x.shape, generator=g).to(x.device)
    batch.images = torch.where(mask, noise, x)
    return batch


def _auto(kind: str) -> Callable[..., Batch]:
    def apply(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
        from kornia.augmentation import auto

        module = auto.TrivialAugment() if kind == "trivial" else auto.RandAugment(p["n"], p["m"])
        grey = batch.images.shape[1] == 1  # kornia's policies have colour operations
        images = batch.images.expand(-1, 3, -1, -1) if grey else batch.images
        out = _kornia(module, images, g).clamp(0, 1)
        batch.images = out.mean(dim=1, keepdim=True) if grey else out
        return batch

    return apply


def _beta(alpha: float, g: torch.Generator) -> float:
    seed = int(torch.randint(2**62, (1,), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _mixup(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    lam, perm, on = _beta(p["alpha"], g), torch.randperm(batch.n, generator=g), _coin(p, g)
    if on:
        perm = perm.to(batch.images.device)
        batch.images = lam * batch.images + (1 - lam) * batch.images.index_select(0, perm)
        batch.mix = (perm, lam)
    return batch


def _cutmix(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    lam, perm, on = _beta(p["alpha"], g), torch.randperm(batch.n, generator=g), _coin(p, g)
    _, _, h, w = batch.images.shape
    top, left, bh, bw = _boxes(1, h, w, torch.tensor([1 - lam]), g, aspect=False)
    if on:
        perm = perm.to(batch.images.device)
        mask = _box_mask(top, left, bh, bw, h, w, batch.images.device)
        batch.images = torch.where(mask, batch.images.index_select(0, perm), batch.images)
        batch.mix = (perm, 1.0 - float(bh[0] * bw[0]) / (h * w))
    return batch


def _coin(p: dict[str, Any], g: torch.Generator) -> bool:
    return bool(torch.rand(1, generator=g) < p["p"])


def _jpeg_banks(images: torch.Tensor, op: Op | None, device: torch.device) -> list[torch.Tensor]:
    """The training images stored as JPEG at a few qualities across ``op``'s range (made once,
    deterministic): real JPEG (Pillow's libjpeg, 4:2:0), not an approximation."""
    if op is None:
        return []
    from cnnlab.data.degrade import jpeg_roundtrip

    lo, hi = op.params["quality"]
    qualities = sorted({round(q) for q in np.linspace(lo, hi, 3)})
    hwc = images.permute(0, 2, 3, 1)
    rgb = hwc.expand(-1, -1, -1, 3) if images.shape[1] == 1 else hwc
    banks = []
    for quality in qualities:
        stored = torch.from_numpy(jpeg_roundtrip(np.ascontiguousarray(rgb.numpy()), quality))
        if images.shape[1] == 1:
            stored = stored.float().mean(dim=3, keepdim=True).round().to(torch.uint8)
        banks.append(stored.permute(0, 3, 1, 2).contiguous().to(device))
    return banks


def _apply_jpeg(
    images: torch.Tensor,
    index: torch.Tensor,
    banks: list[torch.Tensor],
    p: float,
    g: torch.Generator,
) -> torch.Tensor:
    """The chosen images of training ``index`` replaced by their stored JPEG copies."""
    n = images.shape[0]
    chosen = torch.rand(n, generator=g) < p
    which = torch.randint(len(banks), (n,), generator=g)
    out = images
    for b, bank in enumerate(banks):
        rows = torch.nonzero(chosen & (which == b)).flatten().to(images.device)
        if rows.numel():
            out = out.index_copy(0, rows, bank.index_select(0, index.index_select(0, rows)))
    return out


NOISE_BANK_VALUES = 8_000_000
"""The most values (32 MB of float32) in the bank of noise fields ``noise`` draws from."""


def _noise_bank(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Unit Gaussian noise fields of one image's ``shape`` (C, H, W), made once (fixed seed):
    64 to 1,024 of them, as many as :data:`NOISE_BANK_VALUES` allows."""
    count = max(64, min(1024, NOISE_BANK_VALUES // math.prod(shape)))
    generator = torch.Generator().manual_seed(0)
    return torch.randn((count, *shape), generator=generator).to(device)


def _noise(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    """Gaussian noise: each chosen image gets a field of the bank picked at random, at its own
    strength (a lookup: drawing fresh Gaussian values was most of this operation's cost)."""
    std = _uniform(batch.n, 0.0, p["std"], g).to(batch.images.device)
    bank = aug.noise
    assert bank is not None  # made with the Augmenter when the operations include noise

    def noisy(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(len(bank), (len(index),), generator=g).to(bank.device)
        fields = bank.index_select(0, pick)
        return images.add_(fields.mul_(std[index].view(-1, 1, 1, 1))).clamp_(0, 1)

    _on_chosen(batch, _chosen(batch, p["p"], g), noisy)
    return batch


def _on_chosen(
    batch: Batch, chosen: torch.Tensor, change: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    """Apply ``change(images, index)`` to the ``chosen`` images only, in place (an operation
    that touches a share of the batch costs that share)."""
    index = torch.nonzero(chosen).flatten()
    if index.numel():
        batch.images.index_copy_(0, index, change(batch.images.index_select(0, index), index))


def _blur(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    lo, hi = p["sigma"]
    sigma = _uniform(batch.n, lo, hi, g).to(batch.images.device)
    size = 2 * math.ceil(2 * hi) + 1

    def blur(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(images, sigma[index], size)

    _on_chosen(batch, _chosen(batch, p["p"], g), blur)
    return batch


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Each image blurred with its own ``sigma`` (a ``size``-tap Gaussian, reflected edges):
    kornia's ``gaussian_blur2d`` to float rounding, 2.4x faster than its per-image kernels."""
    taps = torch.arange(size, dtype=images.dtype, device=images.device) - size // 2
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None].to(images.dtype) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    return _separable(images, kernel, kernel, "reflect")


def subpixel_shift(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image moved by its own (x, y) ``shift`` in pixels, bilinear, zeros coming in:
    kornia's ``translate`` to float rounding."""
    reach = max(1, math.ceil(float(shift.abs().max())))
    taps = torch.arange(-reach, reach + 1, dtype=images.dtype, device=images.device)
    shift = shift.to(images.dtype)
    across = (1 - (taps[None] + shift[:, :1]).abs()).clamp_(min=0)
    down = (1 - (taps[None] + shift[:, 1:]).abs()).clamp_(min=0)
    return _separable(images, across, down, "constant")


def _separable(
    images: torch.Tensor, across: torch.Tensor, down: torch.Tensor, padding: str
) -> torch.Tensor:
    """Each image filtered by its own row kernel ``across`` and column kernel ``down``
    ((N, taps), odd taps): one depthwise convolution over the whole batch with each image's
    outer-product kernel (1.4-2.5x faster than a row pass and a column pass on small
    images, where the call, not the arithmetic, costs)."""
    n, c, h, w = images.shape
    half = across.shape[1] // 2
    flat = F.pad(images.reshape(1, n * c, h, w), (half,) * 4, mode=padding)
    kernel = (down[:, :, None] * across[:, None, :]).repeat_interleave(c, 0).unsqueeze(1)
    return F.conv2d(flat, kernel, groups=n * c).view(n, c, h, w)


def _harden(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    threshold = _uniform(batch.n, *p["threshold"], g).to(batch.images.device)

    def hard(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return (images >= threshold[index].view(-1, 1, 1, 1)).to(images.dtype)

    _on_chosen(batch, _chosen(batch, p["p"], g), hard)
    return batch


def _subpixel(aug: Augmenter, batch: Batch, p: dict[str, Any], g: torch.Generator) -> Batch:
    shift = _uniform(2 * batch.n, -p["shift"], p["shift"], g).view(batch.n, 2)
    shift = shift.to(batch.images.device)

    def move(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return subpixel_shift(images, shift[index])

    _on_chosen(batch, _chosen(batch, p["p"], g), move)
    return batch


_APPLY: dict[str, Callable[[Augmenter, Batch, dict[str, Any], torch.Generator], Batch]] = {
    "hflip": _flip(-1, "h"),
    "vflip": _flip(-2, "v"),
    "rotate90": _rotate90,
    "crop": _crop,
    "affine": _affine,
    "color": _color,
    "erasing": _erasing,
    "trivialaugment": _auto("trivial"),
    "randaugment": _auto("rand"),
    "mixup": _mixup,
    "cutmix": _cutmix,
    "noise": _noise,
    "blur": _blur,
    "harden": _harden,
    "subpixel": _subpixel,
}


def preview(aug: Augmenter, count: int = 32, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """``count`` training images as the net sees them under ``aug`` (seeded): uint8
    (N, C, H, W) and a caption each, the class name after any relabelling (a mixed image names
    both classes and their shares)."""
    split = aug.dataset.train
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=generator)[:count].sort().values
    index = index.to(aug.device)
    targets = {"label": split.labels.to(aug.device).index_select(0, index)}
    images, targets, mix = aug(
        index, split.images.to(aug.device).index_select(0, index), targets, generator
    )
    names = aug.dataset.class_names
    labels = targets["label"].tolist()
    if mix is None:
        captions = [names[c] for c in labels]
    else:
        perm, share = mix
        captions = [
            f"{names[a]} {share:.0%} + {names[labels[b]]} {1 - share:.0%}"
            for a, b in zip(labels, perm.tolist(), strict=True)
        ]
    return (images * 255).round().to(torch.uint8).cpu(), captions


def write_preview(aug: Augmenter, path: Path, seed: int = 0) -> Path:
    """:func:`preview`'s images as a captioned PNG grid at ``path``, titled with the
    operations in effect."""
    from cnnlab.data.preview import captioned_grid

    images, captions = preview(aug, seed=seed)
    title = f"What the net saw: {aug.describe()}"
    return captioned_grid(images.permute(0, 2, 3, 1).numpy(), captions, path, title=title)
