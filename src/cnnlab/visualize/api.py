"""``visualize_run``: every "looking inside" picture for a run folder, with the raw arrays.

Writes into ``out_dir``: ``inputs.npy`` (the images explained); per layer
``activations_<layer>.png/.npz`` and ``filters_<layer>.png/.npz``; per head (multi-head models)
one ``<picture>[_<head>].png`` per picture of the methods drawn (``gradcam``, ``saliency`` ...:
:mod:`~cnnlab.visualize.methods`) with one ``heatmaps[_<head>].npz``; ``scores.json`` when
scoring (and its figure ``scores.png``, given the function that draws it); and ``summary.json``
(what it returns: :class:`Visualization`).
"""

from __future__ import annotations

import copy
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, write_json
from cnnlab.runfolder import FORMAT, VISUALIZE_INPUTS, VISUALIZE_SCORES, VISUALIZE_SUMMARY
from cnnlab.training.run import Run, load_run, prepare_dataset
from cnnlab.visualize.activations import layer_activations
from cnnlab.visualize.attribution import attribute
from cnnlab.visualize.cam import Heatmap, Target, explain
from cnnlab.visualize.faithfulness import faithfulness_curves, random_maps, summarize
from cnnlab.visualize.figures import plot_activations, plot_filters, plot_heatmaps
from cnnlab.visualize.filters import FilterSettings, visualize_filters
from cnnlab.visualize.hooks import resolve_layers
from cnnlab.visualize.methods import Method, chosen, drawn, pictures, scored
from cnnlab.visualize.scoring import (
    RANDOM,
    agreement,
    flag_worse_than_random,
    randomized_copy,
    score_row,
)

SAMPLE_SEED = 0
"""The default images are the same for every run of a dataset: drawn with this seed."""

SAMPLE_SIZE = 8

SCORE_IMAGES = 128
"""Seeded test images of the scoreboard of explanation methods, wherever it is made without a
count given: ``cnnlab visualize --score``, ``visualize_run(score=True)``, :func:`score_run` and
``cnnlab report --inside`` (one run, one scoreboard). Faithfulness is measured on the first
:data:`FAITHFULNESS_IMAGES` of them, the randomisation check on the first
:data:`SANITY_IMAGES`; ``scores.json`` records all three counts."""

SCOREBOARD_PNG = "scores.png"
"""The scoreboard's figure in a visualize folder (``scores_png`` in its summary)."""

ScoreboardFigure = Callable[[Mapping[str, Any], Path], "Path | None"]
"""Draws a ``scores.json`` record's figure to a path; returns it (None: nothing to draw). The
report's (:func:`cnnlab.report.inside_view.scoreboard_figure`): ``cnnlab visualize --score``
and ``cnnlab report --inside`` pass it to :func:`visualize_run` (a later layer than this)."""

FAITHFULNESS_IMAGES = 128
"""Of the scored images, how many get deletion and insertion curves (each costs
2 x (FAITHFULNESS_STEPS + 1) forward passes per method)."""

FAITHFULNESS_STEPS = 16

SANITY_IMAGES = 64
"""Of the scored images, how many the re-initialised model explains too (the sanity check)."""

ATTRIBUTION_BATCH = 128
"""Images per batch of the methods computed from the model (Captum's)."""

SCORED_ATTRIBUTIONS = tuple(m.name for m in chosen(scored()) if not m.from_pass)
"""The scored methods computed from the model (Captum's), as the registry marks them."""


