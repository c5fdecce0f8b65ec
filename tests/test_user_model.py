"""A user's own model: by import path in the config, or a built module given to ``train``."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from cnnlab import evaluate_run, load_run, predict, train
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.flops import training_flops_per_image
from cnnlab.models.fusion import inference_model
from cnnlab.models.registry import given_model_name
from cnnlab.training import load_config
from cnnlab.training.run import prepare_dataset
from cnnlab.visualize import visualize_run
from cnnlab.visualize.hooks import default_layers

TINY = (
    "data.dataset=lines",
    "data.lines={per_class: 6, test_fraction: 0.25}",
    "train.epochs=1",
    "train.batch_size=32",
)

MODELS = """
import torch
from torch import nn

from cnnlab import model_factory


class TinyNet(nn.Module):
    def __init__(self, in_channels, num_classes, image_size=(28, 28), width=4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(width * (image_size[0] // 2) * (image_size[1] // 2), num_classes)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


@model_factory
def timm_style(in_chans, n_classes, img_size):
    return TinyNet(in_chans, n_classes, img_size, width=2)


@model_factory
def needs_depth(in_channels, num_classes, depth):
    return TinyNet(in_channels, num_classes)


@model_factory
def not_a_module(in_channels, num_classes):
    return "a string"


@model_factory
def broken(in_channels, num_classes):
    raise RuntimeError("boom")


class LazyNet(nn.Sequential):
    def __init__(self, num_classes):
        super().__init__(nn.LazyConv2d(3, 3), nn.Flatten(), nn.LazyLinear(num_classes))


def unmarked(in_channels, num_classes):
    return TinyNet(in_channels, num_classes)


NOT_CALLABLE = 3
"""


@pytest.fixture
def models_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``mymodels`` (and ``badmodels``, which fails on import) importable from a tmp folder."""
    folder = tmp_path_factory.mktemp("models")
    (folder / "mymodels.py").write_text(MODELS)
    (folder / "badmodels.py").write_text("raise RuntimeError('not today')\n")
    monkeypatch.syspath_prepend(str(folder))
    for name in ("mymodels", "badmodels"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return folder


def recorded_name(run_dir: Path) -> str:
    return yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["name"]


def test_a_model_by_import_path_runs_through_every_verb(models_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = (*TINY, "model={name: 'mymodels:TinyNet', width: 3}")
    run = train("part1-lines", out=run_dir, overrides=overrides, quiet=True)
    assert type(run.model).__name__ == "TinyNet" and run.model.conv.out_channels == 3
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"] == {"name": "mymodels:TinyNet", "width": 3}
    assert json.loads((run_dir / "run.json").read_text())["model"]["name"] == "mymodels:TinyNet"

    loaded = load_run(run_dir)
    assert loaded.model.conv.out_channels == 3
    for key, value in run.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value.cpu())

    metrics = evaluate_run(run_dir)
    assert 0.0 <= metrics.accuracy <= 1.0

    summary = visualize_run(run_dir, tmp_path / "pictures", filters=False)
    assert summary.layers == ("conv", "pool")  # found by type in a model of any layout
    assert (tmp_path / "pictures" / "activations_conv.png").is_file()

    images = np.zeros((3, 3, *loaded.preprocess.image_size), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=images)
    rows = predict(run_dir, tmp_path / "x.npz")
    assert len(rows) == 3 and all(r.name in loaded.class_names for r in rows)

    # another process finds the module through PYTHONPATH
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(models_dir), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "predict", str(run_dir), str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 4, done.stdout  # header and 3 rows


def test_factory_aliases_and_the_working_directory(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = create_model("mymodels:timm_style", 3, 5, (8, 12))  # in_chans, n_classes, img_size
    assert model.conv.in_channels == 3 and model.head.out_features == 5
    assert model(torch.zeros(2, 3, 8, 12)).shape == (2, 5)
    lazy = create_model("mymodels:LazyNet", 2, 5, (8, 8))  # lazy layers: shaped on a blank image
    assert lazy[0].weight.shape == (3, 2, 3, 3) and lazy[2].weight.shape == (5, 3 * 6 * 6)

    # a `cnnlab` script has no working directory on sys.path: it is looked in all the same
    (models_dir / "herenets.py").write_text(MODELS)
    monkeypatch.chdir(models_dir)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(models_dir))])
    monkeypatch.delitem(sys.modules, "herenets", raising=False)
    assert type(create_model("herenets:TinyNet", 1, 2)).__name__ == "TinyNet"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nosuchmodule_q:Net", {}, r"model.name 'nosuchmodule_q:Net': cannot import .*PYTHONPATH"),
        ("badmodels:Net", {}, r"cannot import 'badmodels'.*RuntimeError: not today"),
        ("mymodels:Missing", {}, r"model.name 'mymodels:Missing': 'mymodels' has no 'Missing'"),
        ("mymodels:NOT_CALLABLE", {}, r"'mymodels:NOT_CALLABLE': int is not a model factory"),
        ("mymodels:unmarked", {}, r"function unmarked \(not marked @cnnlab.model_factory\) is not"),
        ("os:system", {}, r"'os:system': builtin_function_or_method system is not a model factory"),
        ("builtins:eval", {}, r"builtin_function_or_method eval is not a model factory"),
        (
            "collections:Counter",
            {},
            r"the class Counter is not a model factory \(a torch.nn.Module",
        ),
        ("mymodels:not_a_module", {}, r"returned a str, not a torch.nn.Module"),
        ("mymodels:broken", {}, r"'mymodels:broken': building the model failed: .*boom"),
        ("mymodels:TinyNet", {"colour": 1}, r"unknown option\(s\) colour; valid options: width"),
        ("mymodels:TinyNet", {"num_classes": 3}, r"num_classes come from the data"),
        ("mymodels:needs_depth", {}, r"'mymodels:needs_depth': needs option\(s\) depth"),
        ("mymodels:", {}, r"an import path is written package.module:factory"),
        ("my models:TinyNet", {}, r"an import path is written package.module:factory"),
    ],
)
def test_bad_import_paths_are_refused(
    models_dir: Path, name: str, options: dict, message: str
) -> None:
    with pytest.raises(CnnlabError, match=message):
        create_model(name, 1, 4, (16, 16), **options)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "{name: 'nosuchmodule_q:Net'}",
            r"part1-lines: model.name 'nosuchmodule_q:Net': cannot import",
        ),
        ("{name: 'mymodels:Missing'}", r"has no 'Missing'"),
        ("{name: 'mymodels:TinyNet', colour: 1}", r"unknown option\(s\) colour"),
    ],
)
def test_a_config_with_a_bad_import_path_is_refused_before_training(
    models_dir: Path, tmp_path: Path, model: str, message: str
) -> None:
    with pytest.raises(CnnlabError, match=message):
        train("part1-lines", out=tmp_path / "bad", overrides=(*TINY, f"model={model}"), quiet=True)
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_a_given_importable_module_is_recorded_by_its_import_path(
    models_dir: Path, tmp_path: Path
) -> None:
    import mymodels

    config = load_config("part1-lines", TINY)
    data = prepare_dataset(config)
    shape = (data.channels, data.num_classes, data.image_size)
    module = mymodels.TinyNet(*shape)
    start = copy.deepcopy(module.state_dict())
    run = train(config, out=tmp_path / "given", model=module, quiet=True)
    assert run.model is module and run.config.model.to_dict() == {"name": "mymodels:TinyNet"}
    assert recorded_name(tmp_path / "given") == "mymodels:TinyNet"
    assert not torch.equal(start["conv.weight"], module.conv.weight.detach().cpu())  # trained
    loaded = load_run(tmp_path / "given")
    torch.testing.assert_close(loaded.model.conv.weight, module.conv.weight.detach().cpu())

    # built with other arguments than its defaults: rebuilding it would not give this model
    other = given_model_name(mymodels.TinyNet(*shape, width=2), *shape)
    assert other.startswith("<given> mymodels.TinyNet: ") and "not the same architecture" in other


