"""The pictures: feature maps, filter images and heatmaps, as PNGs written atomically.

Every function draws on its own matplotlib ``Figure`` (Agg, no pyplot state). Pixels are drawn
as blocks (no interpolation): on 28x28 images smoothing would invent detail.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnlab.fileio import atomic_path

DPI = 120

MIN_PT = 8.5
"""The smallest text in any picture, in points: the report shows pictures at 96 CSS px per
inch, so 8.5 pt is 11.3 px on screen (as ``cnnlab.report.figures.MIN_PT``)."""

LABEL_PT = 9.0
"""Row labels, panel titles and captions."""

TITLE_PT = 10.0
"""A picture's title."""


def input_rgb(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> float (N, H, W, 3) in [0, 1]; one channel is drawn grey."""
    x = images.detach().cpu().float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x[:, :3].permute(0, 2, 3, 1).numpy()


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def mosaic(tiles: np.ndarray, columns: int, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """(K, h, w[, 3]) tiles -> one (rows*(h+gap)-gap, columns*(w+gap)-gap[, 3]) picture."""
    k, h, w = tiles.shape[:3]
    rows = math.ceil(k / columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, *tiles.shape[3:]), fill)
    for index in range(k):
        r, c = divmod(index, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[index]
    return out


MAX_MAPS = 64
"""Feature maps drawn per layer at most: a wider layer shows its most active ones (the raw
arrays beside the picture keep every channel)."""


def most_active(activations: torch.Tensor, most: int = MAX_MAPS) -> torch.Tensor:
    """The channels (in channel order) of the ``most`` maps with the largest mean absolute
    activation over the images; every channel when there are no more than ``most``."""
    c = activations.shape[1]
    if c <= most:
        return torch.arange(c)
    strength = activations.detach().float().abs().mean(dim=(0, 2, 3))
    return torch.topk(strength, most).indices.sort().values


def plot_activations(
    images: torch.Tensor,
    activations: torch.Tensor,
    layer: str,
    path: Path,
    *,
    labels: Sequence[str] | None = None,
    columns: int = 16,
) -> Path:
    """One row per image: the input, then a grid of the layer's C feature maps (in channel
    order, ``columns`` to a line); rows are spaced apart so each image's grid reads as one.

    Maps of one image share one colour scale (so weak maps look weak): red/blue around 0 when
    the layer has negative values, dark-to-bright from 0 otherwise.
    """
    n, total, h, w = activations.shape
    shown = most_active(activations)
    activations = activations.index_select(1, shown)
    c = len(shown)
    columns = min(columns, c)
    gap = max(1, h // 8)
    a = activations.detach().float().numpy()
    tile_in = 0.42 if c <= 32 else 0.3
    maps_w = tile_in * columns
    first = mosaic(a[0], columns, gap=gap)
    maps_h = maps_w * first.shape[0] / first.shape[1]
    row_h = max(maps_h, 0.75)
    fig = Figure(figsize=(2.5 + maps_w, (row_h + 0.22) * n + 0.7), layout="constrained")
    fig.get_layout_engine().set(hspace=0.12 / max(row_h, 1e-3), h_pad=0.02)
    grid = fig.add_gridspec(n, 2, width_ratios=[min(row_h, 0.9), maps_w])
    rgb = input_rgb(images)
    for i in range(n):
        low, high = float(a[i].min()), float(a[i].max())
        limit = max(abs(low), abs(high), 1e-8)
        cmap, vmin, vmax = ("RdBu_r", -limit, limit) if low < 0 else ("magma", 0.0, limit)
        ax = fig.add_subplot(grid[i, 0])
        ax.imshow(rgb[i], interpolation="nearest")
        _blank(ax)
        name = labels[i] if labels is not None else f"image {i}"
        _row_label(ax, f"{name}\n[{low:.2g}, {high:.2g}]")
        ax = fig.add_subplot(grid[i, 1])
        picture = first if i == 0 else mosaic(a[i], columns, gap=gap)
        ax.imshow(picture, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        _blank(ax)
        if i == 0:
            which = f"maps 0..{c - 1}" if c == total else f"the {c} most active, in channel order"
            ax.set_title(f"{which}, {columns} to a line", fontsize=LABEL_PT, pad=3)
    scale = "each image's maps on one scale (range at left; red > 0 > blue, or dark to bright)"
    count = f"{total} feature maps" if c == total else f"{c} of its {total} feature maps"
    title = _wrap(f"{layer}: {count} of {h}x{w}\n{scale}", 2.5 + maps_w, TITLE_PT)
    fig.suptitle(title, fontsize=TITLE_PT)
    return _save(fig, path)


def plot_filters(
    images: torch.Tensor,
    layer: str,
    path: Path,
    *,
    activation: torch.Tensor | None = None,
    subtitle: str = "",
    columns: int = 8,
) -> Path:
    """A grid of filter images (F, C, H, W), each stretched to its own [min, max] for display.

    An image that barely changed from its blank start (range under 0.02) is drawn unstretched,
    so that rounding noise is not shown as a pattern; its title says "flat".
    """
    from cnnlab.visualize.filters import display_images

    x = images.detach().float()
    flat = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))) < 0.02
    shown = torch.where(flat[:, None, None, None], x, display_images(x))
    rgb = input_rgb((shown * 255).round().to(torch.uint8))
    n, h, w = rgb.shape[:3]
    columns = min(columns if n <= 64 else 12, n)
    gap = max(2, h // 3)  # room above each image for its label
    tile = 0.9 if n <= 64 else 0.95
    width = max(tile * columns, 4.0)
    picture = mosaic(rgb, columns, gap=gap, fill=1.0)
    aspect = (picture.shape[0] + gap) / picture.shape[1]  # + gap: the first row's labels
    fig = Figure(figsize=(width, width * aspect + 0.8), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(picture, interpolation="nearest")
    _blank(ax)
    for k in range(n):
        r, col = divmod(k, columns)
        text = str(k) if activation is None else f"{k}: {float(activation[k]):.2g}"
        if flat[k]:
            text += " flat"
        ax.text(col * (w + gap), r * (h + gap) - 0.5, text, fontsize=MIN_PT, va="bottom")
    title = f"{layer}: the input each filter responds to most\n{subtitle}"
    fig.suptitle(_wrap(title, width, TITLE_PT), fontsize=TITLE_PT)
    return _save(fig, path)


def plot_heatmaps(
    images: torch.Tensor,
    panels: Sequence[tuple[str, torch.Tensor]],
    path: Path,
    *,
    title: str,
    row_titles: Sequence[str] | None = None,
    masks: torch.Tensor | None = None,
) -> Path:
    """Rows of images; the input, then one column per (title, maps (N, H, W)) panel.

    Each map is drawn over its input (a faint grey copy) on its own scale, 0 to its maximum
    (the raw values are in the arrays beside the PNG); ``masks`` outline the truth in cyan.
    """
    n, columns = images.shape[0], len(panels) + 1
    width = max(1.2 * columns + 1.4, 4.0)  # 1.4: the row labels
    fig = Figure(figsize=(width, 1.34 * n + 0.9), layout="constrained")
    rgb = input_rgb(images)
    grey = rgb.mean(axis=3)
    for i in range(n):
        ax = fig.add_subplot(n, columns, i * columns + 1)
        ax.imshow(rgb[i], interpolation="nearest")
        _blank(ax)
        _row_label(ax, row_titles[i] if row_titles else "")
        if i == 0:
            ax.set_title("input", fontsize=LABEL_PT)
        for j, (name, maps) in enumerate(panels, start=2):
            ax = fig.add_subplot(n, columns, i * columns + j)
            m = maps[i].detach().float().clamp(min=0).numpy()
            top = float(m.max())
            ax.imshow(grey[i], cmap="gray", vmin=0, vmax=3, interpolation="nearest")
            ax.imshow(
                m / top if top > 0 else m,
                cmap="jet",
                alpha=0.6,
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            if masks is not None:
                ax.contour(masks[i].float().numpy(), levels=[0.5], colors="cyan", linewidths=0.4)
            _blank(ax)
            if i == 0:
                ax.set_title(_wrap(name, 1.15, LABEL_PT, least=8), fontsize=LABEL_PT)
            ax.set_xlabel(f"max {top:.2g}" if top > 0 else "none > 0", fontsize=MIN_PT, labelpad=1)
    fig.suptitle(_wrap(title, width, TITLE_PT), fontsize=TITLE_PT)
    return _save(fig, path)


def _row_label(ax, text: str) -> None:
    """A row's name, written across (not turned on its side), left of its first picture."""
    ax.set_ylabel(text, fontsize=LABEL_PT, rotation=0, ha="right", va="center", labelpad=6)


def _wrap(text: str, width_in: float, fontsize: float = 7, least: int = 20) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (at
    least ``least`` characters to a line)."""
    chars = max(least, int(width_in * 72 / (0.62 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())
