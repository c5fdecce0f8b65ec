"""Benchmark: what augmentation (``train.augment``) costs a training step, per named set.

Measures, in one run on this machine, at batch 128 (``--batches``), for

(1) MNIST shape (1x28x28, 10 classes, 20,000 random uint8 training images, marked ``upright``
    as cnnlab's MNIST loader marks MNIST, so flips and turns are left out) with the ``resnet``
    family (its defaults: the net the default recipe picks; ``part2-mnist``'s convnet options
    where the family is missing) and with ``part2-mnist``'s convnet;
(2) the real Lines data (``generate_lines(lines_config(per_class=200)).to_dataset()``, its
    training split) with ``part2-lines``'s convnet. On Lines the named sets leave out the
    operations that would make a factor label false (``Augmenter.notes``); the table lists the
    operations that remained,

for each named set but ``none``:

(a) two :class:`~cnnlab.training.engine.Engine` s built as ``cnnlab train`` builds them
    (``load_config(preset, --set ...)``, ``build_model``, ``Engine`` with no run folder, one
    process, progress off), from the same initial weights: one with ``train.augment: none``,
    one with the set. Both with ``train.augment_shift: 0`` (the plain step augments nothing) and
    ``train.precision`` from ``--precision`` (``auto``: bfloat16 where the CPU has it natively).
    Each is timed over consecutive calls of ``Engine._step`` on consecutive batches of the real
    epoch order (``epoch_order``, sharded as ``train_epoch`` does), after a few warm-up steps.
(b) The augmentation alone: ``engine.augmenter(index, images, targets, generator)`` called as
    ``_step`` calls it (the batch's uint8 images and targets, its seeded generator), timed call
    by call on consecutive batches.
(c) The three run interleaved, in rounds of one block of ``--block`` steps each (the order
    rotates from round to round), so that all see the same machine. The table shows the median
    ms per step of the plain and the augmented step, the step's overhead (median over rounds of
    augmented/plain - 1), and the augmentation alone in ms and as a share of the plain step
    (median over rounds of the ratio).

Goal (issue 28): augmentation costs <= 15% of a training step, judged on the step's overhead
(augmented/plain - 1), per named set, data and model.

**A shared machine**: handled as in ``train_throughput.py``, whose helpers this imports: the
other processes' share of the CPU (``/proc/stat``) is measured per round, each round waits for
quiet (``--patience`` seconds in all), loaded rounds are repeated (at most doubling the rounds)
and rows marked ``*`` kept loaded rounds.

Run from the repository root::

    .venv/bin/python benchmarks/augment_cost.py [--batches 128] [--precision auto]
        [--steps 60] [--block 10] [--own-images] [--quick]

``--own-images`` adds the MNIST-shaped images not marked upright (a user's own photos: no
operation is left out, so ``strong`` keeps TrivialAugment), with ``resnet``.
``--quick`` is a smoke run, its figures meaningless: 2,000 MNIST-shaped images, Lines at 20 per
class, batch 16 and one torch thread unless given, 1 warm-up and 2 timed steps per loop in
blocks of 1, no waiting. ``--threads N`` sets torch's intra-op threads first. No dataset files
are needed. The script is a report: it always exits 0, and prints PASS/FAIL per row.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from train_throughput import (
    Quiet,
    Rounds,
    Shape,
    load_text,
    measure_rounds,
    parse_batches,
    print_table,
    synthetic_dataset,
    verdict,
)

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.lines import generate_lines, lines_config
from cnnlab.hardware import cpu_name
from cnnlab.models import model_names
from cnnlab.models.registry import build_model
from cnnlab.training.augment import SETS
from cnnlab.training.config import CHOICES, RunConfig, load_config
from cnnlab.training.distributed import Distributed
from cnnlab.training.engine import Engine, batch_generator, epoch_order
from cnnlab.training.progress import Progress

GOAL = 0.15  # augmentation's share of a training step, at most
TRAIN_IMAGES = 20_000
TEST_IMAGES = 1_000
LINES_PER_CLASS = 200
WARMUP_STEPS = 5
SEED = 0
SET_NAMES = tuple(name for name in SETS if name != "none")


@dataclass(frozen=True)
class Case:
    """One data and model: the preset its config comes from, and its ``--set`` overrides."""

    data: str
    model: str
    preset: str
    overrides: tuple[str, ...] = ()


def cases(own: bool) -> list[Case]:
    """MNIST with resnet (if registered) and part2's convnet; Lines with part2's convnet; with
    ``own``, also MNIST-shaped images not marked upright, with resnet (or part2's convnet)."""
    resnet = ("model.name=resnet",)
    if "resnet" not in model_names():
        print("note: no resnet family registered; MNIST gets part2-mnist's convnet only\n")
        resnet = ()
    found = [Case("MNIST", "resnet", "part2-mnist", resnet)] if resnet else []
    found += [
        Case("MNIST", "part2 convnet", "part2-mnist"),
        Case("Lines", "part2 convnet", "part2-lines"),
    ]
    if own:
        found.append(Case("own", "resnet" if resnet else "part2 convnet", "part2-mnist", resnet))
    return found


def datasets(quick: bool) -> dict[str, ImageDataset]:
    """MNIST-shaped random images (``MNIST`` upright, ``own`` not), and the real Lines."""
    mnist = synthetic_dataset(
        Shape("MNIST", 1, 10), 2_000 if quick else TRAIN_IMAGES, TEST_IMAGES, SEED
    )
    lines = generate_lines(lines_config(per_class=20 if quick else LINES_PER_CLASS))
    return {
        "MNIST": dataclasses.replace(mnist, upright=True),
        "Lines": lines.to_dataset(),
        "own": mnist,
    }


def build_engine(
    case: Case, dataset: ImageDataset, augment: str, precision: str, batch_size: int, steps: int
) -> Engine:
    """An engine as ``cnnlab train`` builds one, its schedule long enough for ``steps``."""
    settings = (
        f"train.augment={augment}",
        "train.augment_shift=0",
        f"train.batch_size={batch_size}",
        f"train.precision={precision}",
        "device=cpu",
        f"seed={SEED}",
    )
    config: RunConfig = load_config(case.preset, (*case.overrides, *settings))
    epochs = math.ceil(steps / math.ceil(len(dataset.train) / batch_size)) + 1
    if config.train.epochs < epochs:  # one-cycle refuses to step past its end
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))
    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        dataset.channels,
        dataset.num_classes,
        dataset.image_size,
        dataset.factor_levels,
    )
    engine = Engine(
        config, dataset, model, torch.device("cpu"), Distributed(), None, Progress(enabled=False)
    )
    engine.trained.train()
    return engine


