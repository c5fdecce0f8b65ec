"""``cnnlab export``: every model family to ONNX, run in onnxruntime (a runtime no one here
wrote) on the run's test images with the same predictions as PyTorch; torch.export's .pt2; one
output per head; a failed check keeps no file; a missing extra says how to install."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime", reason="ONNX export needs: pip install 'cnnlab[export]'")
import onnxruntime

import cnnlab.export as export_module
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.export import export_run
from cnnlab.training import load_run, train
from cnnlab.training.run import prepare_dataset

MNIST_TINY = ("data.train_limit=300", "data.test_limit=100", "train.epochs=1")
RUNS = {
    "part1-mnist": MNIST_TINY,
    "part2-mnist": MNIST_TINY,
    "multihead-lines": ("data.lines={per_class: 10}", "train.epochs=1"),
}


@pytest.fixture(scope="module")
def runs(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny trained run of each model family (part1, convnet, multihead)."""
    root = tmp_path_factory.mktemp("export")
    made = {}
    for preset, overrides in RUNS.items():
        made[preset] = root / preset
        extra = () if "lines" in preset else (f"data.mnist_dir={mnist_dir}",)
        train(preset, overrides=(*overrides, *extra), out=made[preset], quiet=True)
    return made


@pytest.mark.parametrize("preset", list(RUNS))
def test_onnx_agrees_with_pytorch_in_onnxruntime(preset: str, runs: dict[str, Path]) -> None:
    result = export_run(runs[preset])
    assert result.path == runs[preset] / "export" / "model.onnx"
    assert result.same_predictions and result.max_difference <= 1e-4
    run = load_run(runs[preset])
    images = prepare_dataset(run.config).test.images
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": images.numpy()})  # the whole test split, uint8
    with torch.inference_mode():
        expected = run.model.float()(run.preprocess(images))
    if isinstance(expected, dict):  # one output per head, in the model's order
        assert [o.name for o in session.get_outputs()] == list(expected)
        pairs = [(expected[head], got) for head, got in zip(expected, outputs, strict=True)]
    else:
        assert [o.name for o in session.get_outputs()] == ["logits"]
        pairs = [(expected, outputs[0])]
    for want, got in pairs:
        got = torch.from_numpy(got)
        assert (want - got).abs().max() <= 1e-4
        if want.shape[-1] > 1:
            assert torch.equal(want.argmax(-1), got.argmax(-1))
    card = json.loads(result.card.read_text())
    assert card["input"] == {
        "name": "images",
        "dtype": "uint8",
        "shape": ["batch", *images.shape[1:]],
        "range": [0, 255],
    }
    assert card["preprocessing"]["mean"] == list(run.preprocess.mean)
    assert card["check"]["same predictions"] is True


def test_pt2_and_the_cli(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "part1.pt2"
    assert main(["export", str(runs["part1-mnist"]), "--format", "pt2", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "checked in torch.export.load" in said and "same predictions" in said
    program = torch.export.load(str(out)).module()
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    run = load_run(runs["part1-mnist"])
    with torch.inference_mode():
        assert torch.allclose(program(images), run.model.float()(run.preprocess(images)), atol=1e-5)
    assert json.loads((tmp_path / "part1.pt2.json").read_text())["format"] == "pt2"


def test_a_failed_check_keeps_no_file(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_module._run_onnx

    def off_by_a_bit(path, images):
        return tuple(o + 1e-3 for o in real(path, images))

    monkeypatch.setattr(export_module, "_run_onnx", off_by_a_bit)
    out = tmp_path / "model.onnx"
    with pytest.raises(CnnlabError, match=r"does not agree with PyTorch.*nothing written"):
        export_run(runs["part1-mnist"], out=out)
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_one_line(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert main(["export", str(runs["part1-mnist"]), "--check-images", "0"]) == 2
    assert "--check-images must be at least 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were missing
    assert main(["export", str(runs["part1-mnist"])]) == 2
    assert "pip install 'cnnlab[export]'" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["/proc/x.pt2", "{run}/config.yaml/x.pt2"])
def test_an_output_that_cannot_be_written_is_one_line(
    runs: dict[str, Path], where: str, capsys
) -> None:
    out = where.format(run=runs["part1-mnist"])
    assert main(["export", str(runs["part1-mnist"]), "--format", "pt2", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnnlab: error: {out}: cannot write there (") and err.count("\n") == 1
