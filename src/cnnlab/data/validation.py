"""The validation split: training images set aside to make choices on, never the test split."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, grouped_stratified_split
from cnnlab.data.identity import identity_groups
from cnnlab.errors import CnnlabError


def with_validation(dataset: ImageDataset, fraction: float, seed: int) -> ImageDataset:
    """``dataset`` with ``fraction`` of its training images moved to ``val``: stratified by
    class and chosen by ``seed``; identical pictures stay on one side, so no validation image
    equals a training image. ``fraction`` 0, or a dataset with a validation split of its own
    (a ``val/`` folder), returns ``dataset`` as it is."""
    if dataset.val is not None:
        if fraction > 0:
            raise CnnlabError(
                f"data.val_fraction {fraction}: dataset {dataset.name} has a validation split of "
                "its own (a val/ folder); leave data.val_fraction at 0"
            )
        return dataset
    if fraction <= 0:
        return dataset
    labels = dataset.train.labels.numpy()
    groups = identity_groups(dataset.train.images)
    is_val = grouped_stratified_split(labels, groups, fraction, seed)
    left = np.bincount(labels[~is_val], minlength=dataset.num_classes)
    present = np.bincount(labels, minlength=dataset.num_classes) > 0
    starved = [dataset.class_names[k] for k in np.flatnonzero(present & (left == 0))]
    if starved:
        raise CnnlabError(
            f"data.val_fraction {fraction} leaves no training image of class "
            f"{', '.join(map(str, starved[:5]))}{' ...' if len(starved) > 5 else ''}; "
            "use a smaller fraction"
        )
    mask = torch.from_numpy(is_val)
    return dataclasses.replace(
        dataset,
        train=dataset.train.subset(~mask),
        val=dataset.train.subset(mask),
        provenance={**dataset.provenance, "val_fraction": fraction, "val": int(mask.sum())},
    )
