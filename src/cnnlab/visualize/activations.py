"""Intermediate activations: what each conv/pool layer outputs for given images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.visualize.hooks import eval_mode, forward_to, resolve_layers


@torch.no_grad()
def layer_activations(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Short layer name -> its output (N, C, h, w) for ``inputs`` (the model's normalised input).

    ``layers`` defaults to every conv/pool layer. The forward pass stops at the last layer asked
    for; hooks are removed afterwards. Outputs are detached, on the CPU.
    """
    modules = resolve_layers(model, layers)
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    with eval_mode(model):
        for start in range(0, inputs.shape[0], batch_size):
            outputs = forward_to(model, inputs[start : start + batch_size], modules)
            for name in modules:
                chunks[name].append(outputs[name].detach().cpu())
    return {name: torch.cat(parts) for name, parts in chunks.items()}
