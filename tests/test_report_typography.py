"""The report reads well in a 1,400 px browser window: no text under 11 px, in the page or in
its figures as displayed, and the provenance as a table.

A figure's text shows at F * D/72 * W/P px: F points at D dots per inch makes F * D/72 PNG
pixels, and the report shows the PNG's P pixels at W CSS px (``render.figure``'s width, or the
page column where that is narrower). Each figure the report shows is drawn here on tiny data,
its ``Figure`` caught as it is saved.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from cnnlab.report import figures
from cnnlab.report.records import RunRecord
from cnnlab.report.render import css, environment, figure
from cnnlab.report.run_view import provenance_table
from cnnlab.runfolder import RunInfo
from cnnlab.visualize import figures as pictures
from cnnlab.visualize import gallery

MIN_PX = 11.0
WINDOW_PX = 1400
COLUMN_PX = WINDOW_PX - 15 - 2 * 32  # a scrollbar, the body's side padding (report.css)
LEVELS = {"length": (7, 15), "width": (1, 3), "color": ("red", "blue"), "angle": (0, 15, 30)}
NAMES = ["_".join(map(str, c)) for c in itertools.product(*LEVELS.values())]


# -- the page's style sheet ------------------------------------------------------------------


def css_sizes(text: str) -> list[tuple[str, float]]:
    """Every font size the style sheet sets (``font-size`` and the ``font`` shorthand) in px;
    rem and em against the 15 px body."""
    found = []
    for rule in re.findall(r"[^{}]+\{[^}]*\}", text):
        for value in re.findall(r"font(?:-size)?\s*:\s*([^;}]+)", rule):
            size = re.search(r"(\d*\.?\d+)(px|pt|rem|em|%)", value)
            if size is None:
                continue
            number, unit = float(size.group(1)), size.group(2)
            scale = {"px": 1.0, "pt": 96 / 72, "rem": 16.0, "em": 15.0, "%": 0.15}[unit]
            found.append((rule.split("{")[0].strip(), number * scale))
    return found


def test_css_has_no_text_under_11px() -> None:
    sizes = css_sizes(css())
    assert len(sizes) >= 8
    small = [(rule, px) for rule, px in sizes if px < MIN_PX]
    assert not small, small


def test_css_sizes_are_parsed() -> None:
    sizes = dict(
        css_sizes("a { font-size: 10px } b { font: 12px/1.4 sans } c { font-size: .5rem }")
    )
    assert sizes == {"a": 10.0, "b": 12.0, "c": 8.0}


# -- figures as displayed ---------------------------------------------------------------------


@pytest.fixture
def caught(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Figure, float]]:
    """Each PNG ``Figure`` saved while the test runs, with its dpi."""
    saved: list[tuple[Figure, float]] = []
    original = Figure.savefig

    def savefig(self: Figure, fname, **kwargs):
        if kwargs.get("format", "png") == "png":
            saved.append((self, float(kwargs.get("dpi") or self.dpi)))
        return original(self, fname, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def displayed_texts(fig: Figure, dpi: float, path: Path) -> list[tuple[float, str]]:
    """(px on screen, text) of every visible text of ``fig``, saved at ``dpi`` as ``path``."""
    with Image.open(path) as image:
        pixels = image.width
    shown = min(figure(path, "probe").width, COLUMN_PX)
    texts = []
    for text in fig.findobj(Text):
        axes = text.axes
        if not text.get_visible() or not text.get_text().strip():
            continue
        if axes is not None and not axes.get_visible():
            continue
        texts.append((text.get_fontsize() * dpi / 72 * shown / pixels, text.get_text()))
    return texts


def _curves(epochs: int = 3, heads: tuple[str, ...] = ()) -> list[dict[str, float]]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e}
        for split in ("train", "val", "test"):
            row |= {f"{split}_acc": 1 - 0.5 / e, f"{split}_loss": 2.0 / e}
            for h in heads:
                row |= {f"{split}_{h}_acc": 1 - 0.4 / e, f"{split}_{h}_loss": 1.0 / e}
        rows.append(row)
    return rows


def _confusion(k: int, scale: int = 40) -> np.ndarray:
    rng = np.random.default_rng(k)
    return np.diag(rng.integers(scale, 10 * scale, k)) + rng.integers(0, 3, (k, k))


def _head(levels: tuple) -> dict:
    k = len(levels)
    return {"levels": [str(v) for v in levels], "confusion": _confusion(k).tolist(),
            "accuracy": 0.9}  # fmt: skip


def _calibration(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    right, wrong = rng.integers(0, 300, 15), rng.integers(0, 60, 15)
    return {
        "edges": np.linspace(0, 1, 16).tolist(),
        "accuracy": [None, *(rng.random(14)).tolist()],
        "ece": 0.05,
        "right": {"histogram": right.tolist(), "count": int(right.sum())},
        "wrong": {"histogram": wrong.tolist(), "count": int(wrong.sum())},
    }


def _scores(heads: list[str | None], masks: bool) -> dict:
    rng = np.random.default_rng(0)
    methods = [("gradcam", f"conv{i}") for i in (1, 2, 3)] + [("saliency", None)] * 1
    methods += [("integrated_gradients", None), ("deeplift", None), ("random", None)]
    groups = {}
    for head in heads:
        groups[head] = [
            {"method": m, "layer": layer, "insertion": 0.5 + 0.1 * rng.random(),
             "deletion": 0.2, "energy": 0.6 + 0.05 * rng.random() if masks else None}
            for m, layer in methods
        ]  # fmt: skip
    return groups


def _images(n: int, size: int = 28, channels: int = 3) -> torch.Tensor:
    return torch.randint(0, 255, (n, channels, size, size), dtype=torch.uint8)


LONG = "len15_wid3_ang105_blue"
DRAWINGS: dict[str, Callable[[Path], object]] = {
    "learning curve": lambda p: figures.plot_learning_curve({"a": _curves()}, "loss", p),
    "learning curves, runs": lambda p: figures.plot_learning_curve(
        {f"run {i}": _curves(1) for i in range(4)}, "accuracy", p
    ),
    "confusion 10": lambda p: figures.plot_confusion(_confusion(10), list("0123456789"), p),
    "confusion 30": lambda p: figures.plot_confusion(
        _confusion(30, 8), [f"class_{i}" for i in range(30)], p
    ),
    "factor confusion": lambda p: figures.plot_factor_confusion(
        _confusion(24),
        LEVELS,
        p,
        factor_analysis={"factors": {n: _head(v) for n, v in LEVELS.items()}},
    ),
    "confusion 64 classes": lambda p: figures.plot_factor_confusion(
        _confusion(64, 2), {"class": [f"c{i}" for i in range(64)]}, p
    ),
    "head confusions": lambda p: figures.plot_head_confusions(
        {n: _head(v) for n, v in LEVELS.items()}, p
    ),
    "head curves": lambda p: figures.plot_head_curves(_curves(3, ("a", "b")), ["a", "b"], p),
    "per-class F1": lambda p: figures.plot_per_class_f1([0.9] * 10, list("0123456789"), p),
    "per-class F1, 40": lambda p: figures.plot_per_class_f1([0.5] * 40, [LONG] * 40, p),
    "per-class F1 by factor": lambda p: figures.plot_per_class_f1(
        [0.8] * 24, NAMES, p, factor_levels=LEVELS
    ),
    "reliability": lambda p: figures.plot_reliability([("model", _calibration(0))], p),
    "reliability, heads": lambda p: figures.plot_reliability(
        [(f"head {i}", _calibration(i)) for i in range(5)], p
    ),
    "scoreboard": lambda p: figures.plot_scoreboard(_scores([None], False), {}, p, False),
    "scoreboard, heads, masks": lambda p: figures.plot_scoreboard(
        _scores(["a", "b", "c", "d"], True), {}, p, True
    ),
    "activations": lambda p: pictures.plot_activations(
        _images(2), torch.randn(2, 32, 28, 28), "conv1", p, labels=["len7 wid1\nang045 blue"] * 2
    ),
    "activations, 128 maps": lambda p: pictures.plot_activations(
        _images(2), torch.rand(2, 128, 3, 3), "pool3", p
    ),
    "filters": lambda p: pictures.plot_filters(
        torch.rand(16, 3, 28, 28), "conv1", p, activation=torch.rand(16), subtitle="256 steps"
    ),
    "filters, 128": lambda p: pictures.plot_filters(
        torch.rand(128, 3, 28, 28), "conv3", p, activation=torch.rand(128) * 10
    ),
    "heatmaps": lambda p: pictures.plot_heatmaps(
        _images(2),
        [(f"Guided G-CAM pool{i}", torch.rand(2, 28, 28)) for i in range(6)],
        p,
        title="Guided Grad-CAM for the class after -> (in brackets: its logit)",
        row_titles=["len7 wid1\nang045 blue\n-> len7 wid1\nang030 blue (3.7)"] * 2,
        masks=torch.rand(2, 28, 28) > 0.5,
    ),
    "top losses": lambda p: gallery.plot_top_losses(
        _images(5),
        torch.rand(5, 7, 7),
        torch.rand(5, 7, 7),
        [f"#1239\ntrue {LONG} → {LONG} (p 0.10, loss 4.92)"] * 5,
        p,
        title="The 5 highest losses (lines test): each image, then Grad-CAM at pool3",
    ),
    "confused pairs": lambda p: gallery.plot_confused_pairs(
        [(f"true {LONG} → predicted {LONG}: 10 (18.5% of {LONG})", _images(3))] * 2,
        4,
        p,
        title="The most confused pairs (lines test), with their highest-loss images",
    ),
}


@pytest.mark.parametrize("kind", DRAWINGS)
def test_figure_text_is_at_least_11px_on_screen(kind: str, caught, tmp_path: Path) -> None:
    path = Path(DRAWINGS[kind](tmp_path / "figure.png"))
    fig, dpi = caught[-1]
    texts = displayed_texts(fig, dpi, path)
    assert texts, "no text found"
    smallest = min(texts)
    assert smallest[0] >= MIN_PX, f"{kind}: {smallest[1]!r} shows at {smallest[0]:.1f} px"
    shown = min(figure(path, "probe").width, COLUMN_PX)
    assert shown == figure(path, "probe").width, f"{kind}: wider than the page's column"


def test_reliability_histograms_do_not_overlap(caught, tmp_path: Path) -> None:
    figures.plot_reliability([("model", _calibration(0))], tmp_path / "r.png")
    fig, _ = caught[-1]
    histogram = fig.axes[1]
    boxes = [p.get_bbox() for p in histogram.patches if p.get_height() > 0]
    assert len(boxes) > 15
    for a, b in itertools.combinations(boxes, 2):
        assert a.x1 <= b.x0 + 1e-9 or b.x1 <= a.x0 + 1e-9, "right and wrong bars overlap"
    assert figure(tmp_path / "r.png", "probe").width >= 600  # not a 230 px thumbnail


# -- the provenance as a table ----------------------------------------------------------------

RUN_JSON = {
    "status": "finished",
    "name": "tiny",
    "seed": 0,
    "dataset": {
        "name": "mnist",
        "train": 100,
        "test": 50,
        "class_names": list("0123456789"),
        "provenance": {
            "source": "folder",
            "files": {"train-images.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a40"},
            "holdout": {"combinations": [{"color": "blue", "width": 3}], "classes": ["<a&b>"]},
            "test_fraction": 0.4,
        },
    },
    "preprocess": {"channels": 1, "image_size": [28, 28], "mean": [0.13125912031479262]},
    "model": {"name": "convnet", "parameters": 1000},
}


def test_provenance_is_a_table() -> None:
    record = RunRecord(
        path=Path("/runs/tiny"),
        label="tiny",
        config_text="",
        run=RunInfo.from_dict(json.loads(json.dumps(RUN_JSON))),
        history=[],
        metrics={"class_names": list("0123456789")},
    )
    macros = environment().get_template("macros.html.j2").module
    page = str(macros.table(provenance_table(record)))
    start, middle = page.index("<th>preprocess</th>"), page.index("<th>dataset provenance</th>")
    rows = {
        "preprocess": page[start + len("<th>preprocess</th><td>") : middle],
        "dataset provenance": page[middle + len("<th>dataset provenance</th><td>") :],
    }
    for name, cell in rows.items():
        assert cell.startswith("<table class='kv'>"), (name, cell)
        assert "{" not in cell and "}" not in cell, (name, cell)
    provenance = rows["dataset provenance"]
    full = "440fcabf73cc546fa21475e81ea370265605f56be210a40"
    assert f"<th>train-images.gz</th><td title='{full}'>" in provenance
    assert ">440fcabf73cc…<" in provenance  # the hash to 12 characters
    assert "color blue, width 3" in provenance and "&lt;a&amp;b&gt;" in provenance
    assert "<a&b>" not in page
    assert "<th>mean</th><td title='0.13125912031479262'>0.1313</td>" in rows["preprocess"]
    assert "<th>image_size</th><td>28, 28</td>" in rows["preprocess"]
