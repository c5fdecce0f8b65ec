"""Training cost of a model: floating-point operations per image for one forward + backward.

Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one batch: convolutions and
matrix products at 2 FLOPs per multiply-add, forward and backward (the gradients of the
weights, and of the inputs of every layer but the first). Elementwise work (ReLU, BatchNorm,
pooling, the optimiser step) is not counted; on these nets it is a few per cent.

Any model works: its outputs may be a tensor, or a dict, tuple or list of them (every one is
in the backward pass); a model without parameters is counted forward only, on the CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def training_flops_per_image(
    model: nn.Module,
    in_channels: int,
    image_size: tuple[int, int],
    batch_size: int = 64,
) -> float:
    """FLOPs of one training step on a batch of ``batch_size`` random images, per image.

    The model is left as it was: parameters, buffers (BatchNorm statistics), gradients and
    train/eval mode are restored afterwards.
    """
    was_training = model.training
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    images = torch.randn(batch_size, in_channels, *image_size, generator=torch.Generator())
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.train()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            total = sum(o.float().sum() for o in _tensors(model(images.to(device))))
            if isinstance(total, torch.Tensor) and total.requires_grad:
                total.backward()
    finally:
        model.load_state_dict(state)
        for name, parameter in model.named_parameters():
            parameter.grad = grads[name]
        model.train(was_training)
    return counter.get_total_flops() / batch_size


def _tensors(outputs: object) -> list[torch.Tensor]:
    """Every tensor in a model's outputs (a tensor, or dicts, tuples and lists of them)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [t for o in outputs for t in _tensors(o)]
    return []
