"""The one dataset object every later stage uses: uint8 tensors in memory, names, factors."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """One split of a dataset, kept whole in memory.

    ``images`` is (N, C, H, W) uint8, ``labels`` is (N,) int64, and ``factors`` maps a factor
    name (``"length"``, ``"angle"`` ...) to an (N,) int64 tensor of level indices, where the data
    has them (their values are in :attr:`ImageDataset.factor_levels`). ``masks`` (N, H, W) bool
    marks the object's pixels where the data knows them (Lines), the ground truth for heatmaps.
    ``sources`` (N,) names each image's file (relative to the dataset's folder or CSV) where
    the images came from files; None otherwise (an image is then known by its index).
    """

    images: torch.Tensor
    labels: torch.Tensor
    factors: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: torch.Tensor | None = None
    sources: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be (N, C, H, W) uint8, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        n = self.images.shape[0]
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        for name, values in self.factors.items():
            if values.shape[0] != n:
                raise ValueError(f"factor {name!r} has {values.shape[0]} values for {n} images")
        if self.masks is not None and self.masks.shape != (n, *self.images.shape[2:]):
            raise ValueError(f"masks must have shape ({n}, H, W), got {tuple(self.masks.shape)}")
        if self.sources is not None and self.sources.shape != (n,):
            raise ValueError(f"sources must have shape ({n},), got {self.sources.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor | slice) -> Split:
        """The images selected by ``index`` (a slice, index or boolean tensor)."""
        return Split(
            self.images[index],
            self.labels[index],
            {name: values[index] for name, values in self.factors.items()},
            None if self.masks is None else self.masks[index],
            None if self.sources is None else self.sources[_numpy_index(index)],
        )

    def concat(self, other: Split) -> Split:
        """This split's images followed by ``other``'s (the same factors; masks and sources
        kept where both have them)."""
        return Split(
            torch.cat([self.images, other.images]),
            torch.cat([self.labels, other.labels]),
            {k: torch.cat([self.factors[k], other.factors[k]]) for k in self.factors},
            None
            if self.masks is None or other.masks is None
            else torch.cat([self.masks, other.masks]),
            None
            if self.sources is None or other.sources is None
            else np.concatenate([self.sources, other.sources]),
        )

    def source_names(self) -> np.ndarray:
        """How each image of this split is named: its file, or ``#<index>`` in the split."""
        if self.sources is not None:
            return self.sources.astype(str)
        return np.char.add("#", np.arange(len(self)).astype(str))


def _numpy_index(index: torch.Tensor | slice) -> np.ndarray | slice:
    return index.cpu().numpy() if isinstance(index, torch.Tensor) else index