@dataclass(frozen=True, kw_only=True)
class Visualization:
    """What :func:`visualize_run` drew, as ``summary.json`` in its folder records it.

    ``run`` and ``out`` (the folder written), the ``model``'s name, the ``layers`` and ``heads``
    shown (no heads: a model with one output), the class explained (``target``: ``predicted``
    or the class asked for), the ``images`` explained (count, source, ``npy``; for the test
    sample their indices and labels), per layer the ``activations`` and ``filters`` written, per
    head (``output``: a model with one output) the ``heatmaps`` (targets, pictures, ``npz``,
    ``methods``) and, where scored, the ``scores`` (as ``scores.json``), ``scores_json`` (its
    path) and ``scores_png`` (the path of its figure; all None when not scored).
    :meth:`to_dict` is ``summary.json``; :func:`cnnlab.runfolder.read_pictures` reads such a
    folder back."""

    run: str
    out: str
    model: str
    layers: tuple[str, ...]
    heads: tuple[str, ...]
    target: str
    images: dict[str, Any]
    activations: dict[str, Any] = field(repr=False)
    filters: dict[str, Any] = field(repr=False)
    heatmaps: dict[str, Any] = field(repr=False)
    scores: dict[str, Any] | None = field(default=None, repr=False)
    scores_json: str | None = None
    scores_png: str | None = None
    _record: dict[str, Any] = field(init=False, repr=False, compare=False)

    OPTIONAL: ClassVar[tuple[str, ...]] = ("scores", "scores_json", "scores_png")
    """The fields a summary holds only where they apply (scoring)."""

    def __post_init__(self) -> None:
        """The record of the fields, in their order (:meth:`from_record` keeps the one read)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        values.update(layers=list(self.layers), heads=list(self.heads))
        kept = {k: v for k, v in values.items() if v is not None or k not in self.OPTIONAL}
        object.__setattr__(self, "_record", copy.deepcopy({"format": FORMAT, **kept}))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Visualization:
        """The pictures a summary (as written, ``format`` included) describes."""
        names = [f.name for f in fields(cls) if f.init]
        values = {k: record[k] for k in names if k not in cls.OPTIONAL}
        values.update({k: record.get(k) for k in cls.OPTIONAL})
        values.update(layers=tuple(record["layers"]), heads=tuple(record["heads"]))
        drawn = cls(**values)
        object.__setattr__(drawn, "_record", copy.deepcopy(dict(record)))
        return drawn

    def to_dict(self) -> dict[str, Any]:
        """The summary, key for key as ``summary.json`` holds it (a copy)."""
        return copy.deepcopy(self._record)


def visualize_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    images: torch.Tensor | np.ndarray | None = None,
    layers: Sequence[str] | None = None,
    head: str | None = None,
    target_class: int | str | None = None,
    score: bool = False,
    filters: bool = True,
    filter_layers: Sequence[str] | None = None,
    filter_settings: FilterSettings | None = None,
    score_images: int = SCORE_IMAGES,
    batch_size: int = 256,
    methods: Sequence[str] | None = None,
    scoreboard_figure: ScoreboardFigure | None = None,
    log: Callable[[str], None] | None = None,
) -> Visualization:
    """Activations, filter images and heatmaps of a trained run; optionally scored heatmaps.

    ``images``: uint8 (N, C, H, W) in the model's channels and size (default: 8 test images of
    the run's dataset, one per class group, the same every time). ``layers``: names of conv/pool
    layers (default: all). ``head``: one head of a multi-head model (default: every head).
    ``target_class``: the class explained, an index or a class name (default: the predicted
    class). Filter images are drawn for ``filter_layers`` (default: the convolutions among
    ``layers``; a pool layer's channels are its convolution's, pooled); ``filters=False`` skips
    them. ``score``: score the scored methods (CAM-style ones per layer) on ``score_images``
    seeded test images: against the object masks (Lines), by faithfulness (deletion and
    insertion) and against a re-initialised model (:func:`score_run`); writes ``scores.json``
    and, with ``scoreboard_figure``, its figure ``scores.png`` (:data:`ScoreboardFigure`).
    ``methods``: names in :mod:`~cnnlab.visualize.methods` to draw and score (default: those
    with a picture are drawn, the scored ones scored). Returns what it drew: paths, shapes,
    targets and scores (:class:`Visualization`; ``to_dict()`` is ``summary.json``). ``log``:
    a line as each step ends, with its seconds (minutes of scoring are not silent).
    """
    step = _Steps(log)
    run = load_run(run_dir)
    names = list(resolve_layers(run.model, layers))
    heads = _heads(run, head)
    sample = _sample(run, images)
    inputs = run.preprocess(sample.images)
    drawing = _Drawing(run, Path(out_dir), names, heads, sample, inputs, target_class, batch_size)
    summary = drawing.start(run_dir)
    summary["activations"] = step("activations", drawing.activations)
    summary["filters"] = (
        step("filter images", lambda: drawing.filters(filter_layers, filter_settings))
        if filters
        else {}
    )
    summary["heatmaps"] = step("heatmaps", lambda: drawing.heatmaps(methods))
    if score:
        scored = step(
            f"scoreboard on {score_images} images",
            lambda: drawing.scores(score_images, methods, scoreboard_figure),
        )
        summary.update(scored)
    record = {"format": FORMAT, **summary}
    write_json(drawing.out / VISUALIZE_SUMMARY, record)
    return Visualization.from_record(record)


class _Steps:
    """Runs the steps of :func:`visualize_run`, saying as each ends how long it took."""

    def __init__(self, log: Callable[[str], None] | None) -> None:
        self.log = log

    def __call__(self, name: str, action: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = action()
        if self.log is not None:
            self.log(f"  {name}: {time.perf_counter() - start:.0f} s")
        return result


@dataclass
class _Sample:
    """The images a run's pictures show: uint8 (N, C, H, W), a row title each, their object
    masks where the data has them, and where they came from."""

    images: torch.Tensor
    titles: list[str]
    source: str
    facts: dict[str, Any]
    masks: torch.Tensor | None = None
    dataset: ImageDataset | None = None


@dataclass
class _Drawing:
    """One :func:`visualize_run`: the run, the folder written, the layers and heads shown, the
    images explained with their model inputs, the class asked for, and the batch size. Each
    step writes its files and returns its part of the summary."""

    run: Run
    out: Path
    layers: list[str]
    heads: list[str | None]
    sample: _Sample
    inputs: torch.Tensor
    target_class: int | str | None
    batch_size: int

    def start(self, run_dir: str | Path) -> dict[str, Any]:
        """What is drawn, and of which images (``inputs.npy`` written)."""
        x, npy = self.sample.images, self.out / VISUALIZE_INPUTS
        summary = {
            "run": str(run_dir),
            "out": str(self.out),
            "model": self.run.config.model.name,
            "layers": self.layers,
            "heads": [h for h in self.heads if h],
            "target": "predicted" if self.target_class is None else str(self.target_class),
            "images": {
                "count": int(x.shape[0]),
                "source": self.sample.source,
                "npy": str(npy),
                **self.sample.facts,
            },
        }
        _save_npy(npy, x.numpy())
        return summary

    def activations(self) -> dict[str, Any]:
        return _write_activations(
            self.out, self.run.model, self.sample, self.inputs, self.layers, self.batch_size
        )

    def filters(
        self, layers: Sequence[str] | None, settings: FilterSettings | None
    ) -> dict[str, Any]:
        """Filter images of ``layers`` (default: the convolutions among the layers shown)."""
        if layers is None:
            modules = resolve_layers(self.run.model, self.layers)
            layers = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
        return _write_filters(self.out, self.run, layers, settings or FilterSettings())

    def heatmaps(self, methods: Sequence[str] | None) -> dict[str, Any]:
        """Per head (``output``: one output), the pictures of ``methods`` (default: drawn ones)."""
        shown = chosen(drawn() if methods is None else methods)
        written = {}
        for head in self.heads:
            target = _target(self.run, head, self.target_class)
            explained = heatmaps(
                self.run.model, self.inputs, self.layers, shown, head, target, self.batch_size
            )
            written[head or "output"] = _write_heatmaps(
                self.out, self.sample, explained, shown, self.layers, head, self.run
            )
        return written

    def scores(
        self, n: int, methods: Sequence[str] | None, draw: ScoreboardFigure | None
    ) -> dict[str, Any]:
        """The scoreboard on ``n`` test images (:func:`score_run`), written to ``scores.json``,
        and its figure drawn by ``draw`` (``scores.png``; none without ``draw``)."""
        scores = score_run(
            self.run,
            self.layers,
            self.heads,
            self.target_class,
            n=n,
            batch_size=self.batch_size,
            dataset=self.sample.dataset,
            methods=methods,
        )
        write_json(self.out / VISUALIZE_SCORES, scores)
        written = {"scores": scores, "scores_json": str(self.out / VISUALIZE_SCORES)}
        figure = None if draw is None else draw(scores, self.out / SCOREBOARD_PNG)
        if figure is not None:
            written["scores_png"] = str(figure)
        return written


def _sample(run: Run, images: torch.Tensor | np.ndarray | None) -> _Sample:
    """``images`` checked against the run, or 8 test images of its data (one per class
    group, the same every time)."""
    if images is not None:
        x = _check_images(images, run)
        return _Sample(x, [f"image {i}" for i in range(x.shape[0])], "given", {})
    dataset = prepare_dataset(run.config)
    picked = default_sample(dataset.test)
    labels = [run.class_names[int(k)] for k in dataset.test.labels[picked]]
    masks = None if dataset.test.masks is None else dataset.test.masks[picked]
    return _Sample(
        dataset.test.images[picked],
        [_short(name) for name in labels],
        "test sample",
        {"test_index": picked.tolist(), "labels": labels},
        masks,
        dataset,
    )


def _write_activations(
    out: Path,
    model: torch.nn.Module,
    sample: _Sample,
    inputs: torch.Tensor,
    names: Sequence[str],
    batch_size: int,
) -> dict[str, Any]:
    """Each layer's feature maps: a grid picture and the raw array."""
    written = {}
    for name, maps in layer_activations(model, inputs, names, batch_size=batch_size).items():
        png = plot_activations(
            sample.images, maps, name, out / f"activations_{name}.png", labels=sample.titles
        )
        npz = _save_npz(out / f"activations_{name}.npz", activations=maps.numpy())
        written[name] = {"png": str(png), "npz": str(npz), "shape": list(maps.shape)}
    return written


