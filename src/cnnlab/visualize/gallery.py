"""Galleries of mistakes: the top losses with their heatmaps, and the most confused pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnlab.visualize.figures import _blank, _save, _wrap, input_rgb

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
    fig = Figure(figsize=(PER_ROW * 3.1, rows * 1.5 + 0.45), layout="constrained")
    grid = fig.add_gridspec(rows, PER_ROW * 3)
    rgb = input_rgb(images)
    grey = rgb.mean(axis=3)
    for i in range(n):
        r, c = divmod(i, PER_ROW)
        panels = (("image", None), ("predicted", predicted_maps[i]), ("true", true_maps[i]))
        for j, (name, heat) in enumerate(panels):
            ax = fig.add_subplot(grid[r, c * 3 + j])
            if heat is None:
                ax.imshow(rgb[i], interpolation="nearest")
                ax.set_title(_wrap(captions[i], 3.0, 6), fontsize=6, loc="left")
            else:
                m = heat.detach().float().clamp(min=0).numpy()
                top = float(m.max())
                ax.imshow(grey[i], cmap="gray", vmin=0, vmax=3, interpolation="nearest")
                ax.imshow(m / top if top > 0 else m, cmap="jet", alpha=0.6, vmin=0, vmax=1,
                          interpolation="nearest")  # fmt: skip
                ax.set_xlabel(f"CAM {name}", fontsize=4.5, labelpad=1)
            _blank(ax)
    fig.suptitle(_wrap(title, PER_ROW * 3.1), fontsize=8)
    return _save(fig, path)


def plot_confused_pairs(
    pairs: Sequence[tuple[str, torch.Tensor]], columns: int, path, *, title: str
) -> object:
    """One row per confused pair: its title, then up to ``columns`` example images."""
    rows = max(1, len(pairs))
    fig = Figure(figsize=(columns * 0.95 + 1.9, rows * 1.0 + 0.4), layout="constrained")
    grid = fig.add_gridspec(rows, columns + 2)
    for r, (name, images) in enumerate(pairs):
        label = fig.add_subplot(grid[r, :2])
        label.text(0.0, 0.5, _wrap(name, 1.8, 6), fontsize=6, va="center", ha="left")
        label.axis("off")
        rgb = input_rgb(images) if images.shape[0] else np.zeros((0, 1, 1, 3))
        for j in range(columns):
            ax = fig.add_subplot(grid[r, 2 + j])
            if j < rgb.shape[0]:
                ax.imshow(rgb[j], interpolation="nearest")
            _blank(ax)
    fig.suptitle(_wrap(title, columns * 0.95 + 1.9), fontsize=7)
    return _save(fig, path)