@dataclass(frozen=True)
class ImageDataset:
    """A classification dataset: train and test splits, class names, factors and provenance.

    Images stay uint8 in memory (4x smaller than float32) and are normalised per batch with
    :meth:`normalize`, using per-channel statistics of the training split.
    """

    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...]
    factor_levels: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    val: Split | None = None
    """Images held out of training to choose on (best checkpoint), never the test split."""
    upright: bool = False
    """The classes change meaning when a picture is mirrored or turned (digits, letters):
    augmentation refuses flips and rotations (:mod:`cnnlab.data.factors`)."""

    def __post_init__(self) -> None:
        for part in (self.test, *((self.val,) if self.val is not None else ())):
            if self.train.images.shape[1:] != part.images.shape[1:]:
                raise ValueError("the splits' images differ in shape")

    @cached_property
    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return channel_stats(self.train.images)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training images, on the [0, 1] scale."""
        return self._stats[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the training images, on the [0, 1] scale."""
        return self._stats[1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(self.train.factors)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32, scaled to [0, 1] then standardised per channel."""
        return normalize(images, self.mean, self.std)

    def summary(self) -> str:
        """A few human-readable lines: sizes, shape, classes, factors."""
        c, (h, w) = self.channels, self.image_size
        lines = [
            f"{self.name}: {len(self.train)} train / {len(self.test)} test images, "
            f"{h}x{w}x{c}, {self.num_classes} classes",
            f"  classes: {', '.join(self.class_names[:6])}"
            + (" ..." if self.num_classes > 6 else ""),
        ]
        if self.factor_names:
            lines.append(f"  factors: {', '.join(self.factor_names)}")
        return "\n".join(lines)


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32, standardised per channel (``mean``, ``std`` on [0, 1])."""
    return standardize(images.float().div_(255.0), mean, std)


def standardize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """float (N, C, H, W) on [0, 1] -> standardised per channel (``mean``, ``std`` on [0, 1])."""
    shape = (1, len(mean), 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(shape)
    return (images - m).div_(s)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale.

    A channel that is constant gets std 1 so that normalising never divides by zero.
    """
    counts = torch.stack(
        [torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(images.shape[1])]
    ).double()
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    total = counts.sum(dim=1)
    mean = (counts * levels).sum(dim=1) / total
    var = (counts * levels**2).sum(dim=1) / total - mean**2
    std = var.clamp_min(0).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test items: ``test_fraction`` of every class, chosen by ``seed``.

    The test set holds exactly ``round(N * test_fraction)`` items, shared among classes in
    proportion to their size (largest remainder), so 600/400 of 1,000 per class and the
    42,000/28,000 split of MNIST's 70,000 come out exact.
    """
    classes, n_test = _test_quota(labels, test_fraction)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for cls, k in zip(classes, n_test, strict=True):
        members = np.flatnonzero(labels == cls)
        is_test[rng.permutation(members)[:k]] = True
    return is_test


def _test_quota(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The classes and how many test items each gets (largest remainder, exact in total)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * test_fraction
    n_test = np.floor(quota).astype(np.int64)
    shortfall = round(labels.size * test_fraction) - int(n_test.sum())
    n_test[np.argsort(-(quota - n_test), kind="stable")[:shortfall]] += 1
    return classes, n_test


def grouped_stratified_split(
    labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int
) -> np.ndarray:
    """Boolean mask of test items where every group lies wholly in one split.

    ``groups`` marks items that must not be separated (identical images: see
    :func:`cnnlab.data.identity.identity_groups`), so no test item equals a training item. Each
    class gets :func:`stratified_split`'s quota, filled with whole groups in a seeded random
    order; with groups of one item the quota is met exactly, with larger groups a class may fall
    short by less than its smallest remaining group.
    """
    classes, n_test = _test_quota(labels, test_fraction)
    quota = dict(zip(classes.tolist(), n_test.tolist(), strict=True))
    unique, first, sizes = np.unique(groups, return_index=True, return_counts=True)
    group_class = labels[first]
    priority = np.random.default_rng(seed).random(unique.size)
    order = np.lexsort((priority, group_class))  # by class, then in random order
    cls, size = group_class[order], sizes[order]
    starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    running = np.cumsum(size)
    offset = np.repeat(running[starts] - size[starts], np.diff(np.r_[starts, cls.size]))
    limit = np.array([quota[c] for c in cls.tolist()], dtype=np.int64)
    chosen = (running - offset) <= limit  # a prefix of each class's shuffled groups
    take = np.zeros(unique.size, dtype=bool)
    take[order[chosen]] = True
    filled = np.bincount(np.searchsorted(classes, group_class[take]), sizes[take], classes.size)
    for k in np.flatnonzero(filled < n_test):  # only classes left short: top up with what fits
        room = int(n_test[k] - filled[k])
        for g in order[(cls == classes[k]) & ~chosen]:
            if sizes[g] <= room:
                take[g] = True
                room -= int(sizes[g])
    return take[np.searchsorted(unique, groups)]


def decode_factors(
    classes: np.ndarray, factor_levels: dict[str, tuple[Any, ...]]
) -> dict[str, np.ndarray]:
    """Each factor's level index for each class index: a class index is a mixed-radix number
    over the factors in order (the last factor varies fastest)."""
    sizes = [len(levels) for levels in factor_levels.values()]
    out: dict[str, np.ndarray] = {}
    stride = int(np.prod(sizes))
    for name, size in zip(factor_levels, sizes, strict=True):
        stride //= size
        out[name] = (np.asarray(classes) // stride) % size
    return out


def compose_factors(
    level_index: dict[str, np.ndarray], factor_levels: dict[str, tuple[Any, ...]]
) -> np.ndarray:
    """The class index of each combination of factor levels (the inverse of decode_factors)."""
    index = np.zeros_like(np.asarray(level_index[next(iter(factor_levels))]))
    for name, levels in factor_levels.items():
        index = index * len(levels) + np.asarray(level_index[name])
    return index
