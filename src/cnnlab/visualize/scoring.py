"""Heatmaps scored against the truth: the object's pixel mask (Lines), and a sanity check.

Every score is per image in [0, 1]; tables report means. A heatmap that is flat (all values
equal, as a Grad-CAM map can be when the ReLU zeroes it) points nowhere: it misses the pointing
game, puts no energy inside and gets IoU 0 for its top pixels only by chance of order.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Sequence
from typing import IO, Any

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

METRICS = (
    "pointing",
    "pointing_1px",
    "energy",
    "topk_iou",
    "deletion",
    "insertion",
    "rank_corr_random",
)
"""Columns of a score table: pointing game (exact and with a 1-pixel tolerance), share of
positive energy inside the mask, IoU of the top-k pixels (k = mask size) with the mask; the
areas under the deletion and insertion curves (:mod:`cnnlab.visualize.faithfulness`: no masks
needed; lower and higher is better); and the mean rank correlation between maps of the trained
and a re-initialised model (lower: the maps depend more on what was learnt)."""

LOCALISATION_METRICS = METRICS[:4]
FAITHFULNESS_METRICS = ("deletion", "insertion")


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """1.0 where the map's largest pixel lies in the mask (grown by ``tolerance`` px), else 0.

    ``maps`` (N, H, W) float, ``masks`` (N, H, W) bool. Ties go to the first pixel in row order.
    """
    masks = masks.bool()
    if tolerance > 0:
        size = 2 * tolerance + 1
        masks = F.max_pool2d(masks[:, None].float(), size, 1, tolerance)[:, 0] > 0
    flat = maps.flatten(1)
    top = flat.argmax(dim=1)
    hit = masks.flatten(1).gather(1, top[:, None])[:, 0]
    return (hit & ~_flat(flat)).float()


def energy_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of the map's positive values that falls inside the mask (0 for a map with none)."""
    positive = maps.clamp(min=0).flatten(1)
    inside = (positive * masks.flatten(1).float()).sum(1)
    total = positive.sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(total))


def topk_iou(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """IoU of the map's k largest pixels with the mask, k = the mask's size (NaN: empty mask)."""
    flat = maps.flatten(1)
    truth = masks.flatten(1).bool()
    k = truth.sum(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    top = (rank < k[:, None]) & ~_flat(flat)[:, None]
    inter = (top & truth).sum(1).float()
    union = (top | truth).sum(1).float()
    return torch.where(k > 0, inter / union.clamp_min(1), torch.full_like(inter, math.nan))


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation per image between maps ``a`` and ``b`` (N, ...); ties get
    their average rank. NaN where either map is flat."""
    ra, rb = _ranks(a.flatten(1).double()), _ranks(b.flatten(1).double())
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    denominator = (ra.pow(2).sum(1) * rb.pow(2).sum(1)).sqrt()
    rho = (ra * rb).sum(1) / denominator
    return torch.where(denominator > 0, rho, torch.full_like(rho, math.nan)).float()


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (0-based) along dim 1."""
    out = torch.empty_like(x)
    for i, row in enumerate(x):
        _, inverse, counts = torch.unique(row, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        average = ends - (counts.double() + 1) / 2
        out[i] = average[inverse]
    return out


def _flat(flat: torch.Tensor) -> torch.Tensor:
    return flat.amax(1) == flat.amin(1)


def localisation(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Mean pointing game (exact, 1-px tolerance), energy share and top-k IoU of ``maps``."""
    return {
        "pointing": _mean(pointing_game(maps, masks)),
        "pointing_1px": _mean(pointing_game(maps, masks, tolerance=1)),
        "energy": _mean(energy_share(maps, masks)),
        "topk_iou": _mean(topk_iou(maps, masks)),
    }


def _mean(values: torch.Tensor) -> float | None:
    valid = values[~values.isnan()]
    return float(valid.mean()) if valid.numel() else None


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (seeded), for the sanity check."""
    twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in twin.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    return twin.eval()


def score_row(
    maps: torch.Tensor,
    masks: torch.Tensor | None,
    random_maps: torch.Tensor | None,
    faithfulness: dict[str, float] | None = None,
) -> dict[str, float | None]:
    """One table row: localisation (None without masks), faithfulness (deletion and insertion
    areas, None when not measured) and the randomisation check (on as many of the first maps
    as ``random_maps`` holds)."""
    row: dict[str, float | None] = (
        localisation(maps, masks) if masks is not None else dict.fromkeys(LOCALISATION_METRICS)
    )
    for key in FAITHFULNESS_METRICS:
        row[key] = (faithfulness or {}).get(key)
    row["rank_corr_random"] = (
        _mean(rank_correlation(maps[: len(random_maps)], random_maps))
        if random_maps is not None
        else None
    )
    return row


def agreement(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per head: do the masks and faithfulness rank the methods alike? Spearman's correlation,
    over the methods (not the random reference), between the energy in the mask and the
    faithfulness (insertion area minus deletion area); with the best method by each."""
    out = []
    for head in dict.fromkeys(r.get("head") for r in rows):
        group = [
            r
            for r in rows
            if r.get("head") == head and r["method"] != RANDOM
            and r.get("deletion") is not None
        ]  # fmt: skip
        faithful = [r["insertion"] - r["deletion"] for r in group]
        energy = [r.get("energy") for r in group]
        entry: dict[str, Any] = {"head": head, "methods": len(group), "spearman": None}
        if group:
            top = max(range(len(group)), key=faithful.__getitem__)
            entry["best_faithfulness"] = _name(group[top])
        if group and all(e is not None for e in energy):
            top = max(range(len(group)), key=lambda k: energy[k])
            entry["best_localisation"] = _name(group[top])
            if len(group) > 2:
                rho = spearmanr(energy, faithful).statistic
                entry["spearman"] = None if math.isnan(rho) else float(rho)
        out.append(entry)
    return out


RANDOM = "random"
"""The reference row of a score table: maps of uniform noise (chance level of every score)."""


def _name(row: dict[str, Any]) -> str:
    return row["method"] + (f" at {row['layer']}" if row.get("layer") else "")


def format_scores(rows: Sequence[dict[str, Any]]) -> str:
    """The score table as aligned text: one line per head, method and layer."""
    keys = [k for k in ("head", "method", "layer") if any(r.get(k) for r in rows)]
    header = [*keys, *METRICS]
    table = [header]
    for row in rows:
        table.append(
            [str(row.get(k) or "-") for k in keys]
            + ["-" if row.get(m) is None else f"{row[m]:.3f}" for m in METRICS]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i < len(keys) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def print_scores(rows: Sequence[dict[str, Any]], file: IO[str] | None = None) -> None:
    """Print :func:`format_scores` (to stdout by default)."""
    print(format_scores(rows), file=file or sys.stdout)
