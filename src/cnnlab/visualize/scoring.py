"""Heatmaps scored against the truth: the object's pixel mask (Lines), and a sanity check.

Every score is per image in [0, 1]; tables report means. A heatmap that is flat (all values
equal, as a Grad-CAM map can be when the ReLU zeroes it) points nowhere: it misses the pointing
game, puts no energy inside and gets IoU 0 for its top pixels only by chance of order.
"""

from __future__ import annotations

import copy
import math
import sys
import textwrap
from collections.abc import Mapping, Sequence
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


DIRECTION = {
    "pointing": "↑",
    "pointing_1px": "↑",
    "energy": "↑",
    "topk_iou": "↑",
    "deletion": "↓",
    "insertion": "↑",
    "rank_corr_random": "↓",
}
"""Which way each score is better: ↑ higher, ↓ lower (the terminal table's headers)."""

WORSE_THAN_RANDOM = "worse than random"
"""The terminal table's flag of a row that deletes or inserts worse than its head's random
reference (the report's table says the same; ``worse_than_random`` in ``scores.json``)."""


def worse_than_random(
    row: Mapping[str, Any], reference: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """The faithfulness measures on which ``row`` does worse than the random ``reference`` of
    its head: ``deletion`` (a larger area) and ``insertion`` (a smaller one); () where it does
    not, where either is not measured, and for the reference itself."""
    if reference is None or row is reference or row.get("method") == RANDOM:
        return ()
    worse = []
    for key, sign in (("deletion", 1.0), ("insertion", -1.0)):
        mine, chance = row.get(key), reference.get(key)
        if mine is not None and chance is not None and sign * (mine - chance) > 0:
            worse.append(key)
    return tuple(worse)


def flag_worse_than_random(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``worse_than_random`` added to each: True where the row deletes or inserts
    worse than its head's random reference (:func:`worse_than_random`), False where it does
    not (the reference: False), None where faithfulness was not measured."""
    flagged = []
    for row, reference in zip(rows, _references(rows), strict=True):
        measured = row.get("deletion") is not None or row.get("insertion") is not None
        worse = bool(worse_than_random(row, reference)) if measured and reference else None
        flagged.append({**row, "worse_than_random": worse})
    return flagged


def _references(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any] | None]:
    """Each row's random reference: the ``random`` row of its head (None: it has none)."""
    found = {r.get("head"): r for r in rows if r.get("method") == RANDOM}
    return [found.get(r.get("head")) for r in rows]


def shown_metrics(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns of :data:`METRICS` that apply: those some row has a value for (no
    localisation without masks, no faithfulness where it was not measured)."""
    return [m for m in METRICS if any(r.get(m) is not None for r in rows)]


def format_scores(rows: Sequence[Mapping[str, Any]]) -> str:
    """The score table as aligned text: one line per head, method and layer; only the columns
    that apply (:func:`shown_metrics`), each header with its direction (↑ higher is better,
    ↓ lower), rows that do worse than random on deletion or insertion flagged at their end,
    and a legend under the table."""
    keys = [k for k in ("head", "method", "layer") if any(r.get(k) for r in rows)]
    metrics = shown_metrics(rows)
    table = [[*keys, *(f"{m} {DIRECTION[m]}" for m in metrics)]]
    for row in rows:
        table.append(
            [str(row.get(k) or "-") for k in keys]
            + ["-" if row.get(m) is None else f"{row[m]:.3f}" for m in metrics]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i < len(keys) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    flags = [worse_than_random(r, ref) for r, ref in zip(rows, _references(rows), strict=True)]
    for i, worse in enumerate(flags, start=1):
        if worse:
            lines[i] += f"  {WORSE_THAN_RANDOM} ({', '.join(worse)})"
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([lines[0], rule, *lines[1:], *_legend(metrics, any(flags))])


def _legend(metrics: Sequence[str], flagged: bool) -> list[str]:
    """The lines under the table: which way is better, and what the columns shown measure
    (each wrapped at 100 characters)."""
    entries = ["↑ higher is better, ↓ lower is better; random: maps of uniform noise, chance level"]
    if "pointing" in metrics:
        entries.append(
            "pointing: the map's hottest pixel is on the object's mask (pointing_1px: within "
            "1 px); energy: the share of its positive heat in the mask; topk_iou: the overlap of "
            "its k hottest pixels with the mask's k pixels"
        )
    if "deletion" in metrics or "insertion" in metrics:
        worse = f"; {WORSE_THAN_RANDOM}: a larger deletion or a smaller insertion area"
        entries.append(
            "deletion / insertion: area under the explained class's probability as the map's "
            "hottest pixels are deleted / inserted first" + (worse if flagged else "")
        )
    if "rank_corr_random" in metrics:
        entries.append(
            "rank_corr_random: rank correlation with the maps of a copy of the model with "
            "re-initialised weights (the randomisation check: lower, the maps owe more to what "
            "was learnt)"
        )
    return [line for entry in entries for line in textwrap.wrap(entry, 100, subsequent_indent="  ")]


def describe_sample(scores: Mapping[str, Any]) -> str:
    """How many test images the scoreboard of ``scores`` was measured on, in one line."""
    n = scores.get("images")
    parts = [f"localisation against the masks on all {n}"] if scores.get("masks") else []
    if scores.get("faithfulness_images"):
        parts.append(f"deletion and insertion on the first {scores['faithfulness_images']}")
    if scores.get("sanity_images"):
        parts.append(f"the randomisation check on the first {scores['sanity_images']}")
    text = f"scoreboard of explanation methods on {n} test images (seed {scores.get('seed', '-')})"
    text += ": " + ", ".join(parts) if parts else ""
    return text + ("" if scores.get("masks") else "; no localisation (the data has no masks)")


def format_scoreboard(scores: Mapping[str, Any]) -> str:
    """A ``scores.json``'s scoreboard as text: the images it was measured on, then the table
    (:func:`format_scores`)."""
    return describe_sample(scores) + "\n" + format_scores(scores["rows"])


def print_scores(
    scores: Mapping[str, Any] | Sequence[Mapping[str, Any]], file: IO[str] | None = None
) -> None:
    """Print a scoreboard (to stdout by default): a ``scores.json`` record as
    :func:`format_scoreboard`, a list of rows as :func:`format_scores`."""
    text = format_scoreboard(scores) if isinstance(scores, Mapping) else format_scores(scores)
    print(text, file=file or sys.stdout)
