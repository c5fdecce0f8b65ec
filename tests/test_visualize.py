"""Looking inside: activations, filter images, Grad-CAM (checked by hand), heads, hooks, scores."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.training import load_run, train
from cnnlab.training.run import Run, prepare_dataset
from cnnlab.visualize import (
    FilterSettings,
    default_layers,
    energy_share,
    explain,
    format_scores,
    grad_cam,
    layer_activations,
    pointing_game,
    rank_correlation,
    resolve_layers,
    saliency,
    topk_iou,
    visualize_filters,
    visualize_run,
)
from cnnlab.visualize import filters as filters_module
from cnnlab.visualize.geometry import Geometry, layer_geometry, upsample
from cnnlab.visualize.hooks import guided_relus, recording, redirected_relus

TINY = (
    "data.lines={per_class: 10}",
    "data.train_limit=128",
    "data.test_limit=96",
    "train.epochs=1",
    "train.batch_size=64",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors gain nothing from threads; on a busy machine they lose a lot to waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny trained runs: the part1 net and the multi-head net."""
    root = tmp_path_factory.mktemp("vis-runs")
    folders = {}
    for key, preset in (("p1", "part1-lines"), ("mh", "multihead-lines")):
        train(preset, out=root / key, overrides=TINY, quiet=True)
        folders[key] = root / key
    return folders


@pytest.fixture(scope="module")
def p1(runs: dict[str, Path]) -> Run:
    return load_run(runs["p1"])


@pytest.fixture(scope="module")
def part2() -> nn.Module:
    """The part2 architecture (three conv stages), untrained: enough for shapes and Grad-CAM."""
    torch.manual_seed(0)
    return create_model(
        "convnet", 3, 96, (28, 28), channels=(32, 64, 128), convs_per_stage=1, dense=(256,)
    ).eval()


@pytest.fixture(scope="module")
def test_split(p1: Run):
    return prepare_dataset(p1.config).test


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


# -- activations ---------------------------------------------------------------------------------


def test_activation_shapes_per_layer(part2: nn.Module, p1: Run, test_split) -> None:
    x = p1.preprocess(test_split.images[:5])
    acts = layer_activations(p1.model, x)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "conv1": (5, 32, 22, 22),
        "pool1": (5, 32, 11, 11),
    }
    assert default_layers(part2) == ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3"]
    acts = layer_activations(part2, x, ["features.conv2", "pool3", "relu1"])
    assert list(acts) == ["relu1", "conv2", "pool3"]  # model order, short names
    assert acts["conv2"].shape == (5, 64, 14, 14) and acts["pool3"].shape == (5, 128, 3, 3)
    with torch.no_grad():  # features: conv1 bn1 relu1 pool1 conv2 ...
        assert torch.allclose(acts["conv2"], part2.features[:5](x), atol=1e-5)
    with pytest.raises(CnnlabError, match="conv1, pool1"):
        resolve_layers(p1.model, ["conv9"])
    assert hook_count(p1.model) == 0 and hook_count(part2) == 0


# -- filter visualisation ------------------------------------------------------------------------


