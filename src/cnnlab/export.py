"""Export a run's model for use outside cnnlab: ONNX (checked in onnxruntime) or ``torch.export``'s
``.pt2``, with a card beside it that says what goes in and what comes out.

The exported graph takes the images as stored, ``uint8`` (N, C, H, W) in 0..255, and does the
run's preprocessing itself (scale to [0, 1], subtract the mean, divide by the std), so a user
only resizes to the run's image size. It returns the logits, or one output per head of a
multi-head model (named by the head, in the model's order). The card (``<file>.json``: e.g.
``model.onnx.json``) records
the input, the preprocessing, the outputs with their classes or levels, and the check: the
exported model run by **onnxruntime** (``.pt2``: by ``torch.export.load``) on the run's test
images against PyTorch, with the largest difference of any output and whether every prediction
is the same. A file whose check fails (a difference above ``TOLERANCE`` or another prediction)
is not kept.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, write_json
from cnnlab.runfolder import RunFolder

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4
"""The largest difference allowed between the exported model's outputs and PyTorch's."""
CHECK_IMAGES = 512
INSTALL_HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'cnnlab[export]'"


class Exported(nn.Module):
    """A run's model with its preprocessing in front: uint8 images in, logits (or a tuple of
    head outputs) out."""

    def __init__(
        self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], heads: list[str]
    ) -> None:
        super().__init__()
        self.model = model
        self.heads = heads
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.model((images.to(torch.float32) / 255.0 - self.mean) / self.std)
        if isinstance(outputs, dict):
            return tuple(outputs[head] for head in self.heads)
        return outputs


@dataclass(frozen=True)
class Export:
    """The exported file, its card, and the check's figures."""

    path: Path
    card: Path
    outputs: tuple[str, ...]
    images: int
    max_difference: float
    same_predictions: bool


def export_run(
    run_dir: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    check_images: int = CHECK_IMAGES,
) -> Export:
    """Export the model of ``run_dir`` to ``out`` (``RUN/export/model.<format>``), check it on
    up to ``check_images`` of the run's test images and write its card."""
    from cnnlab.training import load_run
    from cnnlab.training.run import prepare_dataset

    if format not in FORMATS:
        raise CnnlabError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if check_images < 1:
        raise CnnlabError(f"--check-images must be at least 1, got {check_images}")
    if format == "onnx":
        _require_onnx()
    run = load_run(run_dir)
    model = run.model.to(memory_format=torch.contiguous_format).eval()
    images = prepare_dataset(run.config).test.images[:check_images].contiguous()
    with torch.inference_mode():
        sample = model(run.preprocess(images[:2]))
    heads = list(sample) if isinstance(sample, dict) else []
    wrapped = Exported(model, run.preprocess.mean, run.preprocess.std, heads).eval()
    path = Path(out) if out is not None else RunFolder(run_dir).export / f"model.{format}"
    names = tuple(heads) or ("logits",)
    with atomic_path(path) as tmp:
        if format == "onnx":
            _to_onnx(wrapped, images[:2], tmp, names)
            got = _run_onnx(tmp, images)
        else:
            _to_pt2(wrapped, images[:2], tmp)
            got = _run_pt2(tmp, images)
        with torch.inference_mode():
            expected = _as_tuple(wrapped(images))
        difference, same = _compare(expected, got)
        if not (difference <= TOLERANCE and same):
            raise CnnlabError(
                f"{path}: the exported model does not agree with PyTorch on {len(images)} test "
                f"images (largest difference {difference:.3g}, tolerance {TOLERANCE:g}; same "
                f"predictions: {same}); nothing written"
            )
    card = path.with_name(path.name + ".json")
    result = Export(path, card, names, len(images), difference, same)
    write_json(result.card, _card(run, format, names, result))
    return result


def _card(run: Any, format: str, names: tuple[str, ...], result: Export) -> dict[str, Any]:
    from cnnlab.version import __version__

    channels, (height, width) = run.preprocess.channels, run.preprocess.image_size
    if names == ("logits",):
        outputs = [{"name": "logits", "classes": list(run.class_names)}]
    else:
        outputs = [
            {
                "name": head,
                "levels": list(run.factor_levels.get(head, [])),
                "kind": "one logit: sigmoid > 0.5 is the second level"
                if len(run.factor_levels.get(head, [])) == 2
                else "logits over the levels",
            }
            for head in names
        ]
    return {
        "format": format,
        "file": result.path.name,
        "run": str(run.path),
        "cnnlab": __version__,
        "torch": torch.__version__,
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": ["batch", channels, height, width],
            "range": [0, 255],
        },
        "preprocessing": {
            "inside the graph": True,
            "steps": "x / 255, then (x - mean) / std per channel",
            "mean": list(run.preprocess.mean),
            "std": list(run.preprocess.std),
            "resize": f"to {height}x{width} before (not in the graph)",
        },
        "outputs": outputs,
        "check": {
            "runtime": "onnxruntime" if format == "onnx" else "torch.export.load",
            "test images": result.images,
            "largest difference": result.max_difference,
            "tolerance": TOLERANCE,
            "same predictions": result.same_predictions,
        },
    }


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise CnnlabError(INSTALL_HINT) from None


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines and its notes about torchvision: not for the user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):  # type: ignore[type-var]
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamic() -> dict[str, Any]:
    return {"images": {0: torch.export.Dim("batch", min=1)}}


def _to_onnx(model: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, ...]) -> None:
    try:
        with _quiet_exporter():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=["images"],
                output_names=list(names),
                dynamo=True,
                dynamic_shapes=_dynamic(),
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter's many failure types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CnnlabError(f"ONNX export failed: {first}") from None


def _run_onnx(path: Path, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return tuple(torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()}))


def _to_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        with _quiet_exporter():
            program = torch.export.export(model, (example,), dynamic_shapes=_dynamic())
            torch.export.save(program, str(path))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CnnlabError(f"torch.export failed: {first}") from None


def _run_pt2(path: Path, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with _quiet_exporter():
        program = torch.export.load(str(path))
    with torch.inference_mode():
        return _as_tuple(program.module()(images))


def _as_tuple(outputs: Any) -> tuple[torch.Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, tuple | list) else (outputs,)


def _compare(
    expected: tuple[torch.Tensor, ...], got: tuple[torch.Tensor, ...]
) -> tuple[float, bool]:
    """The largest absolute difference of any output, and whether every prediction agrees
    (argmax; a one-logit head: its sign)."""
    if len(expected) != len(got):
        return float("inf"), False
    difference, same = 0.0, True
    for a, b in zip(expected, got, strict=True):
        a, b = a.float(), b.float()
        if a.shape != b.shape:
            return float("inf"), False
        difference = max(difference, float((a - b).abs().max()))
        if a.shape[-1] == 1 or a.dim() == 1:
            same &= bool(torch.equal(a.reshape(-1) > 0, b.reshape(-1) > 0))
        else:
            same &= bool(torch.equal(a.argmax(-1), b.argmax(-1)))
    return difference, same
