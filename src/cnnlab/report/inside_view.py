"""What a run's "Looking inside" section shows, as plain values for ``templates/inside.html.j2``.

:func:`inside_view` prepares a run's visualize folder (the PNGs embedded as they are, never
redrawn; the settings and scores in words); :func:`inside_section` renders it alone. A folder
that cannot be shown becomes a :class:`NotShown` (one line saying why), never an error.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.report.facts import compact_json, integer
from cnnlab.report.figures import plot_scoreboard
from cnnlab.report.inside_words import (
    METHOD_NAMES,
    SANITY_LIMIT,
    SCORE_HEADERS,
    by_head,
    is_reference,
    joined,
    passes,
    score_reading,
)
from cnnlab.report.records import RunRecord, pictures_of
from cnnlab.report.render import Cell, Figure, Table, facts, figure, png_figure, render, table
from cnnlab.runfolder import SCORE_KEYS, Pictures, RunFolder
from cnnlab.visualize.methods import REGISTRY, Picture, pictures

LOCALISATION = SCORE_KEYS
FAITHFULNESS = ("deletion", "insertion")

INPUT_SCALE = 4
"""How many times the explained input images are enlarged (pixels kept)."""


@dataclass(frozen=True)
class NotShown:
    """A visualize folder that cannot be shown: where it is and why (one line on the page)."""

    folder: str
    why: str
    shown = False


@dataclass(frozen=True)
class InputImage:
    """An explained input image, enlarged: its true class, then what was explained."""

    figure: Figure
    lines: tuple[str, ...]


@dataclass(frozen=True)
class LayerFigure:
    """One layer's figure and its words; a ``folded`` one opens on a click."""

    figure: Figure
    title: str
    folded: bool


@dataclass(frozen=True)
class Layers:
    """The activations or filter images: one figure per layer, and how to read them."""

    figures: tuple[LayerFigure, ...]
    note: str


@dataclass(frozen=True)
class Gallery:
    """A heatmap kind (Grad-CAM, ...): one figure per head."""

    title: str
    figures: tuple[Figure, ...]


@dataclass(frozen=True)
class Scores:
    """The scoreboard: the reading, the table and what its columns mean."""

    reading: str
    table: Table
    note: str
    figure: Figure | None = None
    """Faithfulness, against localisation with masks, per head (None without faithfulness)."""
    figure_note: str = ""
    """How to read the figure, in the words of the data (no line without masks)."""


@dataclass(frozen=True)
class InsideView:
    """Everything the "Looking inside" section of one run shows."""

    folder: str
    outlined: bool  # the heatmaps outline the line's true pixels
    notes: tuple[str, ...]
    settings: Table
    inputs: tuple[InputImage, ...]
    inputs_problem: str | None  # why the input images are not shown
    per_head: bool  # the input captions carry one line per head
    activations: Layers | None  # None: not made for this run
    filters: Layers | None
    heatmaps: tuple[Gallery, ...]
    heatmap_names: str  # the methods of the galleries: "Grad-CAM, ... and saliency"
    scores: Scores | None
    shown = True


def inside_view(record: RunRecord) -> InsideView | NotShown | None:
    """The "Looking inside" section of a run, or None when the run has no pictures; a folder
    that cannot be shown (unreadable, partial, from an older cnnlab, a broken PNG) gives a
    :class:`NotShown` instead."""
    return _prepare(record.pictures, record.pictures_problem, record.path, record.label)


def inside_section(run_dir: Path, label: str) -> str:
    """One run folder's section rendered alone (HTML; "" when the run has no pictures)."""
    pictures, problem = pictures_of(RunFolder(run_dir))
    return render_inside(_prepare(pictures, problem, Path(run_dir), label))