def _write_filters(
    out: Path, run: Run, layers: Sequence[str], settings: FilterSettings
) -> dict[str, Any]:
    """Each layer's filter images by gradient ascent: a picture and the raw arrays."""
    written = {}
    for name in resolve_layers(run.model, layers):
        result = visualize_filters(run.model, name, run.preprocess, settings=settings)
        gain = (result.activation - result.blank_activation).mean()
        png = plot_filters(
            result.images,
            name,
            out / f"filters_{name}.png",
            activation=result.activation,
            subtitle=f"mean activation of {result.objective_layer}; {_describe(settings)}",
        )
        npz = _save_npz(
            out / f"filters_{name}.npz",
            images=result.images.numpy(),
            activation=result.activation.numpy(),
            blank_activation=result.blank_activation.numpy(),
        )
        written[name] = {
            "png": str(png),
            "npz": str(npz),
            "objective": result.objective_layer,
            "count": len(result.filters),
            "mean_gain": float(gain),
            "settings": settings.to_dict(),
        }
    return written


def score_run(
    run: Run,
    layers: Sequence[str],
    heads: Sequence[str | None],
    target_class: int | str | None = None,
    *,
    n: int = SCORE_IMAGES,
    faithfulness_images: int = FAITHFULNESS_IMAGES,
    sanity_images: int = SANITY_IMAGES,
    batch_size: int = 256,
    seed: int = SAMPLE_SEED,
    dataset: ImageDataset | None = None,
    methods: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The scoreboard of explanation methods on ``n`` seeded test images of the run's dataset
    (``dataset``: it, already loaded): ``methods`` (default: the scored ones of
    :mod:`~cnnlab.visualize.methods`; CAM-style ones at every layer), per head, scored by
    localisation against the object masks (Lines; none without masks), by
    faithfulness (deletion and insertion areas on the first ``faithfulness_images`` of them)
    and by the randomisation check (on the first ``sanity_images``); rows as in
    :data:`~cnnlab.visualize.scoring.METRICS`, with a ``random`` reference row per head, each
    row flagged ``worse_than_random`` where it deletes or inserts worse than that reference
    (:func:`~cnnlab.visualize.scoring.flag_worse_than_random`), and the
    :func:`~cnnlab.visualize.scoring.agreement` of the mask and faithfulness rankings."""
    start = time.perf_counter()
    dataset = dataset or prepare_dataset(run.config)
    test = dataset.test
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(test), generator=generator)[: min(n, len(test))].sort().values
    scoring = _Scoring(
        run=run,
        inputs=run.preprocess(test.images[picked]),
        masks=None if test.masks is None else test.masks[picked],
        few=min(faithfulness_images, len(picked)),
        sane=min(sanity_images, len(picked)),
        twin=randomized_copy(run.model, seed),
        layers=layers,
        methods=chosen(scored() if methods is None else methods),
        batch_size=batch_size,
        seed=seed,
    )
    rows = [row for head in heads for row in scoring.rows(head, target_class)]
    rows = flag_worse_than_random(rows)
    return {
        "images": len(picked),
        "faithfulness_images": scoring.few,
        "sanity_images": scoring.sane,
        "faithfulness_steps": FAITHFULNESS_STEPS,
        "seed": seed,
        "masks": scoring.masks is not None,
        "target": "predicted" if target_class is None else str(target_class),
        "rows": rows,
        "agreement": agreement(rows),
        "seconds": time.perf_counter() - start,
    }


@dataclass
class _Scoring:
    """What :func:`score_run` scores on: the model inputs of the images picked (their masks
    where the data has them), how many of them get faithfulness curves (``few``) and a sanity
    check (``sane``), the randomised copy of the model (``twin``), the layers and methods."""

    run: Run
    inputs: torch.Tensor
    masks: torch.Tensor | None
    few: int
    sane: int
    twin: torch.nn.Module
    layers: Sequence[str]
    methods: Sequence[Method]
    batch_size: int
    seed: int

    def rows(self, head: str | None, target_class: int | str | None) -> list[dict[str, Any]]:
        """The rows of ``head``: the random reference, then one per (method, layer)."""
        target = _target(self.run, head, target_class)
        trained = heatmaps(
            self.run.model,
            self.inputs,
            self.layers,
            self.methods,
            head,
            target,
            self.batch_size,
            self.seed,
        )
        # The randomised model explains the same classes as the trained one.
        classes = next(iter(trained.values())).target
        sane = slice(self.sane)
        randomised = heatmaps(
            self.twin,
            self.inputs[sane],
            self.layers,
            self.methods,
            head,
            classes[sane],
            self.batch_size,
            self.seed,
        )
        faithful = {"head": head, "target": classes[: self.few], "batch_size": self.batch_size}
        inputs = self.inputs[: self.few]
        noise = random_maps((len(self.inputs), *self.inputs.shape[2:]), self.seed)
        reference = score_row(
            noise, self.masks, None, _faithfulness(self.run, inputs, noise, faithful)
        )
        rows = [{"head": head, "method": RANDOM, "layer": None, **reference}]
        for (method, layer), heatmap in trained.items():
            measured = _faithfulness(self.run, inputs, heatmap.maps, faithful)
            twin_maps = randomised[(method, layer)].maps
            scores = score_row(heatmap.maps, self.masks, twin_maps, measured)
            rows.append({"head": head, "method": method, "layer": layer, **scores})
        return rows


def heatmaps(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str],
    methods: Sequence[Method],
    head: str | None,
    target: Target,
    batch_size: int,
    seed: int = SAMPLE_SEED,
) -> dict[tuple[str, str | None], Heatmap]:
    """``methods``' heatmaps for ``inputs``, keyed ``(method, layer)``: the gradient methods from
    one pass per batch (:func:`explain`), then the others (:func:`attribute`, in batches of
    :data:`ATTRIBUTION_BATCH`) for the classes the gradient methods explained."""
    gradient = [m.name for m in methods if m.from_pass]
    maps: dict[tuple[str, str | None], Heatmap] = {}
    if gradient:
        maps = explain(
            model, inputs, layers, methods=gradient, head=head, target=target, batch_size=batch_size
        )
        target = next(iter(maps.values())).target
    for method in (m for m in methods if not m.from_pass):
        for layer in method.at(layers):
            maps[(method.name, layer)] = attribute(
                model,
                inputs,
                method.name,
                layer=layer,
                head=head,
                target=target,
                seed=seed,
                batch_size=ATTRIBUTION_BATCH,
            )
    return maps


def _faithfulness(
    run: Run, inputs: torch.Tensor, maps: torch.Tensor, how: dict[str, Any]
) -> dict[str, float]:
    """Deletion and insertion areas of ``maps`` on ``inputs`` (the first images scored)."""
    curves = faithfulness_curves(
        run.model,
        inputs,
        maps[: inputs.shape[0]],
        head=how["head"],
        target=how["target"],
        steps=FAITHFULNESS_STEPS,
        batch_size=how["batch_size"],
    )
    return summarize(curves)


def default_sample(split: Split, size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> torch.Tensor:
    """Indices of ``size`` images: the classes in ``size`` consecutive groups, one image drawn
    from each (seeded), then more at random if some group has no image."""
    labels = split.labels
    generator = torch.Generator().manual_seed(seed)
    classes = int(labels.max()) + 1 if len(labels) else 0
    picked: list[int] = []
    for group in np.array_split(np.arange(classes), min(size, max(classes, 1))):
        members = torch.nonzero(torch.isin(labels, torch.as_tensor(group))).flatten()
        if len(members):
            picked.append(int(members[torch.randint(len(members), (1,), generator=generator)]))
    rest = [i for i in torch.randperm(len(labels), generator=generator).tolist() if i not in picked]
    picked += rest[: size - len(picked)]
    return torch.tensor(picked[:size], dtype=torch.long)


def _heads(run: Run, head: str | None) -> list[str | None]:
    names = list(getattr(run.model, "heads", {}))
    if not names:
        if head is not None:
            raise CnnlabError(f"--head {head}: this model has one output, not named heads")
        return [None]
    if head is None:
        return names
    if head not in names:
        raise CnnlabError(f"--head {head}: no such head; this model has {', '.join(names)}")
    return [head]


def _target(run: Run, head: str | None, target_class: int | str | None) -> int | None:
    """A class index from an index or a name (the head's level, or the run's class name)."""
    if target_class is None or isinstance(target_class, int):
        return target_class
    text = str(target_class)
    names = [str(v) for v in run.factor_levels.get(head, ())] if head else list(run.class_names)
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit():
        return int(text)
    where = f"head {head!r}" if head else "this model"
    raise CnnlabError(f"--class {text}: not a class of {where} ({', '.join(names[:6])} ...)")


def _check_images(images: torch.Tensor | np.ndarray, run: Run) -> torch.Tensor:
    x = torch.as_tensor(images)
    expected = (run.preprocess.channels, *run.preprocess.image_size)
    if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise CnnlabError(
            f"images must be uint8 (N, {expected[0]}, {expected[1]}, {expected[2]}) for this "
            f"model; got {x.dtype} {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise CnnlabError("no images to explain")
    return x


def _write_heatmaps(
    out: Path,
    sample: _Sample,
    maps: dict[tuple[str, str | None], Heatmap],
    methods: Sequence[Method],
    layers: Sequence[str],
    head: str | None,
    run: Run,
) -> dict[str, Any]:
    """The pictures of ``methods`` for ``head`` and their raw arrays (``heatmaps[_<head>].npz``)."""
    suffix = f"_{head}" if head else ""
    any_map = next(iter(maps.values()))
    levels = [str(v) for v in run.factor_levels.get(head, ())] if head else list(run.class_names)
    explained = [levels[int(k)] if int(k) < len(levels) else str(int(k)) for k in any_map.target]
    named = [f"{head} {c}" if head else c for c in explained]
    titles = [
        f"{t}\n-> {_short(c)} ({float(s):.2g})"
        for t, c, s in zip(sample.titles, named, any_map.score, strict=True)
    ]
    what = f"head {head}: " if head else ""
    logit = "its logit" if not head or len(levels) > 2 else "the logit toward that level"
    entry: dict[str, Any] = {
        "targets": any_map.target.tolist(),
        "target_names": explained,
        "scores": [round(float(s), 4) for s in any_map.score],
    }
    for picture in pictures(methods):
        panels = [
            (m.panel(layer), maps[m.name, layer].maps)
            for m in picture.methods
            for layer in m.at(layers)
        ]
        png = plot_heatmaps(
            sample.images,
            panels,
            out / f"{picture.name}{suffix}.png",
            title=f"{what}{picture.title} for the class after -> (in brackets: {logit})",
            row_titles=titles,
            masks=sample.masks,
        )
        entry[picture.name] = str(png)
    arrays = {}
    for (method, layer), heatmap in maps.items():
        key = method if layer is None else f"{method}_{layer}"
        arrays[f"{key}_map"] = heatmap.maps.numpy()
        arrays[f"{key}_raw"] = heatmap.raw.numpy()
    arrays["target"] = any_map.target.numpy()
    arrays["score"] = any_map.score.numpy()
    entry["npz"] = str(_save_npz(out / f"heatmaps{suffix}.npz", **arrays))
    entry["methods"] = [m.name for m in methods]
    return entry


def _describe(settings: FilterSettings) -> str:
    parts = [f"{settings.steps} steps", f"seed {settings.seed}"]
    for key in ("jitter", "tv", "l2"):
        if getattr(settings, key):
            parts.append(f"{key} {getattr(settings, key)}")
    if settings.fourier:
        parts.append("fourier")
    return ", ".join(parts)


def _short(name: str) -> str:
    """A class name on at most two short lines (``len7 wid1`` / ``ang015 red``)."""
    return "\n".join(textwrap.wrap(name.replace("_", " "), 12)[:2]) or name


def _save_npy(path: Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
    return path


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path
