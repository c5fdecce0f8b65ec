"""The ``resnet`` family: shapes for any image size and channel count, where the shortcuts
project, its options and their refusals, training, Grad-CAM, channels_last and bfloat16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, model_names, model_options, parameter_count
from cnnlab.models.fusion import inference_model
from cnnlab.models.resnet import BasicBlock
from cnnlab.visualize import default_layers, grad_cam, resolve_layers
from cnnlab.visualize.hooks import execution_order, recording

SMALL = {"width": 8, "depth": [1, 1, 1]}


def _stage_sizes(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    stages = {n: m for n, m in model.named_children() if n.startswith("layer")}
    with torch.no_grad(), recording(stages) as out:
        model(x)
    return [tuple(out[n].shape[1:]) for n in stages]


@pytest.mark.parametrize(
    ("channels", "size", "stages"),
    [
        (1, (8, 8), [(8, 8, 8), (16, 4, 4), (32, 4, 4)]),  # never strides below 4x4
        (1, (28, 28), [(8, 28, 28), (16, 14, 14), (32, 7, 7)]),
        (3, (28, 28), [(8, 28, 28), (16, 14, 14), (32, 7, 7)]),
        (3, (32, 32), [(8, 32, 32), (16, 16, 16), (32, 8, 8)]),
        (2, (20, 36), [(8, 20, 36), (16, 10, 18), (32, 5, 9)]),
    ],
)
def test_any_size_and_channels_give_logits(
    channels: int, size: tuple[int, int], stages: list[tuple[int, ...]]
) -> None:
    model = create_model("resnet", channels, 7, size, **SMALL).eval()
    x = torch.randn(3, channels, *size)
    assert tuple(model(x).shape) == (3, 7)
    assert _stage_sizes(model, x) == stages


def test_registered_with_its_options() -> None:
    assert "resnet" in model_names()
    assert set(model_options("resnet")) == {"depth", "width", "dropout"}
    model = create_model("resnet", 1, 5, (16, 16), width=4, depth=[1, 2], dropout=0.25)
    assert [n for n, _ in model.named_children()] == [
        "stem",
        "layer1",
        "layer2",
        "pool",
        "flatten",
        "drop",
        "fc",
    ]
    assert [len(model.layer1), len(model.layer2)] == [1, 2]
    assert isinstance(model.drop, nn.Dropout) and model.drop.p == 0.25
    assert (model.fc.in_features, model.fc.out_features) == (8, 5)
    assert isinstance(create_model("resnet", 1, 5, (16, 16), width=4).drop, nn.Identity)


def test_parameters_grow_with_width_and_depth() -> None:
    def count(**options: object) -> int:
        return parameter_count(create_model("resnet", 1, 10, (28, 28), **options))

    assert count(width=8) < count(width=16) < count(width=32)
    assert count(depth=[1, 1]) < count(depth=[1, 1, 1]) < count(depth=[2, 2, 2])
    assert count(depth=[2, 2, 2]) < count(depth=[3, 3, 3])
    # ResNet-20's layout at width 16 has He et al.'s 0.27 M parameters
    assert 0.26e6 < count(width=16, depth=[3, 3, 3]) < 0.28e6


@pytest.mark.parametrize("size", [(8, 8), (28, 28)])
def test_a_projection_shortcut_exactly_where_the_shape_changes(size: tuple[int, int]) -> None:
    model = create_model("resnet", 3, 10, size, width=8, depth=[2, 2, 2]).eval()
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock)}
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}
    hooks = [
        m.register_forward_hook(lambda m, a, o, n=n: shapes.__setitem__(n, (a[0].shape, o.shape)))
        for n, m in blocks.items()
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, *size))
    for hook in hooks:
        hook.remove()
    projected = {n for n, m in blocks.items() if not isinstance(m.shortcut, nn.Identity)}
    assert projected == {n for n, (i, o) in shapes.items() if i != o}
    assert projected == {"layer2.0", "layer3.0"}  # 8x8: layer3.0 only doubles the channels
    for name in projected:
        conv = blocks[name].shortcut.conv
        assert conv.kernel_size == (1, 1) and conv.stride == blocks[name].conv1.stride


def test_initialisation_zeroes_each_blocks_last_batch_norm() -> None:
    model = create_model("resnet", 1, 10, (28, 28), width=16)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(bool((b.bn2.weight == 0).all()) for b in blocks)
    conv = blocks[-1].conv1  # Kaiming, fan-out: std sqrt(2 / (out_channels * 3 * 3))
    expected = (2 / (conv.out_channels * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"depth": []}, "depth"),
        ({"depth": 3}, "depth"),
        ({"depth": [2, 0]}, "depth"),
        ({"width": -8}, "width"),
        ({"width": 0}, "width"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], named: str) -> None:
    with pytest.raises(CnnlabError, match=rf"model 'resnet': {named} must"):
        create_model("resnet", 1, 10, (28, 28), **options)


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("resnet", 1, 4, (12, 12), width=8, depth=[1, 1])
    odd = (torch.arange(12) % 2).float()  # classes: rows, columns, checkerboard, blank
    patterns = torch.stack(
        [
            odd[:, None].expand(12, 12),
            odd.expand(12, 12),
            (odd[:, None] + odd) % 2,
            0 * odd.outer(odd),
        ]
    )
    y = torch.arange(32) % 4
    x = patterns[y][:, None] + 0.3 * torch.randn(32, 1, 12, 12)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_grad_cam_at_the_default_and_the_last_stage() -> None:
    torch.manual_seed(0)
    model = create_model("resnet", 3, 10, (16, 16), **SMALL).eval()
    layers = default_layers(model)
    assert layers[0] == "stem.conv" and layers[-1] == "layer3.0.conv2"
    assert "layer2.0.shortcut.conv" in layers
    assert all(isinstance(m, nn.Conv2d) for m in resolve_layers(model).values())
    x = torch.rand(2, 3, 16, 16)
    for layer in (layers[-1], "layer3"):
        heatmap = grad_cam(model, x, layer)
        assert tuple(heatmap.maps.shape) == (2, 16, 16)
        assert tuple(heatmap.raw.shape) == (2, 4, 4)
        assert bool(torch.isfinite(heatmap.maps).all())


def test_the_residual_sum_is_a_layer_before_each_blocks_last_relu() -> None:
    """Layer geometry and filter paths walk the leaf layers in execution order: the sum must
    be one of them, or the last ReLU would look like a per-channel step after bn2."""
    model = create_model("resnet", 1, 10, (16, 16), **SMALL).eval()
    order = execution_order(model, torch.zeros(1, 1, 16, 16))
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    for block in blocks:
        assert order[order.index(block.relu2) - 1] is block.add


def test_channels_last_and_bfloat16_autocast() -> None:
    torch.manual_seed(0)
    model = create_model("resnet", 3, 10, (16, 16), **SMALL)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    expected = model(x)
    stages = {n: m for n, m in model.named_children() if n.startswith("layer")}
    with torch.autocast("cpu", dtype=torch.bfloat16), recording(stages) as out:
        logits = model(x)
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in out.values())
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), expected, atol=0.1, rtol=0.1)
    logits.float().sum().backward()
    assert all(
        p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters()
    )


def test_the_fused_inference_copy_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    model = create_model("resnet", 1, 10, (12, 12), **SMALL)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        nn.init.uniform_(bn.weight, 0.5, 1.5)  # the zero init would hide the blocks' paths
        nn.init.uniform_(bn.running_var, 0.5, 2.0)
        nn.init.normal_(bn.running_mean)
    model.eval()
    x = torch.randn(5, 1, 12, 12)
    torch.testing.assert_close(inference_model(model)(x), model(x), atol=1e-4, rtol=1e-4)
