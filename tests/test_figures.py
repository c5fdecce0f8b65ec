"""Report figures from synthetic metrics: each writes a real, non-blank PNG of a sensible size."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.evaluate import classification_metrics, factor_analysis
from cnnlab.report import figures

LEVELS = {
    "length": (7, 15),
    "width": (1, 3),
    "angle": tuple(range(0, 180, 15)),
    "color": ("red", "blue"),
}
NAMES = tuple(
    f"len{ln}_wid{w}_ang{a:03d}_{c}" for ln, w, a, c in itertools.product(*LEVELS.values())
)


def _predictions(k: int, per_class: int = 20, error: float = 0.2) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(k), per_class)
    predicted = labels.copy()
    wrong = rng.random(len(labels)) < error
    predicted[wrong] = (labels[wrong] + rng.choice([-2, 2, 1], wrong.sum())) % k
    return labels, predicted


@pytest.fixture(scope="module")
def lines_metrics() -> dict:
    labels, predicted = _predictions(96)
    metrics = classification_metrics(labels, predicted, 96)
    metrics["factor_analysis"] = factor_analysis(labels, predicted, LEVELS, NAMES)
    return metrics


def _history(epochs: int, scale: float) -> list[dict[str, float]]:
    return [
        {
            "epoch": e,
            "train_loss": 3 * scale / e,
            "test_loss": 3.2 * scale / e,
            "train_acc": 1 - 0.8 / e,
            "test_acc": 1 - 0.9 / e,
        }
        for e in range(1, epochs + 1)
    ]


def assert_png(path: Path, min_width: int = 400, min_height: int = 300) -> Image.Image:
    """A real PNG, at least this large, with more than a blank background, and no temp files."""
    assert path.is_file() and path.suffix == ".png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()
    assert image.width >= min_width and image.height >= min_height, image.size
    assert image.width <= 4000 and image.height <= 4000, image.size
    grey = np.asarray(image.convert("L"))
    assert (grey < 128).mean() > 0.002, "almost nothing dark drawn"
    assert not list(path.parent.glob(".*.tmp")), "temporary files left behind"
    return image


def test_learning_curves_one_run_and_overlaid(tmp_path: Path) -> None:
    one = figures.plot_learning_curves({"a": _history(5, 1.0)}, tmp_path, "one")
    many = figures.plot_learning_curves(
        {"a": _history(5, 1.0), "b": _history(3, 0.01), "<c>": _history(1, 0.5)}, tmp_path, "many"
    )
    assert [p.name for p in one] == ["one-accuracy.png", "one-loss.png"]
    for path in one + many:
        assert_png(path)
        svg = path.with_suffix(".svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg


def test_learning_curve_rejects_unknown_metric(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metric"):
        figures.plot_learning_curve({"a": _history(2, 1)}, "f1", tmp_path / "x.png")


def test_learning_curve_with_no_epochs(tmp_path: Path) -> None:
    assert_png(figures.plot_learning_curve({"a": []}, "loss", tmp_path / "empty.png"))


@pytest.mark.parametrize("k", [2, 10, 30])
def test_small_confusion(tmp_path: Path, k: int) -> None:
    labels, predicted = _predictions(k)
    confusion = classification_metrics(labels, predicted, k)["confusion"]
    names = [str(i) for i in range(k)] if k <= 10 else [f"class_{i}" for i in range(k)]
    image = assert_png(figures.plot_confusion(confusion, names, tmp_path / f"cm{k}.png"))
    assert image.width > image.height  # counts and row-normalised side by side


def test_factor_confusion_96_classes(tmp_path: Path, lines_metrics: dict) -> None:
    path = figures.plot_factor_confusion(
        lines_metrics["confusion"],
        LEVELS,
        tmp_path / "cm96.png",
        factor_analysis=lines_metrics["factor_analysis"],
        title="synthetic",
    )
    image = assert_png(path, 1000, 1000)
    assert image.height > image.width  # per-factor matrices below the big one
    plain = assert_png(
        figures.plot_factor_confusion(lines_metrics["confusion"], LEVELS, tmp_path / "p.png"),
        1000,
        1000,
    )
    assert plain.height < image.height


def test_factor_confusion_single_factor_fallback(tmp_path: Path) -> None:
    labels, predicted = _predictions(40)
    confusion = classification_metrics(labels, predicted, 40)["confusion"]
    names = [f"c{i}" for i in range(40)]
    assert_png(figures.plot_factor_confusion(confusion, {"class": names}, tmp_path / "c.png"))


def test_factor_confusion_checks_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="96 classes"):
        figures.plot_factor_confusion(np.eye(10), LEVELS, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_per_class_f1_grouped_by_factor_and_flat(tmp_path: Path, lines_metrics: dict) -> None:
    f1 = lines_metrics["per_class"]["f1"]
    grouped = assert_png(
        figures.plot_per_class_f1(f1, NAMES, tmp_path / "g.png", factor_levels=LEVELS)
    )
    flat = assert_png(figures.plot_per_class_f1(f1, NAMES, tmp_path / "f.png"))
    assert grouped.width > grouped.height  # panels per length/width block
    assert flat.height > 2000  # one named bar per class
    ten = assert_png(figures.plot_per_class_f1([0.9] * 10, list("0123456789"), tmp_path / "t.png"))
    assert ten.height < 800


def _heads() -> dict:
    heads = {}
    for name in ("length", "width", "color", "angle"):
        k = len(LEVELS[name])
        labels, predicted = _predictions(k, error=0.3)
        heads[name] = {"levels": [str(v) for v in LEVELS[name]]}
        heads[name].update(classification_metrics(labels, predicted, k))
    return heads


def test_head_confusions(tmp_path: Path) -> None:
    image = assert_png(figures.plot_head_confusions(_heads(), tmp_path / "heads.png"), 1000)
    assert image.width > 2 * image.height  # 2x2, 2x2, 2x2 and 12x12 in one row
    with pytest.raises(ValueError, match="no heads"):
        figures.plot_head_confusions({}, tmp_path / "none.png")


def test_head_curves(tmp_path: Path) -> None:
    history = []
    for row in _history(6, 1.0):
        for i, name in enumerate(("length", "width", "color", "angle")):
            for split in ("train", "test"):
                row[f"{split}_{name}_acc"] = row[f"{split}_acc"] ** (1 / (i + 1))
                row[f"{split}_{name}_loss"] = row[f"{split}_loss"] / 10**i
        history.append(row)
    heads = ["length", "width", "color", "angle"]
    path = figures.plot_head_curves(history, heads, tmp_path / "head-curves.png")
    assert_png(path, 1000)
    assert path.with_suffix(".svg").is_file()
    assert_png(figures.plot_head_curves([], heads, tmp_path / "empty.png", svg=False), 1000)
