"""A CSV manifest of image files (``path,label[,split]``) as an :class:`ImageDataset`.

The header row is required: a ``path`` column, optionally a ``split`` column, and one or more
label columns (any other names, in any order). Paths are relative to the CSV's folder (absolute
paths are kept). ``split`` values are ``train``, ``test`` or ``val`` (the validation split);
without the column the images are split by the seed (stratified by class).

With one label column its values are the classes. With several, each column is a *factor* of
the image (``shape``, ``colour`` ...) and the class is the combination of the factors' levels,
as in Lines (96 classes = length x width x angle x colour): the class index is a mixed-radix
number over the columns in header order (the last varies fastest), every combination must
have images, the factors are kept per image, and the ``multihead`` model family trains one head
per column. Class names and levels are sorted as :func:`~cnnlab.data.folder.sort_class_names`.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np

from cnnlab.data.dataset import ImageDataset, compose_factors
from cnnlab.data.folder import build_dataset, sort_class_names
from cnnlab.data.images import shown
from cnnlab.errors import CnnlabError

RESERVED = ("path", "split")
PARTS = ("train", "test", "val")
MAX_CLASSES = 10_000
"""The most combinations of label columns a manifest may make (each one is a class)."""


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
    label_columns = _label_columns(path, header)
    files, values, parts = _listed(path, rows, header, label_columns)
    columns = dict(zip(label_columns, zip(*values, strict=True), strict=True))
    levels = {name: sort_class_names(col) for name, col in columns.items()}
    level_index = {name: _indices(levels[name], col) for name, col in columns.items()}
    factored = len(label_columns) > 1
    if factored:
        combinations = math.prod(len(v) for v in levels.values())
        if combinations > MAX_CLASSES:
            raise CnnlabError(
                f"{path}: the label columns {', '.join(label_columns)} make {combinations:,} "
                f"combinations (classes); at most {MAX_CLASSES:,}"
            )
        names = tuple("_".join(combo) for combo in itertools.product(*levels.values()))
        targets = compose_factors(level_index, levels)
    else:
        names = levels[label_columns[0]]
        targets = level_index[label_columns[0]]
    _check_every_class_has_images(path, names, targets, parts, factored)
    return build_dataset(
        path.stem,
        files,
        targets,
        names,
        np.asarray(parts) if parts else None,
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
        channels=channels,
        provenance={"source": str(path), "format": "csv manifest"},
        what=str(path),
        base=path.parent,
        factors=level_index if factored else None,
        factor_levels=levels if factored else None,
    )


def _listed(
    path: Path, rows: list[list[str]], header: list[str], label_columns: list[str]
) -> tuple[list[Path], list[list[str]], list[str]]:
    """Each row's image file (checked to exist), its labels and its split (if the manifest
    has a ``split`` column); blank rows are skipped, any other bad row is refused by line."""
    column = {name: header.index(name) for name in header}
    files: list[Path] = []
    values: list[list[str]] = []
    parts: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CnnlabError(
                f"{path}: line {line} has {len(row)} fields, the header {len(header)}"
            )
        file = row[column["path"]].strip()
        labels = [row[column[name]].strip() for name in label_columns]
        empty = (
            ["path"]
            if not file
            else [n for n, v in zip(label_columns, labels, strict=True) if not v]
        )
        if empty:
            raise CnnlabError(f"{path}: line {line} has an empty {shown(empty[0])}")
        full = path.parent / file
        if not _is_file(full):
            raise CnnlabError(f"{path}: line {line}: {shown(full)} does not exist")
        if "split" in column:
            part = row[column["split"]].strip()
            if part not in PARTS:
                raise CnnlabError(
                    f"{path}: line {line}: split {part!r}; expected {', '.join(PARTS)}"
                )
            parts.append(part)
        files.append(full)
        values.append(labels)
    if not files:
        raise CnnlabError(f"{path}: lists no images (an empty dataset)")
    return files, values, parts


def _label_columns(path: Path, header: list[str]) -> list[str]:
    """The header's label columns, after checking its names."""
    labels = [name for name in header if name not in RESERVED]
    bad = [name for name in labels if not name or "." in name]
    if "path" not in header or not labels or len(set(header)) != len(header) or bad:
        raise CnnlabError(
            f"{path}: bad header {','.join(header)!r}; expected a path column, one or more "
            "label columns (distinct, non-empty names without '.') and optionally split"
        )
    return labels


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the system cannot look up (one too long ...)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _indices(levels: tuple[str, ...], values: tuple[str, ...]) -> np.ndarray:
    """Each value's position in ``levels``."""
    position = {level: k for k, level in enumerate(levels)}
    return np.fromiter((position[v] for v in values), dtype=np.int64, count=len(values))


def _check_every_class_has_images(
    path: Path, names: tuple[str, ...], targets: np.ndarray, parts: list[str], factored: bool
) -> None:
    """Refuse classes no image shows (factor combinations) or none trains on (split column)."""
    where = "split column"
    present = np.bincount(targets, minlength=len(names)) > 0
    if parts:
        present = np.bincount(targets[np.asarray(parts) == "train"], minlength=len(names)) > 0
    missing = [shown(names[k]) for k in np.flatnonzero(~present)]
    if not missing:
        return
    listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    if factored and not parts:
        where = "every combination of the label columns is a class"
    elif factored:
        where += "; every combination of the label columns is a class"
    raise CnnlabError(
        f"{path}: label(s) {listed} have no training images ({where}); every class needs some"
    )
