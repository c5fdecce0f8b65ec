"""Grad-CAM++ (Chattopadhyay et al. 2018): Grad-CAM whose channel weights count each
position's positive gradient, weighted, not the mean gradient; registered in
:mod:`cnnlab.visualize.methods`.

The weights are the paper's closed form for an exponential of the class score S (the form
pytorch-grad-cam computes): with g = dS/dA and A a channel's activation map,
``alpha = g^2 / (2 g^2 + sum(A) g^3)`` and ``w = sum(alpha * relu(g))``; the map is
``relu(sum_k w_k A_k)``. Where alpha's denominator is 0 (g is 0) alpha is 0, with no epsilon
added (pytorch-grad-cam adds 1e-6, which shrinks the weights of small gradients): the map does
not depend on the scale of the gradients. The factor exp(S) of the exponential's gradient is
left out: it scales an image's map only.
"""

from __future__ import annotations

import torch

from cnnlab.visualize.cam import Pass


def gradcam_pp_weights(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s (N, C, 1, 1) channel weights from a layer's (N, C, h, w) activation and
    gradient of the score."""
    squared = gradient.pow(2)
    total = activation.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * squared + total * squared * gradient
    defined = denominator != 0
    alpha = torch.where(defined, squared / torch.where(defined, denominator, 1.0), 0.0)
    return (alpha * torch.relu(gradient)).sum(dim=(2, 3), keepdim=True)


def gradcam_pp_maps(shared: Pass, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM++ at ``layer``: ``raw`` at the layer's resolution, ``maps`` on the input grid."""
    weights = gradcam_pp_weights(shared.activations[layer], shared.gradients[layer])
    cam = shared.cam(layer, weights)
    return shared.upsample(layer, cam), cam
