"""Benchmark: generating the study's Lines dataset, and loading MNIST.

Measures, in one run on this machine:

(a) ``generate_lines(LinesConfig())``: all 96,000 study images (plus labels, factors, masks
    and the split) in memory. Every step is run once first (reported as "first call": in a
    fresh process it pays for imports and for the kernel handing over fresh memory), then
    timed N more times; the goals use the median of those N.
(b) The baseline: a per-image Pillow loop making the same images (``Image.new``,
    ``ImageDraw.line`` with the endpoints from :func:`cnnlab.data.render.endpoints` plus the
    image's shift, width and colour, ``np.asarray``). It runs on a 9,600-image sample (every
    10th image) and is extrapolated to 96,000, unless ``--full-pillow``; the Pillow images are
    checked pixel for pixel against cnnlab's.
(c) The goals: cnnlab at least 5x faster than the Pillow loop, and under 1 s in absolute terms.
(d) ``load_mnist`` on a folder of the four ``.gz`` files (study split), goal under 1 s.

Run from the repository root::

    .venv/bin/python benchmarks/data_generation.py [--mnist-dir DIR] [--repeats 3] [--full-pillow]

The MNIST folder is ``--mnist-dir`` or ``$CNNLAB_MNIST_DIR``; without either that row is
skipped. The script is a report: it always exits 0, and prints PASS/FAIL next to each goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, ImageDraw

from cnnlab.data import ImageDataset, LinesConfig, LinesData, generate_lines, load_mnist
from cnnlab.data.render import endpoints

SPEEDUP_GOAL = 5.0  # cnnlab vs the per-image Pillow loop, at least
SECONDS_GOAL = 1.0  # cnnlab's full study dataset, at most
MNIST_GOAL = 1.0  # load_mnist on the .gz folder, at most
SAMPLE_STRIDE = 10  # the Pillow sample: every 10th image (9,600 of 96,000, all classes)


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of a first (warm-up) run and of the repeated runs after it."""

    first: float
    seconds: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def scaled(self, factor: float) -> Timing:
        return Timing(self.first * factor, tuple(s * factor for s in self.seconds))


def measure(run: Callable[[], object], repeats: int) -> tuple[Timing, object]:
    """Time ``run`` once as a warm-up, then ``repeats`` times; return timings and last result.

    The previous result is dropped before each run, so that memory use stays at one result and
    later runs reuse memory the process already holds (a fresh process pays for it once).
    """
    seconds, result = [], None
    for _ in range(1 + repeats):
        result = None
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds[0], tuple(seconds[1:])), result


def pillow_images(data: LinesData, index: np.ndarray) -> np.ndarray:
    """The images ``index`` of ``data`` drawn one by one with Pillow, (K, S, S, 3) uint8."""
    config, a = data.config, data.arrays
    size = config.image_size
    x0, y0, x1, y1 = endpoints(a["length"][index], a["angle"][index], size)
    dx, dy = a["shift_x"][index], a["shift_y"][index]
    lines = zip(
        (x0 + dx).tolist(),
        (y0 + dy).tolist(),
        (x1 + dx).tolist(),
        (y1 + dy).tolist(),
        a["width"][index].tolist(),
        a["color"][index].tolist(),
        strict=True,
    )
    colors = [tuple(int(v) for v in rgb) for rgb in config.rgb]
    out = np.empty((len(index), size, size, 3), dtype=np.uint8)
    for k, (xa, ya, xb, yb, width, color) in enumerate(lines):
        image = Image.new("RGB", (size, size))
        ImageDraw.Draw(image).line([(xa, ya), (xb, yb)], fill=colors[color], width=width)
        out[k] = np.asarray(image)
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


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
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step (3)")
    parser.add_argument("--mnist-dir", type=Path, help="MNIST .gz folder ($CNNLAB_MNIST_DIR)")
    parser.add_argument(
        "--full-pillow", action="store_true", help="run Pillow on all 96,000 images"
    )
    args = parser.parse_args(argv)
    repeats = max(1, args.repeats)
    mnist_dir = args.mnist_dir or os.environ.get("CNNLAB_MNIST_DIR") or None

    print(
        f"cnnlab data benchmark: Python {platform.python_version()}, NumPy {np.__version__}, "
        f"torch {torch.__version__}, Pillow {PIL.__version__}, {os.cpu_count()} CPUs; "
        f"first call, then best and median of {repeats} more run(s)\n"
    )

    config = LinesConfig()
    ours, data = measure(lambda: generate_lines(config), repeats)
    assert isinstance(data, LinesData)
    total = len(data)

    index = np.arange(0, total, 1 if args.full_pillow else SAMPLE_STRIDE)
    sample, drawn = measure(lambda: pillow_images(data, index), repeats)
    assert isinstance(drawn, np.ndarray)
    same = int((drawn == data.arrays["images"][index]).all(axis=(1, 2, 3)).sum())
    pillow = sample.scaled(total / len(index))

    def row(name: str, images: int, timing: Timing, note: str) -> tuple[str, ...]:
        times = (timing.first, timing.best, timing.median)
        return (name, f"{images:,}", *(f"{t:.3f} s" for t in times), note)

    rows = [
        row("cnnlab generate_lines(LinesConfig())", total, ours, "in memory"),
        row("Pillow loop, measured", len(index), sample, "ImageDraw.line per image"),
    ]
    if not args.full_pillow:
        rows.append(row("Pillow loop, extrapolated", total, pillow, f"sample x {SAMPLE_STRIDE}"))
    mnist: Timing | None = None
    if mnist_dir is not None:
        mnist, dataset = measure(lambda: load_mnist(mnist_dir), repeats)
        assert isinstance(dataset, ImageDataset)
        n = len(dataset.train) + len(dataset.test)
        rows.append(row("load_mnist(DIR), study split", n, mnist, "four .gz files, 60/40 split"))
    print_table(("step", "images", "first call", "best", "median", "note"), rows)
    print(f"\nPillow == cnnlab: {same:,} of {len(index):,} images identical, pixel for pixel")
    if mnist is None:
        print("MNIST: skipped (give --mnist-dir DIR or set CNNLAB_MNIST_DIR)")

    speedup = pillow.median / ours.median
    goals = [
        (
            f"speed-up over Pillow >= {SPEEDUP_GOAL:g}x (medians)",
            f"{speedup:.1f}x",
            verdict(speedup >= SPEEDUP_GOAL),
        ),
        (
            f"cnnlab 96,000 images < {SECONDS_GOAL:g} s (median)",
            f"{ours.median:.3f} s",
            verdict(ours.median < SECONDS_GOAL),
        ),
        (
            f"load MNIST .gz folder < {MNIST_GOAL:g} s (median)",
            "-" if mnist is None else f"{mnist.median:.3f} s",
            "SKIP" if mnist is None else verdict(mnist.median < MNIST_GOAL),
        ),
    ]
    print()
    print_table(("goal", "measured", "result"), goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
