"""Optimisers, learning-rate schedules and losses named in the config."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.training.config import TrainConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def build_optimizer(params: Iterable[nn.Parameter], t: TrainConfig) -> torch.optim.Optimizer:
    """Adam/AdamW use the fused CPU/GPU kernel: one pass over the weights per step."""
    params = list(params)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    return torch.optim.RMSprop(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


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
            warm = 0.25
            if progress < warm:
                return 0.04 + 0.96 * progress / warm
            return 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))
        return 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, t: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
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
