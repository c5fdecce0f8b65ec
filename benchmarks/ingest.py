"""Benchmark: loading a folder of PNG files, and one epoch of training on it, against the
``Dataset``/``DataLoader`` loop a user would write.

Measures, in one run on this machine:

(a) The data: MNIST's training images (``load_mnist(..., split="official")``), the first
    ``--images`` of them (60,000 by default), written once with Pillow as a PNG tree
    ``ROOT/train/<digit>/<k>.png``, plus the first ``--test-images`` test images (1,000) in
    ``ROOT/test/<digit>/`` (so cnnlab's train split is exactly the tree's train/ folder).
    The tree goes to a temporary folder (removed at the end), or to ``--keep DIR`` (reused when
    it already holds the same number of files).
(b) **cnnlab**: ``cnnlab.data.load_dataset(ROOT)``, decoding every file (``CNNLAB_CACHE`` set
    to a fresh temporary folder, ``CNNLAB_DECODE_CACHE`` unset: the first load decodes and
    stores the cache entry), then
    ``--repeats`` cached loads (median). Cached loads return the same tensors (checked).
(c) **baseline**: a ``torch.utils.data.Dataset`` listing ROOT/train/<digit>/*.png that opens
    each file with Pillow in ``__getitem__`` (``convert("L")``, to float32 on [0, 1],
    normalised with MNIST's mean and std, as ``ToTensor`` + ``Normalize`` do), in a
    ``DataLoader(batch_size=64, shuffle=True, num_workers=--workers)`` (2): the time of one
    epoch of iteration alone, and of each epoch of training (``part1``, ``torch.optim.Adam``
    lr 1e-3, cross-entropy, float32: zero_grad, forward, backward, step, reading the loss and
    the number correct, as ``benchmarks/train_throughput.py``'s tutorial loop does).
(d) **cnnlab training**: an :class:`~cnnlab.training.engine.Engine` built as ``cnnlab train``
    builds it (batch 64, Adam lr 1e-3) on the loaded dataset, each epoch of its training loop
    (``Engine.train_epoch``: every step, no evaluation and no checkpoint; the baseline does
    neither), twice: in float32 (like for like) and in the precision the presets use
    (``auto``: bfloat16 autocast where the CPU has it natively, else float32; the table says
    which). Whole training = the load + the epochs, with the first load (decode) and with a
    cached load.
    Fair to say: both train the same ``part1`` from the same initial weights on the same
    files, batch 64; the baseline's time includes its workers' start; cnnlab's includes
    reading the files (decode or cache). The baseline is what a user writes, in float32; the
    goal is judged on cnnlab as a user gets it (the presets' precision), and the float32 ratio
    is printed beside it.

Goals: a cached load of 60,000 files in at most 1 s (scaled to the number of files loaded);
whole training (cached load + epochs) at least 3x faster than the baseline's training.

Run from the repository root::

    CNNLAB_MNIST_DIR=DIR .venv/bin/python benchmarks/ingest.py [--images 60000]
        [--test-images 1000] [--epochs 1] [--repeats 3] [--workers 2] [--threads N]
        [--keep DIR]

``--epochs`` (2) trains that many epochs in every loop (the goal compares their totals); the
first epoch and the later ones (median) are shown apart. The
script is a report: it always exits 0, and prints PASS/FAIL next to each goal. The load
average is printed at the start and the end: other work on the machine slows every row.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cnnlab.data import ImageDataset, load_dataset, load_mnist
from cnnlab.models.convnets import part1
from cnnlab.training.config import RunConfig, TrainConfig
from cnnlab.training.distributed import Distributed
from cnnlab.training.engine import Engine, Position
from cnnlab.training.interrupt import StopRequest
from cnnlab.training.progress import Progress

CACHED_GOAL = 1.0  # seconds per 60,000 files, at most
CACHED_GOAL_FILES = 60_000
SPEEDUP_GOAL = 3.0  # cnnlab whole training (cached load + epochs) vs the baseline, at least
BATCH = 64
SEED = 0
CACHE_ENV = ("CNNLAB_CACHE", "CNNLAB_DECODE_CACHE")  # set for the run, restored after
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # what a tutorial's Normalize uses


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


# -- the PNG tree -------------------------------------------------------------------------------
def export_tree(mnist_dir: str, root: Path, n_train: int, n_test: int) -> tuple[int, float]:
    """Write the PNG tree under ``root`` (unless it already holds it); (files, seconds)."""
    want = n_train + n_test
    if root.is_dir() and sum(1 for _ in root.rglob("*.png")) == want:
        return want, 0.0
    if root.exists():
        shutil.rmtree(root)
    start = time.perf_counter()
    data = load_mnist(mnist_dir, split="official", download=False)
    for part, split, n in (("train", data.train, n_train), ("test", data.test, n_test)):
        images = split.images[:n, 0].numpy()
        labels = split.labels[:n].tolist()
        for digit in sorted(set(labels)):
            (root / part / str(digit)).mkdir(parents=True, exist_ok=True)
        for k, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            Image.fromarray(pixels, "L").save(root / part / str(label) / f"{k}.png")
    return want, time.perf_counter() - start


# -- the baseline -------------------------------------------------------------------------------
class PngFolder(Dataset):
    """What a user writes: the files listed once, each opened with Pillow when asked for."""

    def __init__(self, folder: Path) -> None:
        classes = sorted((p.name for p in folder.iterdir() if p.is_dir()), key=int)
        self.items = [
            (path, index)
            for index, name in enumerate(classes)
            for path in sorted((folder / name).glob("*.png"))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[k]
        with Image.open(path) as picture:
            pixels = np.array(picture.convert("L"), dtype=np.uint8)
        tensor = torch.from_numpy(pixels).float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
        return tensor.unsqueeze(0), label


def baseline_loader(folder: Path, workers: int) -> DataLoader:
    generator = torch.Generator().manual_seed(SEED)
    return DataLoader(
        PngFolder(folder), batch_size=BATCH, shuffle=True, num_workers=workers, generator=generator
    )


def baseline_iterate(folder: Path, workers: int) -> int:
    """One epoch of iteration alone; returns the images seen."""
    return sum(int(labels.numel()) for _, labels in baseline_loader(folder, workers))


def baseline_train(
    folder: Path, workers: int, epochs: int, shape: tuple[int, int, int]
) -> tuple[list[float], int]:
    """``epochs`` epochs of the tutorial training loop: each epoch's seconds, images trained."""
    torch.manual_seed(SEED)
    model = part1(shape[0], 10, shape[1:])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    loader, images, seconds = baseline_loader(folder, workers), 0, []
    for _ in range(epochs):
        start = time.perf_counter()
        for inputs, labels in loader:
            optimizer.zero_grad()
            logits = model(inputs)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()
            _ = loss.item(), int((logits.argmax(dim=1) == labels).sum())
            images += labels.numel()
        seconds.append(time.perf_counter() - start)
    return seconds, images


