"""A study's results: ``results.csv`` (one row per run), ``summary.csv`` and ``summary.json``
(one row per variant, compared with the baseline paired by seed), and the terminal table."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_open, write_json
from cnnlab.runfolder import RunFolder
from cnnlab.study import stats
from cnnlab.study.runs import run_dir
from cnnlab.study.spec import Study, Variant

RESULTS_FILE = "results.csv"
SUMMARY_TABLE = "summary.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
"""The files of a study folder (besides its plan, runs and failures: :mod:`cnnlab.jobs.folder`)."""

RESULT_COLUMNS = (
    "run",
    "variant",
    "seed",
    "state",
    "test_accuracy",
    "test_loss",
    "test_images",
    "epochs",
    "train_seconds",
    "epochs_to_target",
    "folder",
)
SUMMARY_COLUMNS = (
    "variant",
    "overrides",
    "parameters",
    "training_flops_per_image",
    "train_seconds_mean",
    "seeds",
    "test_accuracy_mean",
    "test_accuracy_ci95",
    "test_loss_mean",
    "test_loss_ci95",
    "accuracy_diff_mean",
    "accuracy_diff_ci95",
    "accuracy_noise",
    "within_noise",
    "verdict",
    "loss_diff_mean",
    "loss_diff_ci95",
    "epochs_to_target_mean",
    "target_reached",
)
RULE = (
    "Differences are from the baseline, paired by seed. 'within noise': the 95% Student-t "
    "interval of the paired difference includes 0, or the difference is below 1.96 binomial "
    "standard errors of a difference of two accuracies on the test images of all paired seeds "
    "(sqrt((p_a(1-p_a) + p_b(1-p_b)) / N), N = test images x seeds; conservative, as both "
    "variants score the same images). ± values are 95% confidence half widths over seeds. "
    "Test loss is each run's own training loss, so label smoothing and squared error are not "
    "on the cross-entropy scale."
)


def collect(study: Study, out: Path) -> list[dict[str, Any]]:
    """One row per planned run, from its run folder (empty figures where it is not done)."""
    rows = []
    for run in study.runs:
        folder = RunFolder(run_dir(out, run))
        state = folder.state()
        row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS)
        row.update(run=run.name, variant=run.variant, seed=run.seed, state=state)
        row["folder"] = str(folder.path.relative_to(out))
        history = folder.read_history()
        row["curve_acc"] = [h["test_acc"] for h in history]
        row["curve_loss"] = [h["test_loss"] for h in history]
        if state == "done":
            metrics = folder.read_metrics()
            info = folder.read_info()
            row.update(
                test_accuracy=metrics["accuracy"],
                test_loss=metrics["loss"],
                test_images=metrics["n"],
                epochs=len(history),
                train_seconds=info.train_seconds,
            )
            if study.target is not None:
                row["epochs_to_target"] = stats.epochs_to_target(row["curve_acc"], study.target)
        rows.append(row)
    return rows


@dataclass(frozen=True, kw_only=True)
class StudySummary:
    """What :func:`~cnnlab.study.run_study` found, as ``summary.json`` in the study folder holds
    it: the ``study`` (its spec), the ``target`` accuracy (None: none), the mean number of
    ``test_images`` of a run, the runs planned and done, the ``rule`` the verdicts follow, one
    entry per variant (``variants``, in the study's order: its overrides, parameters, test
    accuracy and loss with their 95% CIs, the difference from the baseline and its verdict,
    epochs to target, per seed) and the learning ``curves`` per variant and seed.
    :meth:`to_dict` is ``summary.json``."""

    study: dict[str, Any] = field(repr=False)
    target: float | None
    test_images: int
    runs_planned: int
    runs_done: int
    rule: str = field(repr=False)
    variants: tuple[dict[str, Any], ...] = field(repr=False)
    curves: dict[str, Any] = field(repr=False)
    _record: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """The record of the fields, in their order (:meth:`from_record` keeps the one read)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        values["variants"] = list(self.variants)
        object.__setattr__(self, "_record", copy.deepcopy(values))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StudySummary:
        """The summary a ``summary.json`` record describes."""
        values = {f.name: record[f.name] for f in fields(cls) if f.init}
        values["variants"] = tuple(record["variants"])
        summary = cls(**values)
        object.__setattr__(summary, "_record", copy.deepcopy(dict(record)))
        return summary

    def to_dict(self) -> dict[str, Any]:
        """The summary, key for key as ``summary.json`` holds it (a copy)."""
        return copy.deepcopy(self._record)

    def variant(self, name: str) -> dict[str, Any]:
        """The entry of the variant ``name``."""
        for entry in self.variants:
            if entry["variant"] == name:
                return entry
        raise KeyError(f"no variant {name!r}; the study has {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        """The variants' names, in the study's order."""
        return [entry["variant"] for entry in self.variants]


def summarise(
    study: Study, rows: list[dict[str, Any]], analysis: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Per-variant statistics (see :mod:`cnnlab.study.stats`) as a JSON-ready dict (the record
    of a :class:`StudySummary`)."""
    done = [r for r in rows if r["state"] == "done"]
    test_images = round(_mean([r["test_images"] for r in done])) if done else 0
    accuracy = _by_seed(study, done, "test_accuracy")
    loss = _by_seed(study, done, "test_loss")
    return {
        "study": study.to_dict(),
        "target": study.target,
        "test_images": test_images,
        "runs_planned": len(rows),
        "runs_done": len(done),
        "rule": RULE,
        "variants": [
            _variant_summary(study, v, rows, analysis.get(v.name, {}), accuracy, loss, test_images)
            for v in study.variants
        ],
        "curves": {
            v.name: {
                str(r["seed"]): {"test_acc": r["curve_acc"], "test_loss": r["curve_loss"]}
                for r in rows
                if r["variant"] == v.name and r["state"] == "done"
            }
            for v in study.variants
        },
    }


def _by_seed(study: Study, done: list[dict[str, Any]], column: str) -> dict[str, dict[int, float]]:
    """``column`` of the runs done, per variant and seed."""
    values: dict[str, dict[int, float]] = {v.name: {} for v in study.variants}
    for r in done:
        values[r["variant"]][r["seed"]] = r[column]
    return values


def _variant_summary(
    study: Study,
    variant: Variant,
    rows: list[dict[str, Any]],
    analysis: dict[str, Any],
    accuracy: dict[str, dict[int, float]],
    loss: dict[str, dict[int, float]],
    test_images: int,
) -> dict[str, Any]:
    """One variant's entry: its figures, and its difference from the baseline (paired by
    seed) where it is not the baseline and pairs of seeds are done."""
    name = variant.name
    mine = [r for r in rows if r["variant"] == name and r["state"] == "done"]
    entry: dict[str, Any] = {
        "variant": name,
        "overrides": variant.overrides,
        "overrides_text": variant.describe(),
        **analysis,
        "seeds_done": len(mine),
        "seeds_planned": len(study.seeds),
        "diverged": sum(r["state"] == "diverged" for r in rows if r["variant"] == name),
        "train_seconds_mean": _mean([r["train_seconds"] for r in mine if r["train_seconds"]]),
        "test_accuracy": _estimate(stats.mean_ci(list(accuracy[name].values()))),
        "test_loss": _estimate(stats.mean_ci(list(loss[name].values()))),
        "accuracy_diff": None,
        "loss_diff": None,
        "within_noise": None,
        "verdict": "baseline" if name == study.baseline else "n/a",
        "epochs_to_target": _target(mine, study.target),
        "per_seed": {
            str(r["seed"]): {"test_accuracy": r["test_accuracy"], "test_loss": r["test_loss"]}
            for r in mine
        },
    }
    if name == study.baseline:
        return entry
    comparison = stats.compare_accuracy(accuracy[name], accuracy[study.baseline], test_images)
    if comparison is not None:
        entry["accuracy_diff"] = {
            **_estimate(comparison.difference),
            "noise": _num(comparison.noise),
            "ci_includes_zero": comparison.ci_includes_zero,
            "below_noise": comparison.below_noise,
        }
        entry["within_noise"] = comparison.within_noise
        entry["verdict"] = comparison.verdict
        entry["loss_diff"] = _estimate(
            stats.mean_ci(stats.paired(loss[name], loss[study.baseline]))
        )
    return entry


def write_results(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """``results.csv``, ``summary.csv`` and ``summary.json`` in ``out``, atomically."""
    _write_csv(out / RESULTS_FILE, RESULT_COLUMNS, rows)
    _write_csv(out / SUMMARY_TABLE, SUMMARY_COLUMNS, [summary_row(v) for v in summary["variants"]])
    write_json(out / SUMMARY_FILE, summary)


def summary_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A variant's summary flattened to the CSV columns."""
    diff = entry["accuracy_diff"] or {}
    loss_diff = entry["loss_diff"] or {}
    target = entry["epochs_to_target"]
    return {
        "variant": entry["variant"],
        "overrides": entry["overrides_text"],
        "parameters": entry.get("parameters"),
        "training_flops_per_image": entry.get("training_flops_per_image"),
        "train_seconds_mean": entry["train_seconds_mean"],
        "seeds": entry["seeds_done"],
        "test_accuracy_mean": entry["test_accuracy"]["mean"],
        "test_accuracy_ci95": entry["test_accuracy"]["ci95"],
        "test_loss_mean": entry["test_loss"]["mean"],
        "test_loss_ci95": entry["test_loss"]["ci95"],
        "accuracy_diff_mean": diff.get("mean"),
        "accuracy_diff_ci95": diff.get("ci95"),
        "accuracy_noise": diff.get("noise"),
        "within_noise": entry["within_noise"],
        "verdict": entry["verdict"],
        "loss_diff_mean": loss_diff.get("mean"),
        "loss_diff_ci95": loss_diff.get("ci95"),
        "epochs_to_target_mean": target["mean"] if target else None,
        "target_reached": target_text(target),
    }


def target_text(target: dict[str, Any] | None) -> str:
    """``2.3 (3/3)``, ``not reached (0/3)`` or empty without a target."""
    if not target or not target["of"]:
        return ""
    if target["mean"] is None:
        return f"not reached (0/{target['of']})"
    return f"{target['mean']:.1f} ({target['reached']}/{target['of']})"


def summary_table(summary: dict[str, Any]) -> str:
    """The per-variant table for the terminal."""
    head = (
        "variant",
        "params",
        "MFLOP/img",
        "s/run",
        "seeds",
        "test accuracy",
        "diff vs baseline",
        "verdict",
        "test loss",
        "epochs to target",
    )
    lines = []
    for e in summary["variants"]:
        diff = e["accuracy_diff"]
        lines.append(
            (
                e["variant"],
                f"{e['parameters']:,d}" if e.get("parameters") else "",
                f"{e['training_flops_per_image'] / 1e6:.1f}"
                if e.get("training_flops_per_image")
                else "",
                seconds_text(e["train_seconds_mean"]),
                seeds_text(e),
                pm(e["test_accuracy"], 4),
                pm(diff, 4, sign=True) if diff else "",
                e["verdict"],
                pm(e["test_loss"], 4),
                target_text(e["epochs_to_target"]),
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    numeric = {1, 2, 3, 5, 6, 8}

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in numeric else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = textwrap.wrap(summary["rule"], 100)
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, lines), *rule])


def seeds_text(entry: dict[str, Any]) -> str:
    """Seeds done, and how many diverged: ``3`` or ``2 (1 diverged)``."""
    text = str(entry["seeds_done"])
    return text + (f" ({entry['diverged']} diverged)" if entry["diverged"] else "")


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"


def pm(estimate: dict[str, Any] | None, digits: int, sign: bool = False) -> str:
    """``0.9851 ± 0.0012`` (just the mean with one seed; empty without a value)."""
    if not estimate or estimate.get("mean") is None:
        return ""
    mean = f"{estimate['mean']:+.{digits}f}" if sign else f"{estimate['mean']:.{digits}f}"
    if estimate.get("ci95") is None:
        return mean
    return f"{mean} ± {estimate['ci95']:.{digits}f}"


# -- helpers ------------------------------------------------------------------------------------


def _estimate(estimate: stats.Estimate) -> dict[str, Any]:
    return {"mean": _num(estimate.mean), "ci95": _num(estimate.half_width), "n": estimate.n}


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _target(rows: list[dict[str, Any]], target: float | None) -> dict[str, Any] | None:
    if target is None:
        return None
    reached = [r["epochs_to_target"] for r in rows if r["epochs_to_target"] is not None]
    return {"target": target, "mean": _mean(reached), "reached": len(reached), "of": len(rows)}


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    with atomic_open(path) as handle:
        handle.write(buffer.getvalue())


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_summary(study_dir: Path) -> dict[str, Any]:
    """A study folder's summary; a one-line error when the study has none or it is unreadable."""
    path = Path(study_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CnnlabError(f"{study_dir}: no {SUMMARY_FILE}; run the study first") from None
    except (OSError, ValueError) as exc:
        raise CnnlabError(f"{path}: not valid JSON ({exc})") from None