def test_filters_are_one_batch_and_deterministic(p1: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[tuple[int, ...]]] = []
    real = filters_module.SGD

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, params, **kwargs):
            params = list(params)
            seen.append([tuple(p.shape) for p in params])
            super().__init__(params, **kwargs)

    monkeypatch.setattr(filters_module, "SGD", Recording)
    settings = FilterSettings(steps=6)
    a = visualize_filters(p1.model, "conv1", p1.preprocess, settings=settings)
    b = visualize_filters(p1.model, "conv1", p1.preprocess, settings=settings)
    assert seen == [[(32, 3, 28, 28)]] * 2  # one tensor: one image per filter, model's input
    assert a.images.shape == (32, 3, 28, 28) and a.filters == tuple(range(32))
    assert torch.equal(a.images, b.images) and torch.equal(a.activation, b.activation)
    assert float(a.images.min()) >= 0 and float(a.images.max()) <= 1
    assert a.objective_layer == "relu1"
    other = visualize_filters(
        p1.model, "conv1", p1.preprocess, settings=FilterSettings(steps=6, seed=1)
    )
    assert not torch.equal(a.images, other.images)
    # Fourier parameterisation and regularisers run too; a subset of filters is a smaller batch.
    some = visualize_filters(
        p1.model,
        "conv1",
        p1.preprocess,
        filters=[0, 5],
        settings=FilterSettings(steps=3, fourier=True, tv=0.1, l2=0.1, optimiser="adam"),
    )
    assert some.images.shape == (2, 3, 28, 28)
    # Each image's own filter only (a grouped convolution) computes what the full layer does.
    for layer in ("conv1", "pool1"):
        own, full = (
            visualize_filters(
                p1.model,
                layer,
                p1.preprocess,
                filters=[1, 7, 30],
                settings=FilterSettings(steps=5, own_channel=flag),
            )
            for flag in (True, False)
        )
        assert torch.allclose(own.images, full.images, atol=1e-4), layer
        assert torch.allclose(own.activation, full.activation, atol=1e-4, rtol=1e-4), layer
    assert hook_count(p1.model) == 0


# -- Grad-CAM ------------------------------------------------------------------------------------


def manual_grad_cam(model: nn.Module, x: torch.Tensor, upto: int, score) -> torch.Tensor:
    """Grad-CAM without hooks: run ``features[:upto]``, then the rest, by hand."""
    activation = model.features[:upto](x).detach().requires_grad_(True)
    rest = model.features[upto:](activation)
    out = model.classifier(rest) if hasattr(model, "classifier") else model.shared(rest)
    (grad,) = torch.autograd.grad(score(out).sum(), [activation])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(dim=1)).detach()


def test_grad_cam_equals_independent_computation(part2: nn.Module, p1: Run, test_split) -> None:
    x = p1.preprocess(test_split.images[:12])
    predicted = p1.model(x).argmax(1)
    cam = grad_cam(p1.model, x, "conv1")
    expected = manual_grad_cam(p1.model, x, 1, lambda out: out.gather(1, predicted[:, None]))
    assert torch.allclose(cam.raw, expected, atol=1e-6, rtol=1e-4)
    assert torch.equal(cam.target, predicted)
    assert cam.maps.shape == (12, 28, 28) and float(cam.maps.max()) > 0
    # A layer that is not the last one, a chosen class, and a network with three stages.
    cam = grad_cam(part2, x, "conv2", target=7)
    expected = manual_grad_cam(part2, x, 5, lambda out: out[:, 7])
    assert torch.allclose(cam.raw, expected, atol=1e-6, rtol=1e-4)
    assert cam.raw.shape == (12, 14, 14) and cam.maps.shape == (12, 28, 28)
    # Upsampled along the layer's geometry: a 22x22 'valid' map lands on input pixels 3..24.
    geometry = layer_geometry(p1.model, p1.model.features.conv1, (3, 28, 28))
    assert geometry == Geometry((3.0, 3.0), (1.0, 1.0), (7, 7))
    peak = torch.zeros(1, 22, 22)
    peak[0, 5, 9] = 1
    assert upsample(peak, (28, 28), geometry)[0].argmax() == (5 + 3) * 28 + (9 + 3)
    pool = layer_geometry(part2, part2.features.pool2, (3, 28, 28))
    assert pool == Geometry((1.5, 1.5), (4.0, 4.0), (10, 10))


