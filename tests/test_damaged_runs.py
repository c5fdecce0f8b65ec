"""A damaged run folder in evaluate, predict and resume: one clear line, never a traceback; and
what a run writes gets the usual file permissions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.predict import predict
from cnnlab.runfolder import RunFolder
from cnnlab.training import train

TINY = (
    "data.dataset=lines",
    "data.lines={per_class: 6, test_fraction: 0.25}",
    "train.epochs=2",
    "train.batch_size=64",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("damaged")
    train("part1-lines", out=base / "part1", overrides=TINY, quiet=True)
    train("part1-lines", out=base / "other", overrides=(*TINY, "model.filters=8"), quiet=True)
    return {"part1": base / "part1", "other": base / "other"}


def copy(runs: dict[str, Path], tmp_path: Path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    shutil.copytree(runs["part1"], folder.path)
    return folder


PART1 = "  name: part1\n"


def images(tmp_path: Path) -> Path:
    path = tmp_path / "images.npz"
    np.savez(path, images=np.zeros((2, 3, 28, 28), dtype=np.uint8))
    return path


DAMAGE = {
    "run.json not JSON": (lambda f: f.info.write_text("{oops"), r"run\.json: cannot read"),
    "run.json missing keys": (
        lambda f: f.info.write_text(json.dumps({"status": "finished"})),
        r"run\.json: lacks dataset, preprocess, model",
    ),
    "run.json deleted": (lambda f: f.info.unlink(), r"not a run folder \(no run\.json\)"),
    "config.yaml not YAML": (
        lambda f: f.config.write_text("train: [unclosed"),
        r"config\.yaml: not valid YAML",
    ),
    "config.yaml of another model": (
        lambda f: f.config.write_text(
            f.config.read_text().replace(PART1, PART1 + "  filters: 8\n")
        ),
        r"model\.safetensors: weights do not fit the model",
    ),
    "weights truncated": (
        lambda f: f.weights.write_bytes(f.weights.read_bytes()[:100]),
        r"model\.safetensors: not a readable safetensors file",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_evaluate_and_predict_refuse_a_damaged_folder_in_one_line(
    runs, tmp_path: Path, damage: str, capsys
) -> None:
    folder = copy(runs, tmp_path)
    action, message = DAMAGE[damage]
    assert PART1 in folder.config.read_text()
    action(folder)
    with pytest.raises(CnnlabError, match=message):
        evaluate_run(folder.path)
    with pytest.raises(CnnlabError, match=message):
        predict(folder.path, images(tmp_path))
    assert main(["evaluate", str(folder.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnlab: error: ") and "Traceback" not in err


def unfinished(folder: RunFolder) -> RunFolder:
    """``folder`` as if its training had been interrupted after its last checkpoint."""
    folder.weights.unlink()
    folder.set_status("interrupted")
    return folder


def test_resume_refuses_a_checkpoint_of_another_model(runs, tmp_path: Path) -> None:
    folder = unfinished(copy(runs, tmp_path))
    shutil.copy(RunFolder(runs["other"]).checkpoint(), folder.checkpoint())
    with pytest.raises(CnnlabError, match=r"last\.pt: does not fit this run's model and config"):
        train(None, resume=folder.path, quiet=True)
    folder.checkpoint().write_bytes(b"not a checkpoint")
    with pytest.raises(CnnlabError, match=r"last\.pt: not a readable cnnlab checkpoint"):
        train(None, resume=folder.path, quiet=True)


def test_a_checkpoint_with_python_objects_is_refused_without_torch_advice(
    runs, tmp_path: Path
) -> None:
    folder = unfinished(copy(runs, tmp_path))
    torch.save({"model": Path("x")}, folder.checkpoint())  # a pickled object, not a tensor
    with pytest.raises(CnnlabError) as error:
        train(None, resume=folder.path, quiet=True)
    assert "never unpickles" in str(error.value)
    assert "weights_only" not in str(error.value)  # no advice to load it unsafely


def test_a_run_writes_its_files_with_the_usual_permissions(runs) -> None:
    folder = RunFolder(runs["part1"])
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in (folder.weights, folder.info, folder.history, folder.config, folder.checkpoint()):
        assert path.stat().st_mode & 0o777 == expected, path.name
