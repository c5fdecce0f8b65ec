"""Galleries of mistakes: the top losses with their heatmaps, and the most confused pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnlab.visualize.figures import LABEL_PT, MIN_PT, TITLE_PT, _blank, _save, _wrap, input_rgb

PER_ROW = 4
"""Images per row of the top-loss gallery (each with its two heatmaps)."""


def plot_top_losses(
    images: torch.Tensor,
    predicted_maps: torch.Tensor,
    true_maps: torch.Tensor,
    captions: Sequence[str],
    path,
    *,
    title: str,
) -> object:
    """Each image beside its heatmap for the predicted class and for the true class.

    ``images`` uint8 (N, C, H, W); the maps (N, H, W) are drawn over a faint grey copy, each on
    its own scale from 0 to its maximum; ``captions`` go above each triplet.
    """
    n = images.shape[0]
    rows = math.ceil(n / PER_ROW)
    width = PER_ROW * 3.2
    fig = Figure(figsize=(width, rows * 1.9 + 0.6), layout="constrained")
    cells = fig.subfigures(rows, PER_ROW, squeeze=False).ravel()
    rgb = input_rgb(images)
    grey = rgb.mean(axis=3)
    for i, cell in enumerate(cells):
        if i >= n:
            continue
        caption = _wrap(captions[i], 3.1, LABEL_PT, least=12)
        cell.suptitle(caption, fontsize=LABEL_PT, x=0.02, ha="left", va="top")
        axes = cell.subplots(1, 3)
        axes[0].imshow(rgb[i], interpolation="nearest")
        for ax, name, heat in ((axes[1], "predicted", predicted_maps[i]),
                               (axes[2], "true", true_maps[i])):  # fmt: skip
            m = heat.detach().float().clamp(min=0).numpy()
            top = float(m.max())
            ax.imshow(grey[i], cmap="gray", vmin=0, vmax=3, interpolation="nearest")
            ax.imshow(m / top if top > 0 else m, cmap="jet", alpha=0.6, vmin=0, vmax=1,
                      interpolation="nearest")  # fmt: skip
            ax.set_xlabel(f"CAM {name}", fontsize=MIN_PT, labelpad=1)
        for ax in axes:
            _blank(ax)
            ax.set_anchor("N")  # under the caption; spare height goes below
    fig.suptitle(_wrap(title, width, TITLE_PT), fontsize=TITLE_PT)
    return _save(fig, path)


def plot_confused_pairs(
    pairs: Sequence[tuple[str, torch.Tensor]], columns: int, path, *, title: str
) -> object:
    """One row per confused pair: its title, then up to ``columns`` example images."""
    rows = max(1, len(pairs))
    width = columns * 0.95 + 2.9
    fig = Figure(figsize=(width, rows * 1.0 + 0.6), layout="constrained")
    grid = fig.add_gridspec(rows, columns + 3)
    for r, (name, images) in enumerate(pairs):
        label = fig.add_subplot(grid[r, :3])
        label.text(0.0, 0.5, _wrap(name, 2.7, LABEL_PT, least=12), fontsize=LABEL_PT,
                   va="center", ha="left")  # fmt: skip
        label.axis("off")
        rgb = input_rgb(images) if images.shape[0] else np.zeros((0, 1, 1, 3))
        for j in range(columns):
            ax = fig.add_subplot(grid[r, 3 + j])
            if j < rgb.shape[0]:
                ax.imshow(rgb[j], interpolation="nearest")
            _blank(ax)
    fig.suptitle(_wrap(title, width, TITLE_PT), fontsize=TITLE_PT)
    return _save(fig, path)
