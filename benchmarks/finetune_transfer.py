"""Fine-tuning a Lines net to another rendering with 1% of its data (issue 28's example).

``part2-lines`` learns the default rendering (seed 0). The study's own images were JPEGs of
hard-edged lines; on that rendering (``cnnlab data lines --variant jpeg``, drawn with seed 1,
so its lines sit elsewhere) the plain net falls far. Then, on 1% of the JPEG rendering's
training images (576 of 57,600, seeded):

- ``fine-tuned``: ``model.init_from`` the plain run, the trunk at a tenth of the head's rate
  (``train.trunk_lr_factor=0.1``);
- ``scratch``: the same preset and schedule from random weights, as the baseline.

Every figure is on a test split no run trained on or chose anything with (each run keeps its
last epoch): the JPEG rendering's test split (38,400 images), and the default rendering's
(seed 1) to show what fine-tuning kept.

    .venv/bin/python benchmarks/finetune_transfer.py [--out runs/finetune-transfer] [--epochs 15]

The script is a report: it prints a table and always exits 0. Runs are reused when finished.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cnnlab.data import generate_lines, lines_config, save_lines
from cnnlab.evaluate import evaluate_run
from cnnlab.hardware import cpu_name
from cnnlab.runfolder import RunFolder
from cnnlab.training import train

SHARE = 0.01
"""The share of the new rendering's training images the fine-tuning sees."""


def rendering(out: Path, variant: str) -> Path:
    """The ``variant`` rendering drawn with seed 1 (saved once)."""
    folder = out / "data" / f"lines-{variant}"
    if not (folder / "lines.npz").is_file():
        save_lines(generate_lines(lines_config(variant, seed=1)), folder)
    return folder


def trained(run: Path, preset: str, overrides: list[str]) -> tuple[Path, float]:
    """``preset`` trained into ``run`` (reused when finished); its training seconds."""
    if RunFolder(run).state() not in ("trained", "done"):
        train(preset, out=run, overrides=overrides, quiet=True)
    return run, float(json.loads(RunFolder(run).info.read_text())["train_seconds"])


def accuracy(run: Path, data: Path | None = None) -> float:
    """Test accuracy of ``run`` on its own test split or on ``data``'s."""
    if data is None:
        return float(evaluate_run(run, write=False).accuracy)
    return float(evaluate_run(run, dataset=data, write=False).accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-transfer"))
    parser.add_argument("--epochs", type=int, default=15, help="epochs on the 1%% subset")
    args = parser.parse_args()
    started = time.perf_counter()
    jpeg, default = rendering(args.out, "jpeg"), rendering(args.out, "default")
    source, source_s = trained(args.out / "plain", "part2-lines", [])
    subset = round(SHARE * 57_600)
    common = [f"data.dataset={jpeg}", f"data.train_limit={subset}", f"train.epochs={args.epochs}"]
    tuned, tuned_s = trained(
        args.out / "fine-tuned",
        "part2-lines",
        [*common, f"model.init_from={source}", "train.trunk_lr_factor=0.1"],
    )
    scratch, scratch_s = trained(args.out / "scratch", "part2-lines", common)
    rows = [
        ("plain part2-lines", "57,600 default", source_s, accuracy(source, jpeg)),
        ("fine-tuned from it", f"{subset} JPEG", tuned_s, accuracy(tuned)),
        ("from scratch", f"{subset} JPEG", scratch_s, accuracy(scratch)),
    ]
    kept = {name: accuracy(run, default) for name, run in (("plain", source), ("tuned", tuned))}
    print(f"Lines -> JPEG fine-tuning: {cpu_name()}, {torch.get_num_threads()} threads")
    print(f"{'net':20s} {'trained on':>16s} {'train s':>8s} {'JPEG test':>10s}")
    for name, data, seconds, acc in rows:
        print(f"{name:20s} {data:>16s} {seconds:8.0f} {acc:10.4f}")
    print(
        f"\ndefault rendering (seed 1) test: plain {kept['plain']:.4f}, "
        f"fine-tuned {kept['tuned']:.4f}"
    )
    print(f"whole script {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
