"""Pictures of a dataset a person can look at: one example per class, and a PNG tree."""

from __future__ import annotations

import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.fileio import atomic_path


def class_grid(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    path: str | Path,
    columns: int | None = None,
    column_titles: tuple[str, ...] | None = None,
    row_titles: tuple[str, ...] | None = None,
    title: str = "",
) -> Path:
    """Save a grid with the first image of every class, in class order, as a PNG.

    ``images`` is (N, H, W, C) uint8 (C = 1 or 3). With ``column_titles`` and ``row_titles`` the
    grid is labelled by factor (e.g. angles across, length/width/colour down); otherwise every
    cell carries its class name.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    first = {int(c): i for i, c in reversed(list(enumerate(labels)))}
    cell = 0.9 if column_titles else 1.2
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * cell + 1.2, rows * cell + 0.8), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n or k not in first:
            ax.axis("off")
            continue
        image = images[first[k]]
        _show(ax, image)
        for spine in ax.spines.values():
            spine.set_color("#555555")
        r, c = divmod(k, columns)
        if column_titles and r == 0:
            ax.set_title(column_titles[c], fontsize=8)
        if row_titles and c == 0:
            ax.set_ylabel(row_titles[r], fontsize=7, rotation=0, ha="right", va="center")
        if not column_titles:
            ax.set_title(class_names[k], fontsize=6)
    return _save(fig, path, title)


def write_png_tree(
    images: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    class_names: tuple[str, ...],
    root: str | Path,
) -> Path:
    """Write ``root/<split>/<class name>/<index>.png`` (an ImageFolder layout).

    The tree is built beside ``root`` and renamed into place at the end, so an interrupted
    export never leaves a partial tree under the final name.
    """
    from PIL import Image

    root = Path(root)
    staging = root.with_name(f".{root.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for part in np.unique(split):
        for name in class_names:
            (staging / str(part) / name).mkdir(parents=True, exist_ok=True)

    def save(i: int) -> None:
        image = images[i]
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        picture.save(staging / str(split[i]) / class_names[labels[i]] / f"{i:06d}.png")

    try:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            list(pool.map(save, range(len(labels)), chunksize=512))
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def captioned_grid(
    images: np.ndarray, captions: list[str], path: str | Path, title: str = "", columns: int = 8
) -> Path:
    """Save (N, H, W, C) uint8 images (C = 1 or 3) as a PNG grid, each with its caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    columns = min(columns, max(n, 1))
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * 1.3 + 0.4, rows * 1.45 + 0.6), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        image = images[k]
        _show(ax, image)
        ax.set_title(captions[k], fontsize=7)
    return _save(fig, path, title)


def _show(ax: Any, image: np.ndarray) -> None:
    """One (H, W, C) uint8 image (C = 1 or 3) in a grid cell, pixels as they are."""
    grey = image.shape[-1] == 1
    ax.imshow(
        image[..., 0] if grey else image, cmap="gray", vmin=0, vmax=255, interpolation="nearest"
    )


def _save(fig: Any, path: str | Path, title: str) -> Path:
    """Title ``fig``, write it to ``path`` as a PNG (whole or not at all) and close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", facecolor="white")
    plt.close(fig)
    return Path(path)
