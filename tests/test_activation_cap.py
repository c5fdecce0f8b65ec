"""Activation grids are capped (issue 30, 3): a layer of more than 64 maps shows its 64 most
active, in channel order, and says so; a narrower layer shows every map."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.visualize.figures import MAX_MAPS, most_active, plot_activations


def test_the_most_active_maps_in_channel_order() -> None:
    maps = torch.zeros(2, 200, 3, 3)
    strong = [190, 5, 40, *range(100, 100 + MAX_MAPS - 3)]  # distinct channels
    for k, channel in enumerate(strong):
        maps[:, channel] = 1.0 + k / 100
    chosen = most_active(maps).tolist()
    assert chosen == sorted(strong) and len(chosen) == MAX_MAPS
    assert most_active(maps[:, :10]).tolist() == list(range(10))


def test_a_wide_layer_draws_a_capped_grid(tmp_path: Path) -> None:
    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    wide = plot_activations(images, torch.rand(2, 256, 1, 1), "pool3", tmp_path / "wide.png")
    narrow = plot_activations(images, torch.rand(2, 32, 1, 1), "pool2", tmp_path / "narrow.png")
    from PIL import Image

    with Image.open(wide) as w, Image.open(narrow) as n:
        assert w.size[1] < 3 * n.size[1]  # 64 maps at 16 to a line: 4 rows, not 16
