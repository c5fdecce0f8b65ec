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
    """Read a ``lines.npz`` written by :func:`save_lines` (or its folder), checking consistency.

    Every array's dtype, shape and values are checked against the settings in ``meta``
    (``images`` uint8 (N, S, S, 3), integer labels and factors within their levels, finite
    shifts, a bool ``mask``, ``split`` naming both ``train`` and ``test``); anything else is
    refused with one line naming the file and the array.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "lines.npz"
    arrays = read_npz(path, (*ARRAYS, "meta"), only_required=True)
    config = _read_config(path, arrays.pop("meta"))
    _check_arrays(path, arrays, config)
    idx = {f: _level_index(config.levels[f], arrays[f], f, path) for f in FACTORS if f != "color"}
    idx["color"] = arrays["color"]
    if not np.array_equal(config.class_index(*(idx[f] for f in FACTORS)), arrays["label"]):
        raise CnnlabError(f"{path}: labels disagree with the factor arrays ({CLASS_FORMULA})")
    return LinesData(config, arrays)


# What each array must hold: dtype kinds numpy names ("u" unsigned, "i" signed, "f" float,
# "b" bool, "U" text), the expected dtype in words, and its shape after the count N.
_LAYOUT: dict[str, tuple[str, str, str]] = {
    "images": ("u", "uint8", "SS3"),
    "label": ("iu", "integers", ""),
    "length": ("iu", "integers", ""),
    "width": ("iu", "integers", ""),
    "angle": ("iu", "integers", ""),
    "color": ("iu", "integers", ""),
    "shift_x": ("iuf", "real numbers", ""),
    "shift_y": ("iuf", "real numbers", ""),
    "mask": ("b", "bool", "SS"),
    "split": ("U", "text", ""),
}


def _read_config(path: Path, meta: np.ndarray) -> LinesConfig:
    """The generator settings stored as JSON in ``meta``, a text array of one element."""
    if meta.size != 1 or meta.dtype.kind != "U":
        raise CnnlabError(
            f"{path}: array 'meta' has dtype {meta.dtype} and shape {meta.shape}, "
            "expected one JSON text"
        )
    try:
        meta = json.loads(meta.item())
        return LinesConfig(**_current_fields(meta["config"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CnnlabError(f"{path}: unreadable generator settings in 'meta' ({exc})") from None
    except CnnlabError as exc:
        raise CnnlabError(f"{path}: generator settings in 'meta' are invalid: {exc}") from None


def _check_arrays(path: Path, arrays: dict[str, np.ndarray], config: LinesConfig) -> None:
    """Refuse wrong dtypes, shapes, lengths and values, one line naming the array."""
    for name in ARRAYS:
        kinds, words, _ = _LAYOUT[name]
        array = arrays[name]
        exact = name == "images" and array.dtype != np.uint8
        if array.dtype.kind not in kinds or exact:
            raise CnnlabError(f"{path}: array {name!r} has dtype {array.dtype}, expected {words}")
    label = arrays["label"]
    if label.ndim != 1:
        raise CnnlabError(f"{path}: array 'label' has shape {label.shape}, expected (N,)")
    n = label.shape[0]
    if n == 0:
        raise CnnlabError(f"{path}: holds 0 images, expected at least one per class")
    size = config.image_size
    for name in ARRAYS:
        tail = {"SS3": (size, size, 3), "SS": (size, size), "": ()}[_LAYOUT[name][2]]
        shape = arrays[name].shape
        if shape[:1] != (n,):
            raise CnnlabError(
                f"{path}: array {name!r} holds {shape[0] if shape else 'no'} entries along its "
                f"first axis but 'label' holds {n}; expected one entry per image"
            )
        if shape[1:] != tail:
            raise CnnlabError(f"{path}: array {name!r} has shape {shape}, expected {(n, *tail)}")
    if label.min() < 0 or label.max() >= config.num_classes:
        bad = label[(label < 0) | (label >= config.num_classes)][0]
        raise CnnlabError(
            f"{path}: array 'label' holds {bad}, outside 0..{config.num_classes - 1} "
            f"for the {config.num_classes} classes of its settings"
        )
    colors = arrays["color"]
    if colors.min() < 0 or colors.max() >= len(config.colors):
        raise CnnlabError(
            f"{path}: array 'color' holds values outside 0..{len(config.colors) - 1} "
            f"(indices into the colours {list(config.colors)})"
        )
    for name in ("shift_x", "shift_y"):
        if not np.isfinite(arrays[name]).all():
            raise CnnlabError(f"{path}: array {name!r} holds NaN or infinite values")
    for part in ("train", "test"):
        if not (arrays["split"] == part).any():
            raise CnnlabError(f"{path}: array 'split' names no {part!r} image")
    if not np.isin(arrays["split"], ("train", "test")).all():
        raise CnnlabError(f"{path}: 'split' holds values other than 'train' and 'test'")


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
