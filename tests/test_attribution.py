"""Captum attributions as cnnlab heatmaps: every method on every model and head, determinism,
Grad-CAM checked against Captum's, and the completeness of Integrated Gradients and DeepLIFT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.visualize.attribution import (
    ATTRIBUTION_METHODS,
    HeadForward,
    attribute,
    captum_layer_gradcam,
    deeplift,
    gradient_shap,
    integrated_gradients,
)
from cnnlab.visualize.cam import class_scores, grad_cam
from cnnlab.visualize.geometry import layer_geometry, upsample
from cnnlab.visualize.hooks import resolve_layers

HEADS = ("length", "width", "color", "angle")
# Cheaper settings than the defaults: the tests check plumbing, not quality.
FAST = {
    "integrated_gradients": {"n_steps": 8},
    "occlusion": {"window": 4, "stride": 4},
    "gradient_shap": {"n_samples": 4},
    "layer_gradcam": {"layer": "conv1"},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "part1": create_model("part1", 1, 10),
        "convnet": create_model("convnet", 3, 96),
        "multihead": create_model("multihead", 3, 96),
    }


def images(channels: int, n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, channels, 28, 28, generator=torch.Generator().manual_seed(seed))


def cases() -> list[tuple[str, str | None]]:
    return [("part1", None), ("convnet", None)] + [("multihead", h) for h in HEADS]


@pytest.mark.parametrize(("key", "head"), cases())
def test_every_method_runs_on_every_model_and_head(
    models: dict[str, nn.Module], key: str, head: str | None
) -> None:
    model = models[key]
    channels = 1 if key == "part1" else 3
    x = images(channels)
    model.train()  # must be explained in eval mode and left in train mode
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = [m.running_mean.clone() for m in norms]
    with torch.no_grad():
        expected_scores, expected_classes = class_scores(model.eval()(x), head)
    model.train()
    for method in ATTRIBUTION_METHODS:
        options = FAST.get(method, {})
        first = attribute(model, x, method, head=head, batch_size=2, **options)
        again = attribute(model, x, method, head=head, batch_size=2, **options)
        if method == "layer_gradcam":  # conv1 is 'valid' (22x22) in part1, 'same' elsewhere
            raw_shape = (3, 22, 22) if key == "part1" else (3, 28, 28)
        else:
            raw_shape = tuple(x.shape)
        assert first.method == method
        assert first.maps.shape == (3, 28, 28) and first.raw.shape == raw_shape
        assert torch.isfinite(first.raw).all() and torch.isfinite(first.maps).all()
        assert first.maps.abs().sum() > 0, method
        assert torch.equal(first.target, expected_classes)
        torch.testing.assert_close(first.score, expected_scores, msg=method)
        assert torch.equal(first.raw, again.raw) and torch.equal(first.maps, again.maps), method
        if method != "layer_gradcam":  # maps: the signed sum over channels
            torch.testing.assert_close(first.maps, first.raw.sum(1))
    assert model.training
    for module, before in zip(norms, stats, strict=True):
        assert torch.equal(module.running_mean, before)


def test_targets_none_int_and_per_image(models: dict[str, nn.Module]) -> None:
    model, x = models["multihead"], images(3)
    for head, target in (("color", 0), ("color", [1, 0, 1]), ("angle", [11, 0, 5]), ("angle", 7)):
        heat = attribute(model, x, "deeplift", head=head, target=target)
        wanted = torch.as_tensor(target).expand(3)
        assert torch.equal(heat.target, wanted)
        scores, _ = class_scores(model.eval()(x), head, wanted)
        torch.testing.assert_close(heat.score, scores.detach())
    # A sigmoid head: class 0 is explained by -z, so its attribution is class 1's negated.
    zero = integrated_gradients(model, x, head="length", target=0, n_steps=8)
    one = integrated_gradients(model, x, head="length", target=1, n_steps=8)
    torch.testing.assert_close(zero.raw, -one.raw)


def test_batches_do_not_change_the_result(models: dict[str, nn.Module]) -> None:
    model, x = models["part1"], images(1, n=5)
    for method in ("integrated_gradients", "occlusion", "deeplift", "layer_gradcam"):
        options = {"layer": "pool1"} if method == "layer_gradcam" else {}  # default settings
        whole = attribute(model, x, method, batch_size=5, **options)
        split = attribute(model, x, method, batch_size=2, **options)
        torch.testing.assert_close(whole.raw, split.raw, rtol=1e-4, atol=1e-6)


def test_gradient_shap_is_seeded_and_leaves_the_global_rng_alone(
    models: dict[str, nn.Module],
) -> None:
    model, x = models["convnet"], images(3)
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    a = gradient_shap(model, x, seed=5, n_samples=4)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    torch.manual_seed(999)  # the draws depend on the seed alone, not on the global state
    np.random.seed(999)
    b = gradient_shap(model, x, seed=5, n_samples=4)
    c = gradient_shap(model, x, seed=6, n_samples=4)
    assert torch.equal(a.raw, b.raw)
    assert not torch.allclose(a.raw, c.raw)
    via_entry = attribute(model, x, "gradient_shap", seed=6, n_samples=4)
    assert torch.equal(via_entry.raw, c.raw)
    # With a baseline set, the draws pick from it; the default stdevs adds input noise.
    refs = images(3, n=4, seed=9)
    d = gradient_shap(model, x, baselines=refs, seed=5, n_samples=4)
    assert torch.equal(d.raw, gradient_shap(model, x, baselines=refs, seed=5, n_samples=4).raw)
    assert not torch.allclose(d.raw, a.raw)


def captum_cam(
    model: nn.Module, x: torch.Tensor, layer: str, head: str | None, classes: torch.Tensor
) -> torch.Tensor:
    """Captum's LayerGradCam (after ReLU), upsampled as cnnlab upsamples: written out here."""
    module = next(iter(resolve_layers(model, [layer]).values()))
    forward = model if head is None else HeadForward(model, head)
    cam = LayerGradCam(forward, module).attribute(x, target=classes, relu_attributions=True)
    return upsample(cam[:, 0].detach(), (28, 28), layer_geometry(model, module, (x.shape[1:])))


