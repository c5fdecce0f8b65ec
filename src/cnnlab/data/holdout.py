"""Held-out combinations: factor combinations kept out of training and tested on.

A 96-way classifier cannot name a class it never saw; a multi-head network can, by composing
factors it learnt from other combinations. ``holdout`` specs say which combinations to hold out:
``{"combinations": [{"color": "blue", "width": 3, "angle": 90}], "random_fraction": 0.1}``
(every class matching any listed combination, plus a seeded random share of all classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, Split, decode_factors
from cnnlab.errors import CnnlabError
from cnnlab.overrides import short_repr, shown

HOLDOUT_KEYS = ("combinations", "random_fraction")


def check_holdout(
    spec: Mapping[str, Any], levels: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, Any]:
    """``spec`` checked, with ``random_fraction`` as a float: its keys, combinations that are
    mappings of factor to level, a fraction in [0, 1), something held out; with the dataset's
    factor ``levels``, every factor and level named exists."""
    if not isinstance(spec, Mapping):
        raise CnnlabError(f"data.holdout must be a mapping ({', '.join(HOLDOUT_KEYS)})")
    unknown = sorted(shown(str(k)) for k in set(spec) - set(HOLDOUT_KEYS))
    if unknown:
        raise CnnlabError(
            f"data.holdout: unknown key(s) {', '.join(unknown)}; valid: {', '.join(HOLDOUT_KEYS)}"
        )
    combinations = spec.get("combinations", [])
    if not isinstance(combinations, list) or not all(
        isinstance(c, dict)
        and c
        and all(isinstance(f, str) and isinstance(v, str | int | float) for f, v in c.items())
        for c in combinations
    ):
        raise CnnlabError(
            "data.holdout.combinations must be a list of mappings of factor to level, e.g. "
            f"[{{color: blue, width: 3}}], got {short_repr(combinations)}"
        )
    fraction = spec.get("random_fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise CnnlabError(
            f"data.holdout.random_fraction must be a number, got {short_repr(fraction)}"
        )
    if not 0.0 <= fraction < 1.0:  # NaN too
        raise CnnlabError(f"data.holdout.random_fraction must be in [0, 1), got {fraction}")
    if not combinations and not fraction:
        raise CnnlabError("data.holdout holds out no class: name combinations or a random_fraction")
    for combination in combinations if levels is not None else ():
        for factor, value in combination.items():
            if factor not in levels:
                raise CnnlabError(
                    f"data.holdout: no factor {short_repr(factor)}; factors: {', '.join(levels)}"
                )
            names = [str(v) for v in levels[factor]]
            if str(value) not in names:
                raise CnnlabError(
                    f"data.holdout: {factor} has no level {short_repr(value)}; levels: "
                    f"{', '.join(names)}"
                )
    return {**spec, **({"random_fraction": float(fraction)} if "random_fraction" in spec else {})}


def holdout_classes(dataset: ImageDataset, spec: dict[str, Any], seed: int) -> np.ndarray:
    """The class indices that ``spec`` holds out, sorted."""
    levels = dataset.factor_levels
    if not levels:
        raise CnnlabError(f"data.holdout needs a dataset with factors; {dataset.name} has none")
    spec = check_holdout(spec, levels)
    classes = np.arange(dataset.num_classes)
    index = decode_factors(classes, levels)
    chosen = np.zeros(classes.size, dtype=bool)
    for combination in spec.get("combinations", []):
        match = np.ones(classes.size, dtype=bool)
        for factor, value in combination.items():
            names = [str(v) for v in levels[factor]]
            match &= index[factor] == names.index(str(value))
        chosen |= match
    fraction = spec.get("random_fraction", 0.0)
    if fraction:
        rng = np.random.default_rng(seed)
        chosen[rng.permutation(classes.size)[: round(fraction * classes.size)]] = True
    if not chosen.any():
        raise CnnlabError("data.holdout holds out no class: name combinations or a random_fraction")
    if chosen.all():
        raise CnnlabError("data.holdout holds out every class: nothing is left to train on")
    return classes[chosen]


def apply_holdout(dataset: ImageDataset, spec: dict[str, Any], seed: int) -> ImageDataset:
    """Train on the other classes; test on every image (train and test parts) of held-out ones."""
    if dataset.val is not None:
        raise CnnlabError(
            f"data.holdout: dataset {dataset.name} has a validation split of its own; held-out "
            "classes and a val/ folder do not go together (use data.val_fraction instead)"
        )
    held = torch.from_numpy(holdout_classes(dataset, spec, seed))

    def keep(split: Split, unseen: bool) -> Split:
        mask = torch.isin(split.labels, held)
        return split.subset(mask if unseen else ~mask)

    train, test = keep(dataset.train, False), keep(dataset.train, True)
    rest = keep(dataset.test, True)
    test = test.concat(rest)
    return ImageDataset(
        name=dataset.name,
        train=train,
        test=test,
        class_names=dataset.class_names,
        factor_levels=dataset.factor_levels,
        upright=dataset.upright,
        provenance={
            **dataset.provenance,
            "holdout": {**spec, "classes": [dataset.class_names[i] for i in held.tolist()]},
        },
    )