class Batches:
    """Consecutive batches of the real epoch order, sharded as ``train_epoch`` does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.epoch, self.batch = 0, 0
        self.order = epoch_order(len(engine.dataset.train), SEED, 0, engine.device)

    def next(self) -> tuple[torch.Tensor, int, int]:
        engine, size = self.engine, self.engine.t.batch_size
        if self.batch == engine.steps_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
            self.order = epoch_order(len(self.order), SEED, self.epoch, engine.device)
        index = engine.dist.shard(self.order[self.batch * size : (self.batch + 1) * size])
        self.batch += 1
        return index, self.epoch, self.batch - 1


class Steps:
    """``Engine._step`` on consecutive batches."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.batches = engine, Batches(engine)

    def run(self, steps: int) -> float:
        """Ms per step over ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.engine._step(*self.batches.next())
        return (time.perf_counter() - start) * 1e3 / steps


class Augmentation:
    """The engine's augmenter alone, called as ``_step`` calls it, on consecutive batches."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.batches = engine, Batches(engine)

    def run(self, steps: int) -> float:
        """Ms per call over ``steps`` calls (inputs made outside the timing)."""
        engine, total = self.engine, 0.0
        if not engine.augmenter.active:
            return 0.0
        for _ in range(steps):
            index, epoch, batch = self.batches.next()
            images = engine.train_images.index_select(0, index)
            targets = {k: v.index_select(0, index) for k, v in engine.train_targets.items()}
            generator = batch_generator(engine.config.seed, epoch, batch)
            start = time.perf_counter()
            engine.augmenter(index, images, targets, generator)
            total += time.perf_counter() - start
        return total * 1e3 / steps


@dataclass(frozen=True)
class Result:
    """One (case, batch, set) measurement: rates are ms of (plain step, augmented, augmenter)."""

    case: Case
    batch_size: int
    augment: str
    operations: str
    notes: tuple[str, ...]
    precision: str
    rounds: Rounds | None
    error: str = ""


