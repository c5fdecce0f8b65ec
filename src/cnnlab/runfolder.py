"""The run folder: the one owner of its file names, their shapes, and what state a run is in.

A run folder holds::

    config.yaml                      the resolved config (cnnlab.training.config reads it)
    run.json                         RunInfo: provenance, dataset facts, data check, status
    history.csv                      one row per epoch
    checkpoints/last.pt, best.pt     training state, for an exact resume
    model.safetensors                the final weights
    metrics-<tag>.json               Metrics of an evaluation (tag: test, train, transfer-<name>)
    predictions-<tag>.npz            its predictions
    visualize/summary.json           what `cnnlab visualize` drew (and scores.json)

Every other module asks :class:`RunFolder` for a path and reads or writes these files through
the records here (:class:`RunInfo`, :func:`read_history`, :func:`read_metrics`); none spells a
file name. Every JSON record carries ``format`` (its version); files written before versions
existed read as version 1.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_open, write_json

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

FORMAT = 1
"""The version of the run folder's JSON records written by this cnnlab."""

STATES = ("absent", "started", "partial", "trained", "done", "diverged")
"""A run's states, in the order a run passes them (``diverged`` is final, like ``done``)."""

FINAL_STATES = ("done", "diverged")

SPLITS = ("test", "train", "val")
"""The splits of a run's own data an evaluation can measure (``metrics-<split>.json``)."""


CONFIG = "config.yaml"
INFO = "run.json"
HISTORY = "history.csv"
WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"
VISUALIZE = "visualize"
LOCK = ".cnnlab-lock"


