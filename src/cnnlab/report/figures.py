"""Report figures: learning curves, confusion matrices (small and factorised), per-class F1,
and a multi-head net's per-head confusion matrices and learning curves.

Every function draws on its own matplotlib ``Figure`` (Agg renderer, no pyplot state, so it is
safe without a display), writes the PNG atomically and returns the PNG's path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, is_color_like, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    PercentFormatter,
)

from cnnlab.fileio import atomic_path

DPI = 120
"""Pixels per inch of every PNG (the report shows them at 96 CSS px per inch)."""

MIN_PT = 8.5
"""The smallest text in any figure, in points: the report shows figures at 96 CSS px per inch,
so 8.5 pt is 11.3 px on screen (``cnnlab.visualize.figures`` keeps the same floor)."""

MAX_WIDTH_IN = 13.5
"""The widest figure, in inches: 1,296 CSS px fits the report's column in a 1,400 px window,
so the browser never shrinks a figure (and its text with it)."""

SMALL_K = 30
"""Up to this many classes a confusion matrix is drawn cell by cell, with numbers."""

CURVE_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("train_acc", "test_acc"),
    "loss": ("train_loss", "test_loss"),
}

_SHORT = {"length": "len", "width": "wid", "angle": "ang", "color": "col", "colour": "col"}


def _save(fig: Figure, path: Path, svg: bool = False) -> Path:
    """Write ``fig`` as PNG at ``path`` (and as SVG beside it), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    if svg:
        with atomic_path(path.with_suffix(".svg")) as tmp:
            fig.savefig(tmp, format="svg", metadata={"Date": None})
    return path


# -- learning curves ----------------------------------------------------------------------------


def plot_learning_curve(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    metric: str,
    path: Path,
    *,
    svg: bool = True,
) -> Path:
    """Train (dashed), validation (dotted, where a run has it) and test (solid) ``metric`` per
    epoch, one colour per run.

    ``histories`` maps a run label to its ``history.csv`` rows; ``metric`` is ``accuracy`` or
    ``loss``. The loss axis turns logarithmic when the loss spans more than a factor of 20.
    """
    if metric not in CURVE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(CURVE_METRICS)}, got {metric!r}")
    train_key, test_key = CURVE_METRICS[metric]
    val_key = train_key.replace("train_", "val_")
    with_val = any(history and val_key in history[0] for history in histories.values())
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    colours = _palette(len(histories))
    values: list[float] = []
    handles: list[Line2D] = []
    for (label, history), colour in zip(histories.items(), colours, strict=True):
        epochs = [row["epoch"] for row in history]
        marker = "o" if len(epochs) <= 30 else None
        for key, style in ((train_key, "--"), (val_key, ":"), (test_key, "-")):
            if not history or key not in history[0]:
                continue
            ys = [row[key] for row in history]
            values += ys
            ax.plot(epochs, ys, style, color=colour, marker=marker, markersize=3.5, lw=1.6)
        handles.append(Line2D([], [], color=colour, lw=2, label=label))
    handles += [
        Line2D([], [], color="0.35", ls="-", label="test"),
        *([Line2D([], [], color="0.35", ls=":", label="validation")] if with_val else []),
        Line2D([], [], color="0.35", ls="--", label="train"),
    ]
    if len(histories) == 1:
        handles = handles[1:]
    positive = [v for v in values if v > 0]
    if metric == "loss" and positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
    else:
        ax.set_ylabel(metric)
    if metric == "accuracy":
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if not values:
        ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=ax.transAxes)
    _epoch_axis(ax, [row["epoch"] for history in histories.values() for row in history])
    ax.set_title(f"{metric.capitalize()} per epoch")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=9, loc="best", framealpha=0.85)
    return _save(fig, path, svg=svg)


def _epoch_axis(ax: Axes, epochs: Sequence[float]) -> None:
    """Whole epochs along x; a single epoch is one tick (not 0.945, 0.960, ...)."""
    ax.set_xlabel("epoch")
    if len(set(epochs)) == 1:
        ax.set_xticks([epochs[0]])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    out_dir: Path,
    stem: str = "curves",
    *,
    svg: bool = True,
) -> list[Path]:
    """One figure per metric (accuracy, loss): ``out_dir/<stem>-accuracy.png`` and so on."""
    return [
        plot_learning_curve(histories, metric, Path(out_dir) / f"{stem}-{metric}.png", svg=svg)
        for metric in CURVE_METRICS
    ]


