"""Benchmark: training throughput of cnnlab's engine against a DataLoader tutorial loop.

Measures, in one run on this machine, for the ``part1`` net (Adam, lr 1e-3, cross-entropy) on
synthetic uint8 data of MNIST shape (1x28x28, 10 classes) and Lines shape (3x28x28, 96
classes), 20,000 random training images each, at each batch size (64, 128, 256 by default):

(a) **cnnlab engine**: an :class:`~cnnlab.training.engine.Engine` built as ``cnnlab train`` builds
    it (default ``TrainConfig``: fused Adam, LambdaLR, cross-entropy; single process, progress
    off), timed over consecutive calls of ``Engine._step`` on consecutive batches of the real
    epoch order (``epoch_order``, sharded as ``_train_epoch`` does) after a few warm-up steps.
    That is the whole hot path of ``_train_epoch`` but for its per-batch bookkeeping (one
    float64 ``sums +=``, a few microseconds).
(b) **DataLoader loop**: the tutorial way: ``DataLoader(TensorDataset(float32 normalised images,
    labels), batch_size=B, shuffle=True)`` and ``torch.optim.Adam(model.parameters(), 1e-3)``
    with default settings, same ``part1`` (same initial weights), the same number of steps;
    each step does ``zero_grad``, forward, ``F.cross_entropy``, ``backward``, ``step`` and
    reads the loss and the number correct, as the engine does.
(c) The two loops run interleaved, in blocks of ``--block`` steps (order alternating from round
    to round), so that both see the same load on a shared machine. A block's images/s is its
    images over its wall time; the table shows the median over blocks. The speed-up is the
    median over rounds of (cnnlab block rate / the DataLoader block rate of the same round).
(d) The compute bound: the machine's peak float32 GFLOP/s (a 2048x2048 matmul, best of
    several calls spread over the run) over part1's training FLOPs per image, counted
    analytically: forward MACs of conv1 (k*k*Cin*Cout*Hout*Wout), fc1 and fc2; training = 3x
    the forward FLOPs = 6x the MACs. cnnlab's images/s is shown as a fraction of that bound.
(e) Evaluation: ``batched_outputs(model, images, preprocess, batch_size=2048)`` over 28,000
    MNIST-shaped images, one warm-up call and then ``--eval-repeats`` timed calls (median).

Goals (at batch 64, per dataset shape): speed-up over the DataLoader loop >= 1.5x; cnnlab at
>= 60% of the compute bound; evaluation >= 12,000 images/s.

Run from the repository root::

    .venv/bin/python benchmarks/train_throughput.py [--batches 64,128,256] [--steps 60] [--quick]

``--quick`` (a smoke run) takes 10 steps per loop and batch, in blocks of 5, and fewer repeats.
No dataset files are needed. The script is a report: it always exits 0, and prints PASS/FAIL
next to each goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.models.convnets import part1
from cnnlab.models.inference import Preprocess, batched_outputs
from cnnlab.training.config import RunConfig, TrainConfig
from cnnlab.training.distributed import Distributed
from cnnlab.training.engine import Engine, epoch_order
from cnnlab.training.progress import Progress

SPEEDUP_GOAL = 1.5  # cnnlab engine vs the DataLoader loop at batch 64, at least
BOUND_GOAL = 0.60  # cnnlab engine as a fraction of the compute bound at batch 64, at least
EVAL_GOAL = 12_000.0  # batched_outputs images/s over 28,000 MNIST-shaped images, at least
GOAL_BATCH = 64
TRAIN_IMAGES = 20_000
TEST_IMAGES = 1_000
EVAL_IMAGES = 28_000
EVAL_BATCH = 2048
WARMUP_STEPS = 5
MATMUL_SIZE = 2048
SEED = 0

# From the issue, same machine, part1 at batch 64: (MNIST, Lines).
REFERENCE = (
    ("Keras-TF part1, batch 64", "2,180 img/s", "1,960 img/s"),
    ("DataLoader loop, batch 64", "2,330 img/s", "1,670 img/s"),
    ("compute bound (~182 GFLOP/s)", "6,400 img/s", "4,780 img/s"),
    ("training FLOPs per image", "~28.4 MFLOP", "~38.0 MFLOP"),
)


@dataclass(frozen=True)
class Shape:
    """A dataset shape: name, channels, classes (28x28 images)."""

    name: str
    channels: int
    classes: int
    size: tuple[int, int] = (28, 28)


SHAPES = (Shape("MNIST", 1, 10), Shape("Lines", 3, 96))


def synthetic_dataset(shape: Shape, n_train: int, n_test: int, seed: int) -> ImageDataset:
    """Random uint8 images and labels of ``shape``: no files needed, same cost per image."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        images = torch.randint(
            0, 256, (n, shape.channels, *shape.size), dtype=torch.uint8, generator=generator
        )
        return Split(images, torch.randint(0, shape.classes, (n,), generator=generator))

    names = tuple(f"class{i}" for i in range(shape.classes))
    return ImageDataset(f"synthetic-{shape.name}", split(n_train), split(n_test), names)


