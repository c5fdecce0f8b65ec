"""A run folder is data: opening one never imports or calls code its config names unless the
user trusts it (trained it here, ``--trust-code``, or ``cnnlab trust``), and even then only a
model factory is ever called."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cnnlab import trusting_code
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.runfolder import RunFolder
from cnnlab.training import load_run, train

TINY = (
    "data.dataset=lines",
    "data.lines={per_class: 4, test_fraction: 0.25}",
    "train.epochs=1",
    "train.batch_size=64",
)

USER_MODELS = """
from torch import nn

import cnnlab


class Net(nn.Sequential):
    def __init__(self, in_channels, num_classes, image_size):
        super().__init__(
            nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes)
        )


@cnnlab.model_factory
def small(in_channels, num_classes, image_size):
    return Net(in_channels, num_classes, image_size)
"""

IMPORT_TIME_CODE = """
from pathlib import Path

Path({marker!r}).write_text("imported")

from torch import nn


class Net(nn.Module):
    pass
"""


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trust") / "plain"
    train("part1-lines", out=out, overrides=TINY, quiet=True)
    evaluate_run(out)
    return out


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "trust_user_models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "trust_user_models", raising=False)
    return folder


def hostile_copy(plain_run: Path, tmp_path: Path, model: dict, evaluated: bool = False) -> Path:
    """The plain run as a classmate could hand it over: its config naming ``model`` (not
    evaluated, unless ``evaluated``: errors and report then need no model)."""
    run = tmp_path / "shared-run"
    shutil.copytree(plain_run, run)
    if not evaluated:
        RunFolder(run).metrics().unlink()
    config = yaml.safe_load(RunFolder(run).config.read_text())
    config["model"] = model
    RunFolder(run).config.write_text(yaml.safe_dump(config))
    return run


def commands(run: Path, tmp_path: Path) -> dict[str, list[str]]:
    images = tmp_path / "images.npz"
    np.savez(images, images=np.zeros((2, 3, 28, 28), dtype=np.uint8))
    return {
        "evaluate": ["evaluate", str(run)],
        "errors": ["errors", str(run)],
        "predict": ["predict", str(run), str(images)],
        "visualize": ["visualize", str(run), "--out", str(tmp_path / "pictures")],
        "export": ["export", str(run), "--format", "pt2", "--out", str(tmp_path / "m.pt2")],
        "resume": ["train", "--resume", str(run)],
        "report --inside": ["report", str(run), "--inside", "--out", str(tmp_path / "r.html")],
    }


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ") and err.count("\n") == 1, err
    return err


def test_a_shared_folder_naming_os_system_runs_nothing(
    plain_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    run = hostile_copy(plain_run, tmp_path, {"name": "os:system", "command": f"touch {marker}"})
    RunFolder(run).set_status("interrupted")  # so that --resume reaches the model too
    for name, argv in commands(run, tmp_path).items():
        err = one_line_error(capsys, argv)
        assert "names code to run (model.name 'os:system')" in err, (name, err)
        assert "--trust-code" in err and f"cnnlab trust {run}" in err
        err = one_line_error(capsys, [*argv, "--trust-code"])  # trusted: still no factory
        assert "'os:system': builtin_function_or_method system is not a model factory" in err
        assert not marker.exists(), name


def test_a_report_without_pictures_to_make_reads_the_folder_as_data(
    plain_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    model = {"name": "os:system", "command": f"touch {marker}"}
    run = hostile_copy(plain_run, tmp_path, model, evaluated=True)
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0  # builds no model
    assert "os:system" in (tmp_path / "r.html").read_text()  # shown as the text it is
    assert not marker.exists()


def test_code_a_folder_names_is_not_even_imported_untrusted(
    plain_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    marker = tmp_path / "imported"
    code = tmp_path / "code"
    code.mkdir()
    (code / "trust_import_time.py").write_text(IMPORT_TIME_CODE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, "trust_import_time", raising=False)
    run = hostile_copy(plain_run, tmp_path, {"name": "trust_import_time:Net"})
    for argv in commands(run, tmp_path).values():
        one_line_error(capsys, argv)
    assert main(["status", str(run)]) == 0  # reads the folder, imports nothing
    capsys.readouterr()
    assert not marker.exists() and "trust_import_time" not in sys.modules
    with pytest.raises(CnnlabError, match="names code to run"):
        load_run(run)


def test_your_own_model_needs_no_flag_and_a_copy_needs_trust(
    user_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "mine"
    for name in ("trust_user_models:Net", "trust_user_models:small"):
        shutil.rmtree(run, ignore_errors=True)
        train("part1-lines", out=run, overrides=(*TINY, f"model.name={name}"), quiet=True)
        assert main(["evaluate", str(run)]) == 0  # trained here: trusted
        assert main(["export", str(run), "--format", "pt2"]) == 0
    capsys.readouterr()

    copied = tmp_path / "copied"
    shutil.copytree(run, copied)
    err = one_line_error(capsys, ["evaluate", str(copied)])
    assert "names code to run (model.name 'trust_user_models:small')" in err
    assert main(["evaluate", str(copied), "--trust-code"]) == 0
    with trusting_code():
        assert load_run(copied).model is not None
    assert main(["trust", str(copied)]) == 0
    assert "trusted; opening it imports and runs 'trust_user_models:small'" in (
        capsys.readouterr().out
    )
    assert main(["evaluate", str(copied)]) == 0

    config = RunFolder(copied).config
    config.write_text(config.read_text() + "# changed after it was trusted\n")
    err = one_line_error(capsys, ["predict", str(copied), str(tmp_path / "none.npz")])
    assert "names code to run" in err


def test_trusting_a_builtin_family_is_nothing_to_do(
    plain_run: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["trust", str(plain_run)]) == 0
    assert "one of cnnlab's own; nothing to trust" in capsys.readouterr().out
    assert main(["evaluate", str(plain_run)]) == 0  # built-in families never need trust


def test_trust_of_something_that_is_no_run_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = one_line_error(capsys, ["trust", str(tmp_path / "nothing")])
    assert "no such run folder" in err
