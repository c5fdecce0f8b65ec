"""``evaluate``: predictions of a run on a split, every metric from them, ``metrics.json``.

A run is evaluated on its own data, or ("transfer") on another dataset with the same classes,
always with the run's own preprocessing.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.data.identity import identity_groups
from cnnlab.data.npzio import write_npz
from cnnlab.data.registry import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.error_files import write_errors
from cnnlab.evaluate.factors import factor_analysis
from cnnlab.evaluate.heads import multihead_metrics
from cnnlab.evaluate.metrics import classification_metrics
from cnnlab.fileio import jsonable, write_json
from cnnlab.runfolder import SPLITS, RunFolder, metrics_record
from cnnlab.training.objectives import MultiHead
from cnnlab.training.optim import build_loss
from cnnlab.training.run import Run, load_run, prepare_dataset


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """What :func:`evaluate_run` measured: the headline fields of the metrics record, typed.

    ``per_class`` maps class names to precision, recall, F1 and support; ``macro`` and
    ``weighted`` are those averages; ``confusion`` is the matrix (rows: true class).
    ``transfer`` (an evaluation on other data: its name, source, split, provenance and
    training copies), ``joint_accuracy`` and ``heads`` (multi-head models) and
    ``factor_analysis`` (factorised data) are None where the record has no such key.
    :meth:`to_dict` is the record as ``metrics-<split>.json`` holds it: the one read by
    :meth:`from_record`, or (built from fields, ``dataclasses.replace`` too) one made of the
    fields in their order, which is the file's."""

    run: str
    split: str
    dataset: str
    class_names: tuple[str, ...] = field(repr=False)
    transfer: dict[str, Any] | None = None
    loss: float
    n: int
    accuracy: float
    per_class: dict[str, Any] = field(repr=False)
    macro: dict[str, Any]
    weighted: dict[str, Any]
    confusion: list[list[int]] = field(repr=False)
    joint_accuracy: float | None = None
    heads: dict[str, Any] | None = field(default=None, repr=False)
    factor_analysis: dict[str, Any] | None = field(default=None, repr=False)
    seconds: float
    images_per_second: float | None
    _record: dict[str, Any] = field(init=False, repr=False, compare=False)

    OPTIONAL: ClassVar[tuple[str, ...]] = ("transfer", "joint_accuracy", "heads", "factor_analysis")
    """The fields a record holds only where they apply."""

    def __post_init__(self) -> None:
        """The record of the fields, in their order (:meth:`from_record` keeps the one read)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        values["class_names"] = list(self.class_names)
        kept = {k: v for k, v in values.items() if v is not None or k not in self.OPTIONAL}
        object.__setattr__(self, "_record", copy.deepcopy(metrics_record(kept)))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Evaluation:
        """The evaluation a metrics record (as written, ``format`` included) describes."""
        names = [f.name for f in fields(cls) if f.init]
        values = {k: record[k] for k in names if k not in cls.OPTIONAL}
        values.update({k: record.get(k) for k in cls.OPTIONAL})
        values["class_names"] = tuple(record["class_names"])
        evaluation = cls(**values)
        object.__setattr__(evaluation, "_record", copy.deepcopy(dict(record)))
        return evaluation

    def to_dict(self) -> dict[str, Any]:
        """The metrics record, key for key as ``metrics-<split>.json`` holds it (a copy)."""
        return copy.deepcopy(self._record)


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    batch_size: int = 256,
    write: bool = True,
    dataset: str | Path | None = None,
    name: str | None = None,
    device: str = "cpu",
) -> Evaluation:
    """Evaluate a finished run on ``split`` of its own data and (by default) write
    ``metrics-<split>.json`` and ``predictions-<split>.npz`` into the run folder.

    ``device`` (cpu, auto, cuda or cuda:N) is where the model computes the predictions;
    the error galleries' Grad-CAM maps are drawn on the CPU.

    With ``dataset`` (a source :func:`~cnnlab.data.registry.load_dataset` accepts, with the
    same class names as the run), evaluate on that dataset's ``split`` instead, under ``name``
    (default: :func:`transfer_name` of the source); see :func:`result_files` for the files.
    Returns the metrics (:meth:`Evaluation.to_dict`: the record written).
    """
    _check_request(split, dataset, name)
    run = load_run(run_dir, device)
    if dataset is None:
        data, part, transfer = _own_split(run, run_dir, split)
    else:
        name = transfer_name(dataset) if name is None else _slug(name)
        data, part, transfer = _other_split(run, dataset, split, name)
    scores, arrays, outputs = measure(run, data, part, batch_size)
    run.model.cpu()  # the error galleries compute Grad-CAM on CPU images
    metrics = metrics_record(
        {
            "run": str(run_dir),
            "split": split,
            "dataset": data.name,
            "class_names": list(data.class_names),
            **({"transfer": transfer} if transfer else {}),
            **scores,
        }
    )
    if write:
        metrics_path, predictions_path = result_files(run_dir, split, name)
        write_json(metrics_path, metrics)
        write_npz(predictions_path, {"label": part.labels.numpy(), **arrays})
        where = f"{transfer['name'] if transfer else data.name} {split}"
        files = RunFolder(run_dir).errors(split, name)
        write_errors(run, data, part, outputs, files, where, pictures=transfer is None)
    return Evaluation.from_record(metrics)


def _check_request(split: str, dataset: str | Path | None, name: str | None) -> None:
    """The split and the other data asked for go together."""
    if split not in SPLITS:
        raise CnnlabError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "val" and dataset is not None:
        raise CnnlabError("--split val is the run's own validation split: not with --dataset")
    if dataset is None and name is not None:
        raise CnnlabError("--name names an evaluation on other data: give --dataset too")


def _own_split(run: Run, run_dir: str | Path, split: str) -> tuple[ImageDataset, Split, None]:
    """The run's own data and its ``split`` (no transfer)."""
    data = prepare_dataset(run.config)
    part = getattr(data, split)
    if part is None:
        raise CnnlabError(
            f"{run_dir}: the run has no validation split (it trained without data.val_fraction)"
        )
    return data, part, None


