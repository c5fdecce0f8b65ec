"""Lines on disk: ``lines.npz``, its dataset card, and optional PNG pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.identity import identity_groups
from cnnlab.data.lines import FACTORS, GENERATOR_VERSION, LinesConfig, LinesData
from cnnlab.data.npzio import array_digest, read_npz, write_npz
from cnnlab.data.preview import class_grid, write_png_tree
from cnnlab.errors import CnnlabError
from cnnlab.fileio import write_json

ARRAYS = (
    "images",
    "label",
    "length",
    "width",
    "angle",
    "color",
    "shift_x",
    "shift_y",
    "mask",
    "split",
)
CLASS_FORMULA = (
    "label = ((length_i * n_widths + width_i) * n_angles + angle_i) * n_colors + color_i"
)


def save_lines(data: LinesData, out_dir: str | Path, png: bool = False) -> dict[str, Path]:
    """Write ``lines.npz`` and ``card.json`` (and with ``png`` a PNG tree and ``preview.png``)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    meta = {"generator_version": GENERATOR_VERSION, "config": data.config.to_dict()}
    arrays = {**data.arrays, "meta": np.array(json.dumps(meta, sort_keys=True))}
    paths = {"npz": out / "lines.npz", "card": out / "card.json"}
    write_npz(paths["npz"], arrays)
    write_json(paths["card"], dataset_card(data))
    if png:
        paths["preview"] = save_preview(data, out / "preview.png")
        a = data.arrays
        paths["png"] = write_png_tree(
            a["images"], a["label"], a["split"], data.config.class_names(), out / "png"
        )
    return paths


def dataset_card(data: LinesData) -> dict[str, Any]:
    """Provenance of a generated dataset: version, seed, parameters, counts, array digests."""
    a, config = data.arrays, data.config
    counts = {part: int((a["split"] == part).sum()) for part in ("train", "test")}
    return {
        "dataset": "lines",
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "config": config.to_dict(),
        "classes": config.num_classes,
        "class_formula": CLASS_FORMULA,
        "factor_levels": {k: list(v) for k, v in config.levels.items()},
        "class_names": list(config.class_names()),
        "counts": {"total": len(data), **counts},
        "per_class": {part: int(counts[part] / config.num_classes) for part in ("train", "test")},
        "distinct": distinct_pictures(data),
        "arrays": {name: array_digest(a[name]) for name in ARRAYS},
    }


def distinct_pictures(data: LinesData) -> dict[str, int]:
    """How many different pictures each split holds, and how many test images equal a
    training image (0 by construction for ``position: anywhere``)."""
    ids = identity_groups(data.arrays["images"])
    test = data.arrays["split"] == "test"
    return {
        "train": int(np.unique(ids[~test]).size),
        "test": int(np.unique(ids[test]).size),
        "all": int(np.unique(ids).size),
        "test_in_train": int(np.isin(ids[test], ids[~test]).sum()),
    }


def _per_class(labels: np.ndarray) -> int | dict[str, int]:
    """Images per class: one number when every class has the same count, else min and max."""
    counts = np.bincount(labels)
    low, high = int(counts.min()), int(counts.max())
    return low if low == high else {"min": low, "max": high}


def save_preview(data: LinesData, path: str | Path) -> Path:
    """One training example per class: angles across, length x width x colour down."""
    config = data.config
    a = data.arrays
    train = a["split"] == "train"
    rows = tuple(
        f"len {length} · wid {width} · {color}"
        for length in config.lengths
        for width in config.widths
        for color in config.colors
    )
    # Reorder classes so that each row holds one (length, width, colour) and columns are angles.
    idx = config.factor_indices(np.arange(config.num_classes))
    n_a, n_c = len(config.angles), len(config.colors)
    row_of = (idx["length"] * len(config.widths) + idx["width"]) * n_c + idx["color"]
    position = row_of * n_a + idx["angle"]
    return class_grid(
        a["images"][train],
        position[a["label"][train]],
        tuple(str(p) for p in range(config.num_classes)),
        path,
        columns=n_a,
        column_titles=tuple(f"{angle}°" for angle in config.angles),
        row_titles=rows,
        title=f"Lines: one training image per class ({config.num_classes} classes)",
    )


def load_lines(path: str | Path) -> LinesData:
    """Read a ``lines.npz`` written by :func:`save_lines` (or its folder), checking consistency."""
    path = Path(path)
    if path.is_dir():
        path = path / "lines.npz"
    arrays = read_npz(path, (*ARRAYS, "meta"))
    try:
        meta = json.loads(arrays.pop("meta").item())
        config = LinesConfig(**_current_fields(meta["config"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CnnlabError(f"{path}: unreadable generator settings in 'meta' ({exc})") from None
    n = arrays["label"].shape[0]
    size = config.image_size
    expected = {"images": (n, size, size, 3), "mask": (n, size, size)}
    for name in ARRAYS:
        want = expected.get(name, (n,))
        if arrays[name].shape != want:
            raise CnnlabError(
                f"{path}: array {name!r} has shape {arrays[name].shape}, expected {want}"
            )
    idx = {f: _level_index(config.levels[f], arrays[f], f, path) for f in FACTORS if f != "color"}
    idx["color"] = arrays["color"]
    if not np.array_equal(config.class_index(*(idx[f] for f in FACTORS)), arrays["label"]):
        raise CnnlabError(f"{path}: labels disagree with the factor arrays ({CLASS_FORMULA})")
    if not np.isin(arrays["split"], ("train", "test")).all():
        raise CnnlabError(f"{path}: 'split' holds values other than 'train' and 'test'")
    return LinesData(config, arrays)


def _current_fields(saved: dict[str, Any]) -> dict[str, Any]:
    """Config fields as LinesConfig takes them, from any generator version's ``meta``:
    1.0 files (an ``antialias`` flag, no ``position``) had generator 2's ``centred`` layout."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    if "antialias" in fields:
        fields["render"] = "antialias" if fields.pop("antialias") else "sharp"
        fields.setdefault("position", "centred")
    return fields


def _level_index(levels: tuple[Any, ...], values: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Map factor values (e.g. lengths in px) back to level indices, refusing unknown values."""
    lookup = np.asarray(levels)
    index = np.searchsorted(np.sort(lookup), values)
    order = np.argsort(lookup)
    index = np.clip(index, 0, len(lookup) - 1)
    if not np.array_equal(np.sort(lookup)[index], values):
        raise CnnlabError(f"{path}: {name!r} holds values outside {list(levels)}")
    return order[index]
