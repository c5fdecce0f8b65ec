"""Augmentation: the config's form, labels that stay true on Lines (checked against the drawn
geometry), refusals, determinism, exact resume with mixup, every operation on every shape."""

from __future__ import annotations

import dataclasses
import math
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.data.factors import LabelRules
from cnnlab.data.lines import generate_lines, lines_config
from cnnlab.errors import CnnlabError
from cnnlab.training import train
from cnnlab.training.augment import OPERATIONS, SETS, Augmenter, check_augment, expand
from cnnlab.training.config import load_config
from cnnlab.training.engine import Engine


@pytest.fixture(scope="module")
def lines() -> ImageDataset:
    return generate_lines(lines_config(per_class=4, seed=3)).to_dataset()


def augmenter(spec, dataset: ImageDataset) -> Augmenter:
    return Augmenter(expand(check_augment(spec)), dataset, torch.device("cpu"))


def run_on_all(aug: Augmenter, dataset: ImageDataset, seed: int = 0):
    index = torch.arange(len(dataset.train))
    targets = {"label": dataset.train.labels, **dataset.train.factors}
    generator = torch.Generator().manual_seed(seed)
    return aug(index, dataset.train.images, targets, generator)


def orientation(images: torch.Tensor) -> torch.Tensor:
    """Each picture's line angle in degrees, counter-clockwise from +x as seen on screen, in
    [0, 180): the principal axis of its brightness (second moments)."""
    weight = images.float().sum(dim=1)  # (N, H, W)
    _, h, w = weight.shape
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    total = weight.sum(dim=(1, 2))
    mx = (weight * xs).sum(dim=(1, 2)) / total
    my = (weight * ys).sum(dim=(1, 2)) / total
    dx, dy = xs - mx[:, None, None], -(ys - my[:, None, None])  # y up, as seen on screen
    cxx = (weight * dx * dx).sum(dim=(1, 2))
    cyy = (weight * dy * dy).sum(dim=(1, 2))
    cxy = (weight * dx * dy).sum(dim=(1, 2))
    return torch.rad2deg(0.5 * torch.atan2(2 * cxy, cxx - cyy)) % 180


def angle_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a - b).abs() % 180
    return torch.minimum(d, 180 - d)


# -- the config -----------------------------------------------------------------------------------