def _other_split(
    run: Run, dataset: str | Path, split: str, name: str
) -> tuple[ImageDataset, Split, dict[str, Any]]:
    """Another dataset with the run's classes, its ``split``, and the transfer record."""
    if not name:
        raise CnnlabError("--name: give a name with at least one letter or digit")
    data = load_transfer_dataset(run, dataset)
    part = getattr(data, split)
    if not len(part):
        raise CnnlabError(f"dataset {dataset}: its {split} split has no images")
    transfer = {
        "name": name,
        "source": str(dataset),
        "split": split,
        "provenance": jsonable(data.provenance),
        "training_copies": training_copies(run, part.images),
    }
    return data, part, transfer


def measure(
    run: Run, data: ImageDataset, part: Split, batch_size: int = 256
) -> tuple[dict[str, Any], dict[str, np.ndarray], torch.Tensor | dict[str, torch.Tensor]]:
    """The metrics of ``run`` on ``part`` (a split of ``data``): loss, scores, speed; the
    prediction arrays (``predicted``, and ``probability`` or each head's ``predicted_<head>``);
    and the model's outputs (logits, or a dict of head logits)."""
    start = time.perf_counter()
    outputs = run.outputs(part.images, batch_size)
    seconds = time.perf_counter() - start
    if isinstance(outputs, dict):
        scores, arrays = _multihead_scores(run, data, part, outputs)
    else:
        scores, arrays = _single_scores(run, data, part, outputs)
    speed = {"seconds": seconds, "images_per_second": len(part) / seconds if seconds else None}
    return {**scores, **speed}, arrays, outputs


