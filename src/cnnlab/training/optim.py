"""Optimisers, learning-rate schedules and losses named in the config."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.training.config import TrainConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


LR_FACTOR = "cnnlab_lr_factor"
"""Attribute of a parameter whose rate is ``train.lr`` times it (fine-tuning's trunk,
:func:`cnnlab.training.finetune.scale_lr`); a parameter without it trains at ``train.lr``."""


def param_groups(params: Iterable[nn.Parameter], lr: float) -> list[dict[str, Any]]:
    """``params`` that train (``requires_grad``) in one group per rate, each with its ``lr``:
    the highest rate first (the one the history's ``lr`` column shows), each group in the
    parameters' order. One group when no parameter has its own :data:`LR_FACTOR`."""
    by_factor: dict[float, list[nn.Parameter]] = {}
    for p in params:
        if p.requires_grad:
            by_factor.setdefault(float(getattr(p, LR_FACTOR, 1.0)), []).append(p)
    return [
        {"params": group, "lr": lr * factor}
        for factor, group in sorted(by_factor.items(), key=lambda item: -item[0])
    ]


def build_optimizer(params: Iterable[nn.Parameter], t: TrainConfig) -> torch.optim.Optimizer:
    """Adam/AdamW use the fused CPU/GPU kernel: one pass over the weights per step. Frozen
    parameters (``requires_grad`` False) are left out; see :func:`param_groups` for the rates."""
    groups = param_groups(params, t.lr)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    return torch.optim.RMSprop(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


ONECYCLE_WARMUP = 0.25
"""The share of the steps over which the one-cycle schedule warms up."""


def warmup_epochs(t: TrainConfig) -> int:
    """The epochs whose rate is still rising (the one-cycle warm-up; 0 for other schedules):
    early stopping counts its patience from their end."""
    return math.ceil(ONECYCLE_WARMUP * t.epochs) if t.scheduler == "onecycle" else 0


def lr_factor(t: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The schedule as a factor of ``t.lr`` for each optimisation step (stepped every batch)."""
    total = max(1, t.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        progress = min(step / total, 1.0)
        if t.scheduler == "step":
            return t.lr_gamma ** (step // (t.lr_step_epochs * steps_per_epoch))
        if t.scheduler == "exponential":
            return t.lr_gamma**epoch
        if t.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if t.scheduler == "onecycle":  # linear warm-up over 25% of steps, then cosine to zero
            warm = ONECYCLE_WARMUP
            if progress < warm:
                return 0.04 + 0.96 * progress / warm
            return 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))
        return 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, t: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule as one factor of every group's own rate (one-cycle peaks at each group's
    ``lr``: the trunk's at ``train.lr * train.trunk_lr_factor``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(t, steps_per_epoch))


def build_loss(t: TrainConfig, num_classes: int) -> LossFn:
    """Cross-entropy (optionally label-smoothed) or squared error between softmax and one-hot."""
    if t.loss == "mse":

        def squared_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            target = F.one_hot(labels, num_classes).to(logits.dtype)
            return F.mse_loss(logits.softmax(dim=1), target)

        return squared_error

    def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=t.label_smoothing)

    return cross_entropy
