"""The report's "Looking inside" part: the pictures ``cnnlab visualize`` wrote into
``RUN_DIR/visualize``, their settings, and the localisation scores read in plain words.

:func:`read_inside` reads and checks a visualize folder, :func:`prepare_inside` makes the
missing ones, :func:`inside_section` renders the HTML (the PNGs embedded as they are, never
redrawn) and :func:`inside_line` is the Markdown summary's line.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.report import html as page  # html imports this module: names resolve at call time
from cnnlab.report.summary import compact_json, integer

VISUALIZE_DIR = "visualize"
"""Where ``cnnlab visualize RUN_DIR`` writes by default, and where the report looks."""

SCORE_IMAGES = 256
"""Test images scored when the report makes the pictures (``cnnlab report --inside``)."""

SANITY_LIMIT = 0.5
"""A method passes the randomisation check when the mean rank correlation between its maps
for the trained and for a re-initialised model is below this."""

KINDS = {
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "saliency": "Saliency and guided backpropagation",
}
"""The heatmap galleries of a visualize folder, in page order, with their headings."""

METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "saliency": "saliency",
    "guided_backprop": "guided backprop",
}

LOCALISATION = ("pointing", "pointing_1px", "energy", "topk_iou")
SCORE_HEADERS = {
    "pointing": "pointing game",
    "pointing_1px": "within 1 px",
    "energy": "energy in mask",
    "topk_iou": "top-k IoU",
    "rank_corr_random": "rank corr. with random weights",
}


@dataclass(frozen=True)
class Inside:
    """A checked visualize folder: ``summary.json``, ``scores.json`` (or None), notes on what
    could not be shown (an unreadable score file, pictures older than the model) and whether
    the pictures are older than the model (``stale``)."""

    folder: Path
    summary: dict[str, Any]
    scores: dict[str, Any] | None
    notes: tuple[str, ...] = ()
    stale: bool = False

    def png(self, recorded: Any) -> Path:
        """A picture named in ``summary.json``, found in this folder (the run may have moved)."""
        return self.folder / Path(str(recorded)).name

    @property
    def layers(self) -> list[str]:
        return list(self.summary["layers"])


# -- reading and making ---------------------------------------------------------------------------


def read_inside(run_dir: Path) -> Inside | None:
    """The run's visualize folder, checked; None when it has no ``summary.json``.

    Raises :class:`CnnlabError` with a short reason when the summary is unreadable, from an
    older cnnlab, or names pictures that are missing (an interrupted or partial run).
    """
    folder = Path(run_dir) / VISUALIZE_DIR
    path = folder / "summary.json"
    if not path.is_file():
        return None
    summary = _read_object(path)
    _check_summary(summary, folder)
    notes = []
    scores = None
    if summary.get("scores_json"):
        try:
            scores = _read_object(folder / "scores.json")
            _check_scores(scores)
        except CnnlabError as exc:
            scores = None
            notes.append(f"The localisation scores are left out: {exc}.")
    model = Path(run_dir) / "model.safetensors"
    stale = model.is_file() and path.stat().st_mtime < model.stat().st_mtime
    if stale:
        notes.append(
            "These pictures are older than the run's model.safetensors: make them again with "
            "cnnlab visualize (or cnnlab report --inside)."
        )
    return Inside(folder, summary, scores, tuple(notes), stale)


def needs_pictures(run_dir: Path) -> bool:
    """True when the run has no usable visualize folder, or one older than its model."""
    try:
        inside = read_inside(run_dir)
    except CnnlabError:
        return True
    return inside is None or inside.stale


def prepare_inside(
    run_dirs: Iterable[Path], options: Mapping[str, Any] | None = None
) -> list[Path]:
    """Run ``visualize_run`` for every run that :func:`needs_pictures`, scoring Lines runs on
    :data:`SCORE_IMAGES` test images; ``options`` go to ``visualize_run`` (they win). Returns
    the runs it made pictures for."""
    from cnnlab.visualize import visualize_run

    made = []
    for run_dir in map(Path, run_dirs):
        if not needs_pictures(run_dir):
            continue
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise CnnlabError(f"{run_dir}: cannot write the pictures (the folder is read-only)")
        kwargs = {"score": _dataset(run_dir) == "lines", "score_images": SCORE_IMAGES}
        visualize_run(run_dir, run_dir / VISUALIZE_DIR, **{**kwargs, **(options or {})})
        made.append(run_dir)
    return made


def _dataset(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / "run.json").read_text())["dataset"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CnnlabError(f"{path.name} cannot be read ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise CnnlabError(f"{path.name} is not a JSON object")
    return data


def _check_summary(summary: dict[str, Any], folder: Path) -> None:
    """Every part the section shows is there, and every picture it names exists."""
    for key, kind in (("layers", list), ("images", dict), ("activations", dict)):
        if not isinstance(summary.get(key), kind):
            raise CnnlabError(f"summary.json has no {key!r} (written by an older cnnlab?)")
    heatmaps = summary.get("heatmaps")
    if not isinstance(heatmaps, dict) or not heatmaps:
        raise CnnlabError("summary.json has no heatmaps (written by an older cnnlab?)")
    filters = summary.get("filters") or {}
    if not isinstance(filters, dict):
        raise CnnlabError("summary.json: 'filters' is not a table of layers")
    entries = [*summary["activations"].values(), *filters.values()]
    pictures = [entry.get("png") if isinstance(entry, dict) else None for entry in entries]
    for entry in heatmaps.values():
        pictures += [entry.get(kind) if isinstance(entry, dict) else None for kind in KINDS]
    for picture in pictures:
        if not isinstance(picture, str):
            raise CnnlabError("summary.json names a picture without a file")
        if not (folder / Path(picture).name).is_file():
            raise CnnlabError(f"{Path(picture).name} is missing (an interrupted run?)")


def _check_scores(scores: dict[str, Any]) -> None:
    rows = scores.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "method" in r for r in rows):
        raise CnnlabError("scores.json has no rows")
    for row in rows:
        for key in (*LOCALISATION, "rank_corr_random"):
            if row.get(key) is not None and not isinstance(row[key], int | float):
                raise CnnlabError(f"scores.json: {key} is not a number")


# -- the scores in words ----------------------------------------------------------------------


def method_name(row: Mapping[str, Any]) -> str:
    """``Guided Grad-CAM at pool1`` or ``saliency``."""
    name = METHOD_NAMES.get(row["method"], str(row["method"]))
    return f"{name} at {row['layer']}" if row.get("layer") else name


def passes(row: Mapping[str, Any]) -> bool | None:
    """The randomisation check of one row (None: not measured)."""
    rho = row.get("rank_corr_random")
    return None if rho is None else rho < SANITY_LIMIT


def best_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The row whose maps point at the object best (pointing game, then energy, then IoU)."""
    scored = [r for r in rows if r.get("pointing") is not None]
    if not scored:
        return None
    return max(
        scored, key=lambda r: tuple(r.get(k) or 0.0 for k in ("pointing", "energy", "topk_iou"))
    )