def test_grad_cam_batched_one_pass(p1: Run, test_split) -> None:
    x = p1.preprocess(test_split.images[:10])
    grad_cam(p1.model, x, "pool1")  # warm the geometry cache
    calls: list[int] = []
    handle = p1.model.classifier.fc2.register_forward_hook(
        lambda m, a, o: calls.append(a[0].shape[0])
    )
    try:
        maps = explain(p1.model, x, ["conv1", "pool1"], methods=("gradcam", "saliency"))
    finally:
        handle.remove()
    assert calls == [10]  # both layers and saliency from one forward (and one backward) pass
    assert set(maps) == {("gradcam", "conv1"), ("gradcam", "pool1"), ("saliency", None)}
    single = torch.cat([grad_cam(p1.model, x[i : i + 1], "pool1").raw for i in range(3)])
    assert torch.allclose(maps[("gradcam", "pool1")].raw[:3], single, atol=1e-6, rtol=1e-4)


def test_grad_cam_for_every_head_without_a_wrapper(runs: dict[str, Path], test_split) -> None:
    mh = load_run(runs["mh"])
    x = mh.preprocess(test_split.images[:6])
    outputs = mh.model(x)
    for head, levels in mh.model.heads.items():
        cam = grad_cam(mh.model, x, "conv1", head=head)
        logits = outputs[head]
        if levels == 2:  # one sigmoid unit: class 1 scores the logit, class 0 minus it
            predicted = (logits[:, 0] > 0).long()
            score = logits[:, 0] * (2 * predicted - 1)
            expected = manual_grad_cam(
                mh.model,
                x,
                1,
                lambda out, h=head, p=predicted: mh.model.head_layers[h](out)[:, 0] * (2 * p - 1),
            )
        else:
            predicted = logits.argmax(1)
            score = logits.gather(1, predicted[:, None])[:, 0]
            expected = manual_grad_cam(
                mh.model,
                x,
                1,
                lambda out, h=head, p=predicted: mh.model.head_layers[h](out).gather(1, p[:, None]),
            )
        assert torch.equal(cam.target, predicted), head
        assert torch.allclose(cam.score, score.detach(), atol=1e-5), head
        assert torch.allclose(cam.raw, expected, atol=1e-6, rtol=1e-4), head
    zero = grad_cam(mh.model, x, "pool1", head="length", target=0)
    assert torch.allclose(zero.score, -outputs["length"][:, 0].detach(), atol=1e-5)
    with pytest.raises(CnnlabError, match="heads length, width, color, angle"):
        grad_cam(mh.model, x, "conv1")
    with pytest.raises(CnnlabError, match="out of range"):
        grad_cam(mh.model, x, "conv1", head="color", target=2)


# -- hooks and memory ----------------------------------------------------------------------------


def small_net() -> nn.Module:
    """A small conv net: the same code path as the study's nets, a thousandth of the work."""
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(features, nn.Flatten(), nn.Linear(8 * 13 * 13, 5)).eval()


def test_many_calls_keep_memory_flat(p1: Run, test_split) -> None:
    model = small_net()
    x = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        grad_cam(model, x, "0.0")
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            grad_cam(model, x, "0.0", target=2)
            assert hook_count(model) == 0
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(gc.get_objects()) - objects < 100
    assert grown < 128 * 1024, f"{grown} bytes kept after 1,000 Grad-CAM calls"
    assert all(p.grad is None for p in model.parameters())
    # The study's net, all methods at once: no hook or gradient left behind either.
    x = p1.preprocess(test_split.images[:2])
    for _ in range(20):
        explain(p1.model, x, ["conv1", "pool1"])
        assert hook_count(p1.model) == 0
    assert all(p.grad is None for p in p1.model.parameters())


def test_hooks_are_removed_when_the_block_raises(p1: Run, test_split) -> None:
    model = p1.model
    modules = resolve_layers(model)
    for context in (lambda: recording(modules), lambda: guided_relus(model)):
        with pytest.raises(RuntimeError, match="inside"), context():
            assert hook_count(model) > 0
            raise RuntimeError("inside")
        assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="inside"), redirected_relus(model):
        raise RuntimeError("inside")
    assert hook_count(model) == 0

    # A failure in the model itself, in the middle of Grad-CAM's pass, leaves none either.
    class Tripwire(nn.Module):
        armed = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.armed:
                raise RuntimeError("tripped")
            return x

    net = small_net()
    wire = Tripwire()
    net[0].append(wire)
    x = torch.randn(2, 3, 28, 28)
    grad_cam(net, x, "0.0")
    wire.armed = True
    net.train()
    with pytest.raises(RuntimeError, match="tripped"):
        explain(net, x, ["0.0", "0.2"])
    assert hook_count(net) == 0
    assert net.training is True  # eval only for the call
    with pytest.raises(RuntimeError):
        explain(model, torch.zeros(2, 3, 30, 30), ["conv1"])
    assert hook_count(model) == 0


