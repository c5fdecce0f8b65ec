"""Benchmark: training throughput of cnnlab's engine against a DataLoader tutorial loop.

Measures, in one run on this machine, for the ``part1`` net (Adam, lr 1e-3, cross-entropy) on
synthetic uint8 data of MNIST shape (1x28x28, 10 classes) and Lines shape (3x28x28, 96
classes), 20,000 random training images each, at each batch size (64, 128, 256 by default):

(a) **cnnlab**: an :class:`~cnnlab.training.engine.Engine` built as ``cnnlab train`` builds it
    (default ``TrainConfig`` but for ``precision``: fused Adam, LambdaLR, cross-entropy; one
    process, progress off), one per precision of ``--precisions`` (default ``fp32,bf16``;
    ``bf16`` autocasts the forward pass to bfloat16, weights and optimiser stay float32;
    ``auto`` is shown with what it resolved to), timed over consecutive calls of
    ``Engine._step`` on consecutive batches of the real epoch order (``epoch_order``, sharded
    as ``train_epoch`` does), after a few warm-up steps. That is the whole hot path of
    ``train_epoch`` but for its per-batch bookkeeping (one float64 ``sums +=``, a few
    microseconds).
(b) **DataLoader**: the tutorial loop: ``DataLoader(TensorDataset(float32 normalised images,
    labels), batch_size=B, shuffle=True)`` and ``torch.optim.Adam(model.parameters(), 1e-3)``
    with default settings, the same ``part1`` (same initial weights), the same number of steps.
    Each step does ``zero_grad``, forward, ``F.cross_entropy``, ``backward``, ``step`` and reads
    the loss and the number correct, as the engine does.
(c) All loops (every cnnlab precision and the DataLoader loop, all from the same initial
    weights) run interleaved, in rounds of one block of ``--block`` steps each (the order
    rotates from round to round, so no loop is always first), so that all see the same
    machine. A block's images/s is its images over its wall time. The table shows the median
    over rounds; a precision's speed-up is the median over rounds of (that cnnlab loop's rate /
    the DataLoader's rate in the same round).
(d) The compute bound: the machine's peak float32 GFLOP/s (a 2048x2048 matmul, best of
    several calls spread over the run) over part1's training FLOPs per image, counted
    analytically: forward MACs of conv1 (k*k*Cin*Cout*Hout*Wout), fc1 and fc2; training = 3x
    the forward FLOPs = 6x the MACs. The peak bfloat16 GFLOP/s is measured the same way with
    bfloat16 matrices. Each row shows cnnlab's images/s as a fraction of the fp32 bound (the
    goal's definition, whatever the row's precision) and, in "of own bound", of its own
    precision's bound (the bf16 peak over the same FLOPs for bf16 rows).
(e) Evaluation: ``batched_outputs(model, images, preprocess, batch_size=2048)`` over 28,000
    MNIST-shaped images with a fresh ``part1`` (as ``load_run`` builds it): one warm-up call,
    then ``--eval-repeats`` timed calls (median).

Goals (at batch 64, for each dataset shape and each precision): cnnlab at least 1.5x the
DataLoader loop; cnnlab at >= 60% of the fp32 compute bound; evaluation >= 12,000 images/s.

**A shared machine.** With 2 cores and torch's default of one OpenMP thread per core, a
process of someone else's that keeps a core busy slows every parallel op of ours far beyond
its share of the CPU (training steps 10-20x slower were seen). So the script measures (from
``/proc/stat``, on Linux) the share of the machine's CPU time that *other* processes used
during each round. It waits for a quiet machine before each round (at most ``--patience``
seconds in all), repeats a round whose other load exceeded ``--max-load`` (at most doubling
the number of rounds), and if it still lacks quiet rounds keeps the least loaded ones. The
table shows the mean other load of the rounds it kept; rows marked ``*`` kept rounds above
``--max-load`` and understate the speed the machine is capable of.

Run from the repository root::

    .venv/bin/python benchmarks/train_throughput.py [--batches 64,128,256] [--precisions fp32,bf16]
        [--steps 60] [--quick]

``--quick`` is a smoke run: 10 steps per loop and batch, in blocks of 5, 2 evaluations, no
waiting. ``--threads N`` sets torch's intra-op threads first. No dataset files are needed. The
script is a report: it always exits 0, and prints PASS/FAIL next to each goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.models.convnets import part1
from cnnlab.models.inference import Preprocess, batched_outputs
from cnnlab.training.config import CHOICES, RunConfig, TrainConfig
from cnnlab.training.distributed import Distributed
from cnnlab.training.engine import Engine, epoch_order
from cnnlab.training.progress import Progress

SPEEDUP_GOAL = 1.5  # cnnlab vs the DataLoader loop at batch 64, at least
BOUND_GOAL = 0.60  # cnnlab as a fraction of the fp32 compute bound at batch 64, at least
EVAL_GOAL = 12_000.0  # batched_outputs images/s over 28,000 MNIST-shaped images, at least
GOAL_BATCH = 64
TRAIN_IMAGES = 20_000
TEST_IMAGES = 1_000
EVAL_IMAGES = 28_000
EVAL_BATCH = 256  # what cnnlab evaluates with (batched_outputs default)
WARMUP_STEPS = 5
MATMUL_SIZE = 2048
SEED = 0
PRECISIONS = CHOICES["train.precision"]  # fp32, bf16, auto

# From the issue, same machine, part1 at batch 64: (MNIST, Lines).
REFERENCE = (
    ("Keras-TF part1", "2,180 img/s", "1,960 img/s"),
    ("DataLoader loop", "2,330 img/s", "1,670 img/s"),
    ("compute bound (peak ~182 GFLOP/s)", "6,400 img/s", "4,780 img/s"),
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


# -- the machine ----------------------------------------------------------------------------
def _cpu_counters() -> tuple[int, int, float] | None:
    """Busy and total jiffies of the whole machine, and this process's CPU seconds."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    own = os.times()
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values), own.user + own.system


