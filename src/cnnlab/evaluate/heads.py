"""Multi-head predictions: each head's level, the combined class they name, joint metrics.

A multi-head net names a class by composing its heads' answers, so its 96-way predictions decode
exactly like a 96-way net's and the two compare on the same images in the same terms; the
decoded class is right exactly when every head is right (joint accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import compose_factors
from cnnlab.evaluate.factors import factor_analysis
from cnnlab.evaluate.metrics import classification_metrics


def head_probabilities(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each head's probability over its levels: (N, 2) from one sigmoid unit, softmax otherwise
    (in float32, or float64 for float64 logits)."""
    probabilities = {}
    for name, logits in outputs.items():
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if logits.shape[1] == 1:
            p = torch.sigmoid(logits)
            probabilities[name] = torch.cat([1 - p, p], dim=1)
        else:
            probabilities[name] = logits.softmax(dim=1)
    return probabilities


def multihead_metrics(
    outputs: dict[str, torch.Tensor],
    factors: dict[str, torch.Tensor],
    labels: np.ndarray,
    factor_levels: dict[str, tuple[Any, ...]],
    class_names: tuple[str, ...],
    head_losses: dict[str, float],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-head metrics, joint accuracy and the decoded-class metrics; plus the predictions."""
    probabilities = head_probabilities(outputs)
    predicted = {name: p.argmax(dim=1).numpy() for name, p in probabilities.items()}
    truth = {name: factors[name].numpy() for name in outputs}
    heads = {
        name: {
            "levels": [str(v) for v in factor_levels[name]],
            "loss": head_losses[name],
            **classification_metrics(truth[name], predicted[name], len(factor_levels[name])),
        }
        for name in outputs
    }
    joint = np.logical_and.reduce([predicted[n] == truth[n] for n in outputs])
    decoded = compose_factors(predicted, factor_levels)
    metrics = {
        **classification_metrics(labels, decoded, len(class_names)),
        "joint_accuracy": float(joint.mean()),
        "heads": heads,
        "factor_analysis": factor_analysis(labels, decoded, factor_levels, class_names),
    }
    arrays = {"predicted": decoded, **{f"predicted_{n}": v for n, v in predicted.items()}}
    return metrics, arrays
