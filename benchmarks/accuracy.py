"""Test accuracy of presets over several seeds: the figures docs/results.md and BENCHMARKS.md quote.

Trains each preset once per seed (sequentially: the machine has 2 cores), then prints a table
of the final test accuracy (mean, standard deviation, min, max over seeds) and the training
wall time per run, against the original study's figures. Runs are kept under --out, and a
finished run is not trained again, so an interrupted measurement continues where it stopped.

    CNNLAB_MNIST_DIR=... python benchmarks/accuracy.py --presets part1-mnist,part1-lines \\
        --seeds 0,1,2 --out runs/accuracy
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cnnlab.training import train
from cnnlab.training.run import read_history

STUDY = {  # the original Keras study's test accuracy: the floor to beat
    "part1-mnist": 0.9848,
    "part1-lines": 0.9657,
    "part2-mnist": 0.9914,
    "part2-lines": 0.9939,
}
GOALS = {
    "part1-mnist": 0.990,
    "part1-lines": 0.995,
    "part2-mnist": 0.995,
    "part2-lines": 0.999,
    "speedrun-mnist": 0.990,
    "multihead-lines": 0.998,  # joint accuracy (all four heads right)
    "multihead-lines-plus": 0.998,
}
STUDY_HEADS = {"length": 0.9982, "width": 0.9987, "color": 0.9999, "angle": 0.9588}


def run_once(preset: str, seed: int, out: Path, overrides: list[str]) -> tuple[float, float]:
    """Final test accuracy and training seconds of one run (reused if already finished)."""
    folder = out / f"{preset}-seed{seed}"
    info = folder / "run.json"
    if not (info.is_file() and json.loads(info.read_text()).get("status") == "finished"):
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        train(preset, out=folder, overrides=(f"seed={seed}", *overrides), quiet=True)
    history = read_history(folder / "history.csv")
    heads = [h for h in STUDY_HEADS if f"test_{h}_acc" in history[-1]]
    if heads:
        print(
            f"  {folder.name}: "
            + ", ".join(f"{h} {history[-1][f'test_{h}_acc']:.4f}" for h in heads)
        )
    return history[-1]["test_acc"], sum(row["seconds"] for row in history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="part1-mnist,part1-lines,part2-mnist,part2-lines")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for preset in args.presets.split(","):
        results = [run_once(preset, seed, args.out, args.overrides) for seed in seeds]
        accuracy = [a for a, _ in results]
        seconds = [s for _, s in results]
        mean = statistics.mean(accuracy)
        spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
        goal = GOALS.get(preset)
        verdict = "" if goal is None else ("PASS" if mean >= goal else "FAIL")
        rows.append(
            (
                preset,
                len(seeds),
                f"{mean:.4f}",
                f"{spread:.4f}",
                f"{min(accuracy):.4f}",
                f"{max(accuracy):.4f}",
                f"{statistics.mean(seconds):.0f} s",
                f"{STUDY.get(preset, float('nan')):.4f}",
                f"{goal or float('nan'):.3f} {verdict}",
            )
        )
        print(f"{preset}: {', '.join(f'{a:.4f}' for a in accuracy)}", flush=True)
    header = ("preset", "seeds", "mean", "std", "min", "max", "train time", "study", "goal")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