class OtherLoad:
    """The share of the machine's CPU time used by other processes during a ``with`` block.

    ``share`` is between 0 (only this process ran) and 1 (others kept every core busy); it is
    None where ``/proc/stat`` cannot be read.
    """

    def __init__(self) -> None:
        self.share: float | None = None
        self._start: tuple[int, int, float] | None = None

    def __enter__(self) -> OtherLoad:
        self._start = _cpu_counters()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        end = _cpu_counters()
        if self._start is None or end is None or end[1] <= self._start[1]:
            return
        own = (end[2] - self._start[2]) * os.sysconf("SC_CLK_TCK")
        other = end[0] - self._start[0] - own
        self.share = min(1.0, max(0.0, other / (end[1] - self._start[1])))


@dataclass
class Quiet:
    """Waits for other processes to leave the machine alone, within a budget of seconds."""

    max_load: float
    patience: float
    waited: float = 0.0

    def wait(self) -> None:
        while self.waited < self.patience:
            start = time.perf_counter()
            with OtherLoad() as load:
                time.sleep(0.5)
            self.waited += time.perf_counter() - start
            if load.share is None or load.share <= self.max_load:
                return


@dataclass
class Peak:
    """The best matmul rate in ``dtype`` seen so far, in GFLOP/s."""

    dtype: torch.dtype = torch.float32
    size: int = MATMUL_SIZE
    samples: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.samples)

    def measure(self, calls: int) -> None:
        a, b = (torch.randn(self.size, self.size, dtype=self.dtype) for _ in range(2))
        out = torch.empty(self.size, self.size, dtype=self.dtype)
        torch.mm(a, b, out=out)  # warm-up
        for _ in range(calls):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            self.samples.append(2.0 * self.size**3 / (time.perf_counter() - start) / 1e9)

    def text(self, name: str) -> str:
        return (
            f"peak {name}: {self.best:.1f} GFLOP/s (best of {len(self.samples)} calls over "
            f"the run; median {statistics.median(self.samples):.1f})"
        )


@dataclass
class Peaks:
    """The float32 and bfloat16 peaks, measured together."""

    fp32: Peak = field(default_factory=Peak)
    bf16: Peak = field(default_factory=lambda: Peak(torch.bfloat16))

    def measure(self, calls: int) -> None:
        self.fp32.measure(calls)
        self.bf16.measure(calls)

    def of(self, precision: str) -> Peak:
        """The peak of a resolved precision (``fp32`` or ``bf16``)."""
        return self.bf16 if precision == "bf16" else self.fp32