def by_head(rows: Sequence[Mapping[str, Any]]) -> dict[str | None, list[Mapping[str, Any]]]:
    groups: dict[str | None, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("head"), []).append(row)
    return groups


def score_reading(scores: Mapping[str, Any]) -> list[str]:
    """The score table in a few plain sentences, every figure taken from ``scores``."""
    rows = scores["rows"]
    n = integer(scores.get("images"))
    groups = by_head(rows)
    sentences = _one_output(rows, n) if len(groups) == 1 else _per_head(groups, n)
    sentences.append(_sanity_summary(rows))
    return [s for s in sentences if s]


def _one_output(rows: Sequence[Mapping[str, Any]], n: str) -> list[str]:
    best = best_row(rows)
    if best is None:
        return []
    sentences = [
        f"{_cap(method_name(best))} points at the line best: its hottest pixel is on the line "
        f"in {_pct(best['pointing'])} of {n} test images ({_pct(best['pointing_1px'])} within "
        f"1 px), and {_pct(best['energy'])} of its positive heat falls on the line"
        f"{_sanity_clause(best, rows)}."
    ]
    top = _most_concentrated(rows)
    if top is not best and top.get("energy"):
        sentences.append(
            f"The most concentrated map is {method_name(top)}: {_pct(top['energy'])} of its "
            f"heat on the line, top-k IoU {_decimal(top.get('topk_iou'))}, pointing game "
            f"{_pct(top.get('pointing'))}."
        )
    cams = [r for r in rows if r["method"] == "gradcam" and r.get("pointing") is not None]
    if len(cams) > 1:
        high = max(cams, key=lambda r: r["pointing"])
        low = min(cams, key=lambda r: r["pointing"])
        sentences.append(
            f"Plain Grad-CAM points best at {high['layer']} ({_pct(high['pointing'])}) and "
            f"worst at {low['layer']} ({_pct(low['pointing'])})."
        )
    return sentences


