"""The registry of explanation methods (one description each, read everywhere methods are
listed) and Grad-CAM++, added through it alone and checked against its formula by hand."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.report.inside_words import METHOD_NAMES
from cnnlab.visualize import attribute, explain, grad_cam
from cnnlab.visualize.attribution import ATTRIBUTION_METHODS
from cnnlab.visualize.cam import METHODS
from cnnlab.visualize.geometry import layer_geometry, upsample
from cnnlab.visualize.methods import REGISTRY, Method, drawn, lookup, pictures, register, scored


def test_every_method_is_described_once_and_resolves() -> None:
    for name, method in REGISTRY.items():
        assert method.name == name and re.fullmatch(r"[a-z][a-z_]*", name), name
        assert callable(method.function), name
        assert METHOD_NAMES[name] == method.title
    assert set(METHODS) | set(ATTRIBUTION_METHODS) == set(REGISTRY)
    assert not set(METHODS) & set(ATTRIBUTION_METHODS)
    assert "gradcam_pp" in drawn() and "gradcam_pp" in scored()
    assert "layer_gradcam" not in scored()  # the same map as Grad-CAM: not scored twice
    with pytest.raises(CnnlabError, match="already registered"):
        register(Method("gradcam", "again", layer=True, scored=False, compute="x:y"))
    with pytest.raises(CnnlabError, match="unknown attribution method 'lime'; choose from"):
        lookup("lime")


def test_pictures_are_in_page_order_with_their_titles() -> None:
    drawn_pictures = pictures(REGISTRY.values())
    assert [p.name for p in drawn_pictures] == [
        "gradcam", "gradcam_pp", "guided_gradcam", "saliency"
    ]  # fmt: skip
    titles = {p.name: (p.title, p.heading) for p in drawn_pictures}
    assert titles["saliency"] == (
        "saliency and guided backprop",
        "Saliency and guided backpropagation",
    )
    assert titles["gradcam_pp"] == ("Grad-CAM++", "Grad-CAM++")
    assert [m.panel("conv1") for m in REGISTRY.values() if m.picture == "guided_gradcam"] == [
        "Guided G-CAM conv1"
    ]


def test_the_registry_loads_without_torch() -> None:
    code = (
        "import sys; import cnnlab.visualize.methods, cnnlab.report.inside_view, cnnlab.cli; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_choices_come_from_the_registry(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["visualize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in REGISTRY) and "Grad-CAM++" in text
    assert main(["visualize", "nowhere", "--method", "lime"]) == 2
    assert "invalid choice: 'lime'" in capsys.readouterr().err


# -- Grad-CAM++ against its formula --------------------------------------------------------------


def toy_net() -> nn.Sequential:
    """Two conv stages and a linear head: the gradients at act1 vary in space."""
    torch.manual_seed(3)
    layers = OrderedDict(
        conv1=nn.Conv2d(1, 2, 3),
        act1=nn.ReLU(),
        conv2=nn.Conv2d(2, 3, 3),
        act2=nn.ReLU(),
        flat=nn.Flatten(),
        fc=nn.Linear(3 * 4 * 4, 3),
    )
    return nn.Sequential(layers).eval()


def by_hand(net: nn.Sequential, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ at act1 from its formula: g = dS/dA by autograd, then
    alpha = g^2 / (2 g^2 + sum_ab A_ab g^3), w = sum_ij alpha relu(g), map relu(sum_k w_k A_k)."""
    activation = net[:2](x).detach().requires_grad_(True)
    score = net[2:](activation).gather(1, classes[:, None])[:, 0]
    (g,) = torch.autograd.grad(score.sum(), [activation])
    total = activation.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * g**2 + total * g**3
    # the formula is well conditioned here: no denominator near 0 where g is not 0
    assert (denominator.abs() > 1e-2 * g**2)[g != 0].all()
    alpha = torch.where(g != 0, g**2 / torch.where(g != 0, denominator, 1.0), 0.0)
    weights = (alpha * g.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    return (weights * activation).sum(dim=1).clamp(min=0).detach()


def test_gradcam_pp_follows_its_formula() -> None:
    net = toy_net()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    classes = torch.tensor([0, 2, 1, 2])
    expected = by_hand(net, x, classes)
    heat = attribute(net, x, "gradcam_pp", layer="act1", target=classes)
    assert heat.method == "gradcam_pp" and heat.layer == "act1" and heat.raw.shape == (4, 6, 6)
    assert float(expected.amax()) > 0
    torch.testing.assert_close(heat.raw, expected)
    geometry = layer_geometry(net, net[1], (1, 8, 8))
    torch.testing.assert_close(
        heat.maps, upsample(expected, (8, 8), geometry), rtol=1e-4, atol=1e-6
    )
    # one pass with the other gradient methods gives the same map; Grad-CAM's differs
    both = explain(net, x, ["act1"], methods=("gradcam", "gradcam_pp"), target=classes)
    torch.testing.assert_close(both[("gradcam_pp", "act1")].raw, heat.raw)
    plain = grad_cam(net, x, "act1", target=classes).raw
    assert not torch.allclose(plain / plain.amax(), expected / expected.amax(), atol=1e-2)


def test_the_closed_form_is_the_papers_alpha_for_an_exponential_score() -> None:
    """alpha = Y'' / (2 Y'' + sum A Y''') and w = sum alpha relu(Y') with Y = exp(S), from
    autograd's 2nd and 3rd derivatives, give exp(S) times the closed form's map."""
    net = toy_net()
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    activation = net[:2](x).detach().requires_grad_(True)
    score = net[2:](activation)[0, 1]
    y = torch.exp(score)
    (first,) = torch.autograd.grad(y, [activation], create_graph=True)
    second, third = torch.zeros_like(activation), torch.zeros_like(activation)
    for i in range(activation.numel()):
        (row,) = torch.autograd.grad(first.flatten()[i], [activation], create_graph=True)
        second.view(-1)[i] = row.flatten()[i].detach()
        (row3,) = torch.autograd.grad(row.flatten()[i], [activation], retain_graph=True)
        third.view(-1)[i] = row3.flatten()[i]
    total = activation.detach().sum(dim=(2, 3), keepdim=True)
    alpha = torch.where(second != 0, second / (2 * second + total * third), 0.0)
    weights = (alpha * first.detach().clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    paper = (weights * activation.detach()).sum(dim=1).clamp(min=0)
    heat = attribute(net, x, "gradcam_pp", layer="act1", target=1)
    assert float(paper.amax()) > 0
    torch.testing.assert_close(heat.raw * torch.exp(score.detach()), paper, rtol=1e-4, atol=1e-7)