def part1_macs(shape: Shape) -> int:
    """Forward multiply-accumulates of one image through part1: conv1, fc1, fc2."""
    model = part1(shape.channels, shape.classes, shape.size)
    macs = 0
    h, w = shape.size
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            ph, pw = module.padding if isinstance(module.padding, tuple) else (0, 0)
            sh, sw = module.stride
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            macs += kh * kw * module.in_channels * module.out_channels * h * w
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features
    return macs


def training_flops(shape: Shape) -> float:
    """Training FLOPs per image: 3x the forward FLOPs, i.e. 6x the forward MACs."""
    return 6.0 * part1_macs(shape)


@dataclass
class Peak:
    """The best float32 matmul rate seen so far, in GFLOP/s."""

    size: int = MATMUL_SIZE
    best: float = 0.0
    samples: list[float] = field(default_factory=list)

    def measure(self, calls: int) -> float:
        a = torch.randn(self.size, self.size)
        b = torch.randn(self.size, self.size)
        out = torch.empty(self.size, self.size)
        torch.mm(a, b, out=out)  # warm-up
        for _ in range(calls):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            rate = 2.0 * self.size**3 / (time.perf_counter() - start) / 1e9
            self.samples.append(rate)
            self.best = max(self.best, rate)
        return self.best


class CnnlabLoop:
    """cnnlab's engine, stepped over consecutive batches of the real epoch order."""

    name = "cnnlab"

    def __init__(self, dataset: ImageDataset, batch_size: int) -> None:
        torch.manual_seed(SEED)
        model = part1(dataset.channels, dataset.num_classes, dataset.image_size)
        config = RunConfig(seed=SEED, device="cpu", train=TrainConfig(batch_size=batch_size))
        self.engine = Engine(
            config,
            dataset,
            model,
            torch.device("cpu"),
            Distributed(),
            None,
            Progress(enabled=False),
        )
        self.engine.trained.train()
        self.batch_size = batch_size
        self.epoch, self.batch = 0, 0
        self.order = epoch_order(len(dataset.train), SEED, 0, self.engine.device)

    def run(self, steps: int) -> int:
        """``steps`` training steps; returns the number of images trained on."""
        engine, size, images = self.engine, self.batch_size, 0
        for _ in range(steps):
            if self.batch == engine.steps_per_epoch:
                self.epoch, self.batch = self.epoch + 1, 0
                self.order = epoch_order(len(self.order), SEED, self.epoch, engine.device)
            index = engine.dist.shard(self.order[self.batch * size : (self.batch + 1) * size])
            engine._step(index, self.epoch, self.batch)
            images += index.numel()
            self.batch += 1
        return images


class TutorialLoop:
    """The tutorial loop: DataLoader over a float32 TensorDataset, default Adam."""

    name = "DataLoader"

    def __init__(self, dataset: ImageDataset, batch_size: int) -> None:
        torch.manual_seed(SEED)
        self.model = part1(dataset.channels, dataset.num_classes, dataset.image_size)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), 1e-3)
        tensors = TensorDataset(dataset.normalize(dataset.train.images), dataset.train.labels)
        self.loader = DataLoader(tensors, batch_size=batch_size, shuffle=True)
        self.batches: Iterator[list[torch.Tensor]] = iter(self.loader)

    def run(self, steps: int) -> int:
        images = 0
        for _ in range(steps):
            try:
                inputs, labels = next(self.batches)
            except StopIteration:
                self.batches = iter(self.loader)
                inputs, labels = next(self.batches)
            self.optimizer.zero_grad()
            logits = self.model(inputs)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            self.optimizer.step()
            _ = loss.item(), int((logits.argmax(dim=1) == labels).sum())
            images += labels.numel()
        return images


@dataclass(frozen=True)
class Comparison:
    """Block rates (images/s) of both loops over the interleaved rounds."""

    cnnlab: tuple[float, ...]
    tutorial: tuple[float, ...]

    @property
    def speedup(self) -> float:
        ratios = [c / t for c, t in zip(self.cnnlab, self.tutorial, strict=True)]
        return statistics.median(ratios)


def timed(loop: CnnlabLoop | TutorialLoop, steps: int) -> float:
    """Images/s of ``steps`` steps of ``loop``."""
    start = time.perf_counter()
    images = loop.run(steps)
    return images / (time.perf_counter() - start)