class _File:
    """A file (or folder) of the run folder, by name: ``RunFolder(...).config`` is its path."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, folder: RunFolder, owner: type | None = None) -> Path:
        return folder.path / self.name


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder, and what state the run in it is in."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    config = _File(CONFIG)
    info = _File(INFO)
    history = _File(HISTORY)
    weights = _File(WEIGHTS)
    checkpoints = _File(CHECKPOINTS)
    visualize = _File(VISUALIZE)
    """Where ``cnnlab visualize`` writes by default, and where the report looks."""
    lock_file = _File(LOCK)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for one writer (a training) for the block: an advisory lock
        on ``.cnnlab-lock`` that the system releases when the process ends, however it ends,
        so a crash leaves no stale lock. Another holder: a one-line :class:`CnnlabError`
        naming it."""
        if fcntl is None:  # not a POSIX system: no lock
            yield
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_file, "a+")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise CnnlabError(
                f"{self.path}: cannot create the run folder ({exc.strerror or exc})"
            ) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise CnnlabError(
                    f"{self.path}: in use by {holder}; wait for it to finish (or stop it) "
                    "and try again"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"cnnlab (pid {os.getpid()} on {socket.gethostname()}, since {now()})")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def locked(self) -> bool:
        """Whether a process holds :meth:`lock` now."""
        if fcntl is None or not self.lock_file.is_file():
            return False
        with open(self.lock_file) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def checkpoint(self, name: str = "last") -> Path:
        """``checkpoints/<name>.pt`` (``last`` or ``best``)."""
        return self.checkpoints / f"{name}.pt"

    def metrics(self, split: str = "test", transfer: str | None = None) -> Path:
        """``metrics-<split>.json``; on other data named ``transfer``,
        ``metrics-transfer-<transfer>.json`` (``.<split>`` before the suffix unless test)."""
        return self.path / f"metrics-{_tag(split, transfer)}.json"

    def predictions(self, split: str = "test", transfer: str | None = None) -> Path:
        """``predictions-<tag>.npz``, beside :meth:`metrics`."""
        return self.path / f"predictions-{_tag(split, transfer)}.npz"

    def transfer_metrics(self) -> list[Path]:
        """Every evaluation on other data (test split), by name."""
        found = self.path.glob(self.metrics("test", "*").name)
        return sorted(p for p in found if "." not in p.stem)  # ``.<split>``: another split

    # -- state ------------------------------------------------------------------------------

    def status(self) -> str | None:
        """``run.json``'s status (``running``, ``interrupted``, ``diverged``, ``finished``);
        None without a readable ``run.json``. A run recorded as running that no process
        holds (:meth:`locked`) was killed: ``interrupted``."""
        try:
            status = json.loads(self.info.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            return None
        if status == "running" and not self.locked():
            return "interrupted"
        return status if isinstance(status, str) else None

    def state(self) -> str:
        """One of :data:`STATES`: ``absent`` (no run), ``started`` (no checkpoint yet: start
        again), ``partial`` (a checkpoint: resume exactly), ``trained`` (final weights, test
        metrics missing or older than them), ``done`` or ``diverged``."""
        if not self.config.is_file():
            return "absent"
        status = self.status()
        if status == "diverged":
            return "diverged"
        if status == "finished" and self.weights.is_file():
            return "done" if self.evaluated() else "trained"
        return "partial" if self.checkpoint().is_file() else "started"

    def evaluated(self, split: str = "test") -> bool:
        """Whether ``metrics-<split>.json`` exists and is not older than the final weights."""
        metrics = self.metrics(split)
        if not metrics.is_file() or not self.weights.is_file():
            return False
        return metrics.stat().st_mtime >= self.weights.stat().st_mtime

    def pictures_current(self) -> bool:
        """Whether the visualize folder holds readable pictures not older than the weights."""
        try:
            pictures = self.read_pictures()
        except CnnlabError:
            return False
        return pictures is not None and not pictures.stale

    def read_pictures(self) -> Pictures | None:
        """The visualize folder, checked (:func:`read_pictures`)."""
        return read_pictures(self.visualize, self.weights)

    def require(self, finished: bool = True) -> None:
        """Raise a one-line :class:`CnnlabError` unless this is a run folder (``finished``:
        with final weights), saying how to go on."""
        if not self.path.is_dir():
            raise CnnlabError(f"{self.path}: no such run folder")
        for path in (self.config, self.info):
            if not path.is_file():
                raise CnnlabError(f"{self.path}: not a run folder (no {path.name})")
        if finished and not self.weights.is_file():
            raise CnnlabError(
                f"{self.path}: the run has no {self.weights.name} (status: "
                f"{self.status() or 'unknown'}); finish it first with cnnlab train --resume "
                f"{self.path}"
            )

    # -- records ----------------------------------------------------------------------------

    def read_info(self) -> RunInfo:
        return RunInfo.from_dict(read_json(self.info), str(self.info))

    def write_info(self, info: RunInfo) -> None:
        write_json(self.info, info.to_dict())

    def set_status(self, status: str, **changes: Any) -> None:
        """Set ``run.json``'s status (and other fields of :class:`RunInfo`), if it exists."""
        if self.info.is_file():
            info = self.read_info()
            self.write_info(info.replace(status=status, **changes))

    def read_history(self) -> list[dict[str, float]]:
        """``history.csv`` (empty when there is none)."""
        return read_history(self.history) if self.history.is_file() else []

    def write_history(self, rows: Sequence[Mapping[str, float]], columns: Sequence[str]) -> None:
        write_history(self.history, rows, columns)

    def read_metrics(self, split: str = "test", transfer: str | None = None) -> dict[str, Any]:
        return read_metrics(self.metrics(split, transfer))


def _tag(split: str, transfer: str | None) -> str:
    if transfer is None:
        return split
    return f"transfer-{transfer}" + ("" if split == "test" else f".{split}")


# -- the visualize folder ------------------------------------------------------------------------

VISUALIZE_SUMMARY = "summary.json"
"""The visualize folder's record of what it drew (see cnnlab.visualize)."""

VISUALIZE_SCORES = "scores.json"
"""The visualize folder's localisation scores."""

VISUALIZE_INPUTS = "inputs.npy"
"""The visualize folder's explained images, uint8 (N, C, H, W)."""

HEATMAP_KINDS = ("gradcam", "guided_gradcam", "saliency")
"""The heatmap pictures of each head in a visualize summary."""

SCORE_KEYS = ("pointing", "pointing_1px", "energy", "topk_iou")
"""The localisation scores of each row of ``scores.json`` (``rank_corr_random`` besides)."""


@dataclass(frozen=True)
class Pictures:
    """A checked visualize folder: its summary, its scores (None: not made, or unreadable),
    notes on what cannot be shown, and whether it is older than the model (``stale``)."""

    folder: Path
    summary: dict[str, Any]
    scores: dict[str, Any] | None
    notes: tuple[str, ...] = ()
    stale: bool = False

    def png(self, recorded: Any) -> Path:
        """A picture named in the summary, found in this folder (the run may have moved)."""
        return self.folder / Path(str(recorded)).name

    @property
    def inputs(self) -> Path:
        return self.folder / VISUALIZE_INPUTS

    @property
    def layers(self) -> list[str]:
        return list(self.summary["layers"])


def read_pictures(folder: Path, weights: Path | None = None) -> Pictures | None:
    """A visualize folder, checked; None when it has no summary. A one-line
    :class:`CnnlabError` when the summary is unreadable, from an older cnnlab, or names
    pictures that are missing (an interrupted run). ``weights``: the model they must not be
    older than."""
    folder = Path(folder)
    path = folder / VISUALIZE_SUMMARY
    if not path.is_file():
        return None
    summary = read_json(path, part=True)
    _version(summary, path.name)
    _check_pictures(summary, folder)
    notes = []
    scores = None
    if summary.get("scores_json"):
        try:
            scores = read_json(folder / VISUALIZE_SCORES, part=True)
            _check_scores(scores)
        except CnnlabError as exc:
            scores = None
            notes.append(f"The localisation scores are left out: {exc}.")
    stale = weights is not None and weights.is_file()
    stale = stale and path.stat().st_mtime < weights.stat().st_mtime  # type: ignore[union-attr]
    if stale:
        notes.append(
            f"These pictures are older than the run's {WEIGHTS}: make them again with "
            "cnnlab visualize (or cnnlab report --inside)."
        )
    return Pictures(folder, summary, scores, tuple(notes), stale)


def _check_pictures(summary: dict[str, Any], folder: Path) -> None:
    """Every part a report shows is there, and every picture the summary names exists."""
    name = VISUALIZE_SUMMARY
    for key, kind in (("layers", list), ("images", dict), ("activations", dict)):
        if not isinstance(summary.get(key), kind):
            raise CnnlabError(f"{name} has no {key!r} (written by an older cnnlab?)")
    heatmaps = summary.get("heatmaps")
    if not isinstance(heatmaps, dict) or not heatmaps:
        raise CnnlabError(f"{name} has no heatmaps (written by an older cnnlab?)")
    filters = summary.get("filters") or {}
    if not isinstance(filters, dict):
        raise CnnlabError(f"{name}: 'filters' is not a table of layers")
    entries = [*summary["activations"].values(), *filters.values()]
    pictures = [entry.get("png") if isinstance(entry, dict) else None for entry in entries]
    for entry in heatmaps.values():
        pictures += [entry.get(k) if isinstance(entry, dict) else None for k in HEATMAP_KINDS]
    for picture in pictures:
        if not isinstance(picture, str):
            raise CnnlabError(f"{name} names a picture without a file")
        if not (folder / Path(picture).name).is_file():
            raise CnnlabError(f"{Path(picture).name} is missing (an interrupted run?)")


def _check_scores(scores: dict[str, Any]) -> None:
    name = VISUALIZE_SCORES
    rows = scores.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "method" in r for r in rows):
        raise CnnlabError(f"{name} has no rows")
    for row in rows:
        for key in (*SCORE_KEYS, "rank_corr_random"):
            if row.get(key) is not None and not isinstance(row[key], int | float):
                raise CnnlabError(f"{name}: {key} is not a number")


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
        version = _version(raw, origin)
        _require(raw, ("status", "dataset", "preprocess", "model"), origin)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values.update(
            format=version,
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
    _version(raw, str(path))
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


def _version(raw: Mapping[str, Any], origin: str) -> int:
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
