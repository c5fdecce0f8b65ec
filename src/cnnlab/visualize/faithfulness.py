"""Deletion and insertion curves: how faithful a heatmap is to the model, with no masks.

Each image's pixels (all channels of one position) are ranked by its heatmap, largest first;
ties go to the earlier pixel in row order, so a flat map deletes row by row. At fractions
0, 1/S, ..., 1 of the pixels, **deletion** replaces the top-ranked pixels by a baseline (default
0 in normalised space: the training mean) and **insertion** starts from the baseline image and
puts the top-ranked pixels back. Each copy is scored by the model's probability of the explained
class (softmax; a one-unit sigmoid head: sigmoid of the class's signed logit) and whether the
prediction is still that class. A faithful heatmap has a low deletion area and a high insertion
area; :func:`random_curves` (a random pixel order) is the floor to beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.visualize.cam import Heatmap, Target, class_scores, head_logits
from cnnlab.visualize.hooks import eval_mode


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of N images at S + 1 fractions.

    ``fractions`` (S+1,) runs from 0 to 1 (the exact share of pixels changed); ``deletion`` and
    ``insertion`` (N, S+1) hold the explained class's probability, ``deletion_kept`` and
    ``insertion_kept`` (N, S+1, bool) whether the prediction is still that class; ``target``
    (N,) is the class.
    """

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_kept: torch.Tensor
    insertion_kept: torch.Tensor
    target: torch.Tensor

    @property
    def deletion_area(self) -> torch.Tensor:
        """(N,) area under the deletion curve, in [0, 1]: lower is better."""
        return torch.trapezoid(self.deletion, self.fractions, dim=1)

    @property
    def insertion_area(self) -> torch.Tensor:
        """(N,) area under the insertion curve, in [0, 1]: higher is better."""
        return torch.trapezoid(self.insertion, self.fractions, dim=1)


def pixel_order(maps: torch.Tensor) -> torch.Tensor:
    """(N, H*W) pixel indices (row-major) of each (N, H, W) map, largest value first; equal
    values keep row order."""
    return maps.flatten(1).argsort(dim=1, descending=True, stable=True)


