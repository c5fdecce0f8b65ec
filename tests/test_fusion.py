"""``fused_for_inference``: batch norms folded away without changing what the model says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.fusion import fused_for_inference, inference_model

MODELS = [
    ("part1", {}),
    ("part1", {"downsample": "stride"}),
    ("part1", {"dropout": 0.2}),
    ("convnet", {"channels": [8, 16], "convs_per_stage": 2, "dense": [32]}),
    ("multihead", {"channels": [8], "kernel_size": 7, "shared": [32], "head_hidden": 8}),
]


def _randomise_batch_norms(model: nn.Module, negative: bool = False) -> None:
    generator = torch.Generator().manual_seed(1)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
        if negative:
            bn.weight.data[0] = -0.7


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = model(x)
    if isinstance(out, dict):
        return torch.cat([v.reshape(len(x), -1) for v in out.values()], dim=1)
    return out


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("name", "options"), MODELS)
def test_fused_model_gives_the_same_outputs(name: str, options: dict, channels: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, channels, 96 if name == "part1" else 10, **options).eval()
    _randomise_batch_norms(model)
    x = torch.randn(16, channels, 28, 28)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        fused = fused_for_inference(model.to(memory_format=memory_format))
        got = _outputs(fused, x.contiguous(memory_format=memory_format))
        torch.testing.assert_close(got, _outputs(model, x), rtol=1e-4, atol=1e-4)


def test_part1_loses_its_batch_norm_and_the_original_is_untouched() -> None:
    model = create_model("part1", 1, 10).eval()
    _randomise_batch_norms(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fused_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_negative_scale_keeps_the_batch_norm_where_it_is() -> None:
    torch.manual_seed(0)
    model = create_model("part1", 1, 10).eval()
    _randomise_batch_norms(model, negative=True)
    fused = fused_for_inference(model)
    kinds = [type(m) for m in fused.features]
    assert kinds.index(nn.BatchNorm2d) < kinds.index(nn.MaxPool2d)  # not moved past the pool
    x = torch.randn(8, 1, 28, 28)
    torch.testing.assert_close(_outputs(fused, x), _outputs(model, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("name", "options"), MODELS)
def test_inference_model_gives_the_same_outputs(name: str, options: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, 3, 12, **options).eval()
    _randomise_batch_norms(model)
    x = torch.randn(16, 3, 28, 28).contiguous(memory_format=torch.channels_last)
    fast = inference_model(model, "cpu")
    torch.testing.assert_close(_outputs(fast, x), _outputs(model, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("name", "options"), MODELS[3:])
def test_folded_layers_leave_no_op_behind(name: str, options: dict) -> None:
    """A leftover Identity makes optimize_for_inference convert layouts around it (3x slower)."""
    model = create_model(name, 3, 12, **options).eval()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fused = fused_for_inference(model)
    kinds = {type(m) for m in fused.modules()}
    assert nn.BatchNorm2d not in kinds and nn.Identity not in kinds
    if torch.backends.mkldnn.is_available():
        code = inference_model(model, "cpu").code
        assert code.count(".to_mkldnn()") == 2, code  # the input, and after the flatten
