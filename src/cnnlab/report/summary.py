"""The comparison table's rows and the number formats every part of a report shares."""

from __future__ import annotations

import json
from typing import Any

from cnnlab.report.records import RunRecord

COMPARISON_COLUMNS = (
    "run",
    "dataset",
    "model",
    "parameters",
    "epochs",
    "test accuracy",
    "test loss",
    "macro F1",
    "train time",
)


def fraction(value: Any) -> str:
    """``0.8142`` style (accuracy, precision, recall, F1); ``–`` when absent."""
    return f"{value:.4f}" if isinstance(value, int | float) else "–"


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def duration(seconds: Any) -> str:
    """``42.0 s``, ``3 min 12 s``, ``2 h 05 min``; ``–`` when unknown."""
    if not isinstance(seconds, int | float):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def integer(value: Any) -> str:
    return f"{value:,d}" if isinstance(value, int) else "–"


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


def comparison_row(record: RunRecord) -> dict[str, str]:
    """One run's cells for :data:`COMPARISON_COLUMNS`, as display text."""
    info, metrics = record.info, record.metrics
    model = info.get("model", {})
    return {
        "run": record.label,
        "dataset": str(metrics.get("dataset") or info.get("dataset", {}).get("name", "–")),
        "model": str(model.get("name", "–")),
        "parameters": integer(model.get("parameters")),
        "epochs": str(len(record.history)) if record.history else "–",
        "test accuracy": fraction(metrics.get("accuracy")),
        "test loss": fraction(metrics.get("loss")),
        "macro F1": fraction(metrics.get("macro", {}).get("f1")),
        "train time": duration(info.get("train_seconds")),
    }


def headline(record: RunRecord) -> list[str]:
    """A few plain sentences: test accuracy, loss, F1, and what the errors get wrong."""
    m = record.metrics
    lines = [
        f"test accuracy {fraction(m.get('accuracy'))} on {integer(m.get('n'))} images, "
        f"loss {fraction(m.get('loss'))}",
        f"macro precision / recall / F1 {fraction(m['macro']['precision'])} / "
        f"{fraction(m['macro']['recall'])} / {fraction(m['macro']['f1'])}; "
        f"weighted F1 {fraction(m['weighted']['f1'])}",
    ]
    analysis = record.factor_analysis
    if analysis:
        per = ", ".join(f"{k} {fraction(v['accuracy'])}" for k, v in analysis["factors"].items())
        lines.append(f"accuracy per factor: {per}")
        if analysis["errors"]:
            worst, count = next(iter(analysis["errors_by_differing_factors"].items()))
            lines.append(
                f"{analysis['errors']} errors; most often only {worst} differs "
                f"({count}, {percent(count / analysis['errors'])} of errors)"
            )
    return lines