def random_maps(shape: tuple[int, int, int] | torch.Size, seed: int = 0) -> torch.Tensor:
    """(N, H, W) uniform noise from its own generator (the global one is untouched)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape), generator=generator)


def faithfulness_curves(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor | Heatmap,
    *,
    head: str | None = None,
    target: Target = None,
    steps: int = 16,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 256,
) -> Curves:
    """Deletion and insertion curves of ``inputs`` (normalised (N, C, H, W)) ordered by ``maps``.

    ``maps`` (N, H, W) or a :class:`~cnnlab.visualize.cam.Heatmap` (whose classes are then the
    default ``target``); ``target`` None is the predicted class. ``baseline`` is a number or a
    tensor broadcastable to ``inputs``. At most ``batch_size`` perturbed copies go through one
    forward pass.
    """
    if isinstance(maps, Heatmap):
        target = maps.target if target is None else target
        maps = maps.maps
    _check(inputs, maps, steps, batch_size)
    n, _, height, width = inputs.shape
    pixels = height * width
    counts = torch.round(torch.linspace(0, 1, steps + 1, dtype=torch.float64) * pixels).long()
    order = pixel_order(maps.to(inputs.device))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(pixels, device=order.device).expand_as(order))
    base = _baseline(baseline, inputs)
    with eval_mode(model), torch.no_grad():
        _, classes = class_scores(model(inputs), head, _targets(target, n))
        rows = n * (steps + 1)
        parts = [
            _score_rows(model, inputs, base, ranks, counts, classes, head, start, batch_size)
            for start in range(0, rows, batch_size)
        ]
    prob, kept = (torch.cat(p, dim=1).view(2, n, steps + 1) for p in zip(*parts, strict=True))
    fractions = (counts.double() / pixels).to(prob)
    return Curves(fractions, prob[0], prob[1], kept[0], kept[1], classes)


def random_curves(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    seed: int = 0,
    head: str | None = None,
    target: Target = None,
    steps: int = 16,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 256,
) -> Curves:
    """:func:`faithfulness_curves` for a random pixel order drawn from ``seed``."""
    maps = random_maps((inputs.shape[0], *inputs.shape[2:]), seed).to(inputs.device)
    return faithfulness_curves(
        model,
        inputs,
        maps,
        head=head,
        target=target,
        steps=steps,
        baseline=baseline,
        batch_size=batch_size,
    )


def summarize(curves: Curves, random: Curves | None = None) -> dict[str, float]:
    """Mean deletion and insertion areas; with ``random`` curves of the same images, also how
    much better than random each is (positive: better)."""
    row = {
        "deletion": float(curves.deletion_area.mean()),
        "insertion": float(curves.insertion_area.mean()),
    }
    if random is not None:
        row["deletion_gain"] = float(random.deletion_area.mean()) - row["deletion"]
        row["insertion_gain"] = row["insertion"] - float(random.insertion_area.mean())
    return row


def _score_rows(
    model: nn.Module,
    inputs: torch.Tensor,
    base: torch.Tensor,
    ranks: torch.Tensor,
    counts: torch.Tensor,
    classes: torch.Tensor,
    head: str | None,
    start: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``start``.. of the (image, step) grid: their deleted and inserted copies, scored in
    one forward pass; returns (probability, kept), each (2, rows) flattened deletion-first."""
    steps = counts.shape[0]
    index = torch.arange(start, min(start + batch_size, ranks.shape[0] * steps))
    image, step = index // steps, index % steps
    changed = ranks[image] < counts[step].to(ranks.device)[:, None]
    changed = changed.view(-1, 1, *inputs.shape[2:])
    x, b = inputs[image], base[image]
    batch = torch.cat([torch.where(changed, b, x), torch.where(changed, x, b)])
    wanted = classes[image].repeat(2)
    prob, kept = class_probability(model(batch), head, wanted)
    return prob.view(2, -1), kept.view(2, -1)


def class_probability(
    outputs: torch.Tensor | dict[str, torch.Tensor], head: str | None, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability of ``classes``, whether the prediction equals them), each (N,)."""
    logits = head_logits(outputs, head)
    _, predicted = class_scores(outputs, head)
    if logits.shape[1] == 1:
        scores, _ = class_scores(outputs, head, classes)
        prob = torch.sigmoid(scores)
    else:
        prob = logits.softmax(dim=1).gather(1, classes[:, None])[:, 0]
    return prob.float(), predicted == classes


def _check(inputs: torch.Tensor, maps: torch.Tensor, steps: int, batch_size: int) -> None:
    if inputs.ndim != 4 or inputs.shape[0] == 0:
        raise CnnlabError(
            f"inputs must be a non-empty (N, C, H, W) batch, got {tuple(inputs.shape)}"
        )
    wanted = (inputs.shape[0], *inputs.shape[2:])
    if tuple(maps.shape) != wanted:
        raise CnnlabError(f"maps must be {wanted} for these inputs, got {tuple(maps.shape)}")
    if steps < 1 or batch_size < 1:
        raise CnnlabError(f"steps and batch_size must be at least 1, got {steps}, {batch_size}")


def _targets(target: Target, n: int) -> Target:
    if target is None or isinstance(target, int):
        return target
    values = torch.as_tensor(target, dtype=torch.long)
    if values.numel() not in (1, n):
        raise CnnlabError(f"{values.numel()} targets for {n} images")
    return values.reshape(()) if values.numel() == 1 else values


def _baseline(baseline: float | torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device)
    try:
        return value.expand_as(inputs)
    except RuntimeError:
        raise CnnlabError(
            f"a baseline of shape {tuple(value.shape)} does not fit inputs {tuple(inputs.shape)}"
        ) from None
