"""A run folder read for a report: its config text, provenance, history and test metrics.

Reading checks that the folder is a finished, evaluated run (the caller evaluates first:
:func:`cnnlab.pipeline.prepare_runs`) and reads its evaluations on other data as they are.
The files and their shapes are :mod:`cnnlab.runfolder`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import Pictures, RunFolder, RunInfo, read_json, read_metrics
from cnnlab.runfolder.records import format_of


@dataclass(frozen=True)
class RunRecord:
    """Everything the report shows about one run."""

    path: Path
    label: str
    config_text: str
    run: RunInfo
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    transfers: tuple[dict[str, Any], ...] = ()
    """The metrics of each evaluation on other data, in file-name order."""
    pictures: Pictures | None = None
    """The run's visualize folder, checked (None: none, or it cannot be shown)."""
    pictures_problem: str | None = None
    """Why the visualize folder cannot be shown."""
    errors: dict[str, Any] | None = None
    """The error analysis of the test split (``errors.json``), with ``folder`` added: where
    its pictures are."""
    augmented: Path | None = None
    """The grid of augmented training images training drew (None: none, as without
    augmentation or for an older run)."""

    @property
    def augment(self) -> str | list[Any] | None:
        """``train.augment`` of the run's config (None when the config has none: an older
        run)."""
        try:
            config = yaml.safe_load(self.config_text)
        except yaml.YAMLError:
            return None
        train = config.get("train") if isinstance(config, dict) else None
        value = train.get("augment") if isinstance(train, dict) else None
        return value if isinstance(value, str | list) else None

    @property
    def augment_text(self) -> str | None:
        """``train.augment`` written plainly (``standard``; ``hflip, noise(std=0.05)``), or
        None when the config has none."""
        value = self.augment
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return ", ".join(_augment_item(item) for item in value) or "none"

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics["class_names"])

    @property
    def factor_levels(self) -> dict[str, list[str]]:
        """The dataset's factors and their levels (empty unless the classes are factorised)."""
        levels = self.run.dataset.factor_levels
        return {name: [str(v) for v in values] for name, values in levels.items()}

    @property
    def factor_analysis(self) -> dict[str, Any] | None:
        return self.metrics.get("factor_analysis")

    @property
    def heads(self) -> dict[str, dict[str, Any]]:
        """A multi-head run's per-head test metrics (``metrics-test.json`` → ``heads``), else {}."""
        return dict(self.metrics.get("heads") or {})

    @property
    def kind(self) -> str:
        """``multi-head (4 heads)`` or ``96-way`` (one output per class)."""
        heads = self.heads
        if heads:
            return f"multi-head ({len(heads)} heads)"
        return f"{len(self.class_names)}-way"

    @property
    def factor_accuracy(self) -> dict[str, float]:
        """Accuracy of each factor of the predicted class (a multi-head net's head accuracies),
        in the dataset's factor order; empty when the classes are not factorised."""
        factors = (self.factor_analysis or {}).get("factors", {})
        heads = self.heads
        out = {}
        for name in [*self.factor_levels, *factors, *heads]:
            if name in out:
                continue
            source = heads.get(name) or factors.get(name)
            if source is not None and isinstance(source.get("accuracy"), int | float):
                out[name] = float(source["accuracy"])
        return out

    @property
    def holdout(self) -> dict[str, Any] | None:
        """``dataset.provenance.holdout`` of ``run.json``: the held-out spec and ``classes``."""
        holdout = self.run.dataset.provenance.get("holdout")
        return holdout if isinstance(holdout, dict) and holdout.get("classes") else None

    @property
    def data_check(self) -> dict[str, Any] | None:
        """``run.json``'s ``data_check`` (duplicate and overlap counts), if training wrote one."""
        return self.run.data_check

    @property
    def test_overlap(self) -> bool:
        """Whether the data check found test images equal to training images."""
        return bool((self.data_check or {}).get("overlap"))

    @property
    def test_copies(self) -> tuple[int, int] | None:
        """(test images equal to a training image, test images) from the data check."""
        check = self.data_check
        if check is None:
            return None
        total = (check.get("images") or {}).get("test")
        copies = (check.get("duplicates") or {}).get("test_in_train", 0)
        if not isinstance(total, int) or not isinstance(copies, int):
            return None
        return copies, total

    @property
    def data_check_line(self) -> str | None:
        """One sentence on the test split's copies of training images (None without a check)."""
        counts = self.test_copies
        if counts is None:
            return None
        copies, total = counts
        if not self.test_overlap:
            return f"test split: {total:,} images, none equal to a training image"
        share = f" ({100 * copies / total:.1f}%)" if total else ""
        return (
            f"{copies:,} of {total:,} test images{share} are copies of training images: "
            "this accuracy measures memory, not generalisation"
        )

    @property
    def own_result(self) -> dict[str, Any]:
        """The run's own test split, in the terms of :attr:`transfer_results`."""
        row = result_row(self.metrics)
        counts = self.test_copies
        if counts is not None:
            row["copies"] = counts[0] if self.test_overlap else 0
        return {**row, "name": "own test split", "source": row["dataset"]}

    @property
    def transfer_results(self) -> list[dict[str, Any]]:
        """Each evaluation on other data: ``name``, ``source``, ``split``, ``dataset``, ``n``,
        ``accuracy``, ``joint_accuracy``, ``heads`` (name → accuracy) and ``copies`` (images
        equal to a training image; None when not checked)."""
        rows = []
        for metrics in self.transfers:
            transfer = metrics.get("transfer") or {}
            copies = transfer.get("training_copies") or {}
            rows.append(
                {
                    **result_row(metrics),
                    "name": str(transfer.get("name", "–")),
                    "source": str(transfer.get("source", "–")),
                    "split": str(transfer.get("split", metrics.get("split", "test"))),
                    "copies": copies.get("copies") if copies.get("checked") else None,
                }
            )
        return rows

    def head_history(self) -> list[str]:
        """Heads with per-epoch columns (``test_<head>_acc``) in ``history.csv``, head order."""
        if not self.history:
            return []
        columns = self.history[0]
        names = [*self.heads, *(k[5:-4] for k in columns if k.startswith("test_"))]
        return [
            name
            for i, name in enumerate(names)
            if name not in names[:i] and f"test_{name}_acc" in columns
        ]