def _per_head(groups: Mapping[Any, Sequence[Mapping[str, Any]]], n: str) -> list[str]:
    """One sentence per method that is some head's best pointer, and one on concentration."""
    bests = {head: best_row(group) for head, group in groups.items()}
    winners: dict[str, list[Any]] = {}
    for head, best in bests.items():
        if best is not None:
            winners.setdefault(method_name(best), []).append(head)
    sentences = []
    for name, heads in winners.items():
        rows = [bests[h] for h in heads]
        which = "every head" if len(heads) == len(groups) else _and([f"{h}" for h in heads])
        hits = ", ".join(f"{h} {_pct(r['pointing'])}" for h, r in zip(heads, rows, strict=True))
        failing = [h for h, r in zip(heads, rows, strict=True) if passes(r) is False]
        checked = any(passes(r) is not None for r in rows)
        verdict = (
            ""
            if not checked
            else "; it passes the randomisation check"
            if not failing
            else f"; it fails the randomisation check for {_and(failing)}"
        )
        sentences.append(
            f"{_cap(name)} points at the line best for {which}: its hottest pixel is on the "
            f"line in {hits} of {n} test images, with {_span([r['energy'] for r in rows])} of "
            f"its positive heat on the line{verdict}."
        )
    concentrated: dict[str, list[str]] = {}
    for head, group in groups.items():
        top = _most_concentrated(group)
        if top is not bests[head] and top.get("energy"):
            concentrated.setdefault(method_name(top), []).append(f"{head} {_pct(top['energy'])}")
    if concentrated:
        listed = "; ".join(f"{k} ({', '.join(v)})" for k, v in concentrated.items())
        sentences.append(f"The maps that keep most heat on the line: {listed}.")
    return sentences


