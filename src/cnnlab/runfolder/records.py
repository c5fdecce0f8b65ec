"""The run folder's records: ``run.json`` (:class:`RunInfo`), ``history.csv``, the metrics
files, and the JSON reading they share. Every JSON record carries ``format`` (its version);
files written before versions existed read as version 1."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_open

FORMAT = 1
"""The version of the run folder's JSON records written by this cnnlab."""


# -- run.json -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetFacts:
    """What a reader needs to know of a run's dataset: its name, sizes, classes, factors and
    whether its images carry object masks (Lines: the line's pixels)."""

    name: str
    train: int
    test: int
    class_names: tuple[str, ...]
    val: int = 0  # validation images, taken from the training split
    factor_levels: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    masks: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def factorised(self) -> bool:
        """Whether each class is a combination of factor levels (Lines: length, width, ...)."""
        return bool(self.factor_levels)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        out["factor_levels"] = {k: list(v) for k, v in self.factor_levels.items()}
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], origin: str) -> DatasetFacts:
        _require(raw, ("name", "class_names"), origin, "dataset")
        levels = raw.get("factor_levels") or {}
        return cls(
            name=str(raw["name"]),
            train=int(raw.get("train") or 0),
            test=int(raw.get("test") or 0),
            val=int(raw.get("val") or 0),
            class_names=tuple(str(c) for c in raw["class_names"]),
            factor_levels={str(k): tuple(v) for k, v in levels.items()},
            # written since format 1; before, only Lines data had masks (and was named so)
            masks=bool(raw.get("masks", raw["name"] == "lines")),
            provenance=dict(raw.get("provenance") or {}),
        )


@dataclass(frozen=True)
class RunInfo:
    """``run.json``: a run's provenance and status."""

    status: str
    name: str
    seed: int
    dataset: DatasetFacts
    preprocess: dict[str, Any]
    model: dict[str, Any]
    started: str | None = None
    finished: str | None = None
    train_seconds: float | None = None
    final: dict[str, float] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    data_check: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    """With ``train.patience``: patience, min_delta, best_epoch, stopped_after_epoch (None
    when it ran every epoch)."""
    weights: dict[str, Any] | None = None
    """The weights the run keeps: ``epoch`` (of ``epochs`` trained) and ``chosen`` (``best on
    validation`` or ``last epoch``); None in runs from before it was recorded."""
    format: int = FORMAT

    def replace(self, **changes: Any) -> RunInfo:
        from dataclasses import replace

        return replace(self, **changes)

    def finish(self, train_seconds: float, final: dict[str, float]) -> RunInfo:
        """This record marked finished now."""
        return self.replace(
            status="finished", finished=now(), train_seconds=train_seconds, final=final
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["dataset"] = self.dataset.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: Any, origin: str = "run.json") -> RunInfo:
        if not isinstance(raw, dict):
            raise CnnlabError(f"{origin}: expected a JSON object")
        found = format_of(raw, origin)
        _require(raw, ("status", "dataset", "preprocess", "model"), origin)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values.update(
            format=found,
            name=str(raw.get("name", "run")),
            seed=int(raw.get("seed", 0)),
            dataset=DatasetFacts.from_dict(raw["dataset"], origin),
        )
        return cls(**values)


def now() -> str:
    """The time stamp of run records (``2026-12-01T12:00:00+0000``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# -- history.csv ----------------------------------------------------------------------------------


def write_history(
    path: Path, rows: Sequence[Mapping[str, float]], columns: Sequence[str] = ()
) -> None:
    """``history.csv``: one row per epoch (``epoch`` as is, other figures to 6 digits)."""
    buffer = io.StringIO()
    names = list(rows[0]) if rows else list(columns)
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (row[k] if k == "epoch" else f"{row[k]:.6g}") for k in names})
    with atomic_open(path) as handle:
        handle.write(buffer.getvalue())


def read_history(path: Path) -> list[dict[str, float]]:
    """The rows of a ``history.csv``; a one-line error when it cannot be read."""
    try:
        with open(path, newline="") as handle:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    except (OSError, ValueError, TypeError) as exc:
        raise CnnlabError(f"{path}: cannot read the history ({exc})") from None


# -- metrics-<tag>.json ---------------------------------------------------------------------------

METRICS_KEYS = (
    "split",
    "dataset",
    "class_names",
    "n",
    "accuracy",
    "loss",
    "macro",
    "weighted",
    "per_class",
    "confusion",
)
"""What every metrics file holds; multi-head runs add ``heads`` and ``joint_accuracy``,
factorised classes ``factor_analysis``, evaluations on other data ``transfer``."""


def read_metrics(path: Path) -> dict[str, Any]:
    """A metrics file, checked to hold :data:`METRICS_KEYS` (one-line error otherwise)."""
    raw = read_json(path)
    format_of(raw, str(path))
    _require(raw, METRICS_KEYS, str(path))
    return raw


def metrics_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a metrics record to write (with its ``format``)."""
    return {"format": FORMAT, **values}


# -- JSON ----------------------------------------------------------------------------------------


def read_json(path: Path, part: bool = False) -> dict[str, Any]:
    """A JSON object from ``path``; a one-line :class:`CnnlabError` naming the file if not
    (``part``: by its name alone, for a note about one file of a folder already named)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        why = type(exc).__name__ if part else exc
        raise CnnlabError(
            f"{path.name} cannot be read ({why})" if part else f"{path}: cannot read ({why})"
        ) from None
    if not isinstance(data, dict):
        raise CnnlabError(
            f"{path.name} is not a JSON object" if part else f"{path}: expected a JSON object"
        )
    return data


def format_of(raw: Mapping[str, Any], origin: str) -> int:
    """A record's ``format`` (1 when absent); a newer one than this cnnlab reads is refused."""
    version = raw.get("format", 1)
    if not isinstance(version, int) or version < 1:
        raise CnnlabError(f"{origin}: format must be a positive integer, got {version!r}")
    if version > FORMAT:
        raise CnnlabError(
            f"{origin}: written by a newer cnnlab (format {version}; this one reads up to "
            f"{FORMAT}): upgrade cnnlab"
        )
    return version


def _require(raw: Mapping[str, Any], keys: Sequence[str], origin: str, part: str = "") -> None:
    if not isinstance(raw, Mapping):
        raise CnnlabError(f"{origin}: {part or 'the record'} is not a JSON object")
    missing = [k for k in keys if k not in raw]
    if missing:
        where = f" {part}" if part else ""
        raise CnnlabError(
            f"{origin}:{where} lacks {', '.join(missing)} (written by another cnnlab? "
            "evaluate or train the run again with this one)"
        )