# -- cnnlab -------------------------------------------------------------------------------------
def cnnlab_train(dataset: ImageDataset, epochs: int, precision: str) -> tuple[list[float], str]:
    """``epochs`` epochs of the engine's training loop on ``dataset``: each epoch's seconds,
    and the precision ``precision`` resolved to."""
    torch.manual_seed(SEED)
    model = part1(dataset.channels, dataset.num_classes, dataset.image_size)
    train = TrainConfig(batch_size=BATCH, epochs=epochs, precision=precision)
    config = RunConfig(seed=SEED, device="cpu", train=train)
    engine = Engine(
        config,
        dataset,
        model,
        torch.device("cpu"),
        Distributed(),
        None,
        Progress(enabled=False),
    )
    stop, seconds = StopRequest(), []
    for epoch in range(epochs):
        start = time.perf_counter()
        engine.train_epoch(Position(epoch=epoch), stop)
        seconds.append(time.perf_counter() - start)
    return seconds, engine.precision


# -- the report ---------------------------------------------------------------------------------
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


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", default=os.environ.get("CNNLAB_MNIST_DIR"))
    parser.add_argument("--images", type=int, default=60_000, help="train PNGs (60000)")
    parser.add_argument("--test-images", type=int, default=1_000, help="test PNGs (1000)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed cached loads (3)")
    parser.add_argument("--workers", type=int, default=2, help="baseline num_workers (2)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads first")
    parser.add_argument("--keep", type=Path, help="write (or reuse) the PNG tree here")
    args = parser.parse_args(argv)
    if not args.mnist_dir:
        print("no MNIST folder: give --mnist-dir or set CNNLAB_MNIST_DIR")
        return 0
    n_train = max(1, min(args.images, 60_000))
    n_test = max(10, min(args.test_images, 10_000))
    epochs, repeats = max(1, args.epochs), max(1, args.repeats)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"cnnlab ingest benchmark: Python {platform.python_version()}, torch "
        f"{torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; "
        f"{n_train:,} train + {n_test:,} test MNIST PNGs; {epochs} epoch(s), batch {BATCH}; "
        f"baseline num_workers={args.workers}\nload average at start: {load_text()}\n"
    )
    scratch = Path(tempfile.mkdtemp(prefix="cnnlab-ingest-"))
    previous = {name: os.environ.pop(name, None) for name in CACHE_ENV}
    os.environ["CNNLAB_CACHE"] = str(scratch / "cache")
    try:
        root = args.keep or scratch / "mnist-png"
        files, exported = export_tree(args.mnist_dir, root, n_train, n_test)
        note = f"{exported:.1f} s" if exported else "reused"
        print(f"PNG tree: {root} ({files:,} files; export {note})\n")

        first_s, first = timed(lambda: load_dataset(root))
        assert first.provenance["decode_cache"]["used"] is False
        cached_s = []
        for _ in range(repeats):
            seconds, cached = timed(lambda: load_dataset(root))
            assert cached.provenance["decode_cache"]["used"] is True
            cached_s.append(seconds)
        same = torch.equal(cached.train.images, first.train.images) and torch.equal(
            cached.test.images, first.test.images
        )
        del cached  # one copy in memory from here on
        cached_median = statistics.median(cached_s)

        iterate_s, seen = timed(lambda: baseline_iterate(root / "train", args.workers))
        shape = (first.channels, *first.image_size)
        base_epochs, base_n = baseline_train(root / "train", args.workers, epochs, shape)
        engine = {p: cnnlab_train(first, epochs, p) for p in ("fp32", "auto")}
        assert base_n == seen * epochs == n_train * epochs
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)

    def rate(seconds: float, n: int) -> str:
        return f"{n / seconds:,.0f}"

    def epochs_text(seconds: list[float]) -> str:
        later = f", later {statistics.median(seconds[1:]):.2f}" if len(seconds) > 1 else ""
        return f"first epoch {seconds[0]:.2f}{later}"

    loaded, trained = n_train + n_test, n_train * epochs
    base_s = sum(base_epochs)
    rows = [
        ("cnnlab load, first (decode + store)", f"{first_s:.2f}", rate(first_s, loaded), ""),
        (
            "cnnlab load, cached",
            f"{cached_median:.2f}",
            rate(cached_median, loaded),
            f"median of {repeats}: " + ", ".join(f"{s:.2f}" for s in cached_s),
        ),
        (
            "baseline DataLoader epoch, iteration only",
            f"{iterate_s:.2f}",
            rate(iterate_s, seen),
            "",
        ),
        (
            f"baseline DataLoader training, {epochs} epoch(s), fp32",
            f"{base_s:.2f}",
            rate(base_s, trained),
            f"1.00x; {epochs_text(base_epochs)}",
        ),
    ]
    whole: dict[str, float] = {}
    for asked, (seconds, resolved) in engine.items():
        total = sum(seconds)
        label = "fp32" if asked == "fp32" else f"presets' precision ({resolved})"
        rows.append(
            (
                f"cnnlab engine, {epochs} epoch(s), {label}",
                f"{total:.2f}",
                rate(total, trained),
                epochs_text(seconds),
            )
        )
        for load, load_s in (("first load", first_s), ("cached load", cached_median)):
            whole[f"{asked} {load}"] = load_s + total
            rows.append(
                (
                    f"cnnlab whole training, {load}, {label}",
                    f"{load_s + total:.2f}",
                    rate(load_s + total, trained),
                    f"{base_s / (load_s + total):.2f}x",
                )
            )
    resolved = engine["auto"][1]
    print_table(("step", "seconds", "images/s", "note / speed-up vs baseline"), rows)
    goal_s = CACHED_GOAL * loaded / CACHED_GOAL_FILES
    goals = [
        (
            f"cached load <= {CACHED_GOAL:g} s per {CACHED_GOAL_FILES:,} files "
            f"({goal_s:.2f} s for {loaded:,})",
            f"{cached_median:.3f} s",
            verdict(cached_median <= goal_s),
        ),
        (
            f"whole training (cached load + {epochs} epoch(s), presets' precision: {resolved}) "
            f">= {SPEEDUP_GOAL:g}x baseline",
            f"{base_s / whole['auto cached load']:.2f}x "
            f"(fp32: {base_s / whole['fp32 cached load']:.2f}x)",
            verdict(base_s / whole["auto cached load"] >= SPEEDUP_GOAL),
        ),
        (
            "cached load returns the decoded tensors",
            "identical" if same else "DIFFER",
            verdict(same),
        ),
    ]
    print(f"\nimages/s: loads over {loaded:,} files, training over the train images.")
    print(f"load average at end: {load_text()}\n")
    print_table(("goal", "measured", "result"), goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
