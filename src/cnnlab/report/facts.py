"""The facts a report states about runs (comparison rows, heads, held-out classes, transfers,
headlines) and the number formats every page shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.report.records import RunRecord

COMPARISON_COLUMNS = (
    "run",
    "dataset",
    "model",
    "kind",
    "parameters",
    "epochs",
    "test images",
    "test accuracy",
    "test loss",
    "macro F1",
    "train time",
)
"""The comparison table's fixed columns; :func:`comparison_columns` adds one per factor."""

TEXT_COLUMNS = ("run", "dataset", "model", "kind")

HOW_LOADED = ("decode_cache",)
"""Provenance entries about how the data was loaded, not which data: no test set differs by them."""
FACTOR_SUFFIX = " accuracy"


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


def factor_names(records: Sequence[RunRecord]) -> list[str]:
    """Every factor any of ``records`` reports an accuracy for, in first-seen order."""
    names: list[str] = []
    for record in records:
        names += [name for name in record.factor_accuracy if name not in names]
    return names


def comparison_columns(records: Sequence[RunRecord]) -> list[str]:
    """:data:`COMPARISON_COLUMNS`, then ``<factor> accuracy`` for each factor of the runs."""
    return [*COMPARISON_COLUMNS, *(f"{name}{FACTOR_SUFFIX}" for name in factor_names(records))]


def comparison_row(record: RunRecord) -> dict[str, str]:
    """One run's cells for :func:`comparison_columns`, as display text (``–`` if absent)."""
    run, metrics = record.run, record.metrics  # metrics: checked to hold METRICS_KEYS
    n = integer(metrics["n"])
    row = {
        "run": record.label,
        "dataset": str(metrics["dataset"]),
        "model": str(run.model.get("name", "–")),
        "kind": record.kind,
        "parameters": integer(run.model.get("parameters")),
        "epochs": str(len(record.history)) if record.history else "–",
        "test images": f"{n} (unseen)" if record.holdout else n,
        "test accuracy": fraction(metrics["accuracy"]),
        "test loss": fraction(metrics["loss"]),
        "macro F1": fraction(metrics["macro"].get("f1")),
        "train time": duration(run.train_seconds),
    }
    for name, value in record.factor_accuracy.items():
        row[f"{name}{FACTOR_SUFFIX}"] = fraction(value)
    return row


def groups_by_test_set(records: Sequence[RunRecord]) -> list[list[int]]:
    """Indices of ``records`` grouped by test set (same dataset provenance and size)."""
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        dataset = record.run.dataset
        provenance = {k: v for k, v in dataset.provenance.items() if k not in HOW_LOADED}
        key = compact_json([dataset.name, provenance, record.metrics["n"]])
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def mixed_test_sets_note(records: Sequence[RunRecord]) -> str | None:
    """When the runs do not all test on the same images: which do (else ``None``)."""
    groups = groups_by_test_set(records)
    if len(groups) < 2:
        return None
    parts = []
    for group in groups:
        labels = ", ".join(records[i].label for i in group)
        first = records[group[0]]
        holdout = first.holdout
        what = f"{integer(first.metrics.get('n'))} images"
        if holdout:
            what += f" of {len(holdout['classes'])} held-out classes"
        parts.append(f"{labels} ({what})" if len(group) > 1 else f"{labels} alone ({what})")
    return (
        "The runs do not all test on the same images; compare accuracies only within a test "
        "set: " + "; ".join(parts) + "."
    )


def head_rows(record: RunRecord) -> list[dict[str, Any]]:
    """Per head: its metrics, and the same factor's accuracy of the decoded class."""
    factors = (record.factor_analysis or {}).get("factors", {})
    rows = []
    for name, head in record.heads.items():
        factor = factors.get(name, {})
        same_confusion = factor.get("confusion") == head.get("confusion")
        rows.append(
            {
                "name": name,
                "levels": len(head.get("levels", [])),
                "accuracy": head.get("accuracy"),
                "loss": head.get("loss"),
                "macro": head.get("macro", {}),
                "decoded": factor.get("accuracy"),
                "agrees": "confusion" in factor and same_confusion,
            }
        )
    return rows


@dataclass(frozen=True)
class HeadsCheck:
    """Whether a multi-head run's test metrics agree with themselves: each head's accuracy and
    confusion matrix against that factor of the decoded class, the joint accuracy against the
    decoded-class accuracy."""

    heads: int
    """How many heads were checked."""
    mismatched: tuple[str, ...]
    """The heads that disagree, then ``joint accuracy`` when that does; empty when all agree."""

    @property
    def ok(self) -> bool:
        return not self.mismatched


def heads_check(record: RunRecord) -> HeadsCheck | None:
    """The metrics consistency check of a multi-head run (``None`` without heads or without a
    factor analysis to check against)."""
    if not record.heads or not record.factor_analysis:
        return None
    rows = head_rows(record)
    disagree = [r["name"] for r in rows if not r["agrees"] or r["accuracy"] != r["decoded"]]
    if record.metrics.get("joint_accuracy") != record.metrics.get("accuracy"):
        disagree.append("joint accuracy")
    return HeadsCheck(len(rows), tuple(disagree))


def sentence(text: str) -> str:
    """``text`` with its first letter capitalised (the rest as it is)."""
    return text[:1].upper() + text[1:]


