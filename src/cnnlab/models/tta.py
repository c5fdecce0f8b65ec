"""Test-time augmentation: a net's outputs averaged over the image and its mirror images.

``train.tta`` names the views besides the image itself: ``none``; ``flip``, the left-right
mirror where it keeps every label true (left out, with a note, where it would not: digits, a
factor such as Lines' angle); or a list of ``hflip``/``vflip``, refused in one line where a
label would change. The logits are averaged (every head's, for a multi-head net), so losses,
scores and probabilities come from one set of outputs. The views are resolved once, when a run
starts, and recorded in its config: evaluation, the choice of the best epoch and prediction
all use them. An exported model (ONNX) is the plain net.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.factors import LabelRules
from cnnlab.errors import CnnlabError

VIEWS = {"hflip": -1, "vflip": -2}
"""Each view's flipped tensor dimension (width, height)."""

SETS = {"none": [], "flip": ["hflip"]}
"""Named choices: views left out where they would change a label."""


def check_tta(spec: Any) -> str | list[str]:
    """``train.tta`` checked: a set name or a list of view names."""
    if isinstance(spec, str) and spec in SETS:
        return spec
    if isinstance(spec, list) and all(isinstance(v, str) and v in VIEWS for v in spec):
        if len(set(spec)) != len(spec):
            raise CnnlabError(f"train.tta names a view twice: {spec}")
        return list(spec)
    raise CnnlabError(
        f"train.tta must be {' or '.join(SETS)}, or a list of views ({', '.join(VIEWS)}), "
        f"got {spec!r}"
    )


def resolve_tta(spec: str | list[str], dataset: ImageDataset) -> tuple[list[str], list[str]]:
    """The views ``spec`` gives on ``dataset`` and notes on those a set left out.

    A view that would show a picture with other labels (a mirrored digit, a line whose angle
    changes) is refused when named, left out when it came from a set."""
    rules = LabelRules(dataset)
    named = isinstance(spec, str)
    views, notes = [], []
    for view in SETS[spec] if named else spec:
        problem = rules.keeps_labels(view, "mirror")
        if problem is None:
            views.append(view)
        elif named:
            notes.append(f"tta {spec}: {problem}: left out")
        else:
            raise CnnlabError(f"train.tta: {problem}; leave it out for this data")
    return views, notes


def averaged(
    model: Callable[[torch.Tensor], Any], batch: torch.Tensor, views: Sequence[str]
) -> torch.Tensor | dict[str, torch.Tensor]:
    """``model``'s outputs on ``batch`` averaged with its outputs on each view of it."""
    out = model(batch)
    if not views:
        return out
    for view in views:
        other = model(batch.flip(VIEWS[view]))
        out = {k: v + other[k] for k, v in out.items()} if isinstance(out, dict) else out + other
    share = 1.0 / (len(views) + 1)
    return {k: v * share for k, v in out.items()} if isinstance(out, dict) else out * share


def describe(views: Sequence[str]) -> str:
    """One line for the run's log."""
    return f"Test-time views: {', '.join(views)} (outputs averaged with the image's)"


__all__ = ["SETS", "VIEWS", "averaged", "check_tta", "describe", "resolve_tta"]
