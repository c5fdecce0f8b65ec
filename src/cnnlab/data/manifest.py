"""A CSV manifest of image files (``path,label[,split]``) as an :class:`ImageDataset`.

The header row is required and names exactly the columns ``path`` and ``label``, optionally
``split``, in any order. Paths are relative to the CSV's folder (absolute paths are kept).
``split`` values are ``train``, ``test`` or ``val`` (the validation split); without the column
the images are split by the
seed (stratified). Other columns are refused: per-image factors would have to compose the
class index, which arbitrary columns do not. Class names are the labels, sorted as
:func:`~cnnlab.data.folder.sort_class_names` does.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.folder import build_dataset, sort_class_names
from cnnlab.errors import CnnlabError

COLUMNS = ("path", "label", "split")
PARTS = ("train", "test", "val")


def load_manifest(
    path: str | Path,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageDataset:
    """The images a CSV manifest lists, decoded once (see the module docstring)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CnnlabError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise CnnlabError(f"{path}: empty file; expected a header row path,label[,split]")
    header = [cell.strip() for cell in rows[0]]
    extra = [c for c in header if c not in COLUMNS]
    if extra or len(set(header)) != len(header) or not {"path", "label"} <= set(header):
        raise CnnlabError(
            f"{path}: bad header {','.join(header)!r}; expected the columns path,label and "
            "optionally split (other columns are not read)"
        )
    column = {name: header.index(name) for name in header}
    base = path.parent
    files, labels, parts = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CnnlabError(
                f"{path}: line {line} has {len(row)} fields, the header {len(header)}"
            )
        file, label = row[column["path"]].strip(), row[column["label"]].strip()
        if not file or not label:
            raise CnnlabError(f"{path}: line {line} has an empty {'path' if not file else 'label'}")
        full = base / file
        if not full.is_file():
            raise CnnlabError(f"{path}: line {line}: {full} does not exist")
        if "split" in column:
            part = row[column["split"]].strip()
            if part not in PARTS:
                raise CnnlabError(
                    f"{path}: line {line}: split {part!r}; expected {', '.join(PARTS)}"
                )
            parts.append(part)
        files.append(full)
        labels.append(label)
    if not files:
        raise CnnlabError(f"{path}: lists no images (an empty dataset)")
    names = sort_class_names(labels)
    index = {name: k for k, name in enumerate(names)}
    targets = np.asarray([index[label] for label in labels], dtype=np.int64)
    split = None
    if parts:
        split = np.asarray(parts)
        untrained = sorted(set(names) - {labels[k] for k in np.flatnonzero(split == "train")})
        if untrained:
            raise CnnlabError(
                f"{path}: label(s) {', '.join(untrained)} have no training images "
                "(split column); every class needs some"
            )
    return build_dataset(
        path.stem,
        files,
        targets,
        names,
        split,
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
        channels=channels,
        provenance={"source": str(path), "format": "csv manifest"},
        what=str(path),
    )
