"""Deletion and insertion curves, checked on a model whose score is a known linear function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.visualize.attribution import attribute, integrated_gradients
from cnnlab.visualize.faithfulness import (
    class_probability,
    faithfulness_curves,
    pixel_order,
    random_curves,
    random_maps,
    summarize,
)

N, C, H, W = 4, 2, 8, 8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def linear_model(units: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor, float]:
    """logits = [0, w·x + b] (``units`` 2) or [w·x + b] (``units`` 1, a sigmoid head)."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(C * H * W, generator=generator) * 0.15 + 0.02
    bias = -1.0
    layer = nn.Linear(C * H * W, units)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[-1] = w
        layer.bias.zero_()
        layer.bias[-1] = bias
    return nn.Sequential(nn.Flatten(), layer), w.view(C, H, W), bias


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.rand(N, C, H, W, generator=torch.Generator().manual_seed(seed)) + 0.5


def expected_curve(
    contribution: torch.Tensor, order: torch.Tensor, bias: float, counts: torch.Tensor, sign: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion probabilities worked out one image and one step at a time."""
    deletion, insertion = [], []
    for k in counts.tolist():
        top = order[:k]
        removed = contribution.flatten()[top].sum()
        total = contribution.sum()
        deletion.append(torch.sigmoid(sign * (total - removed + bias)))
        insertion.append(torch.sigmoid(sign * (removed + bias)))
    return torch.stack(deletion), torch.stack(insertion)


@pytest.mark.parametrize("units", [2, 1])
def test_true_order_beats_random_and_reversed(units: int) -> None:
    model, w, bias = linear_model(units)
    x = inputs()
    contribution = (w * x).sum(dim=1)  # (N, H, W): each pixel's share of the class-1 logit
    # Explain class 1 of the softmax model, class 0 (score -z) of the sigmoid one.
    target, sign = (1, 1) if units == 2 else (0, -1)
    true = faithfulness_curves(model, x, sign * contribution, target=target)
    reverse = faithfulness_curves(model, x, -sign * contribution, target=target)
    random = random_curves(model, x, target=target, seed=3)

    assert true.fractions[0] == 0 and true.fractions[-1] == 1
    assert (true.fractions.diff() > 0).all() and true.fractions.shape == (17,)
    # Removing the largest contributions first is the best any order can do, step by step.
    for worse in (random, reverse):
        assert (true.deletion <= worse.deletion + 1e-6).all()
        assert (true.insertion >= worse.insertion - 1e-6).all()
    assert (true.deletion_area < random.deletion_area).all()
    assert (random.deletion_area < reverse.deletion_area).all()
    assert (true.insertion_area > random.insertion_area).all()
    assert (random.insertion_area > reverse.insertion_area).all()
    for curves in (true, reverse, random):
        for area in (curves.deletion_area, curves.insertion_area):
            assert ((area >= 0) & (area <= 1)).all()
    gains = summarize(true, random)
    assert gains["deletion_gain"] > 0 and gains["insertion_gain"] > 0

    counts = torch.round(true.fractions.double() * H * W).long()
    for i in range(N):
        order = (sign * contribution[i]).flatten().argsort(descending=True, stable=True)
        deletion, insertion = expected_curve(contribution[i], order, bias, counts, sign)
        torch.testing.assert_close(true.deletion[i], deletion, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(true.insertion[i], insertion, rtol=1e-5, atol=1e-6)


def test_curves_start_and_end_at_the_right_values() -> None:
    model, _, _ = linear_model(2, seed=4)
    x = inputs(seed=5)
    baseline = torch.full((C, 1, 1), 0.25)
    curves = faithfulness_curves(model, x, random_maps((N, H, W), 1), baseline=baseline, steps=5)
    with torch.no_grad():
        original = model(x).softmax(1)
        empty = model(baseline.expand_as(x)).softmax(1)
    classes = original.argmax(1)
    assert torch.equal(curves.target, classes)
    at = torch.arange(N)
    torch.testing.assert_close(curves.deletion[:, 0], original[at, classes])
    torch.testing.assert_close(curves.insertion[:, -1], original[at, classes])
    torch.testing.assert_close(curves.deletion[:, -1], empty[at, classes])
    torch.testing.assert_close(curves.insertion[:, 0], empty[at, classes])
    assert curves.deletion_kept[:, 0].all() and curves.insertion_kept[:, -1].all()
    assert torch.equal(curves.deletion_kept[:, -1], empty.argmax(1) == classes)
    assert curves.deletion.shape == curves.insertion_kept.shape == (N, 6)


def test_integrated_gradients_of_a_linear_model_is_the_true_order() -> None:
    model, w, _ = linear_model(2, seed=6)
    x = inputs(seed=7)
    heat = integrated_gradients(model, x, target=1, n_steps=8)
    torch.testing.assert_close(heat.maps, (w * x).sum(1), rtol=1e-4, atol=1e-6)
    from_heat = faithfulness_curves(model, x, heat)  # the heatmap's classes are the target
    truth = faithfulness_curves(model, x, (w * x).sum(1), target=1)
    torch.testing.assert_close(from_heat.deletion, truth.deletion)
    assert torch.equal(from_heat.target, torch.ones(N, dtype=torch.long))


def test_ties_are_broken_in_row_order() -> None:
    maps = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]]])
    assert pixel_order(maps).tolist() == [[0, 2, 1, 3], [0, 1, 2, 3]]
    model, _, _ = linear_model(2)
    x = inputs()
    flat = faithfulness_curves(model, x, torch.zeros(N, H, W))
    falling = -torch.arange(H * W, dtype=torch.float32).view(1, H, W).expand(N, H, W)
    row_major = faithfulness_curves(model, x, falling)
    assert torch.equal(flat.deletion, row_major.deletion)
    assert torch.equal(flat.insertion, row_major.insertion)


def test_batches_are_shared_and_do_not_change_the_result() -> None:
    model, _, _ = linear_model(2)
    x = inputs()
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    maps = random_maps((N, H, W), 2)
    whole = faithfulness_curves(model, x, maps, steps=16, batch_size=1000)
    assert sizes == [N, 2 * N * 17]  # the classes, then every perturbed copy in one pass
    sizes.clear()
    split = faithfulness_curves(model, x, maps, steps=16, batch_size=7)
    handle.remove()
    assert sizes[0] == N and max(sizes[1:]) == 14 and sum(sizes[1:]) == 2 * N * 17
    for name in ("deletion", "insertion"):
        torch.testing.assert_close(getattr(whole, name), getattr(split, name))
        assert torch.equal(getattr(whole, f"{name}_kept"), getattr(split, f"{name}_kept"))


def test_random_order_is_seeded_and_leaves_the_global_rng_alone() -> None:
    model, _, _ = linear_model(2)
    x = inputs()
    state = torch.get_rng_state()
    a = random_curves(model, x, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.deletion, random_curves(model, x, seed=1).deletion)
    assert not torch.equal(a.deletion, random_curves(model, x, seed=2).deletion)


def test_heads_of_a_multihead_model() -> None:
    torch.manual_seed(0)
    model = create_model("multihead", 3, 96, channels=(8,), shared=(32,), head_hidden=16)
    x = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    for head in ("color", "angle"):
        heat = attribute(model, x, "deeplift", head=head)
        curves = faithfulness_curves(model, x, heat, head=head, steps=4)
        with torch.no_grad():
            prob, kept = class_probability(model.eval()(x), head, heat.target)
        torch.testing.assert_close(curves.deletion[:, 0], prob)
        assert kept.all() and curves.deletion_kept[:, 0].all()
        assert ((curves.deletion >= 0) & (curves.deletion <= 1)).all()
    with torch.no_grad():
        z = model(x)["color"][:, 0]
    prob, _ = class_probability(model(x), "color", torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(prob, torch.sigmoid(-z).detach())


def test_clear_errors() -> None:
    model, _, _ = linear_model(2)
    x = inputs()
    with pytest.raises(CnnlabError, match=r"maps must be \(4, 8, 8\)"):
        faithfulness_curves(model, x, torch.zeros(N, H + 1, W))
    with pytest.raises(CnnlabError, match="3 targets for 4 images"):
        faithfulness_curves(model, x, torch.zeros(N, H, W), target=[0, 1, 1])
    with pytest.raises(CnnlabError, match="out of range"):
        faithfulness_curves(model, x, torch.zeros(N, H, W), target=2)
    with pytest.raises(CnnlabError, match="does not fit"):
        faithfulness_curves(model, x, torch.zeros(N, H, W), baseline=torch.zeros(3, 1, 1))
    with pytest.raises(CnnlabError, match="one output"):
        faithfulness_curves(model, x, torch.zeros(N, H, W), head="color")