def heads_line(record: RunRecord) -> str | None:
    """``heads: length 0.9809, ...; joint accuracy 0.5017 (= decoded-class accuracy)``."""
    heads = record.heads
    if not heads:
        return None
    per = ", ".join(f"{name} {fraction(h.get('accuracy'))}" for name, h in heads.items())
    joint = record.metrics.get("joint_accuracy")
    same = joint == record.metrics.get("accuracy")
    return f"head accuracy: {per}; joint accuracy (all heads right) {fraction(joint)}" + (
        " = decoded-class accuracy" if same else ""
    )


def holdout_facts(record: RunRecord) -> dict[str, Any] | None:
    """What a run with held-out combinations did on them, counted from its test confusion."""
    holdout = record.holdout
    if not holdout:
        return None
    names = record.class_names
    held = [str(c) for c in holdout["classes"]]
    index = [names.index(c) for c in held if c in names]
    confusion = record.metrics.get("confusion") or []
    n = int(record.metrics.get("n") or 0)
    support = [sum(confusion[i]) for i in index] if confusion else []
    predicted_held = sum(row[i] for row in confusion for i in index)
    correct = sum(confusion[i][i] for i in index) if confusion else 0
    spec = {k: v for k, v in holdout.items() if k != "classes"}
    return {
        "classes": held,
        "spec": spec,
        "n": n,
        "tested": sum(1 for s in support if s),
        "on_held": sum(support),
        "correct": correct,
        "predicted_held": predicted_held,
        "accuracy": record.metrics.get("accuracy"),
        "factors": record.factor_accuracy,
        "chance": {k: 1 / len(v) for k, v in record.factor_levels.items() if v},
        "multihead": bool(record.heads),
    }


def holdout_lines(record: RunRecord) -> list[str]:
    """Plain sentences, computed from the numbers, on a run's held-out combinations."""
    facts = holdout_facts(record)
    if facts is None:
        return []
    n, classes = facts["n"], facts["classes"]
    lines = [f"tested on {len(classes)} combinations never seen in training: {', '.join(classes)}"]
    if facts["on_held"] != n:
        lines.append(
            f"{integer(n - facts['on_held'])} of {integer(n)} test images are of classes seen "
            "in training"
        )
    lines.append(
        f"decoded-class accuracy on unseen combinations: {fraction(facts['accuracy'])} "
        f"({integer(facts['correct'])} of {integer(n)} images named exactly)"
    )
    if facts["factors"]:
        per = ", ".join(
            f"{name} {fraction(v)} (chance {fraction(facts['chance'].get(name))})"
            for name, v in facts["factors"].items()
        )
        lines.append(f"per-factor accuracy on unseen combinations: {per}")
    held_share = f" ({percent(facts['predicted_held'] / n)})" if n else ""
    named = f"{integer(facts['predicted_held'])} of {integer(n)} images{held_share}"
    if facts["multihead"]:
        lines.append(
            "a multi-head net names a class by composing its heads' answers, so it can name a "
            f"combination it never saw: it predicted a held-out class for {named}, and "
            f"the right one for {integer(facts['correct'])}"
        )
    else:
        lines.append(
            f"a {len(record.class_names)}-way net has one output per class, and the held-out "
            "classes' outputs were never a training target: it predicted a held-out class for "
            f"{named}; its per-factor accuracy is how much of each unseen combination the "
            "class it picked gets right"
        )
    return lines


TRANSFER_TITLE = "Tested on other data"


def transfer_table(record: RunRecord) -> tuple[list[str], list[list[str]]] | None:
    """Headers and display rows of the "Tested on other data" table: the run's own test split,
    then each evaluation on other data; ``None`` when the run has none."""
    results = record.transfer_results
    if not results:
        return None
    heads = list(record.heads)
    headers = ["data", "images", "copies of training images", "accuracy"]
    if heads:
        headers += ["joint accuracy", *(f"{name}{FACTOR_SUFFIX}" for name in heads)]
    rows = []
    for result in [record.own_result, *results]:
        name = result["name"]
        if result["split"] != "test":
            name += f" ({result['split']} split)"
        row = [name, integer(result["n"]), _copies(result), fraction(result["accuracy"])]
        if heads:
            row.append(fraction(result["joint_accuracy"]))
            row += [fraction(result["heads"].get(h)) for h in heads]
        rows.append(row)
    return headers, rows


def _copies(result: dict[str, Any]) -> str:
    copies, n = result["copies"], result["n"]
    if not isinstance(copies, int):
        return "–"
    if copies == 0:
        return "none"
    return f"{copies:,d} ({percent(copies / n)})" if n else f"{copies:,d}"


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
        if not record.holdout:  # the held-out lines give it, with chance
            lines.append(f"accuracy per factor: {per}")
        if analysis["errors"]:
            worst, count = next(iter(analysis["errors_by_differing_factors"].items()))
            lines.append(
                f"{analysis['errors']} errors; most often only {worst} differs "
                f"({count}, {percent(count / analysis['errors'])} of errors)"
            )
    heads = heads_line(record)
    if heads:
        lines.insert(1, heads)
    check = [record.data_check_line] if record.data_check_line else []
    return lines[:1] + check + holdout_lines(record) + lines[1:]
