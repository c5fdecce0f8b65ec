"""``predict``: class predictions of a trained run for image files, folders or ``.npz`` arrays."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import compose_factors
from cnnlab.data.images import IMAGE_SUFFIXES, conform, open_image
from cnnlab.data.npzio import read_npz
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.heads import head_probabilities
from cnnlab.fileio import atomic_open
from cnnlab.models.inference import Preprocess
from cnnlab.training.run import Run, load_run

__all__ = [
    "IMAGE_SUFFIXES",
    "Prediction",
    "Ranked",
    "predict",
    "predictions_csv",
    "probability_keys",
    "read_images",
    "top_k",
    "write_predictions",
]


@dataclass(frozen=True)
class Prediction:
    """One image's predicted class; for a multi-head model also each head's level and
    probability (the class is composed from the heads; its probability is their product).

    ``probabilities``: every class's probability in the run's class order (``run.class_names``),
    None for a multi-head model; ``head_probabilities``: a multi-head model's probability of
    each level of each head, in the order of ``run.factor_levels[head]``."""

    source: str
    index: int
    name: str
    probability: float
    heads: dict[str, tuple[str, float]] = field(default_factory=dict)
    probabilities: tuple[float, ...] | None = None
    head_probabilities: dict[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Ranked:
    """One of an image's most probable classes (or of a head's levels): its index in the run's
    class order (the head's levels), its name and its probability."""

    index: int
    name: str
    probability: float


def top_k(
    prediction: Prediction, k: int, class_names: Sequence[Any], *, head: str | None = None
) -> list[Ranked]:
    """The ``k`` most probable classes of ``prediction``, best first: its predicted class, then
    the others by falling probability (ties in class order); all of them when there are fewer
    than ``k``. ``class_names``: the run's (``run.class_names``). With ``head``: that head's
    levels of a multi-head prediction instead, ``class_names`` being its level names
    (``run.factor_levels[head]``)."""
    if k < 1:
        raise CnnlabError(f"top_k: k must be at least 1, got {k}")
    names = [str(name) for name in class_names]
    if head is None:
        probabilities = prediction.probabilities
        if probabilities is None:
            raise CnnlabError("a multi-head prediction has probabilities per head: give head=")
    elif head in prediction.head_probabilities:
        probabilities = prediction.head_probabilities[head]
    else:
        raise CnnlabError(f"this prediction has no probabilities of a head {head!r}")
    if len(names) != len(probabilities):
        raise CnnlabError(
            f"{len(names)} names for {len(probabilities)} probabilities: give the run's own"
        )
    chosen = prediction.index if head is None else names.index(prediction.heads[head][0])
    order = sorted(range(len(names)), key=lambda i: (i != chosen, -probabilities[i], i))
    return [Ranked(i, names[i], probabilities[i]) for i in order[:k]]


def probability_keys(class_names: Sequence[Any]) -> list[str]:
    """What names each class's probability (the CSV's ``p_<key>`` columns, the JSON's mapping):
    the class names as text, or every class's index when two names are the same text."""
    names = [str(name) for name in class_names]
    return names if len(set(names)) == len(names) else [str(i) for i in range(len(names))]


def read_images(source: str | Path, preprocess: Preprocess) -> tuple[torch.Tensor, list[str]]:
    """Images as uint8 (N, C, H, W) for a model, and a label for each (file name or index).

    Files are converted to the model's channels and resized to its input size by the rule
    training data of files follows (:func:`cnnlab.data.images.conform`: Pillow BILINEAR,
    alpha over black, RGB to grey by luma, grey to RGB by repetition), with a note on stderr;
    16-bit greyscale pictures are scaled to 8 bit (value / 257, so 65535 becomes 255), and
    pictures over Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``) are refused unread. Arrays in an ``.npz`` (key
    ``images``, (N, H, W, C), (N, C, H, W) or (N, H, W)) must already have the right channel
    count and size and hold at least one image. Their values: uint8 as they are; other
    integers in 0..255; finite floats, read as [0, 1] (scaled by 255) when every value lies
    in [0, 1], else as [0, 255], rounded, with a note on stderr saying which. Anything else
    (values out of range, NaN, infinities, complex numbers, bools) is refused, never clipped.
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
        array = read_npz(path, ("images",), only_required=True)["images"]
        images = _from_array(array, path, preprocess)
        return images, [f"{path}[{i}]" for i in range(images.shape[0])]
    return _from_files([path], preprocess), [str(path)]


def _from_files(files: list[Path], preprocess: Preprocess) -> torch.Tensor:
    """The files made the model's size and channels by the datasets' rule
    (:func:`cnnlab.data.images.conform`)."""
    if preprocess.channels not in (1, 3):
        raise CnnlabError(f"model expects {preprocess.channels} channels; only 1 or 3 from files")
    h, w = preprocess.image_size
    arrays, resized, scaled = [], 0, 0
    for file in files:
        with open_image(file) as picture:
            done = conform(picture, (h, w), preprocess.channels, file)
        arrays.append(done.pixels)
        resized += done.resized
        scaled += done.scaled
    if scaled:
        print(f"note: scaled {scaled} 16-bit image(s) to 8 bit (value / 257)", file=sys.stderr)
    if resized:
        print(f"note: resized {resized} image(s) to the model's {w}x{h} input", file=sys.stderr)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


_ACCEPTED = "uint8, integers in 0..255, or floats in [0, 1] or [0, 255]"


def _to_uint8(images: np.ndarray, path: Path) -> np.ndarray:
    """``images`` as uint8, refusing values that are not pixel values; says what it assumed.

    - uint8: as they are;
    - other integers: must lie in 0..255 (nothing is clipped);
    - floats: must be finite; if every value lies in [0, 1] they are read as that range and
      scaled by 255, else if every value lies in [0, 255] as that range; both are rounded to
      the nearest integer, with a note on stderr saying which range was assumed;
    - anything else (complex numbers, bools, text, ...) is refused.
    """
    if images.dtype == np.uint8:
        return images
    kind = images.dtype.kind
    if kind not in "iuf":
        what = "complex numbers" if kind == "c" else f"dtype {images.dtype}"
        raise CnnlabError(f"{path}: array 'images' holds {what}; expected {_ACCEPTED}")
    if kind == "f" and not np.isfinite(images).all():
        raise CnnlabError(
            f"{path}: array 'images' holds NaN or infinite values; expected {_ACCEPTED}"
        )
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        raise CnnlabError(
            f"{path}: array 'images' ({images.dtype}) holds values from {low} to {high}; "
            f"expected {_ACCEPTED} (nothing is clipped)"
        )
    if kind == "f":
        unit = high <= 1.0
        print(
            f"note: {path}: float images read as values in "
            f"{'[0, 1], scaled by 255' if unit else '[0, 255]'} and rounded",
            file=sys.stderr,
        )
        images = np.rint(images * 255.0 if unit else images)
    return images.astype(np.uint8)


def _from_array(images: np.ndarray, path: Path, preprocess: Preprocess) -> torch.Tensor:
    h, w = preprocess.image_size
    c = preprocess.channels
    if images.ndim == 3 and c == 1:
        images = images[..., None]
    if images.ndim != 4:
        raise CnnlabError(f"{path}: 'images' must be (N, H, W, C) or (N, H, W); got {images.shape}")
    if images.shape[0] == 0:
        raise CnnlabError(f"{path}: array 'images' holds 0 images, expected at least one")
    if images.shape[-1] != c and images.shape[1] == c:  # channels-first arrays are fine too
        images = np.moveaxis(images, 1, -1)
    if images.shape[1:] != (h, w, c):
        raise CnnlabError(
            f"{path}: 'images' has shape {images.shape[1:]} per image; the model expects "
            f"({h}, {w}, {c}) (height, width, channels)"
        )
    images = _to_uint8(images, path)
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def predict(run: Run | str | Path, source: str | Path, device: str = "cpu") -> list[Prediction]:
    """Predicted class index, name and probability for each input image, with every class's
    probability (``Prediction.probabilities``; a multi-head model's per head, for
    :func:`top_k`); a run folder's model is loaded on ``device`` (cpu, auto, cuda or cuda:N; a
    loaded ``Run`` computes where its model is)."""
    if not isinstance(run, Run):
        run = load_run(run, device)
    images, labels = read_images(source, run.preprocess)
    outputs = run.outputs(images)
    if not isinstance(outputs, dict):
        proba = outputs.softmax(dim=1)
        best, index = proba.max(dim=1)
        return [
            Prediction(label, i, run.class_names[i], p, probabilities=tuple(every))
            for label, i, p, every in zip(
                labels, index.tolist(), best.tolist(), proba.tolist(), strict=True
            )
        ]
    probabilities = head_probabilities(outputs)
    every = {name: p.tolist() for name, p in probabilities.items()}
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
            head_probabilities={name: tuple(every[name][k]) for name in outputs},
        )
        for k, (label, c) in enumerate(zip(labels, classes, strict=True))
    ]


def predictions_csv(
    predictions: list[Prediction],
    *,
    top: int = 1,
    probabilities: bool = False,
    class_names: Sequence[Any] = (),
    factor_levels: Mapping[str, Sequence[Any]] | None = None,
) -> str:
    """The predictions as CSV: ``input,class_index,class_name,probability`` (and ``<head>,
    <head>_probability`` for each head of a multi-head model) per image.

    ``top`` > 1 adds ranks 2..top of :func:`top_k` (``class_index_2,class_name_2,
    probability_2``, ...; of a multi-head model each head's levels instead, ``<head>_2,
    <head>_probability_2``, ..., as many as the head has); ``probabilities`` every class's
    (``p_<class>``, :func:`probability_keys`; per head ``<head>_p_<level>``). Both need the
    run's ``class_names`` (a multi-head model's ``factor_levels``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    heads = list(predictions[0].heads) if predictions else []
    layout = _Layout(top, probabilities, class_names, factor_levels or {}, heads)
    writer.writerow(layout.header())
    for p in predictions:
        writer.writerow(layout.row(p))
    return buffer.getvalue()