def test_sets_and_operations_are_accepted_in_every_form() -> None:
    assert check_augment("standard") == "standard"
    spec = check_augment(["light", "mixup", {"noise": {"std": 0.05}}, {"jpeg": {"quality": 80}}])
    assert spec[2] == {"noise": {"std": 0.05}} and spec[3] == {"jpeg": {"quality": [80, 80]}}
    ops = expand(spec)
    assert [op.name for op in ops] == [*SETS["light"], "mixup", "noise", "jpeg"]
    assert ops[0].from_set == "light" and ops[2].from_set is None
    assert ops[3].params == {**OPERATIONS["noise"], "std": 0.05}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("flips", r"unknown augmentation 'flips'; sets: none, light"),
        ([{"noise": {"sigma": 1}}], r"noise has no parameter 'sigma'; parameters: std, p"),
        ([{"hflip": {"p": 1.5}}], r"train.augment\[0\].hflip.p must be a number in 0.0..1.0"),
        ([{"jpeg": {"quality": [90, 20]}}], r"low end exceeds its high end"),
        ([{"randaugment": {"n": 2.5}}], r"must be a whole number in 1..10"),
        ([{"light": {}}], r"set 'light' takes no parameters"),
        ([["hflip"]], r"must be an operation or set name"),
        (3, r"train.augment must be a set name or a list"),
    ],
)
def test_bad_augment_specs_are_one_line_naming_the_key(spec, message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        check_augment(spec)


def test_the_config_validates_augment_where_it_enters() -> None:
    config = load_config("part2-mnist", ["train.augment=[standard, {mixup: {alpha: 0.4}}]"])
    assert config.train.augment == ["standard", {"mixup": {"alpha": 0.4}}]
    with pytest.raises(CnnlabError, match=r"--set.*|train.augment\[0\]: unknown augmentation"):
        load_config("part2-mnist", ["train.augment=[warp]"])


# -- labels that stay true ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hflip", "vflip", "rotate90"])
def test_geometric_labels_follow_the_drawn_line(lines: ImageDataset, name: str) -> None:
    """Every augmented training image of Lines: its new angle label is the angle of the line
    as drawn (measured from the pixels), and its class is the class of its new factors."""
    aug = augmenter([{name: {"p": 1.0}}], lines)
    images, targets, mix = run_on_all(aug, lines)
    assert mix is None
    levels = torch.tensor(lines.factor_levels["angle"], dtype=torch.float32)
    long = lines.train.factors["length"] == lines.factor_levels["length"].index(15)
    measured = orientation(images)[long]
    labelled = levels[targets["angle"]][long]
    assert angle_gap(measured, labelled).max() < 4.0  # drawn lines: within a few degrees
    before = levels[lines.train.factors["angle"]][long]
    moved = angle_gap(before, labelled) > 1
    assert moved.float().mean() > 0.5  # most lines did change angle (0 and 90 stay for flips)
    class_of = {
        tuple(int(lines.train.factors[f][i]) for f in lines.factor_levels): int(
            lines.train.labels[i]
        )
        for i in range(len(lines.train))
    }
    for i in torch.nonzero(long).flatten()[:50].tolist():
        key = tuple(int(targets[f][i]) for f in lines.factor_levels)
        assert int(targets["label"][i]) == class_of[key]
    for f in ("length", "width", "color"):
        assert torch.equal(targets[f], lines.train.factors[f])


def test_a_flip_into_a_held_out_combination_is_not_made(lines: ImageDataset) -> None:
    """Mirroring must not manufacture training pictures of a combination kept out of
    training: those images stay as they were."""
    angle = lines.factor_levels["angle"]
    held = lines.train.factors["angle"] == angle.index(150)  # 30 mirrors to 150
    train = lines.train.subset(~held)
    dataset = dataclasses.replace(lines, train=train)
    aug = augmenter([{"hflip": {"p": 1.0}}], dataset)
    images, targets, _ = run_on_all(aug, dataset)
    thirty = train.factors["angle"] == angle.index(30)
    assert thirty.any()
    assert torch.equal(targets["angle"][thirty], train.factors["angle"][thirty])
    assert torch.equal((images[thirty] * 255).round().to(torch.uint8), train.images[thirty])
    assert not (targets["angle"] == angle.index(150)).any()


@pytest.mark.parametrize(
    ("spec", "factor"),
    [
        (["crop"], "length"),
        (["erasing"], "length"),
        ([{"affine": {"degrees": 10, "translate": 0, "scale": 1}}], "angle"),
        ([{"color": {"hue": 0.1}}], "color"),
        (["cutmix"], "length"),
        (["trivialaugment"], "angle"),
    ],
)
def test_an_operation_that_would_falsify_a_factor_is_refused_naming_it(
    lines: ImageDataset, spec, factor: str
) -> None:
    with pytest.raises(CnnlabError, match=rf"train.augment: .* factors? .*'{factor}'"):
        augmenter(spec, lines)


def test_a_named_set_leaves_unsafe_operations_out_and_says_so(lines: ImageDataset) -> None:
    aug = augmenter("standard", lines)
    assert [op.name for op in aug.ops] == ["hflip"]
    assert len(aug.notes) == 2 and all("augment standard:" in n for n in aug.notes)
    assert "crop would change factors 'length', 'width' (it can change" in aug.notes[0]


def test_digits_refuse_mirrors_and_turns(lines: ImageDataset) -> None:
    digits = dataclasses.replace(lines, name="mnist", factor_levels={}, upright=True)
    with pytest.raises(CnnlabError, match=r"hflip: mnist's classes change meaning"):
        augmenter(["hflip"], digits)
    assert [op.name for op in augmenter("standard", digits).ops] == ["crop", "erasing"]


def test_mirrors_kept_on_plain_data_come_with_a_note_naming_data_upright(
    lines: ImageDataset,
) -> None:
    plain = dataclasses.replace(lines, name="toy", factor_levels={})
    aug = augmenter("light", plain)
    assert [op.name for op in aug.ops] == ["crop", "hflip"]
    assert len(aug.notes) == 1 and "light: keeps hflip (mirrors" in aug.notes[0]
    assert "data.upright=true" in aug.notes[0]
    assert augmenter(["hflip"], plain).notes == []  # asked for by name: no reminder
    upright = dataclasses.replace(plain, upright=True)
    assert [op.name for op in augmenter("light", upright).ops] == ["crop"]


def test_a_factor_cnnlab_does_not_know_refuses_geometry_but_not_photometry() -> None:
    split = Split(
        torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
        torch.tensor([0, 1, 0, 1]),
        {"shape": torch.tensor([0, 1, 0, 1])},
    )
    data = ImageDataset("toy", split, split, ("a", "b"), {"shape": ("round", "square")})
    with pytest.raises(
        CnnlabError, match=r"hflip would change factor .shape. \(cnnlab does not know"
    ):
        augmenter(["hflip"], data)
    assert augmenter(["noise", "blur", "mixup"], data).active


def test_levels_that_do_not_mirror_onto_levels_are_refused() -> None:
    data = generate_lines(lines_config(per_class=4, angle_step=25)).to_dataset()  # 25 -> 155
    with pytest.raises(CnnlabError, match=r"factor 'angle': level 25 would become 155"):
        augmenter(["hflip"], data)


def test_label_rules_refuse_mapping_when_the_class_is_not_set_by_the_factors() -> None:
    split = Split(
        torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
        torch.tensor([0, 1, 0, 1]),
        {"angle": torch.tensor([0, 0, 1, 1])},
    )
    data = ImageDataset("toy", split, split, ("a", "b"), {"angle": (0, 90)})
    assert "the class label is not set by the factors" in LabelRules(data).refusal(
        "hflip", "mirror"
    )


# -- every operation, every shape -----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (3, 12, 20)])
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_operation_keeps_shape_range_and_is_seeded(name: str, shape) -> None:
    c, h, w = shape
    gen = torch.Generator().manual_seed(1)
    split = Split(
        torch.randint(0, 256, (16, c, h, w), dtype=torch.uint8, generator=gen), torch.arange(16) % 4
    )
    data = ImageDataset("toy", split, split, ("a", "b", "c", "d"))
    if name == "rotate90" and h != w:
        with pytest.raises(CnnlabError, match="not square"):
            augmenter([name], data)
        return
    share = 1.0 if name in ("mixup", "cutmix") else 0.5  # a batch-level or per-image coin
    aug = augmenter([{name: {"p": share}} if "p" in OPERATIONS[name] else name], data)
    first = run_on_all(aug, data, seed=5)
    again = run_on_all(aug, data, seed=5)
    other = run_on_all(aug, data, seed=6)
    images = first[0]
    assert images.shape == (16, c, h, w) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert torch.equal(images, again[0])
    assert not torch.equal(images, split.images.float() / 255)  # it did something
    assert not torch.equal(images, other[0])  # a different batch, different draws
    if name in ("mixup", "cutmix"):
        perm, share = first[2]
        assert 0.0 <= share <= 1.0 and sorted(perm.tolist()) == list(range(16))


def test_the_global_random_state_is_untouched(lines: ImageDataset) -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    run_on_all(
        augmenter(
            ["trivialaugment", "noise"],
            dataclasses.replace(
                lines, factor_levels={}, train=dataclasses.replace(lines.train, factors={})
            ),
        ),
        lines,
    )
    assert torch.equal(torch.rand(3), expected)


# -- training -------------------------------------------------------------------------------------

TINY = (
    "data.dataset=lines",
    "data.lines={per_class: 12, test_fraction: 0.25}",
    "train.epochs=2",
    "train.batch_size=32",
    "train.augment=[hflip, rotate90, degrade, mixup]",
)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


WITH_EMA = (*TINY, "train.ema=0.9")


def test_training_with_augmentation_resumes_exactly(tmp_path: Path, monkeypatch) -> None:
    """An interrupted run with flips, quarter turns, the degrade set and mixup, resumed,
    equals the uninterrupted one bit for bit: every batch's draws are fixed by (seed, epoch,
    batch) alone. The weights' moving average (train.ema) resumes with them."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    calls = {"augment": 0, "step": 0}
    original_call, original_step = Augmenter.__call__, Engine._step

    def counted(self, *args):
        calls["augment"] += 1
        return original_call(self, *args)

    monkeypatch.setattr(Augmenter, "__call__", counted)
    train("part1-lines", out=whole, overrides=WITH_EMA, quiet=True)
    assert calls["augment"] == 1 + 2 * 27  # the grid of what the net saw, then every step

    def step(self, index, epoch, batch):
        calls["step"] += 1
        result = original_step(self, index, epoch, batch)
        if calls["step"] == 30:  # epoch 2, batch 3
            signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(Engine, "_step", step)
    with pytest.raises(CnnlabError, match="interrupted in epoch 2"):
        train("part1-lines", out=cut, overrides=WITH_EMA, quiet=True)
    monkeypatch.undo()
    train(None, resume=cut, quiet=True)
    wa, wc = weights(whole), weights(cut)
    assert wa.keys() == wc.keys() and all(torch.equal(wa[k], wc[k]) for k in wa)


def test_a_multihead_net_trains_with_mixup_and_flips(tmp_path: Path) -> None:
    out = tmp_path / "mh"
    run = train(
        "multihead-lines",
        out=out,
        overrides=(*TINY[:3], "train.augment=[hflip, mixup]"),
        quiet=True,
    )
    assert len(run.history) == 2 and math.isfinite(run.history[-1]["train_loss"])
    assert 0.0 <= run.history[-1]["train_acc"] <= 1.0


def test_an_explicit_label_changing_operation_stops_the_run_before_its_folder(
    tmp_path: Path,
) -> None:
    out = tmp_path / "refused"
    refused = r"train.augment: crop would change factors 'length', 'width'"
    with pytest.raises(CnnlabError, match=refused):
        train("part1-lines", out=out, overrides=(*TINY[:3], "train.augment=[crop]"), quiet=True)
    assert not out.exists()


def test_the_batched_blur_matches_kornia_image_by_image() -> None:
    from kornia.filters import gaussian_blur2d

    from cnnlab.training.augment import gaussian_blur

    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 12, 10, generator=g)
    sigma = torch.tensor([0.1, 0.3, 0.5, 0.8, 1.2, 2.0])
    ours = gaussian_blur(images, sigma, 9)
    for i in range(6):
        theirs = gaussian_blur2d(images[i : i + 1], (9, 9), sigma[i].repeat(1, 2))
        assert torch.allclose(ours[i : i + 1], theirs, atol=1e-5), f"sigma {float(sigma[i])}"


def test_the_batched_subpixel_shift_matches_kornia() -> None:
    from kornia.geometry.transform import translate

    from cnnlab.training.augment import subpixel_shift

    g = torch.Generator().manual_seed(1)
    images = torch.rand(5, 3, 11, 9, generator=g)
    shift = torch.tensor([[0.3, -0.2], [-0.5, 0.5], [0.0, 0.0], [1.7, -0.9], [-2.0, 1.25]])
    theirs = translate(images, shift, align_corners=False)
    assert torch.allclose(subpixel_shift(images, shift), theirs, atol=1e-5)
