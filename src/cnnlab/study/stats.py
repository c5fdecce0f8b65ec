"""Statistics of a study: means with Student-t intervals, differences paired by seed, noise.

The noise rule (the ``within_noise`` verdict on test accuracy): a variant's difference from
the baseline is *within noise* when either

1. the 95% confidence interval of the mean difference, paired by seed (Student t with n-1
   degrees of freedom over the seeds both ran), includes 0; or
2. the difference is smaller than 1.96 binomial standard errors of a difference between two
   accuracies measured on the test images: ``1.96 * sqrt((p_a(1-p_a) + p_b(1-p_b)) / N)``
   with ``N`` = test-set size x number of paired seeds (images scored per variant). This
   treats the two variants' test scores as independent, so it is conservative (both variants
   score the same images); it is the only rule left with a single seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LEVEL = 0.95
Z = 1.96


@dataclass(frozen=True)
class Estimate:
    """A mean with the half width of its confidence interval (NaN with fewer than 2 values)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline on test accuracy, paired by seed."""

    difference: Estimate
    noise: float
    ci_includes_zero: bool | None
    below_noise: bool

    @property
    def within_noise(self) -> bool:
        return bool(self.ci_includes_zero) or self.below_noise

    @property
    def verdict(self) -> str:
        if self.within_noise:
            return "within noise"
        return "better" if self.difference.mean > 0 else "worse"


def mean_ci(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean and Student-t confidence half width: t(1-(1-level)/2, n-1) * s / sqrt(n)."""
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = math.fsum(values) / n
    if n < 2:
        return Estimate(mean, math.nan, 1)
    from scipy import stats  # loaded when needed: it takes a while

    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    return Estimate(mean, t * math.sqrt(variance / n), n)


def paired(variant: Mapping[int, float], baseline: Mapping[int, float]) -> list[float]:
    """``variant - baseline`` for every seed both have, in seed order."""
    return [variant[s] - baseline[s] for s in sorted(set(variant) & set(baseline))]


def binomial_noise(p_a: float, p_b: float, images: int, z: float = Z) -> float:
    """``z`` standard errors of the difference of two accuracies on ``images`` images each."""
    if images <= 0:
        return math.nan
    return z * math.sqrt((p_a * (1 - p_a) + p_b * (1 - p_b)) / images)


def compare_accuracy(
    variant: Mapping[int, float],
    baseline: Mapping[int, float],
    test_images: int,
    level: float = LEVEL,
) -> Comparison | None:
    """The variant minus the baseline, paired by seed, with the noise rule (module docstring);
    ``None`` when they share no seed."""
    seeds = sorted(set(variant) & set(baseline))
    if not seeds:
        return None
    difference = mean_ci(paired(variant, baseline), level)
    p_a = math.fsum(variant[s] for s in seeds) / len(seeds)
    p_b = math.fsum(baseline[s] for s in seeds) / len(seeds)
    noise = binomial_noise(p_a, p_b, test_images * len(seeds))
    includes = None if math.isnan(difference.half_width) else difference.low <= 0 <= difference.high
    return Comparison(difference, noise, includes, abs(difference.mean) < noise)


def epochs_to_target(accuracies: Sequence[float], target: float) -> int | None:
    """The first epoch (1-based) whose test accuracy reaches ``target``; None if none does."""
    return next((i for i, acc in enumerate(accuracies, 1) if acc >= target), None)