# -- scores --------------------------------------------------------------------------------------


def test_scores_are_fractions_and_a_perfect_map_scores_one(test_split) -> None:
    masks = test_split.masks[:40]
    perfect = masks.float()
    assert torch.all(pointing_game(perfect, masks) == 1)
    assert torch.allclose(energy_share(perfect, masks), torch.ones(40))
    assert torch.allclose(topk_iou(perfect, masks), torch.ones(40))
    outside = (~masks).float()
    assert torch.all(pointing_game(outside, masks) == 0)
    assert torch.all(energy_share(outside, masks) == 0)
    flat = torch.zeros(40, 28, 28)
    assert torch.all(pointing_game(flat, masks) == 0) and torch.all(energy_share(flat, masks) == 0)
    noise = torch.rand(40, 28, 28, generator=torch.Generator().manual_seed(0)) - 0.3
    for metric in (pointing_game, energy_share, topk_iou):
        values = metric(noise, masks)
        assert torch.all((values >= 0) & (values <= 1)), metric.__name__
    inside = ~masks[..., -1].any(dim=-1)  # lines clear of the right edge, shifted 1 px right
    shifted = torch.nn.functional.pad(perfect[inside][..., :-1], (1, 0))
    assert torch.all(pointing_game(shifted, masks[inside], tolerance=1) == 1)
    assert not torch.all(pointing_game(shifted, masks[inside], tolerance=0) == 1)
    assert torch.allclose(rank_correlation(noise, noise), torch.ones(40))
    assert torch.allclose(rank_correlation(noise, -noise), -torch.ones(40))
    assert torch.isnan(rank_correlation(noise, flat)).all()


# -- the whole pass ------------------------------------------------------------------------------


def test_visualize_run_writes_pictures_arrays_and_scores(
    runs: dict[str, Path], tmp_path: Path, test_split
) -> None:
    out = tmp_path / "p1"
    summary = visualize_run(
        runs["p1"],
        out,
        score=True,
        score_images=24,
        filter_settings=FilterSettings(steps=4),
    )
    expected = [
        "inputs.npy",
        "activations_conv1.png",
        "activations_conv1.npz",
        "activations_pool1.png",
        "filters_conv1.png",
        "filters_conv1.npz",
        "gradcam.png",
        "gradcam_pp.png",
        "guided_gradcam.png",
        "saliency.png",
        "heatmaps.npz",
        "scores.json",
        "summary.json",
    ]
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "gradcam.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.load(out / "inputs.npy").shape == (8, 3, 28, 28)
    with np.load(out / "heatmaps.npz") as arrays:
        assert arrays["gradcam_conv1_raw"].shape == (8, 22, 22)
        assert arrays["gradcam_pool1_map"].shape == (8, 28, 28)
    assert summary.activations["pool1"]["shape"] == [8, 32, 11, 11]
    assert summary.to_dict() == json.loads((out / "summary.json").read_text())
    scores = json.loads((out / "scores.json").read_text())
    assert scores["images"] == 24 and scores["masks"] is True
    # the random reference; three layer methods (Grad-CAM, Grad-CAM++, Guided Grad-CAM) x two
    # layers, two input methods, four of Captum's
    assert len(scores["rows"]) == 1 + 3 * 2 + 2 + 4
    assert [r["method"] for r in scores["rows"]][:1] == ["random"]
    assert {r["method"] for r in scores["rows"][-4:]} == {
        "integrated_gradients", "occlusion", "deeplift", "gradient_shap"
    }  # fmt: skip
    for row in scores["rows"]:
        for key in ("pointing", "pointing_1px", "energy", "topk_iou", "deletion", "insertion"):
            assert 0 <= row[key] <= 1, (row, key)
        if row["method"] != "random":
            assert -1 <= row["rank_corr_random"] <= 1
    assert scores["faithfulness_images"] == 24 and scores["sanity_images"] == 24
    (agree,) = scores["agreement"]
    assert agree["methods"] == 12 and -1 <= agree["spearman"] <= 1
    header = format_scores(scores["rows"]).splitlines()[0]
    assert "pointing_1px" in header and "deletion" in header and "insertion" in header
    # Same call, same default sample; given images and one head of a multi-head model.
    again = visualize_run(runs["p1"], tmp_path / "again", filters=False)
    assert again.heatmaps["output"]["targets"] == summary.heatmaps["output"]["targets"]
    mh = visualize_run(
        runs["mh"],
        tmp_path / "mh",
        images=test_split.images[:3],
        layers=["pool1"],
        head="angle",
        target_class=4,
        filters=False,
    )
    assert mh.heads == ("angle",) and mh.heatmaps["angle"]["targets"] == [4, 4, 4]
    assert (tmp_path / "mh" / "gradcam_angle.png").is_file()
    with pytest.raises(CnnlabError, match="uint8"):
        visualize_run(runs["p1"], tmp_path / "bad", images=torch.zeros(2, 1, 28, 28))


