"""Export any in-memory dataset: ``<name>.npz``, ``card.json``, ``preview.png`` and, when asked,
a PNG tree ``png/{train,test}/<class>/<index>.png`` that ``data.dataset`` reads back as given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.npzio import array_digest, write_npz
from cnnlab.data.preview import class_grid, write_png_tree
from cnnlab.errors import CnnlabError
from cnnlab.fileio import write_json


def export_dataset(
    dataset: ImageDataset, out_dir: str | Path, png: bool = False
) -> dict[str, Path]:
    """Write the dataset as (N, H, W, C) images with labels and split, plus a card and preview
    (and with ``png`` every image as a PNG file, numbered in the .npz's order)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    images = torch.cat([dataset.train.images, dataset.test.images]).permute(0, 2, 3, 1).numpy()
    labels = torch.cat([dataset.train.labels, dataset.test.labels]).numpy()
    split = np.repeat(np.array(["train", "test"]), [len(dataset.train), len(dataset.test)])
    arrays = {"images": images, "label": labels, "split": split}
    paths = {"npz": out / f"{dataset.name}.npz", "card": out / "card.json"}
    write_npz(paths["npz"], arrays)
    write_json(
        paths["card"],
        {
            "dataset": dataset.name,
            "provenance": dataset.provenance,
            "class_names": list(dataset.class_names),
            "counts": {"train": len(dataset.train), "test": len(dataset.test)},
            "arrays": {name: array_digest(a) for name, a in arrays.items()},
        },
    )
    paths["preview"] = class_grid(
        images,
        labels,
        dataset.class_names,
        out / "preview.png",
        columns=min(10, dataset.num_classes),
        title=f"{dataset.name}: one image per class",
    )
    if png:
        paths["png"] = write_png_tree(images, labels, split, dataset.class_names, out / "png")
    return paths
