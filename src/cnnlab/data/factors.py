"""What a picture's factor labels mean, and what a geometric change does to them.

An augmentation declares its *effect* (``mirror``, ``turn``, ``rotate`` ...); this module says
which factors that effect changes, maps the ones it changes exactly (a mirrored line at 30
degrees is one at 150), and refuses the rest in one line naming the factor. A factor is known
by its name (``angle``, ``length``, ``color`` ...); a factor whose name cnnlab does not know may
be changed by any geometric effect, so those are refused on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cnnlab.data.dataset import ImageDataset

ANGLE, SIZE, COLOUR, POSITION = "angle", "size", "colour", "position"

FACTOR_KINDS = {
    **dict.fromkeys(("angle", "orientation", "rotation", "direction"), ANGLE),
    **dict.fromkeys(("length", "width", "size", "scale", "thickness", "height", "area"), SIZE),
    **dict.fromkeys(("color", "colour", "hue"), COLOUR),
    **dict.fromkeys(("x", "y", "position", "row", "column", "location"), POSITION),
}
"""Factor names cnnlab knows the meaning of, and their kind."""

PHOTOMETRIC = "photometric"
EFFECTS: dict[str, frozenset[str]] = {
    "mirror": frozenset({ANGLE, POSITION}),  # angle: mapped exactly
    "turn": frozenset({ANGLE, POSITION}),  # quarter turns; angle: mapped exactly
    "rotate": frozenset({ANGLE, SIZE, POSITION}),
    "shear": frozenset({ANGLE, SIZE, POSITION}),
    "scale": frozenset({SIZE, POSITION}),
    "move": frozenset({SIZE, POSITION}),  # whole pixels: a moved object can leave the frame
    "cut": frozenset({SIZE}),  # a part of the picture replaced: an object can lose a part
    "hue": frozenset({COLOUR}),
    PHOTOMETRIC: frozenset(),  # brightness, contrast, noise, blur, JPEG, a sub-pixel shift
}
"""Each effect an augmentation can have, and the kinds of factor it changes."""

WHY = {
    ANGLE: "it turns the picture",
    SIZE: "it can change an object's size or cut it",
    COLOUR: "it changes colours",
    POSITION: "it moves the picture",
}

MAPPED = {"mirror", "turn"}
"""Effects whose change of an angle factor is mapped exactly (see :meth:`LabelRules.apply`)."""


@dataclass(frozen=True)
class Mapping:
    """One effect's exact relabelling: per factor, old level index -> new level index."""

    factors: dict[str, torch.Tensor]


UPRIGHT_EFFECTS = frozenset({"mirror", "turn", "rotate"})
"""The effects an ``upright`` dataset (digits, letters) refuses."""