@dataclass(frozen=True)
class _Layout:
    """The CSV's columns: rank 1 (and each head's level), then what ``top`` and
    ``probabilities`` add."""

    top: int
    probabilities: bool
    class_names: Sequence[Any]
    factor_levels: Mapping[str, Sequence[Any]]
    heads: list[str]

    def __post_init__(self) -> None:
        extra = self.top > 1 or self.probabilities
        if extra and not self.heads and not self.class_names:
            raise CnnlabError("top-k ranks and probabilities need the run's class_names")
        missing = [h for h in self.heads if h not in self.factor_levels]
        if extra and missing:
            raise CnnlabError(f"top-k ranks and probabilities need the levels of {missing}")

    def header(self) -> list[str]:
        columns = ["input", "class_index", "class_name", "probability"]
        if not self.heads:
            for r in range(2, min(self.top, len(self.class_names)) + 1):
                columns += [f"class_index_{r}", f"class_name_{r}", f"probability_{r}"]
            if self.probabilities:
                columns += [f"p_{key}" for key in probability_keys(self.class_names)]
        for h in self.heads:
            columns += [h, f"{h}_probability"]
            if self.top > 1:
                for r in range(2, min(self.top, len(self.factor_levels[h])) + 1):
                    columns += [f"{h}_{r}", f"{h}_probability_{r}"]
            if self.probabilities:
                columns += [f"{h}_p_{key}" for key in probability_keys(self.factor_levels[h])]
        return columns

    def row(self, p: Prediction) -> list[Any]:
        cells: list[Any] = [p.source, p.index, p.name, f"{p.probability:.6f}"]
        if not self.heads:
            if self.top > 1:
                for r in top_k(p, self.top, self.class_names)[1:]:
                    cells += [r.index, r.name, f"{r.probability:.6f}"]
            if self.probabilities:
                if p.probabilities is None:
                    raise CnnlabError(f"{p.source}: this prediction has no class probabilities")
                cells += [f"{q:.6f}" for q in p.probabilities]
        for h in self.heads:
            cells += [p.heads[h][0], f"{p.heads[h][1]:.6f}"]
            if self.top > 1:
                for r in top_k(p, self.top, self.factor_levels[h], head=h)[1:]:
                    cells += [r.name, f"{r.probability:.6f}"]
            if self.probabilities:
                cells += [f"{q:.6f}" for q in p.head_probabilities[h]]
        return cells


def write_predictions(path: str | Path, predictions: list[Prediction], **columns: Any) -> None:
    """:func:`predictions_csv` (``columns``: its options) written to ``path``."""
    try:
        with atomic_open(path) as handle:
            handle.write(predictions_csv(predictions, **columns))
    except OSError as exc:
        raise CnnlabError(f"--out {path}: cannot write ({exc.strerror})") from None
