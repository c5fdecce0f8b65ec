"""A run's "Where it fails" part, prepared: the top-loss gallery with heatmaps, the most confused
pairs, the classes with the worst recall and the calibration, from ``errors-test/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.report import figures
from cnnlab.report.records import RunRecord
from cnnlab.report.render import Figure, Table, figure, table


@dataclass(frozen=True)
class ClassifierErrors:
    """One classifier's mistakes (the model's, or one head's)."""

    title: str | None
    summary: str
    top_losses: Figure | None
    pairs: Table | None
    pairs_figure: Figure | None
    worst: Table | None


@dataclass(frozen=True)
class ErrorsView:
    summary: str
    heatmap: str | None
    heatmap_note: str | None
    sources: str
    calibration: Figure
    calibration_table: Table
    parts: list[ClassifierErrors]
    table_path: str


def errors_view(record: RunRecord, fig_dir: Path, stem: str) -> ErrorsView | None:
    """The part, or None for a run evaluated before error analyses existed."""
    errors = record.errors
    if not errors:
        return None
    folder = Path(errors["folder"])
    heads = errors.get("heads") or {}
    parts = (
        [_classifier(f"head {name}", head, folder, record.label) for name, head in heads.items()]
        if heads
        else [_classifier(None, errors, folder, record.label)]
    )
    curves = [("joint (all heads)" if heads else "model", errors["calibration"])]
    curves += [(f"head {name}", head["calibration"]) for name, head in heads.items()]
    path = figures.plot_reliability(curves, fig_dir / f"{stem}-reliability.png")
    return ErrorsView(
        summary=_wrong(errors) + (" (an image is right when every head is)" if heads else ""),
        heatmap=errors.get("heatmap"),
        heatmap_note=errors.get("heatmap_note"),
        sources=errors.get("sources", ""),
        calibration=figure(path, f"Reliability diagram of {record.label}"),
        calibration_table=_calibration_table(curves),
        parts=parts,
        table_path=str(folder / errors["table"]),
    )


def _classifier(
    title: str | None, analysis: dict[str, Any], folder: Path, label: str
) -> ClassifierErrors:
    pictures = analysis.get("pictures") or {}
    about = f"{label}, {title}" if title else label

    def picture(kind: str, what: str) -> Figure | None:
        name = pictures.get(kind)
        return figure(folder / name, f"{what} of {about}") if name else None

    pairs = analysis["confused_pairs"]
    worst = analysis["worst_recall"]
    return ClassifierErrors(
        title=title,
        summary=_wrong(analysis),
        top_losses=picture("top_losses", "Highest-loss images"),
        pairs=_pairs_table(pairs) if pairs else None,
        pairs_figure=picture("confused_pairs", "Most confused pairs"),
        worst=table(
            ("class", "recall", "test images", "most often taken for"),
            [
                (
                    w["class"],
                    f"{w['recall']:.4f}",
                    w["support"],
                    f"{w['taken_for']} ({w['taken_for_count']})" if w["taken_for"] else "—",
                )
                for w in worst
            ],
            numeric=(1, 2),
        )
        if worst
        else None,
    )


def _pairs_table(pairs: list[dict[str, Any]]) -> Table:
    rows = [
        (p["true"], p["predicted"], p["count"], f"{100 * p['share_of_true']:.1f}%") for p in pairs
    ]
    return table(("true", "predicted as", "images", "share of the true class"), rows, (2, 3))


def _calibration_table(curves: list[tuple[str, dict[str, Any]]]) -> Table:
    def mean(part: dict[str, Any]) -> str:
        return "—" if part["mean"] is None else f"{part['mean']:.3f}"

    return table(
        ("", "ECE", "MCE", "mean confidence", "accuracy", "confidence when right", "when wrong"),
        [
            (
                name,
                f"{c['ece']:.4f}",
                f"{c['mce']:.4f}",
                "—" if c["mean_confidence"] is None else f"{c['mean_confidence']:.4f}",
                "—" if c["accuracy_overall"] is None else f"{c['accuracy_overall']:.4f}",
                mean(c["right"]),
                mean(c["wrong"]),
            )
            for name, c in curves
        ],
        numeric=range(1, 7),
    )


def _wrong(analysis: dict[str, Any]) -> str:
    n, wrong = analysis["images"], analysis["errors"]
    share = 100 * wrong / n if n else 0.0
    return f"{wrong:,} of {n:,} test images are wrong ({share:.2f}%)"