# -- data and model ---------------------------------------------------------------------------
def synthetic_dataset(shape: Shape, n_train: int, n_test: int, seed: int) -> ImageDataset:
    """Random uint8 images and labels of ``shape``: no files needed, the same cost per image."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        images = torch.randint(
            0, 256, (n, shape.channels, *shape.size), dtype=torch.uint8, generator=generator
        )
        return Split(images, torch.randint(0, shape.classes, (n,), generator=generator))

    names = tuple(f"class{i}" for i in range(shape.classes))
    return ImageDataset(f"synthetic-{shape.name}", split(n_train), split(n_test), names)


def part1_macs(shape: Shape) -> int:
    """Forward multiply-accumulates of one image through part1's conv1, fc1 and fc2."""
    model = part1(shape.channels, shape.classes, shape.size)
    macs, (h, w) = 0, shape.size
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            (kh, kw), (sh, sw) = module.kernel_size, module.stride
            ph, pw = module.padding if isinstance(module.padding, tuple) else (0, 0)
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            macs += kh * kw * module.in_channels * module.out_channels * h * w
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features
    return macs


def training_flops(shape: Shape) -> float:
    """Training FLOPs per image: 3x the forward FLOPs, i.e. 6x the forward MACs."""
    return 6.0 * part1_macs(shape)


# -- the training loops -----------------------------------------------------------------------
class CnnlabLoop:
    """cnnlab's engine in ``precision``, stepped over consecutive batches of the epoch order."""

    def __init__(self, dataset: ImageDataset, batch_size: int, precision: str) -> None:
        torch.manual_seed(SEED)
        model = part1(dataset.channels, dataset.num_classes, dataset.image_size)
        train = TrainConfig(batch_size=batch_size, precision=precision)
        config = RunConfig(seed=SEED, device="cpu", train=train)
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
        self.requested, self.precision = precision, self.engine.precision
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

    @property
    def label(self) -> str:
        """The precision, with what ``auto`` resolved to."""
        if self.requested == self.precision:
            return self.precision
        return f"{self.requested} ({self.precision})"


class TutorialLoop:
    """The tutorial loop: DataLoader over a float32 TensorDataset, default Adam."""

    def __init__(self, dataset: ImageDataset, batch_size: int) -> None:
        torch.manual_seed(SEED)
        self.model = part1(dataset.channels, dataset.num_classes, dataset.image_size)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), 1e-3)
        tensors = TensorDataset(dataset.normalize(dataset.train.images), dataset.train.labels)
        self.loader = DataLoader(tensors, batch_size=batch_size, shuffle=True)
        self.batches: Iterator[list[torch.Tensor]] = iter(self.loader)

    def run(self, steps: int) -> int:
        """``steps`` training steps; returns the number of images trained on."""
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


# -- measuring ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Round:
    """One measurement (or one per loop) and the other processes' load meanwhile."""

    rates: tuple[float, ...]
    load: float | None


@dataclass(frozen=True)
class Rounds:
    """The rounds kept, how many were repeated, and whether all kept ones were quiet."""

    kept: tuple[Round, ...]
    repeated: int
    max_load: float

    def rates(self, i: int) -> list[float]:
        return [r.rates[i] for r in self.kept]

    def median(self, i: int) -> float:
        return statistics.median(self.rates(i))

    @property
    def load(self) -> float | None:
        loads = [r.load for r in self.kept if r.load is not None]
        return sum(loads) / len(loads) if loads else None

    @property
    def quiet(self) -> bool:
        return all(r.load is None or r.load <= self.max_load for r in self.kept)

    def speedup(self, i: int) -> float:
        """Median over rounds of rate ``i`` / the last rate (the DataLoader's) in that round."""
        return statistics.median(r.rates[i] / r.rates[-1] for r in self.kept)


def measure_rounds(
    measure: Callable[[int], tuple[float, ...]], wanted: int, quiet: Quiet
) -> Rounds:
    """``wanted`` rounds of ``measure(round)``, repeating loaded ones as described above."""
    kept: list[Round] = []
    loaded: list[Round] = []
    attempt = 0
    while len(kept) < wanted and attempt < 2 * wanted:
        quiet.wait()
        with OtherLoad() as load:
            rates = measure(attempt)
        result = Round(rates, load.share)
        attempt += 1
        if load.share is None or load.share <= quiet.max_load:
            kept.append(result)
        else:
            loaded.append(result)
    loaded.sort(key=lambda r: r.load or 0.0)
    kept += loaded[: wanted - len(kept)]
    return Rounds(tuple(kept), attempt - wanted, quiet.max_load)


def images_per_second(loop: CnnlabLoop | TutorialLoop, steps: int) -> float:
    start = time.perf_counter()
    images = loop.run(steps)
    return images / (time.perf_counter() - start)