def _prepare(
    pictures: Pictures | None, problem: str | None, run_dir: Path, label: str
) -> InsideView | NotShown | None:
    folder = RunFolder(run_dir)
    try:
        if problem is not None:
            raise CnnlabError(problem)
        if pictures is None:
            return None
        return view(pictures, label, masks=folder.read_info().dataset.masks)
    except (CnnlabError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        why = str(exc) if isinstance(exc, CnnlabError) else f"{type(exc).__name__}: {exc}"
        return NotShown(str(folder.visualize), why)


def render_inside(inside: InsideView | NotShown | None) -> str:
    """``templates/inside.html.j2`` over one prepared section."""
    return render("inside.html.j2", inside=inside)


def view(inside: Pictures, label: str, masks: bool = False) -> InsideView:
    """What the section shows of a checked visualize folder (reads and embeds its PNGs);
    ``masks``: the run's data has object masks (the heatmaps outline them)."""
    inputs, problem = _inputs(inside)
    drawn = _pictures(inside)
    return InsideView(
        folder=str(inside.folder),
        outlined=masks and inside.summary["images"].get("source") == "test sample",
        notes=inside.notes,
        settings=facts(_settings(inside)),
        inputs=inputs,
        inputs_problem=problem,
        per_head=len(inside.summary["heatmaps"]) > 1,
        activations=_layers(inside, "activations", label),
        filters=_layers(inside, "filters", label),
        heatmaps=_heatmaps(inside, drawn, label),
        heatmap_names=joined([p.methods[0].title for p in drawn]),
        scores=None if inside.scores is None else _scores(inside.scores, label),
    )


def _settings(inside: Pictures) -> list[tuple[str, str]]:
    summary = inside.summary
    images = summary["images"]
    count = integer(images.get("count"))
    if images.get("source") == "test sample":
        shown = f"{count} test images, one per group of classes (the same for every run)"
        if images.get("test_index"):
            shown += f"; test index {', '.join(map(str, images['test_index']))}"
    else:
        shown = f"{count} given images"
    target = str(summary.get("target", "predicted"))
    explained = (
        "the predicted class of each image" + (" (per head)" if summary.get("heads") else "")
        if target == "predicted"
        else f"class {target}"
    )
    rows: list[tuple[str, str]] = [
        ("images", shown),
        ("explained class", explained),
        ("layers", ", ".join(_layer_shape(inside, name) for name in inside.layers)),
    ]
    if summary.get("heads"):
        rows.append(("heads", ", ".join(map(str, summary["heads"]))))
    filters = summary.get("filters") or {}
    if filters:
        rows.append(("filter images", _filter_settings(filters)))
    if inside.scores is not None:
        rows.append(("scores", _score_sample(inside.scores)))
    return rows


def _score_sample(scores: Mapping[str, Any]) -> str:
    """The images the scoreboard was measured on, and against what, in words."""
    parts = ["against the line masks"] if scores.get("masks") else []
    if scores.get("faithfulness_images"):
        parts.append(
            f"by deletion and insertion on the first {integer(scores['faithfulness_images'])}"
        )
    sane = integer(scores.get("sanity_images", scores.get("images")))
    parts.append(f"against a copy of the model with re-initialised weights on the first {sane}")
    return (
        f"{integer(scores.get('images'))} test images (seed {scores.get('seed', '–')}): "
        + "; ".join(parts)
    )


def _layer_shape(inside: Pictures, name: str) -> str:
    shape = (inside.summary["activations"].get(name) or {}).get("shape")
    if isinstance(shape, list) and len(shape) == 4:
        return f"{name} ({shape[1]}×{shape[2]}×{shape[3]})"
    return name


def _filter_settings(filters: Mapping[str, Any]) -> str:
    """The settings every layer's filter images share, in words (then the full record)."""
    first = next(iter(filters.values()))
    s = first.get("settings") or {}
    how = "Adam" if s.get("optimiser") == "adam" else "gradient ascent"
    words = [f"{s.get('steps', '–')} steps of {how} (lr {s.get('lr', '–')})"]
    words.append(f"seed {s.get('seed', '–')}")
    objectives = ", ".join(f"{k}: {v.get('objective', '–')}" for k, v in filters.items())
    words.append(f"maximising the mean {s.get('objective', 'activation')} ({objectives})")
    for key, what in (("jitter", "jitter {} px"), ("tv", "TV {}"), ("l2", "L2 {}")):
        if s.get(key):
            words.append(what.format(s[key]))
    if s.get("fourier"):
        words.append(f"Fourier parameterisation (decay {s.get('decay')})")
    return "; ".join(words) + f". All settings: {compact_json(s)}"


def _inputs(inside: Pictures) -> tuple[tuple[InputImage, ...], str | None]:
    """The explained images, enlarged, with their true class and what was explained; or why
    they cannot be shown."""
    try:
        with open(inside.inputs, "rb") as handle:
            x = np.load(handle, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return (), f"{inside.inputs.name} cannot be read ({type(exc).__name__})."
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        return (), f"{inside.inputs.name} does not hold uint8 (N, C, H, W) images."
    labels = inside.summary["images"].get("labels") or []
    items = []
    for i, image in enumerate(x):
        lines = [str(labels[i]) if i < len(labels) else f"image {i}"]
        lines += _explained(inside, i)
        items.append(InputImage(png_figure(_enlarged(image), "input image"), tuple(lines)))
    return tuple(items), None


def _explained(inside: Pictures, i: int) -> list[str]:
    out = []
    for head, entry in inside.summary["heatmaps"].items():
        names, scores = entry.get("target_names") or [], entry.get("scores") or []
        if i < len(names):
            score = scores[i] if i < len(scores) else None
            value = f" ({score:.2g})" if isinstance(score, int | float) else ""
            out.append(f"{'→ ' if head == 'output' else f'{head} → '}{names[i]}{value}")
    return out


def _enlarged(image: np.ndarray, scale: int = INPUT_SCALE) -> Image.Image:
    """One (C, H, W) uint8 image as a picture, ``scale`` times enlarged, pixels kept."""
    array = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    picture = Image.fromarray(np.ascontiguousarray(array))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def _layers(inside: Pictures, kind: str, label: str) -> Layers | None:
    """One figure per layer: the first and last open, the ones between folded away."""
    entries = inside.summary.get(kind) or {}
    if not entries:
        return None
    names = list(entries)
    shown = []
    for k, name in enumerate(names):
        entry = entries[name]
        image = figure(inside.png(entry["png"]), f"{kind} of {name} in {label}")
        folded = k not in (0, len(names) - 1)
        shown.append(LayerFigure(image, _layer_title(kind, name, entry), folded))
    note = (
        "Every feature map of each layer, one row per image; the first and last layer are "
        "shown, the others fold open."
        if kind == "activations"
        else "Above each filter image: its index and the mean activation it reaches; "
        "'flat': the image barely moved from its blank start."
    )
    return Layers(tuple(shown), note)


def _layer_title(kind: str, name: str, entry: Mapping[str, Any]) -> str:
    if kind == "activations":
        shape = entry.get("shape") or []
        if len(shape) == 4:
            return f"{name}: {shape[1]} feature maps of {shape[2]}×{shape[3]}"
        return name
    gain = entry.get("mean_gain")
    gained = f", mean activation gained {gain:.2g}" if isinstance(gain, int | float) else ""
    return f"{name}: {entry.get('count', '?')} filter images{gained}"


def _pictures(inside: Pictures) -> tuple[Picture, ...]:
    """The heatmap pictures every head has, in page order (methods this cnnlab knows)."""
    entries = list(inside.summary["heatmaps"].values())
    named = set(entries[0].get("methods") or REGISTRY)
    methods = [m for m in REGISTRY.values() if m.name in named]
    return tuple(p for p in pictures(methods) if all(p.name in entry for entry in entries))


def _heatmaps(inside: Pictures, drawn: tuple[Picture, ...], label: str) -> tuple[Gallery, ...]:
    """A gallery per picture (Grad-CAM, ..., saliency); a multi-head model's side by side,
    one captioned figure per head."""
    heatmaps = inside.summary["heatmaps"]
    multi = list(heatmaps) != ["output"]
    return tuple(
        Gallery(
            picture.heading,
            tuple(
                figure(
                    inside.png(entry[picture.name]),
                    f"{picture.heading} of {label}" + (f", head {head}" if multi else ""),
                    caption=f"head {head}" if multi else None,
                )
                for head, entry in heatmaps.items()
            ),
        )
        for picture in drawn
    )


def _scores(scores: Mapping[str, Any], label: str) -> Scores:
    """The reading, the table (one row per head, method and layer; best values bold, the
    random reference not competing; rows that delete or insert worse than it flagged) and the
    figure of faithfulness (against localisation, with masks)."""
    rows = scores["rows"]
    masks = bool(scores.get("masks"))
    faithful = any(r.get("insertion") is not None for r in rows)
    metrics = [
        *(LOCALISATION if masks else ()),
        *(FAITHFULNESS if faithful else ()),
        "rank_corr_random",
    ]
    heads = any(r.get("head") for r in rows)
    headers = [
        *(["head"] if heads else []),
        "method",
        "layer",
        *(SCORE_HEADERS[m] for m in metrics),
        "randomisation check",
        *(["faithfulness"] if faithful else []),
    ]
    body = _score_rows(rows, metrics, heads, faithful)
    first = len(headers) - len(metrics) - 1 - faithful
    note = _score_note(scores, masks, faithful, heads)
    with tempfile.TemporaryDirectory() as tmp:
        path = scoreboard_figure(scores, Path(tmp) / "board.png")
        what = "localisation and faithfulness" if masks else "faithfulness"
        board = None if path is None else figure(path, f"Explanation methods of {label}: {what}")
    return Scores(
        " ".join(score_reading(scores)),
        table(headers, body, numeric=range(first, first + len(metrics)), cls="scores"),
        note,
        board,
        _figure_note(masks),
    )


def scoreboard_figure(scores: Mapping[str, Any], path: Path) -> Path | None:
    """The figure of a ``scores.json`` record (:func:`~cnnlab.report.figures.plot_scoreboard`):
    per head, each method's faithfulness against its energy in the mask, or as bars without
    masks; the random reference dashed. None (nothing written) without faithfulness scores.
    The report shows it, and ``cnnlab visualize --score`` writes it (``scores.png``)."""
    rows = scores["rows"]
    if not any(r.get("insertion") is not None for r in rows):
        return None
    return plot_scoreboard(by_head(rows), METHOD_NAMES, path, bool(scores.get("masks")))


def _score_rows(
    rows: list[Mapping[str, Any]], metrics: list[str], heads: bool, faithful: bool
) -> list[list[Any]]:
    """The table's rows: names, scores (each column's best bold), the randomisation check's
    verdict and, with faithfulness, the flag of a method worse than random maps."""
    ranked = (*LOCALISATION, *FAITHFULNESS)
    best = {
        (head, m): (min if m == "deletion" else max)(
            (r[m] for r in group if r.get(m) is not None and not is_reference(r)), default=None
        )
        for head, group in by_head(rows).items()
        for m in ranked
    }
    body = []
    for row in rows:
        cells: list[Any] = [row.get("head") or "–"] if heads else []
        cells += [METHOD_NAMES.get(row["method"], row["method"]), row.get("layer") or "–"]
        for m in metrics:
            text = "–" if row.get(m) is None else f"{row[m]:.3f}"
            top = best.get((row.get("head"), m))
            strong = m in ranked and top is not None and row.get(m) == top
            cells.append(Cell(text, strong=True) if strong and not is_reference(row) else text)
        verdict = passes(row)
        cells.append("–" if verdict is None else "passes" if verdict else "fails")
        if faithful:
            cells.append("worse than random" if row.get("worse_than_random") else "")
        body.append(cells)
    return body


def _figure_note(masks: bool) -> str:
    """How to read the scoreboard's figure."""
    faithfulness = (
        "faithfulness (insertion minus deletion area; higher: the model's answer depends more "
        "on the pixels the map ranks first)"
    )
    if masks:
        return (
            f"Each method: {faithfulness} against localisation (the share of the map's positive "
            "heat on the line). Dashed: random maps."
        )
    return f"Each method's {faithfulness}, as a bar. Dashed: random maps."


def _score_note(scores: Mapping[str, Any], masks: bool, faithful: bool, heads: bool) -> str:
    """What the scoreboard's columns measure, for the scores it has."""
    note = (
        "Rank correlation with random weights: how alike the maps of the trained model and of "
        f"a re-initialised copy are (lower is better; below {SANITY_LIMIT} passes; on the first "
        f"{integer(scores.get('sanity_images', scores.get('images')))} images)."
    )
    if faithful:
        note = (
            "Deletion / insertion area: the explained class's probability as the map's hottest "
            "pixels are replaced by the training mean (deletion: lower is better) or put back "
            "into a mean image (insertion: higher is better), in "
            f"{integer(scores.get('faithfulness_steps'))} steps, averaged over the first "
            f"{integer(scores.get('faithfulness_images'))} images"
            f"{'; needs no masks' if masks else ''}. "
            "Worse than random: a larger deletion or a smaller insertion area than the random "
            f"reference's. {note}"
        )
    if masks:
        note = (
            "Pointing game: the map's hottest pixel lies on the line (within 1 px: or next to "
            "it). Energy in mask: the share of the map's positive values on the line. Top-k "
            f"IoU: overlap of the map's k hottest pixels with the line's k pixels. {note}"
        )
    note += (
        f" Bold: the best of {'each head' if heads else 'each column'}; random (reference): "
        "maps of uniform noise, the chance level of every score."
    )
    return note
