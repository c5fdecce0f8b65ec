"""``evaluate``: predictions of a run on a split, every metric from them, ``metrics.json``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.npzio import write_npz
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.factors import factor_analysis
from cnnlab.evaluate.heads import multihead_metrics
from cnnlab.evaluate.metrics import classification_metrics
from cnnlab.fileio import write_json
from cnnlab.models.inference import batched_outputs
from cnnlab.training.objectives import MultiHead
from cnnlab.training.optim import build_loss
from cnnlab.training.run import load_run, prepare_dataset


def evaluate_run(
    run_dir: str | Path, split: str = "test", batch_size: int = 256, write: bool = True
) -> dict[str, Any]:
    """Evaluate a finished run on ``split`` and (by default) write ``metrics-<split>.json``
    and ``predictions-<split>.npz`` into the run folder; returns the metrics."""
    if split not in ("test", "train"):
        raise CnnlabError(f"--split must be test or train, got {split!r}")
    run = load_run(run_dir)
    dataset = prepare_dataset(run.config)
    part = getattr(dataset, split)
    start = time.perf_counter()
    outputs = batched_outputs(run.model, part.images, run.preprocess, batch_size)
    seconds = time.perf_counter() - start
    labels = part.labels
    common = {
        "run": str(run_dir),
        "split": split,
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
    }
    speed = {"seconds": seconds, "images_per_second": len(part) / seconds if seconds else None}
    if isinstance(outputs, dict):
        objective = MultiHead(dict(run.model.heads), run.config.train.head_weights)
        losses = {
            name: float(objective.head_loss(name, outputs[name], part.factors[name]))
            for name in outputs
        }
        scores, arrays = multihead_metrics(
            outputs,
            part.factors,
            labels.numpy(),
            dataset.factor_levels,
            dataset.class_names,
            losses,
        )
        total = sum(objective.weights[n] * v for n, v in losses.items())
        metrics: dict[str, Any] = {**common, "loss": total, **scores, **speed}
    else:
        loss = float(build_loss(run.config.train, dataset.num_classes)(outputs, labels))
        probabilities = outputs.softmax(dim=1)
        predicted = probabilities.argmax(dim=1).numpy()
        metrics = {
            **common,
            "loss": loss,
            **classification_metrics(labels.numpy(), predicted, dataset.num_classes),
            **speed,
        }
        if dataset.factor_levels:
            metrics["factor_analysis"] = factor_analysis(
                labels.numpy(), predicted, dataset.factor_levels, dataset.class_names
            )
        arrays = {"predicted": predicted, "probability": probabilities.to(torch.float32).numpy()}
    if write:
        folder = Path(run_dir)
        write_json(folder / f"metrics-{split}.json", metrics)
        write_npz(folder / f"predictions-{split}.npz", {"label": labels.numpy(), **arrays})
    return metrics


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    lines = [
        f"{metrics['dataset']} {metrics['split']}: accuracy {metrics['accuracy']:.4f}, "
        f"loss {metrics['loss']:.4f}, macro F1 {metrics['macro']['f1']:.4f} "
        f"({metrics['n']} images, {metrics['images_per_second'] or 0:,.0f} images/s)"
    ]
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


__all__ = ["evaluate_run", "summary_lines"]
