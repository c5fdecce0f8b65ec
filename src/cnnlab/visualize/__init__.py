"""Looking inside a trained CNN: activations, filter images, Grad-CAM and friends, scored.

``visualize_run(run_dir, out_dir)`` writes every picture with its raw arrays and returns what it
drew (a ``Visualization``: ``summary.json`` as ``to_dict()``); the pieces are usable on their own
with any model and its normalised inputs. The explanation methods are listed once, in
:mod:`cnnlab.visualize.methods`.

Each name is imported when first used (PEP 562), so the command line and the report read the
list of methods without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "layer_activations": "cnnlab.visualize.activations",
    "SCORE_IMAGES": "cnnlab.visualize.api",
    "Visualization": "cnnlab.visualize.api",
    "default_sample": "cnnlab.visualize.api",
    "score_run": "cnnlab.visualize.api",
    "visualize_run": "cnnlab.visualize.api",
    "attribute": "cnnlab.visualize.attribution",
    "METHODS": "cnnlab.visualize.cam",
    "Heatmap": "cnnlab.visualize.cam",
    "class_scores": "cnnlab.visualize.cam",
    "explain": "cnnlab.visualize.cam",
    "grad_cam": "cnnlab.visualize.cam",
    "guided_backprop": "cnnlab.visualize.cam",
    "guided_grad_cam": "cnnlab.visualize.cam",
    "saliency": "cnnlab.visualize.cam",
    "FilterImages": "cnnlab.visualize.filters",
    "FilterSettings": "cnnlab.visualize.filters",
    "visualize_filters": "cnnlab.visualize.filters",
    "default_layers": "cnnlab.visualize.hooks",
    "resolve_layers": "cnnlab.visualize.hooks",
    "Method": "cnnlab.visualize.methods",
    "energy_share": "cnnlab.visualize.scoring",
    "flag_worse_than_random": "cnnlab.visualize.scoring",
    "format_scoreboard": "cnnlab.visualize.scoring",
    "format_scores": "cnnlab.visualize.scoring",
    "pointing_game": "cnnlab.visualize.scoring",
    "print_scores": "cnnlab.visualize.scoring",
    "rank_correlation": "cnnlab.visualize.scoring",
    "topk_iou": "cnnlab.visualize.scoring",
    "worse_than_random": "cnnlab.visualize.scoring",
}

if TYPE_CHECKING:
    from cnnlab.visualize.activations import layer_activations
    from cnnlab.visualize.api import (
        SCORE_IMAGES,
        Visualization,
        default_sample,
        score_run,
        visualize_run,
    )
    from cnnlab.visualize.attribution import attribute
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
    from cnnlab.visualize.methods import Method
    from cnnlab.visualize.scoring import (
        energy_share,
        flag_worse_than_random,
        format_scoreboard,
        format_scores,
        pointing_game,
        print_scores,
        rank_correlation,
        topk_iou,
        worse_than_random,
    )


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cnnlab.visualize' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "METHODS",
    "SCORE_IMAGES",
    "FilterImages",
    "FilterSettings",
    "Heatmap",
    "Method",
    "Visualization",
    "attribute",
    "class_scores",
    "default_layers",
    "default_sample",
    "energy_share",
    "explain",
    "flag_worse_than_random",
    "format_scoreboard",
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
    "worse_than_random",
]
