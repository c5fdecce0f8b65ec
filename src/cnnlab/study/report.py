"""The study report: ``DIR/report.html``, and :func:`study_view` for embedding in other reports.

Everything comes from ``DIR/summary.json``: the per-variant table with its noise verdicts, the
differences from the baseline with their intervals, and each variant's test accuracy and loss
per epoch (mean over seeds, with the seeds' min-max band). Figures use the report's style
(:mod:`cnnlab.report.figures`); the page is ``templates/study.html.j2`` over :class:`StudyView`
(:mod:`cnnlab.report.render`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnnlab.report import figures
from cnnlab.report.render import Cell, Table, figure, render, table, write_text
from cnnlab.report.render import Figure as PageFigure
from cnnlab.study.results import (
    REPORT_FILE,
    pm,
    read_summary,
    seconds_text,
    seeds_text,
    target_text,
)

VERDICT_CLASS = {
    "better": "verdict better",
    "worse": "verdict worse",
    "within noise": "verdict noise",
    "baseline": "verdict baseline",
}
"""The CSS classes (``static/report.css``) of each verdict in the table."""


@dataclass(frozen=True)
class StudyMeta:
    """The settings line under a study's heading."""

    base: str
    settings: str
    seeds: str
    test_images: str
    runs_done: int
    runs_planned: int
    target: str | None
    quick: bool


@dataclass(frozen=True)
class StudyView:
    """What a study's section shows (``templates/study_section.html.j2``): ``anchor`` is its
    id, ``title`` its name in a report's contents."""

    anchor: str
    title: str
    name: str
    description: str
    meta: StudyMeta
    table: Table
    rule: str
    differences: PageFigure | None
    curves: tuple[PageFigure, ...]
    per_seed: Table


