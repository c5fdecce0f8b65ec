"""Heatmaps are drawn where they can mean something (issue 30, 3): the deepest conv or pool layer
whose map is at least 4x4, a warning where no layer's is, and a user's bare-index layers named
with their type."""

from __future__ import annotations

from torch import nn

from cnnlab.evaluate.errors import error_lines
from cnnlab.visualize.hooks import MIN_MAP, explanation_layer


def digits_net() -> nn.Module:
    """On 8x8 images: conv 8x8 -> pool 4x4 -> conv 4x4 -> pool 2x2 -> pool 1x1."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


def test_the_deepest_layer_with_a_map_of_at_least_4x4_is_chosen() -> None:
    chosen = explanation_layer(digits_net(), (1, 8, 8))
    assert (chosen.name, chosen.size, chosen.note) == ("3", (4, 4), None)
    assert chosen.label == "3 (Conv2d)"  # a bare index says what it is
    assert min(chosen.size) >= MIN_MAP


def test_where_no_map_is_large_enough_it_says_so() -> None:
    tiny = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(2, 3))
    small = explanation_layer(tiny, (1, 3, 3))  # one 1x1 map
    assert small.name == "0" and small.size == (1, 1)
    assert small.note is not None and "cannot show where" in small.note
    calibration = {
        "ece": 0.1, "bins": 10, "mce": 0.2, "right": {"mean": 0.9}, "wrong": {"mean": 0.6}
    }  # fmt: skip
    record = {
        "split_name": "digits test", "images": 2, "errors": 1, "calibration": calibration,
        "confused_pairs": [], "worst_recall": [], "top_losses": [],
    }  # fmt: skip
    assert not any(line.startswith("warning:") for line in error_lines(record))
    warned = error_lines({**record, "heatmap_note": small.note})
    assert warned[-1] == f"warning: {small.note}"