# -- small confusion matrix ---------------------------------------------------------------------


def plot_confusion(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: Path,
    *,
    title: str | None = None,
) -> Path:
    """Counts and row-normalised (% of each true class) side by side, numbers in the cells.

    Meant for up to :data:`SMALL_K` classes; blank cells are zero. Both panels fit
    :data:`MAX_WIDTH_IN`; where a cell is too small for its number at :data:`MIN_PT` (many
    classes, large counts) the cell shows only its colour, and the panel's title says so.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    k = counts.shape[0]
    share = _row_normalised(counts)
    cell = min(0.42, (MAX_WIDTH_IN - 3.8) / (2 * k))  # inches: both panels within the width
    side = max(3.6, cell * k + 1.2)
    cell_pt = cell * 72
    font = max(MIN_PT, min(10.0, 0.36 * cell_pt))
    name_font = max(MIN_PT, min(10.0, 0.6 * cell_pt))
    longest = max(len(n) for n in class_names)
    rotate = 90 if longest > 2 else 0
    labels_in = longest * name_font / 72 * 0.6 if rotate else 0.0  # height of rotated names
    height = side - 0.2 + labels_in + (0.4 if title else 0.0)
    fig = Figure(figsize=(min(2 * side + 1.4, MAX_WIDTH_IN), height), layout="constrained")
    panels = (
        (counts, "counts", "Blues", lambda v, c: str(c) if c else ""),
        (share, "row-normalised (% of true class)", "Greens", _percent_text),
    )
    for i, (data, name, cmap, text) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        vmax = max(float(data.max()), 1e-9)
        image = ax.imshow(data, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
        hidden = False
        for (r, c), value in np.ndenumerate(data):
            label = text(value, counts[r, c])
            if label and _text_width_pt(label, font) > 0.95 * cell_pt:
                hidden = True
            elif label:
                colour = "white" if value > 0.55 * vmax else "black"
                ax.text(c, r, label, ha="center", va="center", fontsize=font, color=colour)
        _class_ticks(ax, class_names, name_font, rotate)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name + ("\n(numbers where they fit)" if hidden else ""), fontsize=10)
        bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
        if i == 1:
            bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _text_width_pt(text: str, size: float) -> float:
    """About how wide ``text`` is at ``size`` points (DejaVu Sans: digits 0.64 em)."""
    return 0.64 * size * len(text)


def _percent_text(value: float, count: int) -> str:
    if not count:
        return ""
    return f"{100 * value:.0f}" if value >= 0.005 else "<1"


def _row_normalised(counts: np.ndarray) -> np.ndarray:
    rows = counts.sum(axis=1, keepdims=True)
    out = np.zeros(counts.shape, dtype=np.float64)
    np.divide(counts, rows, out=out, where=rows > 0)
    return out


def _class_ticks(ax: Axes, names: Sequence[str], size: float, rotate: int) -> None:
    ticks = range(len(names))
    ax.set_xticks(ticks, list(names), fontsize=size, rotation=rotate)
    ax.set_yticks(ticks, list(names), fontsize=size)


# -- factorised confusion matrix ----------------------------------------------------------------


class _Layout:
    """How factorised classes group: outer blocks, a tick factor, inner levels within a tick.

    The tick factor is the factor with the most levels; factors before it form the outer
    blocks (e.g. ``len 7 / wid 1``), factors after it vary within one tick (e.g. colour).
    """

    def __init__(self, factor_levels: Mapping[str, Sequence[Any]]) -> None:
        self.names = list(factor_levels)
        self.levels = [[str(v) for v in factor_levels[n]] for n in self.names]
        sizes = [len(v) for v in self.levels]
        self.tick = int(np.argmax(sizes))
        self.k = math.prod(sizes)
        self.strides = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
        self.block = self.strides[self.tick] * sizes[self.tick]
        self.group = self.strides[self.tick]
        self.n_outer = self.k // self.block

    @property
    def tick_name(self) -> str:
        return self.names[self.tick]

    @property
    def tick_levels(self) -> list[str]:
        return self.levels[self.tick]

    def outer_label(self, index: int) -> str:
        """``len 7 / wid 1`` for outer block ``index``."""
        parts = []
        for i in range(self.tick):
            level = (index * self.block // self.strides[i]) % len(self.levels[i])
            parts.append(f"{_SHORT.get(self.names[i], self.names[i][:3])} {self.levels[i][level]}")
        return " / ".join(parts)

    def inner_labels(self) -> list[str]:
        """The labels of the classes within one tick group (e.g. ``red``, ``blue``)."""
        inner = range(self.tick + 1, len(self.names))
        labels = []
        for j in range(self.group):
            parts = [self.levels[i][(j // self.strides[i]) % len(self.levels[i])] for i in inner]
            labels.append(" / ".join(parts))
        return labels


def plot_factor_confusion(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    factor_levels: Mapping[str, Sequence[Any]],
    path: Path,
    *,
    factor_analysis: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Path:
    """A K x K confusion matrix of factorised classes (e.g. Lines' 96), readable without numbers.

    Classes stay in factor order (the class index is mixed-radix over ``factor_levels``); lines
    separate the factor blocks, the axes name the outer blocks and the tick factor's levels,
    and colour is the count on a log scale (white: zero). With ``factor_analysis`` (from
    ``metrics-test.json``) each factor's own confusion matrix is drawn below.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    layout = _Layout(factor_levels)
    if counts.shape != (layout.k, layout.k):
        raise ValueError(f"confusion is {counts.shape}, factor levels give {layout.k} classes")
    factors = list((factor_analysis or {}).get("factors", {}).items())
    fig = Figure(figsize=(12.0, 15.4 if factors else 10.4), layout="constrained")
    if factors:
        top, bottom = fig.subfigures(2, 1, height_ratios=[10.4, 5.0])
    else:
        top, bottom = fig, None
    ax = top.add_subplot()
    _draw_factor_matrix(ax, counts, layout)
    if title:
        fig.suptitle(title, fontsize=13)
    if bottom is not None:
        widths = [max(len(f["levels"]), 3) for _, f in factors]
        axes = bottom.subplots(1, len(factors), width_ratios=widths)
        for axis, (name, factor) in zip(np.atleast_1d(axes), factors, strict=True):
            _draw_factor_panel(axis, name, factor)
    return _save(fig, path)


def _draw_factor_matrix(ax: Axes, counts: np.ndarray, layout: _Layout) -> None:
    masked = np.ma.masked_equal(counts, 0)
    cmap = _colormap("viridis")
    norm = LogNorm(vmin=1, vmax=max(int(counts.max()), 2))
    image = ax.imshow(masked, cmap=cmap, norm=norm, interpolation="nearest")
    bar = ax.figure.colorbar(image, ax=ax, shrink=0.5, pad=0.015, aspect=30)
    bar.set_label("count (log scale; white: 0)")
    bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    k = layout.k
    # separators: tick-factor groups thin and grey, outer factors thicker the further out
    boundaries = [(layout.group, 0.3, "0.85")] if layout.group > 1 else []
    boundaries += [(layout.strides[i], 1.6 - 0.5 * i, "black") for i in range(layout.tick)][::-1]
    for step, width, colour in boundaries:
        for pos in range(step, k, step):
            ax.axhline(pos - 0.5, color=colour, lw=max(width, 0.6), zorder=3)
            ax.axvline(pos - 0.5, color=colour, lw=max(width, 0.6), zorder=3)
    # tick factor levels at the centre of their groups, repeated in every outer block
    centres = [
        o * layout.block + j * layout.group + (layout.group - 1) / 2
        for o in range(layout.n_outer)
        for j in range(len(layout.tick_levels))
    ]
    labels = layout.tick_levels * layout.n_outer
    every = max(1, math.ceil(len(centres) / 48))  # 48 names at MIN_PT fill the side
    ax.set_xticks(centres[::every], labels[::every], fontsize=MIN_PT, rotation=90)
    ax.set_yticks(centres[::every], labels[::every], fontsize=MIN_PT)
    ax.tick_params(length=2, pad=1.5)
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_title(f"Confusion matrix, {k} classes in factor order", fontsize=11)
    _label_factor_axes(ax, layout)


def _label_factor_axes(ax: Axes, layout: _Layout) -> None:
    """Axis titles, and the outer blocks' names on secondary axes outside the tick labels."""
    tick = layout.tick_name
    inner = layout.inner_labels()
    within = f"; within each {tick}: {', '.join(inner)}" if 1 < len(inner) <= 8 else ""
    xlabel = f"predicted class ({tick} ticks{within})"
    ylabel = f"true class ({tick} ticks)"
    if layout.n_outer == 1:
        ax.set_xlabel(xlabel, labelpad=4)
        ax.set_ylabel(ylabel, labelpad=4)
        return
    centres = [(o + 0.5) * layout.block - 0.5 for o in range(layout.n_outer)]
    names = [layout.outer_label(o) for o in range(layout.n_outer)]
    bottom = ax.secondary_xaxis("bottom")
    bottom.set_xticks(centres, names)
    bottom.set_xlabel(xlabel, labelpad=6)
    left = ax.secondary_yaxis("left")
    left.set_yticks(centres, names)
    left.set_ylabel(ylabel, labelpad=6)
    for secondary, where in ((bottom, "bottom"), (left, "left")):
        secondary.spines[where].set_position(("outward", 26))
        secondary.spines[where].set_visible(False)
        secondary.tick_params(length=0, labelsize=9.5)


def _draw_factor_panel(
    ax: Axes, name: str, factor: Mapping[str, Any], *, large: bool = False
) -> None:
    counts = np.asarray(factor["confusion"], dtype=np.int64)
    share = _row_normalised(counts)
    levels = [str(v) for v in factor["levels"]]
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    scale = 1.15 if large else 1.0
    font = max(MIN_PT, scale * (10.0 if len(levels) <= 4 else MIN_PT))
    for (r, c), count in np.ndenumerate(counts):
        if count:
            colour = "white" if share[r, c] > 0.55 else "black"
            ax.text(c, r, str(count), ha="center", va="center", fontsize=font, color=colour)
    ticks = range(len(levels))
    rotate = 90 if len(levels) > 4 else 0
    ax.set_xticks(ticks, levels, fontsize=9 * scale, rotation=rotate)
    ax.set_yticks(ticks, levels, fontsize=9 * scale)
    ax.tick_params(length=2, pad=1)
    ax.set_xlabel("predicted", fontsize=9.5 * scale)
    ax.set_ylabel("true", fontsize=9.5 * scale)
    ax.set_title(f"{name}: accuracy {factor['accuracy']:.1%}", fontsize=10 * scale)


# -- multi-head ---------------------------------------------------------------------------------


def plot_head_confusions(heads: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Each head's own confusion matrix side by side (e.g. 2x2, 2x2, 2x2, 12x12).

    ``heads`` is ``metrics-test.json``'s ``heads``: per head its ``levels``, ``confusion`` and
    ``accuracy``. Numbers are counts; colour is the share of the true level.
    """
    items = list(heads.items())
    if not items:
        raise ValueError("no heads to draw")
    # a small matrix gets half the side of a 12x12 one: readable, and the row stays short
    widths = [max(1.0, len(h["levels"]) / 6.0) for _, h in items]
    width = min(1.0 + 2.6 * sum(widths), MAX_WIDTH_IN)
    fig = Figure(figsize=(width, 5.4), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.1)  # the turned level names need a margin below
    axes = fig.subplots(1, len(items), width_ratios=widths)
    for ax, (name, head) in zip(np.atleast_1d(axes), items, strict=True):
        _draw_factor_panel(ax, name, head, large=True)
    fig.suptitle(
        "Confusion matrix of each head (numbers: counts; colour: share of the true level)",
        fontsize=11,
    )
    return _save(fig, path)


def plot_head_curves(
    history: Sequence[Mapping[str, float]], heads: Sequence[str], path: Path, *, svg: bool = True
) -> Path:
    """Per-head accuracy (with the joint accuracy) and loss per epoch, test solid, train dashed.

    ``history`` holds ``history.csv`` rows with ``train_<head>_acc``, ``test_<head>_loss`` and
    so on for every head in ``heads``; ``train_acc``/``test_acc`` are the joint accuracy.
    """
    fig = Figure(figsize=(11.2, 3.9), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    marker = "o" if len(epochs) <= 30 else None
    colours = _palette(len(heads))
    losses: list[float] = []
    handles: list[Line2D] = []

    def draw(ax: Axes, key: str, colour: Any, lw: float = 1.6) -> list[float]:
        values = []
        for prefix, style in (("train_", "--"), ("test_", "-")):
            column = prefix + key
            if history and column in history[0]:
                ys = [row[column] for row in history]
                values += ys
                ax.plot(epochs, ys, style, color=colour, marker=marker, markersize=3.5, lw=lw)
        return values

    for name, colour in zip(heads, colours, strict=True):
        draw(acc_ax, f"{name}_acc", colour)
        losses += draw(loss_ax, f"{name}_loss", colour)
        handles.append(Line2D([], [], color=colour, lw=2, label=name))
    if history and "test_acc" in history[0]:
        draw(acc_ax, "acc", "black", lw=2.2)
        handles.append(Line2D([], [], color="black", lw=2.2, label="joint (all heads right)"))
    handles += [
        Line2D([], [], color="0.35", ls="-", label="test"),
        Line2D([], [], color="0.35", ls="--", label="train"),
    ]
    acc_ax.set_ylabel("accuracy")
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    acc_ax.set_title("Accuracy per head per epoch")
    positive = [v for v in losses if v > 0]
    if positive and max(positive) / min(positive) > 20:
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("loss (log scale)")
    else:
        loss_ax.set_ylabel("loss")
    loss_ax.set_title("Loss per head per epoch")
    for ax in (acc_ax, loss_ax):
        _epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
        if not epochs:
            ax.text(
                0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=ax.transAxes
            )
    fig.legend(handles=handles, loc="outside right center", fontsize=9, framealpha=0.85)
    return _save(fig, path, svg=svg)


# -- per-class F1 -------------------------------------------------------------------------------


def plot_per_class_f1(
    f1: Sequence[float],
    class_names: Sequence[str],
    path: Path,
    *,
    factor_levels: Mapping[str, Sequence[Any]] | None = None,
    macro: float | None = None,
) -> Path:
    """Per-class F1 as bars; ``macro`` is the macro F1 shown (default: the mean of ``f1``; pass
    the metrics' own, which skips classes absent from the test split).

    With ``factor_levels`` (and at most 12 outer blocks), one panel per outer block with the
    tick factor along x and the inner levels as neighbouring bars; otherwise one horizontal
    bar per class, named.
    """
    values = np.asarray(f1, dtype=np.float64)
    mean = float(values.mean()) if macro is None else macro
    if factor_levels:
        layout = _Layout(factor_levels)
        if layout.k == len(values) and layout.n_outer <= 12 and layout.group <= 6:
            return _save(_grouped_f1(values, layout, mean), path)
    return _save(_horizontal_f1(values, class_names, mean), path)


def _horizontal_f1(values: np.ndarray, names: Sequence[str], mean: float) -> Figure:
    k = len(values)
    fig = Figure(figsize=(7.0, 0.24 * k + 1.3), layout="constrained")
    ax = fig.add_subplot()
    rows = np.arange(k)
    ax.barh(rows, values, color=_colour_by_value(values), edgecolor="0.3", lw=0.3)
    for row, value in zip(rows, values, strict=True):
        ax.text(1.02, row, f"{value:.3f}", va="center", fontsize=MIN_PT)
    ax.set_yticks(rows, list(names), fontsize=MIN_PT if k > 30 else 9)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlim(0, 1.12)
    ax.axvline(mean, color="0.3", ls="--", lw=1)
    ax.set_xlabel(f"F1 (dashed: macro mean {mean:.3f})")
    ax.set_title("Per-class F1")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _grouped_f1(values: np.ndarray, layout: _Layout, mean: float) -> Figure:
    cols = 1 if layout.n_outer == 1 else 2
    rows = math.ceil(layout.n_outer / cols)
    fig = Figure(figsize=(6.2 * cols, 2.7 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    inner = layout.inner_labels()
    colours = _inner_colours(inner)
    ticks = layout.tick_levels
    width = 0.8 / layout.group
    x = np.arange(len(ticks))
    for o, ax in enumerate(axes):
        if o >= layout.n_outer:
            ax.set_visible(False)
            continue
        block = values[o * layout.block : (o + 1) * layout.block].reshape(len(ticks), layout.group)
        for j in range(layout.group):
            offset = (j - (layout.group - 1) / 2) * width
            ax.bar(
                x + offset,
                block[:, j],
                width,
                color=colours[j],
                edgecolor="0.2",
                lw=0.4,
                label=inner[j],
            )
        ax.axhline(block.mean(), color="0.3", ls="--", lw=1)
        title = layout.outer_label(o) or "all classes"
        ax.set_title(f"{title}: mean F1 {block.mean():.3f}", fontsize=10)
        ax.set_xticks(x, ticks, fontsize=9)
        ax.set_xlabel(layout.tick_name, fontsize=9.5)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        if o % cols == 0:
            ax.set_ylabel("F1")
    if layout.group > 1:
        fig.legend(
            *axes[0].get_legend_handles_labels(),
            loc="outside upper right",
            ncols=layout.group,
            fontsize=9,
        )
    fig.suptitle(f"Per-class F1 (macro mean {mean:.3f})", fontsize=12)
    return fig


# -- colours ------------------------------------------------------------------------------------


def _palette(n: int) -> list[Any]:
    cmap = _colormap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _colormap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="white")


def _inner_colours(labels: Sequence[str]) -> list[Any]:
    """The levels' own colours when they name visible colours (red, blue), else a palette."""
    named = all((v.isalpha() or v.startswith("#")) and is_color_like(v) for v in labels)
    if named and all(sum(to_rgb(v)) < 2.7 for v in labels):
        return [to_rgb(v) for v in labels]
    return _palette(len(labels))


def _colour_by_value(values: np.ndarray) -> list[Any]:
    cmap = _colormap("RdYlGn")
    return [cmap(0.1 + 0.8 * float(np.clip(v, 0, 1))) for v in values]


# -- calibration ---------------------------------------------------------------------------------


RIGHT, WRONG = "#2f8f46", "#c8372d"
"""The colours of right and of wrong answers in the confidence histograms."""


def plot_reliability(curves: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> Path:
    """Per classifier (the model, or each head and the joint answer): the reliability diagram
    (accuracy against mean confidence per bin, the diagonal is perfect calibration) above the
    histogram of the confidence of right and of wrong answers (side by side, log counts).

    One column per classifier, up to five to a row; several fill the report's column.
    """
    n = len(curves)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(7.0 if n == 1 else MAX_WIDTH_IN, 6.2 * rows), layout="constrained")
    grid = fig.subplots(2 * rows, cols, squeeze=False, height_ratios=(3, 2) * rows)
    for k in range(rows * cols):
        top, bottom = grid[2 * (k // cols), k % cols], grid[2 * (k // cols) + 1, k % cols]
        if k >= n:
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        name, curve = curves[k]
        _reliability_panel(top, name, curve, k % cols == 0)
        _confidence_histogram(bottom, curve, k % cols == 0)
        for ax in (top, bottom):
            ax.tick_params(labelsize=9)
            ax.xaxis.label.set_fontsize(9.5)
            ax.yaxis.label.set_fontsize(9.5)
    return _save(fig, path)


def _bins(curve: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(curve["edges"], dtype=float)
    return (edges[:-1] + edges[1:]) / 2, np.diff(edges)


def _reliability_panel(ax: Axes, name: str, curve: Mapping[str, Any], first: bool) -> None:
    """Accuracy per confidence bin against the diagonal, with the ECE."""
    centres, width = _bins(curve)
    accuracy = np.array([np.nan if v is None else v for v in curve["accuracy"]], dtype=float)
    ax.bar(centres, np.nan_to_num(accuracy), width=width, color="#4c72b0", alpha=0.85,
           edgecolor="white", label="accuracy in the bin")  # fmt: skip
    ax.plot([0, 1], [0, 1], color="#333", lw=1.0, ls="--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence")
    ax.set_title(name, fontsize=11)
    ax.set_ylabel("accuracy in the bin" if first else "")
    ax.text(0.03, 0.95, f"ECE {curve['ece']:.4f}", transform=ax.transAxes, fontsize=10,
            va="top", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})  # fmt: skip
    if first:
        ax.legend(fontsize=9, loc="lower right", framealpha=0.9)


def _confidence_histogram(ax: Axes, curve: Mapping[str, Any], first: bool) -> None:
    """Right and wrong answers per confidence bin, as neighbouring bars (log counts)."""
    centres, width = _bins(curve)
    highest = 1.0
    for offset, part, colour in ((-0.25, "right", RIGHT), (0.25, "wrong", WRONG)):
        counts = np.asarray(curve[part]["histogram"], dtype=float)
        highest = max(highest, float(counts.max(initial=0)))
        ax.bar(centres + offset * width, counts, width=width / 2, color=colour,
               label=f"{part} ({curve[part]['count']:,})")  # fmt: skip
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(0, highest * 40)  # headroom: the legend above the bars
    ax.set(xlim=(0, 1), xlabel="confidence")
    ax.set_ylabel("images (log scale)" if first else "")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", framealpha=0.9)


# -- the scoreboard of explanation methods --------------------------------------------------------


def plot_scoreboard(
    groups: Mapping[str | None, Sequence[Mapping[str, Any]]],
    names: Mapping[str, str],
    path: Path,
    masks: bool,
) -> Path:
    """Per head: each method's faithfulness (insertion minus deletion area) against its energy
    in the mask (with masks), or as bars (without); the random reference dashed. Two panels
    to a row, as wide as the report's column."""
    n = len(groups)
    cols = min(n, 2)
    longest = max(
        (sum(r["method"] != "random" for r in rows) for rows in groups.values()), default=1
    )
    panel_h = 4.6 if masks else max(3.6, 0.2 * longest + 1.4)
    width = 6.8 if n == 1 else MAX_WIDTH_IN
    fig = Figure(figsize=(width, panel_h * math.ceil(n / cols) + 0.2), layout="constrained")
    axes = fig.subplots(math.ceil(n / cols), cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, (head, rows) in zip(axes, groups.items(), strict=False):
        scored = [r for r in rows if r.get("insertion") is not None]
        methods = [r for r in scored if r["method"] != "random"]
        reference = next((r for r in scored if r["method"] == "random"), None)
        labels = [_method_label(r, names) for r in methods]
        faithful = [r["insertion"] - r["deletion"] for r in methods]
        if masks and all(r.get("energy") is not None for r in methods):
            energy = [r["energy"] for r in methods]
            ax.scatter(energy, faithful, s=18, color="#4c72b0", zorder=3)
            ax.set_xlim(0, 1)
            if reference is not None and reference.get("energy") is not None:
                ax.axvline(reference["energy"], color="#888", ls="--", lw=0.8)
            if reference is not None:
                level = reference["insertion"] - reference["deletion"]
                ax.axhline(level, color="#888", ls="--", lw=0.8)
            _label_points(ax, energy, faithful, labels, (width / cols - 1.0, panel_h - 1.2))
            ax.set_xlabel("energy in the mask (localisation)", fontsize=9.5)
            ax.set_ylabel("insertion − deletion area (faithfulness)", fontsize=9.5)
        else:
            ax.barh(range(len(methods)), faithful, color="#4c72b0")
            ax.set_yticks(range(len(methods)), labels, fontsize=MIN_PT)
            ax.invert_yaxis()
            ax.set_xlabel("insertion − deletion area", fontsize=9.5)
            if reference is not None:
                ax.axvline(reference["insertion"] - reference["deletion"], color="#888",
                           ls="--", lw=0.8)  # fmt: skip
        ax.set_title(f"head {head}" if head else "explanation methods", fontsize=10.5)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _label_points(
    ax: Axes,
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    size_in: tuple[float, float],
) -> None:
    """Each point named at :data:`MIN_PT`, beside it; a name that would cover one already
    placed moves down (with a thin line to its point). ``size_in``: the axes' rough size."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    line = MIN_PT * 1.25 / 72 / size_in[1]  # one line of text, in axes fractions
    placed: list[tuple[float, float, float]] = []  # left, right, y of each placed name
    order = sorted(zip(xs, ys, labels, strict=True), key=lambda p: -p[1])
    for x, y, text in order:
        fx, fy = (x - x0) / (x1 - x0) + 0.012, (y - y0) / (y1 - y0)
        right = fx + _text_width_pt(text, MIN_PT) * 0.9 / 72 / size_in[0]
        ty = fy
        while any(a < right and fx < b and abs(ty - py) < line for a, b, py in placed):
            ty -= line / 2
        placed.append((fx, right, ty))
        arrow = {"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if fy - ty > line / 2 else None
        ax.annotate(text, (x, y), xytext=(fx, ty), textcoords="axes fraction", fontsize=MIN_PT,
                    va="center", arrowprops=arrow)  # fmt: skip


def _method_label(row: Mapping[str, Any], names: Mapping[str, str]) -> str:
    name = names.get(row["method"], row["method"])
    return f"{name} {row['layer']}" if row.get("layer") else name