def write_report(study_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the standalone page (``DIR/report.html``); figures are kept in ``DIR/figures``."""
    study_dir = Path(study_dir)
    out = Path(out) if out is not None else study_dir / REPORT_FILE
    study = study_view(study_dir, study_dir / "figures")
    write_text(out, render("study.html.j2", study=study, folder=str(study_dir)), "study report")
    return out


def study_view(study_dir: str | Path, fig_dir: str | Path) -> StudyView:
    """The study's section from ``DIR/summary.json`` (figures drawn into ``fig_dir``, to be
    embedded)."""
    study_dir, fig_dir = Path(study_dir), Path(fig_dir)
    summary = _summary(study_dir)
    study = summary["study"]
    fig_dir.mkdir(parents=True, exist_ok=True)
    stem = f"study-{study['name']}"
    variants = summary["variants"]
    differences = None
    if any(v["accuracy_diff"] for v in variants):
        path = plot_differences(variants, study["baseline"], fig_dir / f"{stem}-differences.png")
        differences = figure(path, f"differences from {study['baseline']}")
    curves = {k: v for k, v in summary["curves"].items() if v}
    paths = [
        plot_study_curves(curves, study["baseline"], m, fig_dir / f"{stem}-{m}.png")
        for m in (("test_acc", "test_loss") if curves else ())
    ]
    return StudyView(
        anchor=stem,
        title=f"Variation study: {study['name']}",
        name=str(study["name"]),
        description=str(study.get("description") or ""),
        meta=_meta(summary),
        table=_summary_table(summary),
        rule=str(summary["rule"]),
        differences=differences,
        curves=tuple(figure(p, f"{p.stem.rsplit('-', 1)[-1]} per epoch") for p in paths),
        per_seed=_per_seed(summary),
    )


# -- figures ------------------------------------------------------------------------------------


def plot_study_curves(
    curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    baseline: str,
    metric: str,
    path: Path,
) -> Path:
    """``metric`` (``test_acc`` or ``test_loss``) per epoch for every variant: the mean over
    seeds and a min-max band."""
    fig = Figure(figsize=(7.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    others = [v for v in curves if v != baseline]
    colours = dict(zip(others, figures._palette(len(others)), strict=True))
    colours[baseline] = (0.0, 0.0, 0.0, 1.0)
    order = [baseline, *others] if baseline in curves else others
    for z, variant in enumerate(order):
        seeds = [list(s[metric]) for s in curves[variant].values()]
        epochs = min(len(s) for s in seeds)
        if epochs == 0:
            continue
        values = np.array([s[:epochs] for s in seeds])
        x = np.arange(1, epochs + 1)
        ax.plot(
            x,
            values.mean(axis=0),
            color=colours[variant],
            lw=2.4 if variant == baseline else 1.4,
            marker="o" if epochs <= 30 else None,
            markersize=3.5,
            label=variant,
            zorder=len(order) + 2 - z,  # the baseline on top
        )
        if len(seeds) > 1:
            ax.fill_between(
                x, values.min(axis=0), values.max(axis=0), color=colours[variant], alpha=0.12
            )
    if metric == "test_acc":
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_ylabel("test accuracy")
    else:
        ax.set_ylabel("test loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_title(f"{'Test accuracy' if metric == 'test_acc' else 'Test loss'} per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return figures._save(fig, path)


def plot_differences(variants: Sequence[Mapping[str, Any]], baseline: str, path: Path) -> Path:
    """Each variant's test accuracy minus the baseline's (percentage points): the mean, its
    95% interval (bar) and the binomial noise band (grey)."""
    rows = [v for v in variants if v["accuracy_diff"]]
    fig = Figure(figsize=(7.4, 0.9 + 0.32 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    for y, entry in enumerate(reversed(rows)):
        diff = entry["accuracy_diff"]
        mean, half, noise = (100 * (diff[k] or 0.0) for k in ("mean", "ci95", "noise"))
        ax.barh(y, 2 * noise, left=-noise, height=0.6, color="0.88", zorder=0)
        colour = {"better": "#1a7f37", "worse": "#b00020"}.get(entry["verdict"], "0.45")
        if diff["ci95"] is not None and math.isfinite(half):
            ax.errorbar(mean, y, xerr=half, fmt="none", ecolor=colour, capsize=3, lw=1.4)
        ax.plot(mean, y, "o", color=colour, ms=5)
    ax.axvline(0, color="0.2", lw=1)
    ax.set_yticks(range(len(rows)), [r["variant"] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel(f"test accuracy minus {baseline} (percentage points)")
    ax.set_title("Difference from the baseline, paired by seed (bar: 95% CI; grey: noise)")
    ax.title.set_fontsize(9)
    ax.grid(axis="x", alpha=0.3)
    return figures._save(fig, path)


# -- what the section shows ---------------------------------------------------------------------


def _summary(study_dir: Path) -> dict[str, Any]:
    return read_summary(study_dir)


def _meta(summary: dict[str, Any]) -> StudyMeta:
    study = summary["study"]
    target = summary.get("target")
    return StudyMeta(
        base=str(study["base"]),
        settings="; ".join(f"{k}={v}" for k, v in study["set"].items()) or "none",
        seeds=", ".join(str(s) for s in study["seeds"]),
        test_images=f"{summary['test_images']:,d}",
        runs_done=summary["runs_done"],
        runs_planned=summary["runs_planned"],
        target=None if target is None else f"{target:.4f}",
        quick=bool(study.get("quick")),
    )


def _summary_table(summary: dict[str, Any]) -> Table:
    headers = (
        "variant",
        "changes from the base config",
        "parameters",
        "training MFLOP / image",
        "train s / run",
        "seeds",
        "test accuracy",
        "Δ accuracy",
        "noise ±",
        "verdict",
        "test loss",
        "Δ loss",
        "epochs to target",
    )
    rows = []
    for e in summary["variants"]:
        diff = e["accuracy_diff"]
        flops = e.get("training_flops_per_image")
        seconds = e["train_seconds_mean"]
        noise = diff["noise"] if diff else None
        verdict = e["verdict"]
        rows.append(
            [
                Cell(e["variant"], header=True),
                e["overrides_text"],
                f"{e['parameters']:,d}" if e.get("parameters") else "",
                f"{flops / 1e6:,.1f}" if flops else "",
                seconds_text(seconds),
                seeds_text(e),
                pm(e["test_accuracy"], 4),
                pm(diff, 4, sign=True) if diff else "",
                f"{noise:.4f}" if noise is not None else "",
                Cell(verdict, span=VERDICT_CLASS.get(verdict, "verdict")),
                pm(e["test_loss"], 4),
                pm(e["loss_diff"], 4, sign=True) if e["loss_diff"] else "",
                target_text(e["epochs_to_target"]),
            ]
        )
    return table(headers, rows, numeric=(2, 3, 4, 5, 6, 7, 8, 10, 11), cls="comparison")


def _per_seed(summary: dict[str, Any]) -> Table:
    """Every run's test accuracy: one row per variant, one column per seed."""
    seeds = [str(s) for s in summary["study"]["seeds"]]
    rows = []
    for e in summary["variants"]:
        cells: list[Any] = [Cell(e["variant"], header=True)]
        for seed in seeds:
            result = e["per_seed"].get(seed)
            cells.append(f"{result['test_accuracy']:.4f}" if result else "–")
        rows.append(cells)
    headers = ("variant", *(f"seed {s}" for s in seeds))
    return table(headers, rows, numeric=range(1, len(headers)))