def _most_concentrated(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    return max(rows, key=lambda r: r.get("energy") or 0.0)


def _sanity_clause(best: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    verdict = passes(best)
    if verdict is None:
        return ""
    rho = best["rank_corr_random"]
    if verdict:
        return f"; it passes the randomisation check (ρ = {rho:.2f})"
    clause = (
        f"; but it fails the randomisation check (ρ = {rho:.2f}): its maps change too little "
        "when the weights are randomised, so they owe much to the input itself"
    )
    alternative = best_row([r for r in rows if passes(r)])
    if alternative is not None:
        clause += (
            f". The best that passes is {method_name(alternative)} "
            f"({_pct(alternative['pointing'])} on the line, ρ = "
            f"{alternative['rank_corr_random']:.2f})"
        )
    return clause


def _sanity_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    checked = [r for r in rows if passes(r) is not None]
    if not checked:
        return ""
    good = [r for r in checked if passes(r)]
    failing = sorted({method_name(r) for r in checked if not passes(r)})
    text = (
        f"Randomisation check (the maps of a copy with re-initialised weights should differ: "
        f"mean rank correlation below {SANITY_LIMIT}): {len(good)} of {len(checked)} rows pass"
    )
    if failing and len(failing) <= 4:
        text += f"; {', '.join(failing)} fail{'s' if len(failing) == 1 else ''}"
    return text + "."


def inside_line(run_dir: Path) -> str | None:
    """One line for the Markdown summary: the best localisation figure (None: no scores)."""
    try:
        inside = read_inside(run_dir)
    except CnnlabError:
        return None
    if inside is None or inside.scores is None:
        return None
    groups = by_head(inside.scores["rows"])
    bests = {head: best_row(group) for head, group in groups.items()}
    parts = [
        f"{head + ': ' if head else ''}{method_name(best)}, pointing game "
        f"{best['pointing']:.3f}, energy in mask {best['energy']:.3f}"
        + ("" if passes(best) is None else f", randomisation check {_verdict(best)}")
        for head, best in bests.items()
        if best is not None
    ]
    if not parts:
        return None
    n = integer(inside.scores.get("images"))
    return f"looking inside, best localisation on {n} test images: " + "; ".join(parts)


def _verdict(row: Mapping[str, Any]) -> str:
    return f"{'passed' if passes(row) else 'failed'} (ρ {row['rank_corr_random']:.2f})"


def _decimal(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "–"


def _pct(value: Any) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, int | float) else "–"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _and(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _span(values: Sequence[float]) -> str:
    """``42%`` or ``13–17%``."""
    low, high = round(100 * min(values)), round(100 * max(values))
    return f"{low}%" if low == high else f"{low}–{high}%"


# -- HTML ----------------------------------------------------------------------------------------


def inside_section(run_dir: Path, label: str) -> str:
    """The "Looking inside" subsection of a run, or "" when the run has no pictures; a folder
    that cannot be shown (unreadable, partial, from an older cnnlab, a broken PNG) gives a
    one-line note instead."""
    try:
        inside = read_inside(run_dir)
        return "" if inside is None else _render(inside, label)
    except (CnnlabError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        why = str(exc) if isinstance(exc, CnnlabError) else f"{type(exc).__name__}: {exc}"
        return (
            "<h3>Looking inside</h3><p class='note'>The pictures in "
            f"<code>{page.esc(Path(run_dir) / VISUALIZE_DIR)}</code> are not shown: "
            f"{page.esc(why)}. Make them again with <code>cnnlab visualize</code> or "
            "<code>cnnlab report --inside</code>.</p>"
        )


def _render(inside: Inside, label: str) -> str:
    parts = [
        "<h3>Looking inside</h3>",
        _intro(inside),
        *(f"<p class='note warn'>{page.esc(note)}</p>" for note in inside.notes),
        _settings(inside),
        "<h4>Input images</h4>",
        _inputs(inside),
        "<h4>Activations</h4>",
        _layer_figures(inside, "activations", label),
        "<h4>Filter images</h4>",
        _layer_figures(inside, "filters", label),
        *_heatmaps(inside, label),
    ]
    if inside.scores is not None:
        parts += ["<h4>Localisation scores</h4>", _scores(inside.scores)]
    return "\n".join(parts)


def _intro(inside: Inside) -> str:
    return (
        "<p>What the network does with a few test images, from <code>"
        f"{page.esc(inside.folder)}</code> (written by <code>cnnlab visualize</code>; raw "
        "arrays beside every picture). Activations are each layer's feature maps; filter "
        "images are inputs optimised to excite one filter each; Grad-CAM, Guided Grad-CAM and "
        "saliency show which pixels drive the explained class."
        + (" Cyan outlines are the line's true pixels." if _outlined(inside) else "")
        + "</p>"
    )


def _outlined(inside: Inside) -> bool:
    """Whether the heatmaps outline the object: Lines test images (they carry masks)."""
    test_sample = inside.summary["images"].get("source") == "test sample"
    return test_sample and _dataset(inside.folder.parent) == "lines"


def _settings(inside: Inside) -> str:
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
        scores = inside.scores
        rows.append(
            (
                "scores",
                f"{integer(scores.get('images'))} test images (seed {scores.get('seed', '–')}), "
                f"{'against the line masks and ' if scores.get('masks') else ''}against a copy "
                "of the model with re-initialised weights",
            )
        )
    cells = [(page.Raw(f"<th>{page.esc(k)}</th>"), v) for k, v in rows]
    return page._table(("", ""), cells, head=False)


def _layer_shape(inside: Inside, name: str) -> str:
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


def _inputs(inside: Inside) -> str:
    """The explained images, enlarged, with their true class and what was explained."""
    try:
        with open(inside.folder / "inputs.npy", "rb") as handle:
            x = np.load(handle, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"<p class='note'>inputs.npy cannot be read ({page.esc(type(exc).__name__)}).</p>"
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        return "<p class='note'>inputs.npy does not hold uint8 (N, C, H, W) images.</p>"
    labels = inside.summary["images"].get("labels") or []
    items = []
    for i, image in enumerate(x):
        lines = [str(labels[i]) if i < len(labels) else f"image {i}"]
        lines += _explained(inside, i)
        caption = "<br>".join(page.esc(line) for line in lines)
        items.append(
            f"<figure class='input'>{_png(image)}<figcaption>{caption}</figcaption></figure>"
        )
    return (
        f"<div class='figures'>{''.join(items)}</div><p class='note'>True class, then the "
        "class explained (predicted unless one was asked for) and its logit"
        + (", per head" if len(inside.summary["heatmaps"]) > 1 else "")
        + ".</p>"
    )


def _explained(inside: Inside, i: int) -> list[str]:
    out = []
    for head, entry in inside.summary["heatmaps"].items():
        names, scores = entry.get("target_names") or [], entry.get("scores") or []
        if i < len(names):
            score = scores[i] if i < len(scores) else None
            value = f" ({score:.2g})" if isinstance(score, int | float) else ""
            out.append(f"{'→ ' if head == 'output' else f'{head} → '}{names[i]}{value}")
    return out


def _png(image: np.ndarray, scale: int = 4) -> str:
    """One (C, H, W) uint8 image as an embedded PNG, ``scale`` times enlarged, pixels kept."""
    array = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    picture = Image.fromarray(np.ascontiguousarray(array))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img src='{uri}' alt='input image' width='{picture.width}'>"


def _layer_figures(inside: Inside, kind: str, label: str) -> str:
    """One figure per layer: the first and last open, the ones between folded away."""
    entries = inside.summary.get(kind) or {}
    if not entries:
        return "<p class='note'>Not made for this run (cnnlab visualize without filters).</p>"
    names = list(entries)
    parts = []
    for k, name in enumerate(names):
        entry = entries[name]
        figure = page._figure(inside.png(entry["png"]), f"{kind} of {name} in {label}")
        if k in (0, len(names) - 1):
            parts.append(figure)
        else:
            parts.append(
                f"<details><summary>{page.esc(_layer_title(kind, name, entry))}</summary>"
                f"{figure}</details>"
            )
    note = (
        "Every feature map of each layer, one row per image; the first and last layer are "
        "shown, the others fold open."
        if kind == "activations"
        else "Above each filter image: its index and the mean activation it reaches; "
        "'flat': the image barely moved from its blank start."
    )
    return "\n".join([*parts, f"<p class='note'>{note}</p>"])


def _layer_title(kind: str, name: str, entry: Mapping[str, Any]) -> str:
    if kind == "activations":
        shape = entry.get("shape") or []
        if len(shape) == 4:
            return f"{name}: {shape[1]} feature maps of {shape[2]}×{shape[3]}"
        return name
    gain = entry.get("mean_gain")
    gained = f", mean activation gained {gain:.2g}" if isinstance(gain, int | float) else ""
    return f"{name}: {entry.get('count', '?')} filter images{gained}"


def _heatmaps(inside: Inside, label: str) -> list[str]:
    """Grad-CAM, Guided Grad-CAM and saliency galleries; a multi-head model's side by side,
    one captioned figure per head."""
    heatmaps = inside.summary["heatmaps"]
    multi = list(heatmaps) != ["output"]
    parts = []
    for kind, title in KINDS.items():
        figures = [
            page._figure(
                inside.png(entry[kind]),
                f"{title} of {label}" + (f", head {head}" if multi else ""),
                caption=f"head {head}" if multi else None,
            )
            for head, entry in heatmaps.items()
        ]
        parts += [f"<h4>{title}</h4>", f"<div class='figures'>{''.join(figures)}</div>"]
    parts.append(
        "<p class='note'>Each map is drawn on its own scale, 0 to its maximum (written under "
        "it); rows are the input images, labelled with their true class and, after →, the "
        "class explained with its logit.</p>"
    )
    return parts


def _scores(scores: Mapping[str, Any]) -> str:
    """The reading, then the table: one row per head, method and layer; best values bold."""
    rows = scores["rows"]
    masks = bool(scores.get("masks"))
    metrics = [*(LOCALISATION if masks else ()), "rank_corr_random"]
    heads = any(r.get("head") for r in rows)
    headers = [
        *(["head"] if heads else []),
        "method",
        "layer",
        *(SCORE_HEADERS[m] for m in metrics),
        "randomisation check",
    ]
    best = {
        (head, m): max((r[m] for r in group if r.get(m) is not None), default=None)
        for head, group in by_head(rows).items()
        for m in LOCALISATION
    }
    body = []
    for row in rows:
        cells: list[Any] = [row.get("head") or "–"] if heads else []
        cells += [METHOD_NAMES.get(row["method"], row["method"]), row.get("layer") or "–"]
        for m in metrics:
            text = "–" if row.get(m) is None else f"{row[m]:.3f}"
            top = best.get((row.get("head"), m))
            strong = m in LOCALISATION and top is not None and row.get(m) == top
            cells.append(page.Raw(f"<strong>{text}</strong>") if strong else text)
        verdict = passes(row)
        cells.append("–" if verdict is None else "passes" if verdict else "fails")
        body.append(cells)
    first = len(headers) - len(metrics) - 1
    table = page._table(headers, body, numeric=range(first, len(headers) - 1), cls="scores")
    note = (
        "Rank correlation with random weights: how alike the maps of the trained model and of "
        f"a re-initialised copy are (lower is better; below {SANITY_LIMIT} passes)."
    )
    if masks:
        note = (
            "Pointing game: the map's hottest pixel lies on the line (within 1 px: or next to "
            "it). Energy in mask: the share of the map's positive values on the line. Top-k "
            "IoU: overlap of the map's k hottest pixels with the line's k pixels. "
            f"{note} Bold: the best of {'each head' if heads else 'each column'}."
        )
    return "\n".join(
        [
            f"<p>{page.esc(' '.join(score_reading(scores)))}</p>",
            f"<div class='wide'>{table}</div>",
            f"<p class='note'>{note}</p>",
        ]
    )
