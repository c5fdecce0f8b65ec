"""Looking inside a trained CNN: activations, filter images, Grad-CAM and friends, scored.

``visualize_run(run_dir, out_dir)`` writes every picture with its raw arrays; the pieces are
usable on their own with any model and its normalised inputs.
"""

from cnnlab.visualize.activations import layer_activations
from cnnlab.visualize.api import default_sample, score_run, visualize_run
from cnnlab.visualize.cam import (
    METHODS,
    Heatmap,
    class_scores,
    explain,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    saliency,
)
from cnnlab.visualize.filters import FilterImages, FilterSettings, visualize_filters
from cnnlab.visualize.hooks import default_layers, resolve_layers
from cnnlab.visualize.scoring import (
    energy_share,
    format_scores,
    pointing_game,
    print_scores,
    rank_correlation,
    topk_iou,
)

__all__ = [
    "METHODS",
    "FilterImages",
    "FilterSettings",
    "Heatmap",
    "class_scores",
    "default_layers",
    "default_sample",
    "energy_share",
    "explain",
    "format_scores",
    "grad_cam",
    "guided_backprop",
    "guided_grad_cam",
    "layer_activations",
    "pointing_game",
    "print_scores",
    "rank_correlation",
    "resolve_layers",
    "saliency",
    "score_run",
    "topk_iou",
    "visualize_filters",
    "visualize_run",
]