def test_methods_choose_the_pictures_arrays_and_rows(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "chosen"
    summary = visualize_run(
        runs["p1"],
        out,
        layers=["pool1"],
        filters=False,
        methods=["gradcam_pp", "occlusion"],
        score=True,
        score_images=8,
    )
    assert sorted(p.name for p in out.glob("*.png")) == ["activations_pool1.png", "gradcam_pp.png"]
    with np.load(out / "heatmaps.npz") as arrays:
        assert {"gradcam_pp_pool1_map", "occlusion_map"} <= set(arrays.files)
        assert not any(key.startswith(("gradcam_pool1", "saliency")) for key in arrays.files)
    assert summary.heatmaps["output"]["methods"] == ["gradcam_pp", "occlusion"]
    assert summary.scores is not None
    rows = [(r["method"], r["layer"]) for r in summary.scores["rows"]]
    assert rows == [("random", None), ("gradcam_pp", "pool1"), ("occlusion", None)]


def test_saliency_is_the_input_gradient(p1: Run, test_split) -> None:
    x = p1.preprocess(test_split.images[:4]).requires_grad_(True)
    logits = p1.model(x)
    (grad,) = torch.autograd.grad(logits.max(1).values.sum(), [x])
    result = saliency(p1.model, x.detach())
    assert torch.allclose(result.raw, grad, atol=1e-6)
    assert torch.allclose(result.maps, grad.abs().amax(1), atol=1e-6)


def test_cli_writes_pictures_for_given_images(
    runs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    from cnnlab.cli import main
    from cnnlab.data import LinesConfig, generate_lines

    images = generate_lines(LinesConfig(per_class=2, test_fraction=0.5, seed=4)).arrays["images"]
    np.savez(tmp_path / "x.npz", images=images[:3])
    out = tmp_path / "vis"
    args = ["visualize", str(runs["p1"]), "--images", str(tmp_path / "x.npz")]
    assert main([*args, "--layer", "features.conv1", "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    assert np.load(out / "inputs.npy").shape[0] == 3
    assert (out / "gradcam.png").is_file() and (out / "filters_conv1.png").is_file()
    assert main([*args, "--layer", "features.nope", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("cnnlab: error:")


def test_grad_cam_moves_no_batchnorm_statistics() -> None:
    model = create_model("part1", 1, 10).train()  # BatchNorm in training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grad_cam(model, torch.randn(3, 1, 28, 28), "pool1")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and model.training