def test_a_local_module_trains_but_cannot_be_loaded_again(tmp_path: Path) -> None:
    class Local(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.LazyLinear(96)  # shaped by train() before it counts parameters

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.pool(self.conv(x)).flatten(1))

    config = load_config("part1-lines", TINY)
    run = train(config, out=tmp_path / "local", model=Local(), quiet=True)
    assert len(run.history) == 1
    name = recorded_name(tmp_path / "local")
    assert name.startswith("<given> ") and "defined inside a function" in name
    for verb in (load_run, evaluate_run):
        with pytest.raises(CnnlabError, match=r"cannot be rebuilt.*importable module"):
            verb(tmp_path / "local")
    (tmp_path / "local" / "model.safetensors").unlink()  # as if stopped after a checkpoint
    with pytest.raises(CnnlabError, match="cannot be rebuilt"):
        train(None, resume=tmp_path / "local", quiet=True)  # type: ignore[arg-type]
    with pytest.raises(CnnlabError, match=r"must be a torch\.nn\.Module"):
        train(config, out=tmp_path / "x", model="part1", quiet=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["part1", "convnet", "multihead"])
@pytest.mark.parametrize(("channels", "size"), [(3, (32, 32)), (1, (64, 64)), (3, (20, 36))])
def test_shipped_families_take_any_image_shape(
    name: str, channels: int, size: tuple[int, int]
) -> None:
    model = create_model(name, channels, 10, size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, *size))
    outputs = out.values() if isinstance(out, dict) else [out]
    assert all(o.shape[0] == 2 for o in outputs)
    if name != "multihead":
        assert out.shape == (2, 10)