def _augment_item(item: Any) -> str:
    """One item of a ``train.augment`` list: ``hflip``, ``noise(std=0.05, p=1.0)``."""
    if isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        shown = ", ".join(
            f"{k}={v}" for k, v in (params.items() if isinstance(params, dict) else ())
        )
        return f"{name}({shown})" if shown else str(name)
    return str(item)


def result_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a metrics file gives for one row of the "Tested on other data" table."""
    heads = metrics.get("heads") or {}
    return {
        "dataset": str(metrics.get("dataset", "–")),
        "split": str(metrics.get("split", "test")),
        "n": metrics.get("n"),
        "accuracy": metrics.get("accuracy"),
        "joint_accuracy": metrics.get("joint_accuracy"),
        "heads": {name: head.get("accuracy") for name, head in heads.items()},
        "copies": None,
    }


def read_runs(run_dirs: Sequence[Path]) -> list[RunRecord]:
    """Read every run folder (in order), labelled by :func:`run_labels`."""
    if not run_dirs:
        raise CnnlabError("no run folders given")
    paths = [Path(p) for p in run_dirs]
    return [read_run(p, label) for p, label in zip(paths, run_labels(paths), strict=True)]


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: each folder's path below the folders' common parent."""
    absolute = [p.resolve() for p in paths]
    if len(absolute) == 1:
        return [absolute[0].name or str(absolute[0])]
    common = Path(os.path.commonpath(absolute))
    labels = [str(p.relative_to(common)) if p != common else p.name for p in absolute]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def read_run(run_dir: Path, label: str) -> RunRecord:
    """One finished, evaluated run folder as a :class:`RunRecord`; a clear
    :class:`CnnlabError` if it is not one."""
    folder = RunFolder(run_dir)
    folder.require(finished=True)
    if not folder.evaluated():
        what = (
            "not evaluated"
            if not folder.metrics().is_file()
            else "evaluated without an error analysis (by an older cnnlab)"
            if not folder.errors().summary.is_file()
            else "older than its model"
        )
        raise CnnlabError(
            f"{folder.path}: the run is {what}; evaluate it first with cnnlab evaluate "
            f"{folder.path} (cnnlab report does it for you)"
        )
    return RunRecord(
        path=folder.path,
        label=label,
        config_text=folder.config.read_text(),
        run=folder.read_info(),
        history=folder.read_history(),
        metrics=folder.read_metrics(),
        transfers=tuple(read_metrics(path) for path in folder.transfer_metrics()),
        **dict(zip(("pictures", "pictures_problem"), pictures_of(folder), strict=True)),
        errors=_errors_of(folder),
        augmented=folder.augmented if folder.augmented.is_file() else None,
    )


def _errors_of(folder: RunFolder) -> dict[str, Any]:
    files = folder.errors()
    record = read_json(files.summary)
    format_of(record, str(files.summary))
    return {**record, "folder": files.folder}


def pictures_of(folder: RunFolder) -> tuple[Pictures | None, str | None]:
    """The run's visualize folder and, when it cannot be shown, why (never raises)."""
    try:
        return folder.read_pictures(), None
    except CnnlabError as exc:
        return None, str(exc)
