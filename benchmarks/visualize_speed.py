"""Benchmark: filter visualisation in one batch against a per-filter loop; Grad-CAM throughput.

Measures, in one run on this machine, with the ``part1`` net at Lines shape (3x28x28, 96
classes; seeded weights, which do not change the cost):

(a) **Filter visualisation** of all 32 ``conv1`` filters, ``--steps`` steps each (256), with
    the default :class:`~cnnlab.visualize.FilterSettings`:
    - *batched*: one ``visualize_filters`` call, all filters as one batch of 32 images;
    - *batched, all channels*: the same with ``own_channel=False`` (the layer computes all 32
      channels for every image, as a plain forward pass does);
    - *per-filter loop*: 32 calls of ``visualize_filters(filters=[f])``, one image each.
    The loop and the batch compute the same thing: the script checks that their images agree
    after 16 steps (later, float rounding differences between a grouped and a single
    convolution grow: each step moves every pixel by the gradient's sign pattern) and compares
    the filters' mean activations at the end. Goal: batched >= 10x faster than the loop.
(b) **Grad-CAM throughput** at ``conv1`` on ``--images`` random images (256): one
    ``grad_cam`` call on the whole batch (one forward and one backward pass) against one call
    per image; and all four methods at both layers in one ``explain`` call.

The variants run interleaved in ``--rounds`` rounds (the order alternates), so that all see the
same machine; the table shows the median over rounds. **A shared machine**: on 2 cores, a
process of someone else's that keeps a core busy slows every parallel op of ours several times
over; the script reports the share of CPU time *other* processes used while it ran (from
``/proc/stat``, on Linux) and the load average. ``--threads N`` sets torch's intra-op threads.

Run from the repository root::

    .venv/bin/python benchmarks/visualize_speed.py [--steps 256] [--rounds 3] [--threads 1]

``--quick`` is a smoke run (16 steps, 32 images, one round). The script is a report: it
always exits 0 and prints PASS/FAIL next to the goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from cnnlab.models import create_model
from cnnlab.models.inference import Preprocess
from cnnlab.visualize import FilterSettings, explain, grad_cam, visualize_filters

LINES = Preprocess(3, (28, 28), (0.013, 0.0, 0.013), (0.113, 1.0, 0.113))
GOAL = 10.0


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, or None off Linux."""
    try:
        with open("/proc/stat") as handle:
            values = [float(v) for v in handle.readline().split()[1:]]
    except OSError:
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.images, args.rounds = 16, 32, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = create_model("part1", 3, 96).eval()
    settings = FilterSettings(steps=args.steps)
    everything = FilterSettings(steps=args.steps, own_channel=False)
    images = torch.randint(0, 256, (args.images, 3, 28, 28), dtype=torch.uint8)
    inputs = LINES(images)
    n_filters = 32

    # Warm-up: first calls pay for lazy initialisation.
    visualize_filters(model, "conv1", LINES, settings=FilterSettings(steps=2))
    visualize_filters(model, "conv1", LINES, filters=[0], settings=FilterSettings(steps=2))
    grad_cam(model, inputs[:8], "conv1")

    results: dict[str, list[float]] = {}
    final: dict[str, torch.Tensor] = {}

    def batched() -> None:
        final["batched"] = visualize_filters(model, "conv1", LINES, settings=settings).activation

    def all_channels() -> None:
        visualize_filters(model, "conv1", LINES, settings=everything)

    def loop() -> None:
        final["loop"] = torch.cat(
            [
                visualize_filters(model, "conv1", LINES, filters=[f], settings=settings).activation
                for f in range(n_filters)
            ]
        )

    def cam_batched() -> None:
        grad_cam(model, inputs, "conv1")

    def cam_single() -> None:
        for i in range(inputs.shape[0]):
            grad_cam(model, inputs[i : i + 1], "conv1")

    def cam_everything() -> None:
        explain(model, inputs, ["conv1", "pool1"])

    variants = {
        "filters: batched": batched,
        "filters: batched, all channels": all_channels,
        "filters: per-filter loop": loop,
        "grad-cam conv1: batched": cam_batched,
        "grad-cam conv1: per image": cam_single,
        "all 4 methods, 2 layers: batched": cam_everything,
    }
    before, wall0, ours0 = cpu_times(), time.perf_counter(), time.process_time()
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            results.setdefault(name, []).append(timed(variants[name]))
    after, wall, ours = cpu_times(), time.perf_counter() - wall0, time.process_time() - ours0

    median = {name: statistics.median(times) for name, times in results.items()}
    short = FilterSettings(steps=16)
    one_batch = visualize_filters(model, "conv1", LINES, settings=short).images
    one_by_one = torch.cat(
        [
            visualize_filters(model, "conv1", LINES, filters=[f], settings=short).images
            for f in range(n_filters)
        ]
    )
    diff = float((one_batch - one_by_one).abs().max())
    cpu = platform.processor() or platform.machine()
    print(
        f"cnnlab visualize speed: torch {torch.__version__}, {cpu}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, {args.rounds} round(s), median seconds"
    )
    if before and after:
        busy = after[0] - before[0]
        total = after[1] - before[1]
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        others = max(0.0, busy / tick - ours) / max(total / tick, 1e-9)
        print(
            f"other processes used {others:.0%} of the machine's CPU time meanwhile; "
            f"load average {os.getloadavg()[0]:.1f}; {wall:.0f} s in all"
        )
    print()
    loop_time = median["filters: per-filter loop"]
    print(f"{'filter visualisation, 32 conv1 filters':<40} {'seconds':>9} {'speed-up':>9}")
    for name in ("filters: batched", "filters: batched, all channels", "filters: per-filter loop"):
        label = name.split(": ", 1)[1] + f" ({args.steps} steps)"
        print(f"  {label:<38} {median[name]:>9.2f} {loop_time / median[name]:>8.1f}x")
    speedup = loop_time / median["filters: batched"]
    verdict = "PASS" if speedup >= GOAL else "FAIL"
    print(f"  goal: batched >= {GOAL:.0f}x the loop: {speedup:.1f}x {verdict}")
    print(f"  same images after 16 steps: largest pixel difference batched vs loop {diff:.1e}")
    print(
        f"  mean filter activation after {args.steps} steps: batched "
        f"{float(final['batched'].mean()):.3f}, loop {float(final['loop'].mean()):.3f}"
    )
    print()
    n = inputs.shape[0]
    single = median["grad-cam conv1: per image"]
    print(f"{'grad-cam, ' + str(n) + ' images':<40} {'images/s':>9} {'speed-up':>9}")
    for name in (
        "grad-cam conv1: batched",
        "grad-cam conv1: per image",
        "all 4 methods, 2 layers: batched",
    ):
        label = name.replace("grad-cam ", "")
        print(f"  {label:<38} {n / median[name]:>9.0f} {single / median[name]:>8.1f}x")


if __name__ == "__main__":
    main()