def _multihead_scores(
    run: Run, data: ImageDataset, part: Split, outputs: dict[str, torch.Tensor]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    objective = MultiHead(dict(run.model.heads), run.config.train.head_weights)
    losses = {
        name: float(objective.head_loss(name, outputs[name], part.factors[name]))
        for name in outputs
    }
    scores, arrays = multihead_metrics(
        outputs, part.factors, part.labels.numpy(), data.factor_levels, data.class_names, losses
    )
    total = sum(objective.weights[n] * v for n, v in losses.items())
    return {"loss": total, **scores}, arrays


def _single_scores(
    run: Run, data: ImageDataset, part: Split, outputs: torch.Tensor
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    labels = part.labels.numpy()
    loss = float(build_loss(run.config.train, data.num_classes)(outputs, part.labels))
    probabilities = outputs.softmax(dim=1)
    predicted = probabilities.argmax(dim=1).numpy()
    scores = {"loss": loss, **classification_metrics(labels, predicted, data.num_classes)}
    if data.factor_levels:
        scores["factor_analysis"] = factor_analysis(
            labels, predicted, data.factor_levels, data.class_names
        )
    arrays = {"predicted": predicted, "probability": probabilities.to(torch.float32).numpy()}
    return scores, arrays


# -- transfer: another dataset with the run's classes --------------------------------------------


def result_files(
    run_dir: str | Path, split: str = "test", transfer: str | None = None
) -> tuple[Path, Path]:
    """Where an evaluation's metrics and predictions go in ``run_dir`` (the run folder's
    :meth:`~cnnlab.runfolder.RunFolder.metrics` and ``predictions``)."""
    folder = RunFolder(run_dir)
    return folder.metrics(split, transfer), folder.predictions(split, transfer)


def transfer_name(source: str | Path) -> str:
    """The default name of an evaluation on ``source``: a slug of its folder or file stem
    (the folder's name for a ``lines.npz``)."""
    path = Path(source).expanduser().resolve()
    if path.name == "lines.npz":
        path = path.parent
    return _slug(path.stem if path.suffix == ".npz" else path.name) or "data"


def load_transfer_dataset(run: Run, source: str | Path) -> ImageDataset:
    """``source`` loaded with the run's seed (and its MNIST settings), checked against the run:
    same class names in the same order, the factors its heads need, the same image shape."""
    d = run.config.data
    mnist_dir = d.mnist_dir if str(source) == "mnist" else None
    data = load_dataset(
        source,
        seed=run.config.seed,
        mnist_dir=mnist_dir,
        mnist_split=d.mnist_split,
        image_size=d.image_size,
        channels=d.channels,
        test_fraction=d.test_fraction,
    )
    problem = _class_mismatch(data.class_names, run.class_names) or _shape_mismatch(data, run)
    if problem is None and isinstance(getattr(run.model, "heads", None), dict):
        problem = _factor_mismatch(data, run)
    if problem is not None:
        raise CnnlabError(f"dataset {source}: {problem}")
    return data


def training_copies(run: Run, images: torch.Tensor) -> dict[str, Any]:
    """How many of ``images`` are pixel for pixel one of the run's training images."""
    try:
        train = prepare_dataset(run.config).train.images
    except CnnlabError as exc:
        return {"checked": False, "reason": f"the run's training data did not load: {exc}"}
    ids = identity_groups(train, images)
    copies = int(np.isin(ids[len(train) :], ids[: len(train)]).sum())
    return {"checked": True, "images": len(images), "copies": copies, "train_images": len(train)}


def _class_mismatch(names: tuple[str, ...], run_names: tuple[str, ...]) -> str | None:
    if tuple(names) == tuple(run_names):
        return None
    if len(names) == len(run_names) and set(names) == set(run_names):
        return (
            f"the same {len(names)} classes as the run, but in another order "
            f"({_describe_classes(names)} against {_describe_classes(run_names)})"
        )
    if len(names) == len(run_names):
        i = next(i for i, (a, b) in enumerate(zip(names, run_names, strict=True)) if a != b)
        return (
            f"{len(names)} classes, but class {i} is {names[i]!r} there and {run_names[i]!r} "
            "in the run (the class names must be the run's, in the same order)"
        )
    return (
        f"{len(names)} classes {_describe_classes(names)}, but the run was trained on "
        f"{len(run_names)} classes {_describe_classes(run_names)}"
    )


def _describe_classes(names: tuple[str, ...]) -> str:
    """``0..9``, ``a, b, c`` or ``first, second ... last``."""
    if len(names) <= 3:
        return ", ".join(names)
    if all(n.isdigit() for n in names) and [int(n) for n in names] == list(
        range(int(names[0]), int(names[0]) + len(names))
    ):
        return f"{names[0]}..{names[-1]}"
    return f"{names[0]}, {names[1]} ... {names[-1]}"


def _shape_mismatch(data: ImageDataset, run: Run) -> str | None:
    pre = run.preprocess
    want = (pre.channels, *pre.image_size)
    have = tuple(int(v) for v in data.test.images.shape[1:])
    if have == want:
        return None
    return f"images are {_shape(have)}, but the run was trained on {_shape(want)} images"


def _shape(chw: tuple[int, ...]) -> str:
    channels, height, width = chw
    return f"{height}x{width} with {channels} channel{'s' if channels != 1 else ''}"


def _factor_mismatch(data: ImageDataset, run: Run) -> str | None:
    for head in run.model.heads:
        if head not in data.factor_levels or head not in data.test.factors:
            have = ", ".join(data.factor_levels) or "none"
            return f"no factor {head!r}, which the run's head {head!r} needs (it has: {have})"
        levels = [str(v) for v in data.factor_levels[head]]
        wanted = [str(v) for v in run.factor_levels.get(head, levels)]
        if levels != wanted:
            return (
                f"factor {head!r} has levels {', '.join(levels)}, but the run's head {head!r} "
                f"was trained on {', '.join(wanted)}"
            )
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def summary_lines(metrics: Evaluation | Mapping[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    if isinstance(metrics, Evaluation):
        metrics = metrics.to_dict()
    transfer = metrics.get("transfer")
    where = f"{metrics['dataset']} {metrics['split']}"
    if transfer:
        where = f"{transfer['name']} ({transfer['source']}, {metrics['split']} split)"
    lines = [
        f"{where}: accuracy {metrics['accuracy']:.4f}, "
        f"loss {metrics['loss']:.4f}, macro F1 {metrics['macro']['f1']:.4f} "
        f"({metrics['n']} images, {metrics['images_per_second'] or 0:,.0f} images/s)"
    ]
    if transfer:
        lines.append(f"  {copies_text(transfer.get('training_copies') or {})}")
    for name, head in metrics.get("heads", {}).items():
        lines.append(
            f"  head {name}: accuracy {head['accuracy']:.4f}, loss {head['loss']:.4f}, "
            f"macro F1 {head['macro']['f1']:.4f}"
        )
    if "joint_accuracy" in metrics:
        lines.append(f"  joint accuracy (all heads right) {metrics['joint_accuracy']:.4f}")
    analysis = metrics.get("factor_analysis")
    if analysis:
        per = ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in analysis["factors"].items())
        lines.append(f"  per factor: {per}")
        if analysis["errors"]:
            worst = next(iter(analysis["errors_by_differing_factors"].items()))
            lines.append(
                f"  {analysis['errors']} errors; most often only {worst[0]} differs ({worst[1]})"
            )
    return lines


def copies_text(copies: dict[str, Any]) -> str:
    """``none of the 384 images is a copy of a training image`` (or how many are)."""
    if not copies.get("checked"):
        return f"not checked for copies of training images ({copies.get('reason', 'unknown')})"
    n, k = int(copies["images"]), int(copies["copies"])
    if k == 0:
        return f"none of the {n:,} images is a copy of a training image"
    return (
        f"{k:,} of {n:,} images ({100 * k / n:.1f}%) are copies of training images: "
        "accuracy on them measures memory, not transfer"
    )


__all__ = [
    "Evaluation",
    "copies_text",
    "evaluate_run",
    "load_transfer_dataset",
    "measure",
    "result_files",
    "summary_lines",
    "training_copies",
    "transfer_name",
]
