"""Fine-tuning: ``model.init_from`` (partial loading by name and shape, its table, its record,
its refusals), ``train.freeze``, ``train.trunk_lr_factor``, and their exact resume."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.registry import build_model
from cnnlab.runfolder import RunFolder
from cnnlab.training import load_config, load_run, train
from cnnlab.training.checkpoint import save_weights
from cnnlab.training.config import ModelConfig
from cnnlab.training.engine import Engine
from cnnlab.training.finetune import (
    freeze,
    head_parameters,
    hold_frozen_norms,
    load_matching,
    prepare,
    read_source,
)
from cnnlab.training.optim import build_optimizer, build_scheduler

SMALL = (
    "data.lines={per_class: 6, test_fraction: 0.25}",
    "model.channels=[4, 8]",
    "model.dense=[16]",
    "model.dense_dropout=0",
    "train.epochs=1",
    "train.batch_size=32",
    "train.precision=fp32",
)
FEWER_CLASSES = "data.lines={per_class: 6, test_fraction: 0.25, angle_step: 45}"
"""32 classes (4 angles) instead of 96: the same trunk, another head."""
SIZE = (28, 28)


def small_model(classes: int = 96, **options: object) -> torch.nn.Module:
    defaults = {"channels": [4, 8], "convs_per_stage": 1, "dense": [16]}
    return create_model("convnet", 3, classes, SIZE, **{**defaults, **options})


def tune(tmp_path: Path, name: str, *extra: str, quiet: bool = True) -> object:
    return train("part2-lines", out=tmp_path / name, overrides=(*SMALL, *extra), quiet=quiet)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained Lines run (96 classes) to start from."""
    base = tmp_path_factory.mktemp("source")
    train("part2-lines", out=base / "src", overrides=SMALL, quiet=True)
    return base / "src"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(RunFolder(folder).weights))


def test_a_run_folder_loads_the_trunk_and_leaves_a_new_head(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    tune(
        tmp_path,
        "ft",
        FEWER_CLASSES,
        f"model.init_from={source}",
        "train.trunk_lr_factor=0",  # the trunk does not move: it is what was loaded
        quiet=False,
    )
    said = capsys.readouterr().out
    assert f"Initialised from {source.resolve()} (model.init_from): 14 of 16 tensors" in said
    rows = [line.split() for line in said.splitlines() if line.startswith("  ")]
    assert [r[:2] for r in rows] == [
        ["loaded", "features"],
        ["loaded", "classifier.fc1"],
        ["new", "classifier.fc2"],
    ]
    assert "shape differs: classifier.fc2.weight file (96, 16), model (32, 16)" in said
    assert "every layer but the head (classifier.fc2)" in said
    before, after = weights(source), weights(tmp_path / "ft")
    params = dict(small_model(32).named_parameters())
    for name in params:
        if name.startswith("classifier.fc2"):
            assert after[name].shape[0] == 32 and before[name].shape[0] == 96
        else:
            assert torch.equal(after[name], before[name]), name
    record = json.loads(RunFolder(tmp_path / "ft").info.read_text())["model"]["init_from"]
    assert record["path"] == str(source.resolve())
    assert record["sha256"] == hashlib.sha256(RunFolder(source).weights.read_bytes()).hexdigest()
    assert (
        record["config_sha256"] == hashlib.sha256(RunFolder(source).config.read_bytes()).hexdigest()
    )
    assert record["new"] == ["classifier.fc2.weight", "classifier.fc2.bias"]
    assert load_run(tmp_path / "ft").model.classifier.fc2.out_features == 32  # init_from unused


def test_a_safetensors_file_loads_by_name_and_shape(tmp_path: Path) -> None:
    torch.manual_seed(1)
    saved = small_model()
    path = tmp_path / "trunk.safetensors"
    save_weights(path, saved)
    torch.manual_seed(2)
    model = small_model()
    loaded = load_matching(model, read_source(str(path)))
    assert loaded.new == () and len(loaded.loaded) == 16
    assert all(
        torch.equal(a, b)
        for a, b in zip(saved.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert [line.split()[:2] for line in loaded.table()[1:]] == [["loaded", "(all)"]]
    assert loaded.record()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "config_sha256" not in loaded.record()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: p / "absent",
            r"model.init_from .*absent: no such run folder or \.safetensors file",
        ),
        (lambda p: _text(p / "w.safetensors"), r"w\.safetensors: not a safetensors file"),
        (lambda p: _pickle(p / "w.pt"), r"w\.pt: not a safetensors file .* never from pickles"),
        (lambda p: _folder(p / "empty"), r"model.init_from: .*empty: not a run folder"),
    ],
    ids=["missing", "text", "pickle", "not-a-run-folder"],
)
def test_what_is_not_safetensors_weights_is_refused_before_the_data(
    tmp_path: Path, make, message: str
) -> None:
    with pytest.raises(CnnlabError, match=message):
        tune(tmp_path, "ft", f"model.init_from={make(tmp_path)}")
    assert not (tmp_path / "ft").exists()


def _text(path: Path) -> Path:
    path.write_text("not tensors\n")
    return path


def _pickle(path: Path) -> Path:
    torch.save(small_model().state_dict(), path)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def test_a_run_folder_without_weights_is_refused(source: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    shutil.copytree(source, cut)
    RunFolder(cut).weights.unlink()
    with pytest.raises(
        CnnlabError, match=r"^model.init_from: .*cut: the run has no model\.safetensors"
    ):
        read_source(str(cut))


def test_nothing_matching_is_refused_with_the_names(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}, str(path))
    with pytest.raises(
        CnnlabError,
        match=r"no tensor of the file has the name of a parameter of this model: the model "
        r"expects features\.conv1\.weight, .*; the file has conv\.weight, fc\.bias",
    ):
        load_matching(small_model(), read_source(str(path)))


