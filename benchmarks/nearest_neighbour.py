"""How far memory alone goes on a Lines test split: 1-nearest-neighbour on raw pixels.

For each rendering (``--variants``), a seeded sample of test images (``--per-class`` per class)
is labelled with the class of its nearest training image (Euclidean distance on the raw uint8
pixels, computed as one matrix product per chunk), and the accuracy is printed. On generator
1.0's ``centred`` layout every test image is a copy of a training image, so the lookup is
always right; a net's accuracy well above this yardstick is not a lookup.

    .venv/bin/python benchmarks/nearest_neighbour.py [--variants default,centred] [--per-class 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cnnlab.data import generate_lines, lines_config


def nearest_neighbour_accuracy(variant: str, per_class: int, seed: int) -> tuple[float, int]:
    """Accuracy of the 1-NN lookup on a seeded sample of the test split, and the sample size."""
    data = generate_lines(lines_config(variant, seed=seed)).to_dataset()
    train = data.train.images.reshape(len(data.train), -1).float()
    labels = data.test.labels.numpy()
    rng = np.random.default_rng(seed)
    pick = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in range(data.num_classes)
        ]
    )
    test = data.test.images[torch.from_numpy(pick)].reshape(len(pick), -1).float()
    squared = (train * train).sum(dim=1)
    nearest = torch.cat([(squared - 2 * part @ train.T).argmin(dim=1) for part in test.split(256)])
    right = data.train.labels[nearest] == data.test.labels[torch.from_numpy(pick)]
    return float(right.float().mean()), len(pick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="default,centred")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'variant':10s}  {'test images':>11s}  {'1-NN accuracy':>13s}  {'seconds':>7s}")
    for variant in args.variants.split(","):
        start = time.perf_counter()
        accuracy, n = nearest_neighbour_accuracy(variant, args.per_class, args.seed)
        seconds = time.perf_counter() - start
        print(f"{variant:10s}  {n:11,d}  {accuracy:13.4f}  {seconds:7.1f}")


if __name__ == "__main__":
    main()