class LabelRules:
    """The label rules of one dataset: which effects are safe, and how labels follow.

    ``upright`` datasets (digits, letters) change class when mirrored or turned.
    """

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset_name = dataset.name
        self.upright = dataset.upright
        self.levels = dict(dataset.factor_levels)
        self.table = _label_table(dataset) if self.levels else None
        self._mappings: dict[tuple[str, int, str], Mapping] = {}

    def refusal(self, operation: str, effect: str) -> str | None:
        """Why ``operation`` (with ``effect``) would make labels false here, or None."""
        if effect in UPRIGHT_EFFECTS and self.upright:
            return (
                f"{operation}: {self.dataset_name}'s classes change meaning when a picture is "
                "mirrored or turned (digits, letters)"
            )
        changed: dict[str, list[str]] = {}
        for name in self.levels:
            kind = FACTOR_KINDS.get(name.lower())
            if not (kind in EFFECTS[effect] if kind else effect != PHOTOMETRIC):
                continue
            if effect in MAPPED and kind == ANGLE:
                problem = self._unmappable(effect, name)
                if problem is not None:
                    return f"{operation}: {problem}"
                continue
            why = WHY[kind] if kind else "cnnlab does not know what it means"
            changed.setdefault(why, []).append(repr(name))
        if not changed:
            return None
        parts = "; ".join(
            f"factor{'s' if len(names) > 1 else ''} {', '.join(names)} ({why})"
            for why, names in changed.items()
        )
        return f"{operation} would change {parts}"

    def keeps_labels(self, operation: str, effect: str) -> str | None:
        """Why a picture changed by ``operation`` (with ``effect``) would not keep every label,
        or None: stricter than :meth:`refusal`, a change it maps exactly counts too (test-time
        views average predictions that must be of the same labels)."""
        problem = self.refusal(operation, effect)
        if problem is not None:
            return problem
        changed = [repr(n) for n in self.levels if FACTOR_KINDS.get(n.lower()) in EFFECTS[effect]]
        if changed:
            return f"{operation} would change factor{'s' if len(changed) > 1 else ''} " + ", ".join(
                changed
            )
        return None

    def _unmappable(self, effect: str, name: str) -> str | None:
        if self.table is None:
            return None
        if not self.table.exact:
            return (
                f"the class label is not set by the factors, so the class of a picture whose "
                f"factor {name!r} it changes is unknown"
            )
        try:
            for k, kind in (
                ((1, "h"), (2, "h"), (3, "h"))
                if effect == "turn"
                else (
                    (1, "h"),
                    (1, "v"),
                )
            ):
                self._angle_map(effect, name, k, kind)
        except ValueError as exc:
            return str(exc)
        return None

    def _angle_map(self, effect: str, name: str, k: int, kind: str = "h") -> torch.Tensor:
        """Old level index -> new, for ``effect`` (``k`` quarter turns counter-clockwise; a
        mirror's ``kind``: ``h`` left-right, ``v`` top-bottom)."""
        values = [float(v) for v in self.levels[name]]
        period = 180.0 if max(values) < 180 else 360.0
        out = []
        for value in values:
            if effect == "turn":
                new = (value + 90.0 * k) % period
            else:
                new = ((180.0 - value) if kind == "h" else -value) % period
            match = [i for i, v in enumerate(values) if math.isclose(v, new, abs_tol=1e-6)]
            if not match:
                raise ValueError(
                    f"factor {name!r}: level {value:g} would become {new:g}, which is not one of "
                    "its levels"
                )
            out.append(match[0])
        return torch.tensor(out, dtype=torch.long)

    def mapping(self, effect: str, k: int = 1, kind: str = "h") -> Mapping:
        """The exact relabelling of a mapped effect (angle factors only change)."""
        key = (effect, k, kind)
        if key not in self._mappings:
            self._mappings[key] = Mapping(
                {
                    name: self._angle_map(effect, name, k, kind)
                    for name in self.levels
                    if FACTOR_KINDS.get(name.lower()) == ANGLE
                }
            )
        return self._mappings[key]

    def apply(
        self,
        mapping: Mapping,
        chosen: torch.Tensor,
        labels: torch.Tensor,
        factors: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Relabel the ``chosen`` images (bool (N,)) of a batch; returns the images to change
        (``chosen`` less those whose new factors name no training class: a held-out
        combination stays out of training), their labels and factors."""
        if not mapping.factors:
            return chosen, labels, factors
        new = {
            n: torch.where(chosen, mapping.factors[n].to(v.device)[v], v)
            if n in mapping.factors
            else v
            for n, v in factors.items()
        }
        assert self.table is not None
        new_labels = self.table.lookup(new)
        changed = chosen & (new_labels >= 0)
        labels = torch.where(changed, new_labels, labels)
        factors = {n: torch.where(changed, new[n], v) for n, v in factors.items()}
        return changed, labels, factors


@dataclass(frozen=True)
class LabelTable:
    """The training split's class of every factor combination (-1: none trained on)."""

    names: tuple[str, ...]
    strides: torch.Tensor
    labels: torch.Tensor
    exact: bool

    def lookup(self, factors: dict[str, torch.Tensor]) -> torch.Tensor:
        flat = sum(factors[n] * int(s) for n, s in zip(self.names, self.strides, strict=True))
        return self.labels.to(flat.device)[flat]


def _label_table(dataset: ImageDataset) -> LabelTable:
    """Each factor combination's class on the training split; ``exact`` when one combination
    never has two classes."""
    names = tuple(dataset.factor_levels)
    sizes = [len(dataset.factor_levels[n]) for n in names]
    strides = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
    flat = sum(dataset.train.factors[n] * s for n, s in zip(names, strides, strict=True))
    table = torch.full((math.prod(sizes),), -1, dtype=torch.long)
    table[flat] = dataset.train.labels
    exact = bool((table[flat] == dataset.train.labels).all())
    return LabelTable(names, torch.tensor(strides), table, exact)