@pytest.mark.parametrize(
    ("key", "layer", "head"),
    [
        ("part1", "conv1", None),
        ("part1", "pool1", None),
        ("multihead", "conv1", "color"),
        ("multihead", "pool1", "angle"),
    ],
)
def test_grad_cam_agrees_with_captum(
    models: dict[str, nn.Module], key: str, layer: str, head: str | None
) -> None:
    model = models[key].eval()
    x = images(1 if key == "part1" else 3, n=4, seed=3)
    for target in (None, 1, [0, 1, 1, 0]):
        ours = grad_cam(model, x, layer, head=head, target=target)
        theirs = captum_cam(model, x, layer, head, ours.target)
        wrapped = captum_layer_gradcam(model, x, layer, head=head, target=target)
        assert (ours.maps > 0).any(), "a map that is zero everywhere would prove nothing"
        scale = float(ours.maps.abs().max())
        torch.testing.assert_close(ours.maps, theirs, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(wrapped.maps, theirs, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(wrapped.raw, ours.raw, rtol=1e-4, atol=1e-5 * scale)
        assert wrapped.layer == ours.layer and torch.equal(wrapped.target, ours.target)


def test_integrated_gradients_is_complete(models: dict[str, nn.Module]) -> None:
    model = models["part1"].eval()
    x = images(1, n=3, seed=4)
    forward = HeadForward(model)
    per_image = images(1, n=3, seed=5) * 0.5  # one baseline per image, split over batches
    for baseline in (None, per_image):
        heat = integrated_gradients(model, x, baseline=baseline, n_steps=32, batch_size=2)
        start = torch.zeros_like(x) if baseline is None else baseline
        with torch.no_grad():
            at_start, _ = class_scores(model(start), None, heat.target)
        change = heat.score - at_start
        total = heat.raw.sum(dim=(1, 2, 3))
        assert (change.abs() > 0.05).all()
        torch.testing.assert_close(total, change, rtol=0.02, atol=2e-3)
        torch.testing.assert_close(heat.maps.sum(dim=(1, 2)), total)
        delta = IntegratedGradients(forward).compute_convergence_delta(
            heat.raw, start, x, target=heat.target
        )
        assert delta.abs().max() < 0.02 * change.abs().min() + 2e-3


@pytest.mark.parametrize(("key", "head"), [("part1", None), ("multihead", "width")])
def test_deeplift_is_complete(models: dict[str, nn.Module], key: str, head: str | None) -> None:
    """DeepLIFT's rescale rule sums exactly to score(x) - score(baseline), through BatchNorm,
    max pooling and every ReLU."""
    model = models[key].eval()
    x = images(1 if key == "part1" else 3, n=3, seed=6)
    heat = deeplift(model, x, head=head)
    with torch.no_grad():
        at_zero, _ = class_scores(model(torch.zeros_like(x)), head, heat.target)
    torch.testing.assert_close(heat.maps.sum(dim=(1, 2)), heat.score - at_zero, atol=1e-4, rtol=0)


class SharedReLU(nn.Module):
    """One ReLU module called twice per forward, or two (``share`` False); optionally in place."""

    def __init__(self, share: bool, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.act = nn.ReLU(inplace=inplace)
        self.act2 = self.act if share else nn.ReLU(inplace=inplace)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 12 * 12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act2(self.conv2(self.act(self.conv1(x)))))
        return self.fc(x.flatten(1))


def test_deeplift_handles_reused_and_inplace_relus() -> None:
    torch.manual_seed(2)
    separate = SharedReLU(share=False)
    x = images(1, n=4, seed=7)
    reference = deeplift(separate, x)
    for share, inplace in ((True, False), (False, True), (True, True)):
        model = SharedReLU(share, inplace)
        model.load_state_dict(separate.state_dict())
        heat = deeplift(model, x, batch_size=3)
        torch.testing.assert_close(heat.raw, reference.raw, rtol=1e-5, atol=1e-6)
        assert model.act is (model.act2 if share else model.act)  # the model is not changed
        assert model.act.inplace == inplace
        assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    with torch.no_grad():
        at_zero, _ = class_scores(separate(torch.zeros_like(x)), None, reference.target)
    torch.testing.assert_close(
        reference.maps.sum((1, 2)), reference.score - at_zero, atol=1e-5, rtol=0
    )


def test_clear_errors(models: dict[str, nn.Module]) -> None:
    part1, multihead = models["part1"], models["multihead"]
    x1, x3 = images(1), images(3)
    with pytest.raises(CnnlabError, match="unknown attribution method 'lime'"):
        attribute(part1, x1, "lime")
    with pytest.raises(CnnlabError, match=r"no head given.*length, width, color, angle"):
        attribute(multihead, x3, "deeplift")
    with pytest.raises(CnnlabError, match="no head 'size'"):
        attribute(multihead, x3, "integrated_gradients", head="size")
    with pytest.raises(CnnlabError, match="one output"):
        attribute(part1, x1, "occlusion", head="length")
    with pytest.raises(CnnlabError, match="class 10 is out of range"):
        attribute(part1, x1, "deeplift", target=10)
    with pytest.raises(
        CnnlabError, match=r"class 2 is out of range: head 'color' has classes 0\.\.1"
    ):
        attribute(multihead, x3, "deeplift", head="color", target=[0, 2, 1])
    with pytest.raises(CnnlabError, match="2 targets for 3 images"):
        attribute(part1, x1, "deeplift", target=[1, 2])
    with pytest.raises(CnnlabError, match="needs a layer"):
        attribute(part1, x1, "layer_gradcam")
    with pytest.raises(CnnlabError, match="takes no layer"):
        attribute(part1, x1, "deeplift", layer="conv1")
    with pytest.raises(CnnlabError, match="matches no layer"):
        attribute(part1, x1, "layer_gradcam", layer="conv9")
    with pytest.raises(CnnlabError, match="no option"):
        attribute(part1, x1, "occlusion", n_steps=3)
    with pytest.raises(CnnlabError, match="does not fit"):
        attribute(part1, x1, "integrated_gradients", baseline=torch.zeros(2, 1, 28, 28))
    with pytest.raises(CnnlabError, match=r"\(N, C, H, W\)"):
        attribute(part1, x1[0], "deeplift")