@dataclass(frozen=True)
class Comparison:
    """One (data, batch) measurement: rates are (cnnlab per precision..., DataLoader)."""

    shape: Shape
    batch_size: int
    precisions: tuple[str, ...]  # resolved: fp32 or bf16
    labels: tuple[str, ...]  # as requested, e.g. "auto (bf16)"
    rounds: Rounds


def compare(
    dataset: ImageDataset,
    shape: Shape,
    batch_size: int,
    precisions: tuple[str, ...],
    steps: int,
    block: int,
    quiet: Quiet,
) -> Comparison:
    """All loops, warmed up, then ``steps`` steps each in interleaved blocks of ``block``."""
    ours = [CnnlabLoop(dataset, batch_size, precision) for precision in precisions]
    loops: list[CnnlabLoop | TutorialLoop] = [*ours, TutorialLoop(dataset, batch_size)]
    for loop in loops:
        loop.run(WARMUP_STEPS)

    def one_round(attempt: int) -> tuple[float, ...]:
        rates = [0.0] * len(loops)
        first = attempt % len(loops)
        for i in [*range(first, len(loops)), *range(first)]:
            rates[i] = images_per_second(loops[i], block)
        return tuple(rates)

    rounds = measure_rounds(one_round, max(1, steps // block), quiet)
    resolved = tuple(loop.precision for loop in ours)
    return Comparison(shape, batch_size, resolved, tuple(loop.label for loop in ours), rounds)


def evaluation(repeats: int, quiet: Quiet) -> Rounds:
    """Images/s of ``batched_outputs`` over 28,000 MNIST-shaped images, per call."""
    shape = SHAPES[0]
    dataset = synthetic_dataset(shape, EVAL_IMAGES, 1, SEED + 1)
    images = dataset.train.images
    preprocess = Preprocess(dataset.channels, dataset.image_size, dataset.mean, dataset.std)
    torch.manual_seed(SEED)
    model = part1(shape.channels, shape.classes, shape.size)

    def call(_: int) -> tuple[float]:
        start = time.perf_counter()
        batched_outputs(model, images, preprocess, batch_size=EVAL_BATCH)
        return (EVAL_IMAGES / (time.perf_counter() - start),)

    call(0)  # warm-up
    return measure_rounds(call, repeats, quiet)


# -- report ---------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def load_text(rounds: Rounds) -> str:
    load = rounds.load
    return "n/a" if load is None else f"{load:.0%}" + ("" if rounds.quiet else "*")


def bound(peak: Peak, shape: Shape) -> float:
    """Images/s at ``peak``'s rate for part1's training FLOPs per image of ``shape``."""
    return peak.best * 1e9 / training_flops(shape)


def result_rows(result: Comparison, peaks: Peaks) -> list[tuple[str, ...]]:
    """One table row per precision of ``result``."""
    rounds, shape = result.rounds, result.shape
    theirs, fp32_bound = rounds.median(-1), bound(peaks.fp32, shape)
    rows: list[tuple[str, ...]] = []
    for i, (precision, label) in enumerate(zip(result.precisions, result.labels, strict=True)):
        ours = rounds.median(i)
        rows.append(
            (
                shape.name,
                str(result.batch_size),
                label,
                f"{ours:,.0f}",
                f"{theirs:,.0f}",
                f"{rounds.speedup(i):.2f}x",
                f"{fp32_bound:,.0f}",
                f"{ours / fp32_bound:.0%}",
                f"{ours / bound(peaks.of(precision), shape):.0%}",
                f"{training_flops(shape) / 1e6:.1f}",
                load_text(rounds),
                f"{len(rounds.kept)}+{rounds.repeated}",
            )
        )
    return rows


def result_goals(result: Comparison, peaks: Peaks) -> list[tuple[str, str, str]]:
    """The speed-up and fp32-bound goals of each precision, at batch 64 only."""
    if result.batch_size != GOAL_BATCH:
        return []
    rounds, name = result.rounds, result.shape.name
    fp32_bound = bound(peaks.fp32, result.shape)
    goals: list[tuple[str, str, str]] = []
    for i, label in enumerate(result.labels):
        speedup, fraction = rounds.speedup(i), rounds.median(i) / fp32_bound
        goals += [
            (
                f"{name} cnnlab {label} / DataLoader >= {SPEEDUP_GOAL:g}x at batch 64",
                f"{speedup:.2f}x",
                verdict(speedup >= SPEEDUP_GOAL),
            ),
            (
                f"{name} cnnlab {label} >= {BOUND_GOAL:.0%} of the fp32 compute bound at batch 64",
                f"{fraction:.0%}",
                verdict(fraction >= BOUND_GOAL),
            ),
        ]
    return goals


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


def parse_precisions(text: str) -> tuple[str, ...]:
    precisions = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown precision(s) {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}"
        )
    if not precisions:
        raise argparse.ArgumentTypeError(f"expected e.g. fp32,bf16, got {text!r}")
    return precisions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batches", type=parse_batches, default=(64, 128, 256), help="batch sizes (64,128,256)"
    )
    parser.add_argument(
        "--precisions",
        type=parse_precisions,
        default=("fp32", "bf16"),
        help=f"cnnlab precisions, of {', '.join(PRECISIONS)} (fp32,bf16)",
    )
    parser.add_argument("--steps", type=int, default=60, help="timed steps per loop (60)")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block (10)")
    parser.add_argument("--eval-repeats", type=int, default=5, help="timed evaluations (5)")
    parser.add_argument(
        "--max-load", type=float, default=0.1, help="other processes' CPU share for a quiet round"
    )
    parser.add_argument(
        "--patience", type=float, default=180.0, help="seconds to wait for quiet, in all (180)"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads first")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 steps, blocks of 5")
    args = parser.parse_args(argv)
    steps, block, repeats = max(1, args.steps), max(1, args.block), max(1, args.eval_repeats)
    patience = args.patience
    if args.quick:
        steps, block, repeats, patience = 10, 5, 2, 0.0
    block = min(block, steps)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet = Quiet(args.max_load, patience)

    print(
        f"cnnlab training benchmark: Python {platform.python_version()}, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
        f"threads; part1, {TRAIN_IMAGES:,} random train images per shape; {WARMUP_STEPS} "
        f"warm-up steps, then {steps} timed steps per loop in interleaved blocks of {block}\n"
    )

    peaks = Peaks()
    peaks.measure(5)
    results: list[Comparison] = []
    for shape in SHAPES:
        dataset = synthetic_dataset(shape, TRAIN_IMAGES, TEST_IMAGES, SEED)
        for batch_size in args.batches:
            results.append(
                compare(dataset, shape, batch_size, args.precisions, steps, block, quiet)
            )
            quiet.wait()
            peaks.measure(2)
    evaluated = evaluation(repeats, quiet)
    quiet.wait()
    peaks.measure(3)

    rows = [row for result in results for row in result_rows(result, peaks)]
    goals = [goal for result in results for goal in result_goals(result, peaks)]
    eval_rate = evaluated.median(0)
    goals.append(
        (
            f"evaluation >= {EVAL_GOAL:,.0f} img/s, {EVAL_IMAGES:,} MNIST-shaped",
            f"{eval_rate:,.0f} img/s",
            verdict(eval_rate >= EVAL_GOAL),
        )
    )

    header = (
        "data",
        "batch",
        "precision",
        "cnnlab img/s",
        "DataLoader img/s",
        "speed-up",
        "fp32 bound img/s",
        "of fp32 bound",
        "of own bound",
        "MFLOP/img",
        "other load",
        "rounds",
    )
    print_table(header, rows)
    print(
        f"\nimg/s: median over rounds of one {block}-step block per loop; speed-up: median over "
        f"rounds of the ratio to the DataLoader loop within a round.\nrounds: kept + repeated "
        f"(other processes' load > {args.max_load:.0%}); other load: their mean share of the "
        f"machine's CPU during the rounds kept\n(* = some kept rounds were loaded: the rates "
        f"understate this machine). Waited {quiet.waited:.0f} s for quiet.\n"
        f"{peaks.fp32.text('float32')};\n{peaks.bf16.text('bfloat16')}; "
        f"{MATMUL_SIZE}x{MATMUL_SIZE} matmuls.\nfp32 bound = float32 peak / training FLOPs per "
        f"image (6x forward MACs of conv1, fc1, fc2); of fp32 bound: cnnlab img/s over it, for "
        f"every precision;\nof own bound: over the bound of the row's precision (bf16 rows: "
        f"bfloat16 peak / the same FLOPs).\nevaluation: batched_outputs, batch {EVAL_BATCH}, "
        f"{EVAL_IMAGES:,} images: median {eval_rate:,.0f} img/s, best "
        f"{max(evaluated.rates(0)):,.0f} over {len(evaluated.kept)} calls after a warm-up; "
        f"other load {load_text(evaluated)}."
    )
    print("\nreference (the issue, same machine, part1 at batch 64):")
    print_table(("figure", "MNIST", "Lines"), list(REFERENCE))
    print()
    print_table(("goal", "measured", "result"), goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
