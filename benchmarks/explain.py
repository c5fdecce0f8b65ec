"""Benchmark: images/s of every explanation method of cnnlab, against the cost of one gradient.

Measures, in one run on this machine, for the study's two CNN families at Lines shape
(3x28x28, 96 classes): ``part1`` (``create_model("part1", 3, 96)``) and ``part2`` (the
``part2-lines`` preset's ``model:`` options, ``convnet`` with three conv stages), plus, with
``--multihead [HEAD]``, the ``multihead-lines`` preset's model explained on one head (``angle``
by default). Weights are seeded (``torch.manual_seed(0)``), models in eval mode, and the inputs
are ``--images`` random normalised float tensors (``torch.randn``, (N, 3, 28, 28)): the speed of
these methods does not depend on trained weights or on what the images show.

(a) **Baseline**, measured in the same run: one forward + backward pass, i.e. one gradient:
    ``torch.autograd.grad`` of the summed predicted-class logits
    (:func:`~cnnlab.visualize.cam.class_scores`) with respect to the input, on the whole batch;
    and one forward pass under ``torch.no_grad``.
(b) **cnnlab's own** (:func:`~cnnlab.visualize.cam.explain`, batch 256, one method per call so
    each is timed alone): Grad-CAM and Guided Grad-CAM at the last conv/pool layer, saliency,
    guided backprop; and ``explain`` with all its methods at every default layer
    (:func:`~cnnlab.visualize.hooks.default_layers`) in one call, as the scoreboard calls it.
(c) **Captum**, through :func:`~cnnlab.visualize.attribution.attribute` with the scoreboard's
    settings (``batch_size=ATTRIBUTION_BATCH``, each method's defaults): LayerGradCam at the same
    layer as (b)'s Grad-CAM (the same map: the ratio cnnlab/Captum and the largest difference of
    the two maps are printed), Integrated Gradients, Occlusion, DeepLIFT, GradientSHAP.
(d) **Faithfulness**: deletion and insertion curves (``FAITHFULNESS_STEPS`` steps, batch 256)
    of one map (cnnlab's Grad-CAM).

Each method runs on the same ``--images`` images (256): one warm-up call, then the median of
``--repeats`` (3) timed calls. "cost in gradients" = baseline forward+backward images/s over the
method's images/s: how many gradients each image costs (Integrated Gradients about ``n_steps``,
Occlusion about a third of its window positions, as a forward pass is about a third of a
gradient). At the end, an **estimate** (from the measured rates, scaled linearly) of the time
:func:`~cnnlab.visualize.api.score_run` spends per head on ``--score-images`` images (256):
``explain`` on them and on the re-initialised twin's ``SANITY_IMAGES``, each of
``SCORED_ATTRIBUTIONS`` on both, and faithfulness curves on ``FAITHFULNESS_IMAGES`` for every
row of the scoreboard (the random row and every map). The twin has the model's shape, so the
model's rates stand for it. Not counted: the dataset, localisation and the sanity statistics.

Run from the repository root::

    .venv/bin/python benchmarks/explain.py [--images 256] [--repeats 3] [--threads N]
        [--score-images 256] [--multihead [HEAD]] [--quick]

``--quick`` is a smoke run: 32 images, one timed call. No goals: the script is a report and
always exits 0. The load average is printed at the start and the end: other work on the
machine slows every row.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import captum
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.training.config import load_config
from cnnlab.visualize.api import (
    ATTRIBUTION_BATCH,
    FAITHFULNESS_IMAGES,
    FAITHFULNESS_STEPS,
    SANITY_IMAGES,
    SCORED_ATTRIBUTIONS,
)
from cnnlab.visualize.attribution import attribute, gradient_shap, integrated_gradients, occlusion
from cnnlab.visualize.cam import METHODS, class_scores, explain
from cnnlab.visualize.faithfulness import faithfulness_curves
from cnnlab.visualize.hooks import default_layers
from cnnlab.visualize.methods import REGISTRY

SEED = 0
EXPLAIN_BATCH = 256  # explain's and score_run's batch_size
FAITHFULNESS_BATCH = 256  # score_run passes its batch_size to faithfulness_curves
GRADIENT = "baseline: forward + backward"
FORWARD = "baseline: forward (no_grad)"
EXPLAIN_ALL = "explain: all methods, every layer"
CAPTUM_CAM = "captum layer_gradcam"
FAITHFULNESS = "faithfulness curves"


@dataclass
class Subject:
    """A model to explain, the head explained, and how many heads the scoreboard scores."""

    name: str
    model: nn.Module
    head: str | None = None
    heads: int = 1
    rates: dict[str, float | None] = field(default_factory=dict)  # method -> images/s
    notes: dict[str, str] = field(default_factory=dict)


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


def default(function: Callable[..., object], name: str) -> object:
    """The default value of ``function``'s parameter ``name``."""
    return inspect.signature(function).parameters[name].default


