"""Where a classifier fails: top losses, most confused pairs, worst-recall classes, calibration.

Everything comes from the probabilities an evaluation already has (no second pass over the
data). Images are named by their split index and their source (the file, for datasets read
from files). A multi-head model is analysed per head, each head as a classifier of its levels,
and jointly: an image is right when every head is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TOP_LOSSES = 16
CONFUSED_PAIRS = 6
EXAMPLES_PER_PAIR = 4
WORST_CLASSES = 5
CALIBRATION_BINS = 15
TINY = np.finfo(np.float64).tiny
"""Probabilities are clipped here before their log: a loss stays finite (at most 708)."""


def error_analysis(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    sources: Sequence[str],
) -> dict[str, Any]:
    """The analysis of one classifier: ``probabilities`` (N, K) of ``labels`` (N,)."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n, k = probabilities.shape
    predicted = probabilities.argmax(axis=1)
    loss = -np.log(np.clip(probabilities[np.arange(n), labels], TINY, None))
    wrong = predicted != labels
    confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    return {
        "images": int(n),
        "errors": int(wrong.sum()),
        "top_losses": [
            _image(i, labels, predicted, probabilities, loss, class_names, sources)
            for i in np.argsort(-loss, kind="stable")[:TOP_LOSSES]
        ],
        "confused_pairs": _confused_pairs(confusion, labels, predicted, loss, class_names),
        "worst_recall": _worst_recall(confusion, class_names),
        "calibration": calibration(probabilities.max(axis=1), ~wrong),
    }


def misclassified(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    sources: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per misclassified image, the highest loss first (the errors CSV)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n = len(labels)
    predicted = probabilities.argmax(axis=1)
    loss = -np.log(np.clip(probabilities[np.arange(n), labels], TINY, None))
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-loss[wrong], kind="stable")]
    return [_image(i, labels, predicted, probabilities, loss, class_names, sources) for i in order]


