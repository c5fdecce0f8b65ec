"""Classification metrics, all derived from one confusion matrix so they cannot disagree.

Accuracy is the confusion matrix's trace over N; per-class precision, recall and F1 come from its
columns, rows and diagonal (0 where a class is never predicted or never present, as
scikit-learn's ``zero_division=0``); micro-F1 therefore equals accuracy for single-label data.
Macro means run over the classes that occur in the labels or the predictions (scikit-learn's
default): a test split without some classes (held-out combinations) does not average in zeros
for classes nobody asked about.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: rows are true classes, columns predicted classes."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    flat = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def scores_from_confusion(confusion: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, and their macro and weighted means."""
    confusion = np.asarray(confusion, dtype=np.int64)
    true_positive = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = int(support.sum())
    weights = support / total if total else np.zeros_like(precision)
    seen = (support > 0) | (predicted > 0)
    if not seen.any():
        seen = np.ones_like(seen)
    return {
        "n": total,
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
        },
        "macro": {
            "precision": float(precision[seen].mean()),
            "recall": float(recall[seen].mean()),
            "f1": float(f1[seen].mean()),
            "classes": int(seen.sum()),
        },
        "weighted": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1": float((f1 * weights).sum()),
        },
        "confusion": confusion.tolist(),
    }


def classification_metrics(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int
) -> dict[str, Any]:
    """Every metric of :func:`scores_from_confusion` from label and prediction arrays."""
    return scores_from_confusion(confusion_matrix(labels, predicted, num_classes))