def preset_model(preset: str) -> nn.Module:
    """The model of a shipped preset (its ``model:`` options), for Lines shape."""
    options = dict(load_config(preset).model)
    return create_model(options.pop("name"), 3, 96, **options)


def subjects(multihead: str | None) -> list[Subject]:
    torch.manual_seed(SEED)
    chosen = [
        Subject("part1", create_model("part1", 3, 96)),
        Subject("part2", preset_model("part2-lines")),
    ]
    if multihead:
        model = preset_model("multihead-lines")
        chosen.append(Subject(f"multihead/{multihead}", model, multihead, len(model.heads)))
    for subject in chosen:
        subject.model.eval()
    return chosen


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """One warm-up call, then the median of ``repeats`` timed calls."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def methods(subject: Subject, inputs: torch.Tensor) -> dict[str, Callable[[], object]]:
    """Every timed call for ``subject``, by the name it is shown under."""
    model, head = subject.model, subject.head
    layers = default_layers(model)
    last = layers[-1]

    def gradient() -> None:
        x = inputs.detach().clone().requires_grad_(True)
        scores, _ = class_scores(model(x), head)
        torch.autograd.grad(scores.sum(), [x])

    def forward() -> None:
        with torch.no_grad():
            model(inputs)

    def own(method: str, at: list[str]) -> Callable[[], object]:
        return lambda: explain(
            model, inputs, at, methods=(method,), head=head, batch_size=EXPLAIN_BATCH
        )

    def captum_method(method: str, layer: str | None = None) -> Callable[[], object]:
        return lambda: attribute(
            model, inputs, method, layer=layer, head=head, batch_size=ATTRIBUTION_BATCH, seed=SEED
        )

    cam = explain(model, inputs, [last], methods=("gradcam",), head=head)[("gradcam", last)]
    calls: dict[str, Callable[[], object]] = {
        GRADIENT: gradient,
        FORWARD: forward,
        f"cnnlab gradcam {last}": own("gradcam", [last]),
        f"cnnlab guided_gradcam {last}": own("guided_gradcam", [last]),
        "cnnlab saliency": own("saliency", []),
        "cnnlab guided_backprop": own("guided_backprop", []),
        EXPLAIN_ALL: lambda: explain(model, inputs, layers, head=head, batch_size=EXPLAIN_BATCH),
        CAPTUM_CAM: captum_method("layer_gradcam", last),
        **{f"captum {m}": captum_method(m) for m in SCORED_ATTRIBUTIONS},
        FAITHFULNESS: lambda: faithfulness_curves(
            model, inputs, cam, head=head, steps=FAITHFULNESS_STEPS, batch_size=FAITHFULNESS_BATCH
        ),
    }
    captum_cam = attribute(model, inputs, "layer_gradcam", layer=last, head=head)
    scale = float(cam.maps.abs().max()) or 1.0
    gap = float((cam.maps - captum_cam.maps).abs().max()) / scale
    subject.notes[CAPTUM_CAM] = f"{last}; max |cnnlab - Captum| / max |map| = {gap:.1e}"
    subject.notes[EXPLAIN_ALL] = f"{len(METHODS)} methods at {', '.join(layers)}"
    return calls


def measure(subject: Subject, inputs: torch.Tensor, repeats: int) -> None:
    """Fill ``subject.rates`` (None for a method that raised, its error in ``notes``)."""
    for name, run in methods(subject, inputs).items():
        try:
            subject.rates[name] = inputs.shape[0] / median_seconds(run, repeats)
        except Exception as error:  # a report: show the failure, measure the rest
            subject.rates[name] = None
            subject.notes[name] = f"failed: {type(error).__name__}: {error}"[:90]


def method_notes() -> dict[str, str]:
    """What each method's cost is made of, from cnnlab's defaults."""
    steps = default(integrated_gradients, "n_steps")
    window, stride = default(occlusion, "window"), default(occlusion, "stride")
    assert isinstance(window, int) and isinstance(stride, int)
    positions = ((28 - window) // stride + 1) ** 2
    return {
        GRADIENT: "d(sum of predicted logits)/d(input): one gradient",
        "captum integrated_gradients": f"n_steps {steps}",
        "captum occlusion": f"window {window}, stride {stride}: {positions} forward passes",
        "captum deeplift": "input and baseline in one pass",
        "captum gradient_shap": f"n_samples {default(gradient_shap, 'n_samples')}",
        FAITHFULNESS: f"2 x ({FAITHFULNESS_STEPS} + 1) forward passes",
    }


def table_rows(subject: Subject) -> list[tuple[str, ...]]:
    general = method_notes()
    gradient = subject.rates.get(GRADIENT)
    own_cam = next((v for k, v in subject.rates.items() if k.startswith("cnnlab gradcam")), None)
    rows = []
    for name, rate in subject.rates.items():
        note = subject.notes.get(name, general.get(name, ""))
        if name == CAPTUM_CAM and own_cam and rate:
            note = f"cnnlab gradcam {own_cam / rate:.1f}x faster; {note}"
        cost = f"{gradient / rate:.2f}" if gradient and rate else "-"
        shown = f"{rate:,.0f}" if rate else "-"
        rows.append((subject.name, name, shown, cost, note))
    return rows


def estimate(subject: Subject, n: int) -> tuple[str, ...]:
    """score_run's seconds per head on ``n`` images, from the measured rates."""
    sane, few = min(SANITY_IMAGES, n), min(FAITHFULNESS_IMAGES, n)
    rates = subject.rates
    wanted = [EXPLAIN_ALL, FAITHFULNESS, *(f"captum {m}" for m in SCORED_ATTRIBUTIONS)]
    if any(not rates.get(name) for name in wanted):
        return (subject.name, str(subject.heads), "-", "-", "-", "-", "-", "n/a: a method failed")
    layers = len(default_layers(subject.model))
    one_pass = [m for m in REGISTRY.values() if m.from_pass and m.scored]  # the Grad-CAM family
    maps = sum(layers if m.layer else 1 for m in one_pass) + len(SCORED_ATTRIBUTIONS)
    explained = (n + sane) / rates[EXPLAIN_ALL]
    attributions = sum((n + sane) / rates[f"captum {m}"] for m in SCORED_ATTRIBUTIONS)
    faithful = (maps + 1) * few / rates[FAITHFULNESS]  # + 1: the random row
    per_head = explained + attributions + faithful
    return (
        subject.name,
        str(subject.heads),
        f"{explained:.1f}",
        f"{attributions:.1f}",
        f"{faithful:.1f}",
        f"{per_head:.1f}",
        f"{per_head * subject.heads:.1f}",
        f"{maps + 1} faithfulness rows",
    )


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Plain-text columns: the first left-aligned, the others right-aligned but the last."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [
            cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images per method (256)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per method (3)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads first")
    parser.add_argument(
        "--score-images", type=int, default=256, help="images of the scoreboard estimate (256)"
    )
    parser.add_argument(
        "--multihead",
        nargs="?",
        const="angle",
        help="also the multihead-lines model, on this head (angle)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 images, 1 repeat")
    args = parser.parse_args(argv)
    images, repeats = max(1, args.images), max(1, args.repeats)
    if args.quick:
        images, repeats = 32, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"cnnlab explanation benchmark: Python {platform.python_version()}, torch "
        f"{torch.__version__}, captum {captum.__version__}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads; {images} random images (3x28x28) per method, "
        f"median of {repeats} timed call(s) after a warm-up\nload average at start: {load_text()}\n"
    )
    chosen = subjects(args.multihead)
    torch.manual_seed(SEED)
    inputs = torch.randn(images, 3, 28, 28)
    for subject in chosen:
        measure(subject, inputs, repeats)

    header = ("model", "method", "images/s", "cost in gradients", "note")
    print_table(header, [row for subject in chosen for row in table_rows(subject)])
    print(
        f"\ncost in gradients = ({GRADIENT} images/s) / (method images/s), same model, same run. "
        f"cnnlab's methods: batch {EXPLAIN_BATCH};\nCaptum's: batch {ATTRIBUTION_BATCH} "
        f"(the scoreboard's); faithfulness: batch {FAITHFULNESS_BATCH}."
    )

    n = max(1, args.score_images)
    print(
        f"\nESTIMATE (from the rates above, scaled linearly) of score_run's time on {n} images: "
        f"explain on {n} + {min(SANITY_IMAGES, n)} twin images;\neach of "
        f"{', '.join(SCORED_ATTRIBUTIONS)} on the same; faithfulness on "
        f"{min(FAITHFULNESS_IMAGES, n)} images per row (seconds):"
    )
    estimate_header = (
        "model",
        "heads",
        "explain",
        "Captum",
        "faithfulness",
        "per head",
        "run",
        "note",
    )
    print_table(estimate_header, [estimate(subject, n) for subject in chosen])
    print(f"\nload average at end: {load_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