class FeaturesThenMean(nn.Module):
    """Named like a ConvNet, but with work between ``features`` and ``classifier``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class SharedRelu(nn.Module):
    """Reuses a ReLU's input: an in-place ReLU would change the answer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU()
        self.keep = None  # set to something deepcopy refuses, below

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return (y + self.relu(y)).flatten(1)


def test_inference_copy_of_a_users_model_is_exact_or_plain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    x = torch.randn(4, 1, 8, 8)
    for model in (FeaturesThenMean().eval(), SharedRelu().eval()):
        with torch.no_grad():
            torch.testing.assert_close(inference_model(model)(x), model(x))
    stuck = SharedRelu().eval()
    stuck.keep = threading.Lock()  # cannot be deep-copied: run as it is, noted once
    for _ in range(2):
        with torch.no_grad():
            torch.testing.assert_close(inference_model(stuck)(x), stuck(x))
    assert capsys.readouterr().err.count("runs unfused for inference") == 1


def test_flops_and_default_layers_of_any_model() -> None:
    class TupleOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.pool = nn.AvgPool2d(2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.pool(self.conv(x))
            return y, y.mean((2, 3))

    macs = 6 * 6 * 2 * 9  # the conv, per image
    flops = training_flops_per_image(TupleOut(), 1, (8, 8), batch_size=4)
    assert flops == 2 * macs * 2  # forward, and the weights' gradient (not the input's)
    assert training_flops_per_image(nn.Flatten(), 1, (8, 8), batch_size=4) == 0.0
    assert default_layers(TupleOut()) == ["conv", "pool"]
    assert default_layers(FeaturesThenMean()) == ["features.0"]


def test_a_user_model_on_top_of_a_preset_drops_the_presets_model_options(
    models_dir: Path, tmp_path: Path
) -> None:
    """``--set model.name=...`` on a preset whose model has options (channels, dense ...):
    those belong to the preset's model and are dropped; options set beside it are kept."""
    run_dir = tmp_path / "run"
    run = train(
        "part2-lines",
        out=run_dir,
        overrides=(*TINY, "model.name=mymodels:TinyNet", "model.width=5"),
        quiet=True,
    )
    assert run.model.conv.out_channels == 5
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"] == {
        "name": "mymodels:TinyNet",
        "width": 5,
    }
    same = load_config("part2-lines", ["model.name=convnet"])
    assert same.model.options["channels"] == [32, 64, 128]  # the preset's options kept
