"""What a model is trained to do: the loss to minimise and what counts as a right answer.

An objective turns a batch's outputs and targets into the mean loss to backpropagate and a
float64 vector of sums ``[loss * n, correct, n, *extra]`` that the engine adds up over an
epoch (and across processes); each ``extra`` sum becomes a per-epoch column, divided by n.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig
from cnnlab.training.optim import build_loss


class Classification:
    """One softmax over the classes: cross-entropy (or squared error), argmax accuracy."""

    extra: tuple[str, ...] = ()

    def __init__(self, train: TrainConfig, num_classes: int) -> None:
        self.loss_fn = build_loss(train, num_classes)

    def targets(self, split: Split) -> dict[str, torch.Tensor]:
        return {"label": split.labels}

    def score(
        self, logits: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = targets["label"]
        loss = self.loss_fn(logits, labels)
        correct = (logits.detach().argmax(dim=1) == labels).sum()
        n = labels.numel()
        sums = torch.stack([loss.detach().double() * n, correct.double(), torch.tensor(n)])
        return loss, sums.to(torch.float64).cpu()


class MultiHead:
    """One head per factor: binary factors get one sigmoid unit (binary cross-entropy), others a
    softmax (cross-entropy). The loss is the weighted sum of the heads' losses; an answer is
    right when every head is right (joint accuracy)."""

    def __init__(self, heads: dict[str, int], weights: dict[str, float] | None = None) -> None:
        self.heads = heads
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in heads}
        self.extra = tuple(f"{h}_{m}" for h in heads for m in ("loss", "acc"))

    def targets(self, split: Split) -> dict[str, torch.Tensor]:
        missing = [h for h in self.heads if h not in split.factors]
        if missing:
            raise CnnlabError(
                f"the multi-head model needs factor labels {', '.join(missing)}; this dataset "
                f"has {', '.join(split.factors) or 'none'}"
            )
        return {h: split.factors[h] for h in self.heads}

    def head_loss(self, name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.heads[name] == 2:
            return F.binary_cross_entropy_with_logits(logits.squeeze(1), target.to(logits.dtype))
        return F.cross_entropy(logits, target)

    def score(
        self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        total = torch.zeros((), device=next(iter(outputs.values())).device)
        all_right = None
        extra = []
        n = next(iter(targets.values())).numel()
        for name in self.heads:
            logits, target = outputs[name], targets[name]
            loss = self.head_loss(name, logits, target)
            total = total + self.weights[name] * loss
            right = predict_head(logits) == target
            all_right = right if all_right is None else all_right & right
            extra += [loss.detach().double() * n, right.sum().double()]
        sums = [total.detach().double() * n, all_right.sum().double(), torch.tensor(n).double()]
        return total, torch.stack([*sums, *extra]).cpu()


def predict_head(logits: torch.Tensor) -> torch.Tensor:
    """A head's predicted level: sigmoid > 0.5 for one unit, argmax for a softmax."""
    if logits.shape[1] == 1:
        return (logits.squeeze(1) > 0).long()
    return logits.argmax(dim=1)


def objective_for(model: nn.Module, dataset: ImageDataset, train: TrainConfig) -> Any:
    """A model with ``heads`` (name -> number of levels) is multi-head; others classify."""
    heads = getattr(model, "heads", None)
    if heads:
        unknown = sorted(set(train.head_weights) - set(heads))
        if unknown:
            raise CnnlabError(
                f"train.head_weights: unknown head(s) {', '.join(unknown)}; "
                f"heads: {', '.join(heads)}"
            )
        levels = dataset.factor_levels
        wrong = [
            f"{h} has {n}, the data {len(levels[h])}"
            for h, n in heads.items()
            if h in levels and n != len(levels[h])
        ]
        if wrong:
            raise CnnlabError(
                f"the multi-head model's heads do not match the data's factor levels: "
                f"{'; '.join(wrong)} (leave model.heads unset to take the data's)"
            )
        return MultiHead(dict(heads), train.head_weights)
    return Classification(train, dataset.num_classes)