def compare(
    case: Case,
    dataset: ImageDataset,
    augment: str,
    args: argparse.Namespace,
    batch_size: int,
    quiet: Quiet,
) -> Result:
    """Plain and augmented steps and the augmenter alone, warmed up, in interleaved blocks."""
    total = args.warmup + 2 * args.steps  # steps either engine may take (repeated rounds)
    plain = build_engine(case, dataset, "none", args.precision, batch_size, total)
    augmented = build_engine(case, dataset, augment, args.precision, batch_size, total)
    aug = augmented.augmenter
    loops = [Steps(plain), Steps(augmented), Augmentation(augmented)]
    for loop in loops:
        loop.run(args.warmup)

    def one_round(attempt: int) -> tuple[float, ...]:
        ms = [0.0] * len(loops)
        first = attempt % len(loops)
        for i in [*range(first, len(loops)), *range(first)]:
            ms[i] = loops[i].run(args.block)
        return tuple(ms)

    rounds = measure_rounds(one_round, max(1, args.steps // args.block), quiet)
    operations = ", ".join(op.name for op in aug.ops) or "(none left)"
    return Result(case, batch_size, augment, operations, tuple(aug.notes), plain.precision, rounds)


def ratio(rounds: Rounds, i: int) -> float:
    """Median over rounds of time ``i`` / the plain step's time in the same round."""
    return statistics.median(r.rates[i] / r.rates[0] for r in rounds.kept)


def row(result: Result) -> tuple[str, ...]:
    head = (result.case.data, result.case.model, str(result.batch_size), result.augment)
    if result.rounds is None:
        return (*head, *("-",) * 8, "ERROR", result.error)
    rounds = result.rounds
    overhead = ratio(rounds, 1) - 1
    return (
        *head,
        f"{rounds.median(0):.1f}",
        f"{rounds.median(1):.1f}",
        f"{overhead:+.1%}",
        f"{rounds.median(2):.1f}",
        f"{ratio(rounds, 2):.1%}",
        load_text(rounds),
        f"{len(rounds.kept)}+{rounds.repeated}",
        verdict(overhead <= GOAL),
        result.operations,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=parse_batches, help="batch sizes (128; --quick: 16)")
    parser.add_argument(
        "--precision", choices=CHOICES["train.precision"], default="auto", help="(auto)"
    )
    parser.add_argument("--steps", type=int, default=60, help="timed steps per loop (60)")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block (10)")
    parser.add_argument(
        "--max-load", type=float, default=0.1, help="other processes' CPU share for a quiet round"
    )
    parser.add_argument(
        "--patience", type=float, default=300.0, help="seconds to wait for quiet, in all (300)"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads first")
    parser.add_argument(
        "--own-images",
        action="store_true",
        help="also MNIST-shaped images not marked upright: no operation left out",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: see the docstring")
    args = parser.parse_args(argv)
    args.steps, args.block, args.warmup = max(1, args.steps), max(1, args.block), WARMUP_STEPS
    if args.quick:
        args.steps, args.block, args.warmup, args.patience = 2, 1, 1, 0.0
        args.threads = args.threads or 1
    args.batches = args.batches or ((16,) if args.quick else (128,))
    args.block = min(args.block, args.steps)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet = Quiet(args.max_load, args.patience)

    data = datasets(args.quick)
    print(
        f"cnnlab augmentation cost: {cpu_name()}; {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads; Python {platform.python_version()}, torch "
        f"{torch.__version__}\nprecision {args.precision}; train images: "
        + ", ".join(f"{name} {len(data[name].train):,}" for name in ("MNIST", "Lines"))
        + f"; {args.warmup} warm-up steps, then {args.steps} timed steps per loop in "
        f"interleaved blocks of {args.block}\n"
    )

    results: list[Result] = []
    for case in cases(args.own_images):
        for batch_size in args.batches:
            for augment in SET_NAMES:
                try:
                    result = compare(case, data[case.data], augment, args, batch_size, quiet)
                except Exception as exc:  # a report: say what failed, measure the rest
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
                    result = Result(case, batch_size, augment, "", (), "", None, error)
                results.append(result)
                print(f"  measured {case.data} {case.model} batch {batch_size} {augment}")

    precisions = sorted({r.precision for r in results if r.precision})
    header = (
        "data",
        "model",
        "batch",
        "set",
        "plain ms",
        "aug'd ms",
        "step +",
        "aug ms",
        "aug/plain",
        "other load",
        "rounds",
        f"<= {GOAL:.0%}",
        "operations kept",
    )
    print()
    print_table(header, [row(r) for r in results])
    left_out = dict.fromkeys(
        f"{r.case.data}: {note.split(': ', 1)[-1]}" for r in results for note in r.notes
    )
    if left_out:
        print("\nleft out by the named sets (labels would be false):")
        for note in left_out:
            print(f"  {note}")
    print(
        f"\nprecision {args.precision} -> {', '.join(precisions) or '?'}. ms: median over rounds "
        f"of one {args.block}-step block per loop; plain: augment none; aug'd: the set;\nstep +: "
        "median over rounds of aug'd/plain - 1 (the goal's measure); aug ms: the augmenter "
        "call alone; aug/plain: its median share of the plain step.\nrounds: kept + repeated "
        f"(other processes' load > {args.max_load:.0%}); other load: their mean share of the "
        "machine's CPU during the rounds kept (* = some\nkept rounds were loaded). "
        f"augment_shift 0 in both engines. Waited {quiet.waited:.0f} s for quiet."
        + (
            "\nown: the MNIST-shaped images, not marked upright (a user's own photos)."
            if args.own_images
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
