"""``predict``: class predictions of a trained run for image files, folders or ``.npz`` arrays."""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import compose_factors
from cnnlab.data.npzio import read_npz
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.heads import head_probabilities
from cnnlab.fileio import atomic_open
from cnnlab.models.inference import Preprocess, batched_outputs
from cnnlab.training.run import Run, load_run

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Prediction:
    """One image's predicted class; for a multi-head model also each head's level and
    probability (the class is composed from the heads; its probability is their product)."""

    source: str
    index: int
    name: str
    probability: float
    heads: dict[str, tuple[str, float]] = field(default_factory=dict)


def read_images(source: str | Path, preprocess: Preprocess) -> tuple[torch.Tensor, list[str]]:
    """Images as uint8 (N, C, H, W) for a model, and a label for each (file name or index).

    Files are converted to the model's channels (grey or RGB) and resized to its input size,
    with a note on stderr; arrays in an ``.npz`` must already have the right channel count.
    """
    path = Path(source)
    if not path.exists():
        raise CnnlabError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CnnlabError(
                f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"
            )
        return _from_files(files, preprocess), [str(p) for p in files]
    if path.suffix.lower() == ".npz":
        images = _from_array(read_npz(path, ("images",))["images"], path, preprocess)
        return images, [f"{path}[{i}]" for i in range(images.shape[0])]
    return _from_files([path], preprocess), [str(path)]


def _from_files(files: list[Path], preprocess: Preprocess) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if preprocess.channels == 1 else "RGB"
    if preprocess.channels not in (1, 3):
        raise CnnlabError(f"model expects {preprocess.channels} channels; only 1 or 3 from files")
    h, w = preprocess.image_size
    arrays, resized = [], 0
    for file in files:
        try:
            with Image.open(file) as picture:
                picture = picture.convert(mode)
                if picture.size != (w, h):
                    picture = picture.resize((w, h), Image.Resampling.BILINEAR)
                    resized += 1
                arrays.append(np.asarray(picture, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as exc:
            raise CnnlabError(f"{file}: not a readable image ({exc})") from None
    if resized:
        print(f"note: resized {resized} image(s) to the model's {w}x{h} input", file=sys.stderr)
    stack = np.stack(arrays)
    stack = stack[..., None] if stack.ndim == 3 else stack
    return torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous()


def _from_array(images: np.ndarray, path: Path, preprocess: Preprocess) -> torch.Tensor:
    h, w = preprocess.image_size
    c = preprocess.channels
    if images.ndim == 3 and c == 1:
        images = images[..., None]
    if images.ndim != 4:
        raise CnnlabError(f"{path}: 'images' must be (N, H, W, C) or (N, H, W); got {images.shape}")
    if images.shape[-1] != c and images.shape[1] == c:  # channels-first arrays are fine too
        images = np.moveaxis(images, 1, -1)
    if images.shape[1:] != (h, w, c):
        raise CnnlabError(
            f"{path}: 'images' has shape {images.shape[1:]} per image; the model expects "
            f"({h}, {w}, {c}) (height, width, channels)"
        )
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and images.size and images.max() <= 1.0:
            images = images * 255.0
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def predict(run: Run | str | Path, source: str | Path) -> list[Prediction]:
    """Predicted class index, name and probability for each input image."""
    if not isinstance(run, Run):
        run = load_run(run)
    images, labels = read_images(source, run.preprocess)
    outputs = batched_outputs(run.model, images, run.preprocess)
    if not isinstance(outputs, dict):
        best, index = outputs.softmax(dim=1).max(dim=1)
        return [
            Prediction(label, int(i), run.class_names[int(i)], float(p))
            for label, i, p in zip(labels, index, best, strict=True)
        ]
    probabilities = head_probabilities(outputs)
    levels = {name: p.argmax(dim=1).numpy() for name, p in probabilities.items()}
    confidence = {name: p.max(dim=1).values for name, p in probabilities.items()}
    classes = compose_factors(levels, run.factor_levels)
    joint = torch.stack(list(confidence.values())).prod(dim=0)
    return [
        Prediction(
            label,
            int(c),
            run.class_names[int(c)],
            float(joint[k]),
            {
                name: (str(run.factor_levels[name][levels[name][k]]), float(confidence[name][k]))
                for name in outputs
            },
        )
        for k, (label, c) in enumerate(zip(labels, classes, strict=True))
    ]


def predictions_csv(predictions: list[Prediction]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    heads = list(predictions[0].heads) if predictions else []
    writer.writerow(
        ["input", "class_index", "class_name", "probability"]
        + [column for h in heads for column in (h, f"{h}_probability")]
    )
    for p in predictions:
        writer.writerow(
            [p.source, p.index, p.name, f"{p.probability:.6f}"]
            + [v for h in heads for v in (p.heads[h][0], f"{p.heads[h][1]:.6f}")]
        )
    return buffer.getvalue()


def write_predictions(path: str | Path, predictions: list[Prediction]) -> None:
    try:
        with atomic_open(path) as handle:
            handle.write(predictions_csv(predictions))
    except OSError as exc:
        raise CnnlabError(f"--out {path}: cannot write ({exc.strerror})") from None