def compare(dataset: ImageDataset, batch_size: int, steps: int, block: int) -> Comparison:
    """Both loops, warmed up, then ``steps`` steps each in interleaved blocks of ``block``."""
    ours, theirs = CnnlabLoop(dataset, batch_size), TutorialLoop(dataset, batch_size)
    ours.run(WARMUP_STEPS)
    theirs.run(WARMUP_STEPS)
    rounds = max(1, steps // block)
    cnnlab, tutorial = [], []
    for r in range(rounds):
        if r % 2 == 0:
            cnnlab.append(timed(ours, block))
            tutorial.append(timed(theirs, block))
        else:
            tutorial.append(timed(theirs, block))
            cnnlab.append(timed(ours, block))
    return Comparison(tuple(cnnlab), tuple(tutorial))


def evaluation_rate(repeats: int) -> tuple[float, float]:
    """Median and best images/s of ``batched_outputs`` over 28,000 MNIST-shaped images."""
    shape = SHAPES[0]
    dataset = synthetic_dataset(shape, EVAL_IMAGES, 1, SEED + 1)
    images = dataset.train.images
    preprocess = Preprocess(dataset.channels, dataset.image_size, dataset.mean, dataset.std)
    torch.manual_seed(SEED)
    model = part1(shape.channels, shape.classes, shape.size)
    rates = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        batched_outputs(model, images, preprocess, batch_size=EVAL_BATCH)
        rates.append(EVAL_IMAGES / (time.perf_counter() - start))
    return statistics.median(rates[1:]), max(rates[1:])


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


def parse_batches(text: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 64,128,256, got {text!r}") from None
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batches", type=parse_batches, default=(64, 128, 256), help="batch sizes (64,128,256)"
    )
    parser.add_argument("--steps", type=int, default=60, help="timed steps per loop (60)")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block (10)")
    parser.add_argument("--eval-repeats", type=int, default=5, help="timed evaluations (5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 steps, blocks of 5")
    args = parser.parse_args(argv)
    steps, block, eval_repeats = max(1, args.steps), max(1, args.block), max(1, args.eval_repeats)
    if args.quick:
        steps, block, eval_repeats = 10, 5, 2
    block = min(block, steps)

    print(
        f"cnnlab training benchmark: Python {platform.python_version()}, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
        f"threads; part1, {TRAIN_IMAGES:,} random train images per shape; {WARMUP_STEPS} "
        f"warm-up steps, then {steps} timed steps per loop in interleaved blocks of {block}\n"
    )

    peak = Peak()
    peak.measure(5)
    rows: list[tuple[str, ...]] = []
    goals: list[tuple[str, str, str]] = []
    for shape in SHAPES:
        dataset = synthetic_dataset(shape, TRAIN_IMAGES, TEST_IMAGES, SEED)
        flops = training_flops(shape)
        for batch_size in args.batches:
            result = compare(dataset, batch_size, steps, block)
            peak.measure(2)
            ours = statistics.median(result.cnnlab)
            theirs = statistics.median(result.tutorial)
            bound = peak.best * 1e9 / flops
            rows.append(
                (
                    shape.name,
                    str(batch_size),
                    f"{ours:,.0f}",
                    f"{max(result.cnnlab):,.0f}",
                    f"{theirs:,.0f}",
                    f"{max(result.tutorial):,.0f}",
                    f"{result.speedup:.2f}x",
                    f"{bound:,.0f}",
                    f"{ours / bound:.0%}",
                    f"{flops / 1e6:.1f}",
                )
            )
            if batch_size == GOAL_BATCH:
                goals.append(
                    (
                        f"{shape.name} speed-up over DataLoader >= {SPEEDUP_GOAL:g}x, batch 64",
                        f"{result.speedup:.2f}x",
                        verdict(result.speedup >= SPEEDUP_GOAL),
                    )
                )
                goals.append(
                    (
                        f"{shape.name} cnnlab >= {BOUND_GOAL:.0%} of compute bound, batch 64",
                        f"{ours / bound:.0%}",
                        verdict(ours / bound >= BOUND_GOAL),
                    )
                )

    eval_median, eval_best = evaluation_rate(eval_repeats)
    peak.measure(3)
    goals.append(
        (
            f"evaluation >= {EVAL_GOAL:,.0f} img/s (median), {EVAL_IMAGES:,} MNIST-shaped",
            f"{eval_median:,.0f} img/s",
            verdict(eval_median >= EVAL_GOAL),
        )
    )

    print_table(
        (
            "data",
            "batch",
            "cnnlab img/s",
            "best",
            "DataLoader img/s",
            "best",
            "speed-up",
            "bound img/s",
            "of bound",
            "MFLOP/img",
        ),
        rows,
    )
    print(
        f"\nimg/s: median over blocks of {block} steps (best block beside it); speed-up: median "
        f"over rounds of the paired block ratio.\npeak float32: {peak.best:.1f} GFLOP/s "
        f"({MATMUL_SIZE}x{MATMUL_SIZE} matmul, best of {len(peak.samples)} calls over the run; "
        f"median {statistics.median(peak.samples):.1f}); bound = peak / training FLOPs per "
        f"image (6x forward MACs of conv1, fc1, fc2).\nevaluation: batched_outputs, batch "
        f"{EVAL_BATCH}, {EVAL_IMAGES:,} images: median {eval_median:,.0f} img/s, best "
        f"{eval_best:,.0f} img/s ({eval_repeats} timed calls after one warm-up)."
    )
    print("\nreference (issue, same machine, batch 64):")
    print_table(("figure", "MNIST", "Lines"), [(*row,) for row in REFERENCE])
    print()
    print_table(("goal", "measured", "result"), goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