def calibration(
    confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """Reliability of the confidence: per equal-width bin, how many images, their mean
    confidence and their accuracy; the expected (ECE) and maximum (MCE) calibration error;
    the confidence of right and of wrong answers."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    summed = np.bincount(which, weights=confidence, minlength=bins)
    right = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    filled = count > 0
    mean_conf = np.where(filled, summed / np.maximum(count, 1), np.nan)
    accuracy = np.where(filled, right / np.maximum(count, 1), np.nan)
    gap = np.abs(accuracy - mean_conf)
    n = max(int(count.sum()), 1)
    return {
        "bins": bins,
        "edges": edges.tolist(),
        "count": count.tolist(),
        "confidence": _listed(mean_conf),
        "accuracy": _listed(accuracy),
        "ece": float(np.sum(count[filled] / n * gap[filled])),
        "mce": float(gap[filled].max()) if filled.any() else 0.0,
        "mean_confidence": float(confidence.mean()) if confidence.size else None,
        "accuracy_overall": float(correct.mean()) if correct.size else None,
        "right": _confidence_of(confidence[correct], edges),
        "wrong": _confidence_of(confidence[~correct], edges),
    }


def multihead_error_analysis(
    factors: dict[str, np.ndarray],
    head_probabilities: dict[str, np.ndarray],
    factor_levels: dict[str, Sequence[Any]],
    labels: np.ndarray,
    class_names: Sequence[str],
    sources: Sequence[str],
) -> dict[str, Any]:
    """Per head (each a classifier of its levels) and joint: an image is right when every head
    is; its joint loss is the sum of the heads' losses, its confidence the product of theirs."""
    heads = {
        name: error_analysis(factors[name], probs, [str(v) for v in factor_levels[name]], sources)
        for name, probs in head_probabilities.items()
    }
    n = len(labels)
    right = np.ones(n, dtype=bool)
    confidence = np.ones(n)
    loss = np.zeros(n)
    predicted: dict[str, np.ndarray] = {}
    for name, probs in head_probabilities.items():
        p = np.asarray(probs, dtype=np.float64)
        predicted[name] = p.argmax(axis=1)
        truth = np.asarray(factors[name])
        right &= predicted[name] == truth
        confidence *= p.max(axis=1)
        loss -= np.log(np.clip(p[np.arange(n), truth], TINY, None))
    joint = {
        "images": int(n),
        "errors": int((~right).sum()),
        "top_losses": [
            _joint_image(i, labels, factors, predicted, loss, factor_levels, class_names, sources)
            for i in np.argsort(-loss, kind="stable")[:TOP_LOSSES]
        ],
        "calibration": calibration(confidence, right),
    }
    return {"heads": heads, "joint": joint}


def multihead_misclassified(
    factors: dict[str, np.ndarray],
    head_probabilities: dict[str, np.ndarray],
    factor_levels: dict[str, Sequence[Any]],
    labels: np.ndarray,
    class_names: Sequence[str],
    sources: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per image some head gets wrong: the decoded classes, the wrong heads, and each
    head's true level, predicted level and probability; the highest joint loss first."""
    n = len(labels)
    loss = np.zeros(n)
    predicted, probability = {}, {}
    for name, probs in head_probabilities.items():
        p = np.asarray(probs, dtype=np.float64)
        predicted[name] = p.argmax(axis=1)
        probability[name] = p.max(axis=1)
        loss -= np.log(np.clip(p[np.arange(n), np.asarray(factors[name])], TINY, None))
    wrong_heads = {
        name: predicted[name] != np.asarray(factors[name]) for name in head_probabilities
    }
    wrong = np.flatnonzero(np.logical_or.reduce(list(wrong_heads.values())))
    rows = []
    for i in wrong[np.argsort(-loss[wrong], kind="stable")]:
        row = _joint_image(i, labels, factors, predicted, loss, factor_levels, class_names, sources)
        row["wrong_heads"] = " ".join(h for h, w in wrong_heads.items() if w[i])
        for name in head_probabilities:
            levels = factor_levels[name]
            row[f"{name}_true"] = str(levels[int(factors[name][i])])
            row[f"{name}_predicted"] = str(levels[int(predicted[name][i])])
            row[f"{name}_probability"] = float(probability[name][i])
        rows.append(row)
    return rows


def _image(
    i: int,
    labels: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    loss: np.ndarray,
    class_names: Sequence[str],
    sources: Sequence[str],
) -> dict[str, Any]:
    i = int(i)
    return {
        "index": i,
        "source": str(sources[i]),
        "true": str(class_names[int(labels[i])]),
        "predicted": str(class_names[int(predicted[i])]),
        "probability": float(probabilities[i, predicted[i]]),
        "true_probability": float(probabilities[i, labels[i]]),
        "loss": float(loss[i]),
    }


def _joint_image(
    i: int,
    labels: np.ndarray,
    factors: dict[str, np.ndarray],
    predicted: dict[str, np.ndarray],
    loss: np.ndarray,
    factor_levels: dict[str, Sequence[Any]],
    class_names: Sequence[str],
    sources: Sequence[str],
) -> dict[str, Any]:
    i = int(i)
    decoded = 0
    for name, levels in factor_levels.items():  # the class the heads name (mixed radix)
        level = predicted[name][i] if name in predicted else factors[name][i]
        decoded = decoded * len(levels) + int(level)
    return {
        "index": i,
        "source": str(sources[i]),
        "true": str(class_names[int(labels[i])]),
        "predicted": str(class_names[decoded]),
        "loss": float(loss[i]),
    }


def _confused_pairs(
    confusion: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    loss: np.ndarray,
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes, each with its highest-loss examples."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:CONFUSED_PAIRS]
    support = confusion.sum(axis=1)
    pairs = []
    for index in flat:
        t, p = divmod(int(index), confusion.shape[1])
        if off[t, p] == 0:
            break
        members = np.flatnonzero((labels == t) & (predicted == p))
        examples = members[np.argsort(-loss[members], kind="stable")][:EXAMPLES_PER_PAIR]
        pairs.append(
            {
                "true": str(class_names[t]),
                "predicted": str(class_names[p]),
                "count": int(off[t, p]),
                "share_of_true": float(off[t, p] / support[t]),
                "examples": [int(e) for e in examples],
            }
        )
    return pairs


def _worst_recall(confusion: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """The classes with the lowest recall (among those with test images), and what they are
    most often taken for."""
    support = confusion.sum(axis=1)
    present = np.flatnonzero(support > 0)
    recall = np.diag(confusion)[present] / support[present]
    rows = []
    for j in np.argsort(recall, kind="stable")[:WORST_CLASSES]:
        c = int(present[j])
        off = confusion[c].copy()
        off[c] = 0
        other = int(off.argmax())
        rows.append(
            {
                "class": str(class_names[c]),
                "recall": float(recall[j]),
                "support": int(support[c]),
                "taken_for": str(class_names[other]) if off[other] else None,
                "taken_for_count": int(off[other]),
            }
        )
    return rows


def _confidence_of(values: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    return {
        "count": int(values.size),
        "mean": float(values.mean()) if values.size else None,
        "median": float(np.median(values)) if values.size else None,
        "histogram": np.histogram(values, bins=edges)[0].tolist(),
    }


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def error_lines(record: dict[str, Any], top: int = 5) -> list[str]:
    """The error analysis (an ``errors.json`` record) as a few lines for the terminal."""
    lines = [f"{record['split_name']}: {_wrong_text(record)}"]
    if "heads" in record:
        lines[0] += " (joint: every head right)"
        lines.append(f"  {_calibration_text(record['calibration'])}")
        for name, head in record["heads"].items():
            lines.append(f"head {name}: {_wrong_text(head)}")
            lines += [f"  {line}" for line in _classifier_lines(head, top)]
        lines.append("highest joint losses:")
        lines += _top_loss_lines(record["top_losses"][:top])
    else:
        lines += [f"  {line}" for line in _classifier_lines(record, top)]
    if record.get("heatmap_note"):
        lines.append(f"warning: {record['heatmap_note']}")
    return lines


def _classifier_lines(analysis: dict[str, Any], top: int) -> list[str]:
    lines = [_calibration_text(analysis["calibration"])]
    pairs = analysis["confused_pairs"]
    if pairs:
        lines.append(
            "most confused: "
            + "; ".join(f"{p['true']} → {p['predicted']} {p['count']}" for p in pairs[:top])
        )
    worst = analysis["worst_recall"]
    if worst:
        lines.append("lowest recall: " + "; ".join(_recall_text(w) for w in worst[: min(top, 3)]))
    lines.append("highest losses:")
    lines += _top_loss_lines(analysis["top_losses"][:top])
    return lines


def _recall_text(w: dict[str, Any]) -> str:
    taken = f" (taken for {w['taken_for']}: {w['taken_for_count']})" if w["taken_for"] else ""
    return f"{w['class']} {w['recall']:.4f}{taken}"


def _top_loss_lines(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"  loss {row['loss']:7.3f}"
        + (f"  p {row['probability']:.3f}" if "probability" in row else "")
        + f"  {row['true']} → {row['predicted']}  {row['source']}"
        for row in rows
    ]


def _wrong_text(analysis: dict[str, Any]) -> str:
    n, wrong = analysis["images"], analysis["errors"]
    share = 100 * wrong / n if n else 0.0
    return f"{wrong:,} of {n:,} images wrong ({share:.2f}%)"


def _calibration_text(c: dict[str, Any]) -> str:
    def mean(part: dict[str, Any]) -> str:
        return "-" if part["mean"] is None else f"{part['mean']:.3f}"

    return (
        f"calibration: ECE {c['ece']:.4f} ({c['bins']} bins), MCE {c['mce']:.4f}; mean "
        f"confidence {mean(c['right'])} when right, {mean(c['wrong'])} when wrong"
    )