def test_a_trunk_whose_every_weight_differs_is_refused_and_named(tmp_path: Path) -> None:
    path = tmp_path / "narrow.safetensors"
    save_weights(path, small_model(channels=[6, 8], dense=[24]))  # bn2 (8) would still match
    model = small_model()
    with pytest.raises(
        CnnlabError,
        match=r"the shape of every weight of the trunk differs \(features\.conv1\.weight: file "
        r"\(6, 3, 3, 3\), model \(4, 3, 3, 3\); features\.conv2\.weight: .*; 3 in all\)",
    ):
        load_matching(model, read_source(str(path)), head_parameters(model, 3, SIZE))


def test_freeze_keeps_weights_and_batchnorm_statistics_bit_identical(
    source: Path, tmp_path: Path
) -> None:
    tune(tmp_path, "ft", f"model.init_from={source}", "train.freeze=[features]", "train.epochs=2")
    before, after = weights(source), weights(tmp_path / "ft")
    frozen = [k for k in before if k.startswith("features.")]
    assert "features.bn1.running_mean" in frozen and "features.bn2.num_batches_tracked" in frozen
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["classifier.fc1.weight"], after["classifier.fc1.weight"])


def test_an_unknown_freeze_name_is_refused_with_the_layers() -> None:
    model = small_model()
    with pytest.raises(
        CnnlabError,
        match=r"^train.freeze: 'feature' names no parameter of the model; its top-level layers: "
        r"features, classifier$",
    ):
        freeze(model, ["features.conv1", "feature"])
    assert all(p.requires_grad for p in model.parameters())  # nothing half-frozen
    with pytest.raises(CnnlabError, match="every parameter of the model; nothing would train"):
        freeze(model, ["features", "classifier"])


def test_frozen_batchnorm_stays_in_eval_mode_when_made_anew_as_syncbatchnorm() -> None:
    model = small_model()
    freeze(model, ["features"])
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # new modules, no hooks
    assert hold_frozen_norms(model) == 2
    before = model.features.bn1.running_mean.clone()
    model.train()(torch.rand(4, 3, *SIZE))  # SyncBatchNorm in training mode: GPU only
    assert torch.equal(model.features.bn1.running_mean, before)


def test_trunk_lr_factor_makes_two_groups_and_one_cycle_peaks_at_each() -> None:
    config = load_config("part2-lines", (*SMALL, "train.trunk_lr_factor=0.1"))
    model = small_model()
    prepare(model, config, 3, SIZE)
    optimizer = build_optimizer(model.parameters(), config.train)
    lr = config.train.lr
    assert [g["lr"] for g in optimizer.param_groups] == [lr, lr * 0.1]
    head = {id(p) for p in model.classifier.fc2.parameters()}
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == head
    assert len(optimizer.param_groups[1]["params"]) == len(list(model.parameters())) - 2
    scheduler = build_scheduler(optimizer, config.train, steps_per_epoch=4)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.04 * lr, 0.004 * lr])
    optimizer.step()
    scheduler.step()  # one-cycle's peak: a quarter of the steps in
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([lr, lr * 0.1])
    plain = small_model()
    prepare(plain, load_config("part2-lines", SMALL), 3, SIZE)
    assert len(build_optimizer(plain.parameters(), config.train).param_groups) == 1


def test_every_head_of_a_multihead_model_is_the_head() -> None:
    model = create_model("multihead", 3, 96, SIZE)
    assert {n.rsplit(".", 2)[0] for n in head_parameters(model, 3, SIZE)} == {
        f"head_layers.{h}" for h in ("length", "width", "color", "angle")
    }


def test_init_from_is_no_option_of_the_model() -> None:
    section = {"name": "convnet", "init_from": "runs/x", "channels": [4], "dense": [8]}
    model_config = ModelConfig.from_section(section)
    assert model_config.options == {"channels": [4], "dense": [8]}
    assert model_config.init_from == "runs/x" and model_config.to_dict() == section
    model = build_model(model_config, 1, 3, (8, 8))
    shapes = [tuple(p.shape) for p in model.parameters() if p.dim() > 1]
    assert shapes[0][0] == 4 and (8, shapes[-2][1]) == shapes[-2] and shapes[-1] == (3, 8)


def test_a_resumed_fine_tuning_is_bit_identical_and_not_initialised_again(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "start"
    shutil.copytree(source, start)
    tuning = (
        FEWER_CLASSES,
        f"model.init_from={start}",
        "train.freeze=[features.conv1, features.bn1]",
        "train.trunk_lr_factor=0.5",
        "train.epochs=2",
    )
    whole = tune(tmp_path, "whole", *tuning)
    original, steps = Engine._step, {"n": 0}

    def interrupting(self, *args):
        if steps["n"] == 7:  # 5 steps an epoch: in epoch 2
            signal.raise_signal(signal.SIGINT)
        steps["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(Engine, "_step", interrupting)
    with pytest.raises(CnnlabError, match="interrupted in epoch 2"):
        tune(tmp_path, "cut", *tuning)
    monkeypatch.setattr(Engine, "_step", original)
    shutil.rmtree(start)  # the checkpoint holds the weights: init_from is not read again
    resumed = train(None, resume=tmp_path / "cut", quiet=True)  # type: ignore[arg-type]
    drop = [{k: v for k, v in r.items() if k != "seconds"} for r in whole.history]
    assert drop == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads(RunFolder(tmp_path / "cut").info.read_text())
    assert info["model"]["init_from"]["new"] == ["classifier.fc2.weight", "classifier.fc2.bias"]
