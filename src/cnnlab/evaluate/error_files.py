"""The error analysis of an evaluation, written: ``errors.json``, ``misclassified.csv`` and the
galleries (see :class:`~cnnlab.runfolder.ErrorFiles`).

The galleries show the top losses beside their Grad-CAM heatmaps, for the predicted and for
the true class, at the model's last convolution or pooling layer, and a few images of each of
the most confused pairs. A multi-head model gets them per head.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.evaluate.errors import (
    EXAMPLES_PER_PAIR,
    error_analysis,
    misclassified,
    multihead_error_analysis,
    multihead_misclassified,
)
from cnnlab.evaluate.heads import head_probabilities
from cnnlab.fileio import atomic_path, write_json
from cnnlab.runfolder import ErrorFiles, metrics_record
from cnnlab.training.run import Run
from cnnlab.visualize.cam import grad_cam
from cnnlab.visualize.gallery import plot_confused_pairs, plot_top_losses
from cnnlab.visualize.hooks import ExplanationLayer, explanation_layer


def write_errors(
    run: Run,
    data: ImageDataset,
    part: Split,
    outputs: torch.Tensor | dict[str, torch.Tensor],
    files: ErrorFiles,
    where: str,
    pictures: bool = True,
) -> dict[str, Any]:
    """Analyse where ``run`` fails on ``part`` (its ``outputs`` there) and write the files;
    returns the ``errors.json`` record. ``where`` names the data in titles (``mnist test``);
    ``pictures`` False leaves out the galleries (evaluations on other data: the numbers and
    the table only)."""
    files.folder.mkdir(parents=True, exist_ok=True)
    labels = part.labels.numpy()
    sources = part.source_names()
    shape = (run.preprocess.channels, *run.preprocess.image_size)
    layer = explanation_layer(run.model, shape) if pictures else ExplanationLayer(None)
    size = f" ({layer.size[0]}x{layer.size[1]} map)" if layer.size else ""
    record: dict[str, Any] = {
        "split_name": where,
        "heatmap": f"Grad-CAM at {layer.label}{size}" if layer.name else None,
        **({"heatmap_note": layer.note} if layer.note else {}),
        "sources": "files" if part.sources is not None else "split indices (#<index>)",
        "table": files.table.name,
    }
    if isinstance(outputs, dict):
        doubled = {k: v.double() for k, v in outputs.items()}  # float64: no loss of inf
        probs = {k: v.numpy() for k, v in head_probabilities(doubled).items()}
        factors = {name: part.factors[name].numpy() for name in probs}
        levels = data.factor_levels
        analysis = multihead_error_analysis(
            factors, probs, levels, labels, data.class_names, sources
        )
        record.update(analysis["joint"])
        record["heads"] = analysis["heads"]
        for name, head in record["heads"].items():
            head["pictures"] = (
                _pictures(run, part, head, probs[name], factors[name], files, layer, name, where)
                if pictures
                else {}
            )
        rows = multihead_misclassified(factors, probs, levels, labels, data.class_names, sources)
    else:
        probs_single = outputs.double().softmax(dim=1).numpy()
        record.update(error_analysis(labels, probs_single, data.class_names, sources))
        record["pictures"] = (
            _pictures(run, part, record, probs_single, labels, files, layer, None, where)
            if pictures
            else {}
        )
        rows = misclassified(labels, probs_single, data.class_names, sources)
    _write_table(files.table, rows)
    record = metrics_record(record)
    write_json(files.summary, record)
    return record


def _pictures(
    run: Run,
    part: Split,
    analysis: dict[str, Any],
    probabilities: np.ndarray,
    truth: np.ndarray,
    files: ErrorFiles,
    layer: ExplanationLayer,
    head: str | None,
    where: str,
) -> dict[str, str]:
    """Draw the top-loss gallery (with heatmaps where the model has a spatial layer) and the
    confused pairs of one classifier (a head); their file names."""
    pictures: dict[str, str] = {}
    about = f"{where}, head {head}" if head else where
    top = [row["index"] for row in analysis["top_losses"]]
    if top and layer.name is not None:
        index = torch.tensor(top)
        images = part.images[index]
        inputs = run.preprocess(images)
        predicted = torch.from_numpy(probabilities[top].argmax(axis=1))
        true = torch.from_numpy(np.asarray(truth)[top])
        maps = {
            name: grad_cam(run.model, inputs, layer.name, head=head, target=target).maps
            for name, target in (("predicted", predicted), ("true", true))
        }
        captions = [_caption(row) for row in analysis["top_losses"]]
        path = plot_top_losses(
            images,
            maps["predicted"],
            maps["true"],
            captions,
            files.top_losses(head),
            title=f"The {len(top)} highest losses ({about}): each image, then Grad-CAM at "
            f"{layer.label} for the predicted class and for the true class",
        )
        pictures["top_losses"] = path.name
    pairs = analysis["confused_pairs"]
    if pairs:
        shown = [
            (
                f"true {p['true']} → predicted {p['predicted']}: {p['count']} "
                f"({100 * p['share_of_true']:.1f}% of {p['true']})",
                part.images[torch.tensor(p["examples"], dtype=torch.long)],
            )
            for p in pairs
        ]
        path = plot_confused_pairs(
            shown,
            EXAMPLES_PER_PAIR,
            files.confused_pairs(head),
            title=f"The most confused pairs ({about}), with their highest-loss images",
        )
        pictures["confused_pairs"] = path.name
    return pictures


def _caption(row: dict[str, Any]) -> str:
    return (
        f"{row['source']}\ntrue {row['true']} → {row['predicted']} "
        f"(p {row['probability']:.2f}, loss {row['loss']:.2f})"
    )


def _write_table(path, rows: Sequence[dict[str, Any]]) -> None:
    """The misclassified images as CSV (a header only when there are none), atomically."""
    columns = list(rows[0]) if rows else ["index", "source", "true", "predicted", "loss"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
