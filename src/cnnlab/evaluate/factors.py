"""Factor analysis of a classifier over factorised classes (Lines): which factor does it get wrong?

A class index is a mixed-radix number over the factors in order (length, width, angle, colour
for Lines), so every 96-way prediction decodes into a predicted level of each factor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.data.dataset import decode_factors as decode
from cnnlab.evaluate.metrics import classification_metrics


def describe_difference(
    true_class: int, predicted_class: int, factor_levels: dict[str, tuple[Any, ...]]
) -> str:
    """Plain words for how two classes differ, e.g. ``angle off by 15°`` or ``width 1 → 3``."""
    a = decode(np.array([true_class]), factor_levels)
    b = decode(np.array([predicted_class]), factor_levels)
    parts = []
    for name, levels in factor_levels.items():
        i, j = int(a[name][0]), int(b[name][0])
        if i == j:
            continue
        if name == "angle":
            delta = abs(float(levels[i]) - float(levels[j])) % 180
            parts.append(f"angle off by {min(delta, 180 - delta):g}°")
        else:
            parts.append(f"{name} {levels[i]} → {levels[j]}")
    return ", ".join(parts) or "same class"


def factor_analysis(
    labels: np.ndarray,
    predicted: np.ndarray,
    factor_levels: dict[str, tuple[Any, ...]],
    class_names: tuple[str, ...],
    top: int = 15,
) -> dict[str, Any]:
    """Per-factor metrics and confusion, what wrong predictions get wrong, most confused pairs."""
    true_f = decode(labels, factor_levels)
    pred_f = decode(predicted, factor_levels)
    per_factor = {
        name: {
            "levels": [str(v) for v in levels],
            **classification_metrics(true_f[name], pred_f[name], len(levels)),
        }
        for name, levels in factor_levels.items()
    }
    wrong = np.asarray(labels) != np.asarray(predicted)
    differing: dict[str, int] = {}
    if wrong.any():
        names = np.array(list(factor_levels))
        diff = np.stack([true_f[f][wrong] != pred_f[f][wrong] for f in factor_levels], axis=1)
        keys, counts = np.unique(diff, axis=0, return_counts=True)
        for key, count in sorted(zip(keys, counts, strict=True), key=lambda kc: -kc[1]):
            differing[" + ".join(names[key])] = int(count)
    k = len(class_names)
    confusion = np.bincount(
        np.asarray(labels) * k + np.asarray(predicted), minlength=k * k
    ).reshape(k, k)
    np.fill_diagonal(confusion, 0)
    order = np.argsort(-confusion, axis=None, kind="stable")[:top]
    pairs = [
        {
            "true": class_names[t],
            "predicted": class_names[p],
            "count": int(confusion[t, p]),
            "difference": describe_difference(int(t), int(p), factor_levels),
        }
        for t, p in zip(*np.unravel_index(order, confusion.shape), strict=True)
        if confusion[t, p] > 0
    ]
    return {
        "factors": per_factor,
        "errors": int(wrong.sum()),
        "errors_by_differing_factors": differing,
        "most_confused": pairs,
    }
