"""The run folder: the one owner of its file names, their shapes, and what state a run is in.

A run folder holds::

    config.yaml                      the resolved config (cnnlab.training.config reads it)
    run.json                         RunInfo: provenance, dataset facts, data check, status
    history.csv                      one row per epoch
    checkpoints/last.pt, best.pt     training state, for an exact resume
    model.safetensors                the final weights
    metrics-<tag>.json               Metrics of an evaluation (tag: test, train, transfer-<name>)
    predictions-<tag>.npz            its predictions
    errors-<tag>/                    where it fails (ErrorFiles: errors.json, misclassified.csv,
                                     top_losses[_<head>].png, confused_pairs[_<head>].png)
    visualize/summary.json           what `cnnlab visualize` drew (and scores.json)
    export/model.onnx, model.pt2     `cnnlab export`'s files, each with its card (model.onnx.json)
    tensorboard/                     TensorBoard event files (train.tensorboard)

Every other module asks :class:`RunFolder` for a path and reads or writes these files through
its records (:mod:`.records`: :class:`RunInfo`, :func:`read_history`, :func:`read_metrics`;
:mod:`.pictures`: the visualize folder); none spells a file name.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import usual_permissions, write_json
from cnnlab.runfolder.pictures import (
    SCORE_KEYS,
    VISUALIZE_INPUTS,
    VISUALIZE_SCORES,
    VISUALIZE_SUMMARY,
    Pictures,
    read_pictures,
)
from cnnlab.runfolder.records import (
    FORMAT,
    METRICS_KEYS,
    DatasetFacts,
    RunInfo,
    metrics_record,
    now,
    read_history,
    read_json,
    read_metrics,
    write_history,
)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

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
EXPORT = "export"
TENSORBOARD = "tensorboard"
AUGMENTED = "augmented.png"
LOCK = ".cnnlab-lock"
CREATING = ".creating-"
"""Infix of the temporary sibling a new run folder is made in (:meth:`RunFolder.create`)."""


@dataclass(frozen=True)
class ErrorFiles:
    """The error analysis of one evaluation: a folder ``errors-<tag>/`` beside its metrics."""

    folder: Path

    @property
    def summary(self) -> Path:
        """``errors.json``: top losses, confused pairs, worst recall, calibration."""
        return self.folder / "errors.json"

    @property
    def table(self) -> Path:
        """``misclassified.csv``: every misclassified image, named by its source."""
        return self.folder / "misclassified.csv"

    def top_losses(self, head: str | None = None) -> Path:
        return self.folder / f"top_losses{'' if head is None else '_' + head}.png"

    def confused_pairs(self, head: str | None = None) -> Path:
        return self.folder / f"confused_pairs{'' if head is None else '_' + head}.png"


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
    export = _File(EXPORT)
    """Where ``cnnlab export`` writes by default (``model.onnx``, ``model.pt2``, their cards)."""
    tensorboard = _File(TENSORBOARD)
    """TensorBoard's event files, with ``train.tensorboard``."""
    augmented = _File(AUGMENTED)
    """A grid of training images as the net saw them under ``train.augment``, with their
    (possibly relabelled) classes; written when the run starts."""
    lock_file = _File(LOCK)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for one writer (a training) for the block: an advisory lock
        on ``.cnnlab-lock`` that the system releases when the process ends, however it ends,
        so a crash leaves no stale lock. Another holder: a one-line :class:`CnnlabError`
        naming it. Temporary files a killed training left (a checkpoint half-written when it
        was killed) are removed once the lock is held."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CnnlabError(
                f"{self.path}: cannot create the run folder ({exc.strerror or exc})"
            ) from None
        with _held(self.lock_file, self.path):
            self._remove_temporaries()
            yield

    @contextlib.contextmanager
    def create(self, fill: Callable[[RunFolder], None]) -> Iterator[None]:
        """Make this run folder whole or not at all, and hold its :meth:`lock` for the block.

        ``fill`` writes the first files (``config.yaml``, ``run.json``) into a locked temporary
        sibling (``.<name>.creating-<random>``) that is then renamed into place, so a reader
        sees no folder, or one with its config and ``run.json``, whenever the start is stopped
        (even by SIGKILL: a sibling left so is removed by the next start). A folder that holds
        a run is refused; an empty one, or one an older cnnlab left with only its lock file,
        is taken; one holding other files is refused (a run gets a folder of its own)."""
        self.check_creatable()
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for stale in parent.glob(f".{glob.escape(self.path.name)}{CREATING}*"):
                if stale.is_dir() and not RunFolder(stale).locked():
                    shutil.rmtree(stale, ignore_errors=True)
            temporary = Path(tempfile.mkdtemp(prefix=f".{self.path.name}{CREATING}", dir=parent))
        except OSError as exc:
            raise CnnlabError(
                f"{self.path}: cannot create the run folder ({exc.strerror or exc})"
            ) from None
        try:
            usual_permissions(temporary)
            with _held(RunFolder(temporary).lock_file, self.path):
                fill(RunFolder(temporary))
                self._take_place_of_leftovers()
                try:
                    os.rename(temporary, self.path)
                except OSError as exc:  # another start made it first
                    raise CnnlabError(
                        f"{self.path}: cannot create the run folder ({exc.strerror or exc}); "
                        "another training may have started there"
                    ) from None
                yield
        finally:
            shutil.rmtree(temporary, ignore_errors=True)  # gone already when it was renamed

    def check_creatable(self) -> None:
        """Refuse (one line) to make a new run here: a run folder already, a file, a folder
        in use, or a folder holding other files. Nothing, an empty folder or an older
        cnnlab's failed start (its lock file alone) is fine."""
        if self.path.is_file() or (self.path.exists() and not self.path.is_dir()):
            raise CnnlabError(f"{self.path}: a file is there, not a folder; choose another --out")
        if not self.path.is_dir():
            return
        if self.config.exists() or self.info.exists():
            raise CnnlabError(
                f"{self.path} already holds a run; choose another --out, or continue it with "
                f"--resume {self.path}"
            )
        if self.locked():
            raise CnnlabError(f"{self.path}: {_in_use(self.holder())}")
        others = sorted(p.name for p in self.path.iterdir() if not self._leftover(p))
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise CnnlabError(
                f"{self.path} holds other files ({shown}); a run is made in a new or empty "
                "folder: choose another --out"
            )

    def _leftover(self, path: Path) -> bool:
        """What a start stopped before its ``run.json`` left (by an older cnnlab)."""
        if path == self.lock_file:
            return True
        return path == self.checkpoints and path.is_dir() and not any(path.iterdir())

    def _take_place_of_leftovers(self) -> None:
        """Empty the folder of an older cnnlab's failed start, so a folder can be renamed
        onto it (:meth:`create`)."""
        if not self.path.is_dir():
            return
        self.check_creatable()
        self.lock_file.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.checkpoints.rmdir()

    def _remove_temporaries(self) -> None:
        """Remove the temporary files of the training's own writes (``fileio.atomic_path``
        names them ``.<file>.<random>.tmp``) that a killed process left."""
        owned = tuple(f".{name}." for name in (WEIGHTS, HISTORY, INFO, CONFIG))
        found = [*self.checkpoints.glob(".*.tmp"), *self.path.glob(".*.tmp")]
        for path in found:
            if path.parent == self.checkpoints or path.name.startswith(owned):
                path.unlink(missing_ok=True)

    def locked(self) -> bool:
        """Whether a process holds :meth:`lock` now."""
        if fcntl is None or not self.lock_file.is_file():
            return False
        with contextlib.suppress(OSError), open(self.lock_file) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
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

    def errors(self, split: str = "test", transfer: str | None = None) -> ErrorFiles:
        """The error analysis beside :meth:`metrics`: ``errors-<tag>/``."""
        return ErrorFiles(self.path / f"errors-{_tag(split, transfer)}")

    def transfer_metrics(self) -> list[Path]:
        """Every evaluation on other data (test split), by name."""
        found = self.path.glob(self.metrics("test", "*").name)
        return sorted(p for p in found if "." not in p.stem)  # ``.<split>``: another split

    # -- state ------------------------------------------------------------------------------

    def recorded_status(self) -> str | None:
        """``run.json``'s status as written (``running``, ``interrupted``, ``diverged``,
        ``finished``), None without a readable ``run.json``; reading it takes no lock."""
        try:
            status = json.loads(self.info.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            return None
        return status if isinstance(status, str) else None

    def status(self) -> str | None:
        """:meth:`recorded_status`, where a run recorded as running that no process holds
        (:meth:`locked`, which tries the lock) was killed: ``interrupted``."""
        status = self.recorded_status()
        if status == "running" and not self.locked():
            return "interrupted"
        return status

    def state(self) -> str:
        """One of :data:`STATES`: ``absent`` (no run), ``started`` (no checkpoint yet: start
        again), ``partial`` (a checkpoint: resume exactly), ``trained`` (final weights, test
        metrics missing or older than them), ``done`` or ``diverged``."""
        if not self.config.is_file():
            return "absent"
        status = self.recorded_status()  # running or interrupted: the same state; no lock tried
        if status == "diverged":
            return "diverged"
        if status == "finished" and self.weights.is_file():
            return "done" if self.evaluated() else "trained"
        return "partial" if self.checkpoint().is_file() else "started"

    def evaluated(self, split: str = "test") -> bool:
        """Whether ``metrics-<split>.json`` and its error analysis exist and are not older
        than the final weights."""
        files = (self.metrics(split), self.errors(split).summary)
        if not all(f.is_file() for f in files) or not self.weights.is_file():
            return False
        return min(f.stat().st_mtime for f in files) >= self.weights.stat().st_mtime

    def pictures_current(self) -> bool:
        """Whether the visualize folder holds readable pictures not older than the weights
        (and scores, where there are any, of today's scoreboard)."""
        try:
            pictures = self.read_pictures()
        except CnnlabError:
            return False
        return pictures is not None and not pictures.stale and not pictures.outdated

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
            status = self.status()
            if status == "running":  # a process holds it: --resume would be refused
                raise CnnlabError(
                    f"{self.path}: the run is training now ({_in_use(self.holder())}); its "
                    f"{self.weights.name} comes when it ends"
                )
            raise CnnlabError(
                f"{self.path}: the run has no {self.weights.name} (status: "
                f"{status or 'unknown'}); finish it first with cnnlab train --resume "
                f"{self.path}"
            )

    def require_resumable(self) -> None:
        """Raise a one-line :class:`CnnlabError` for a run that ``--resume`` cannot continue:
        held by another training, finished (its final weights written) or diverged."""
        if self.locked():
            raise CnnlabError(f"{self.path}: {_in_use(self.holder())}")
        status = self.recorded_status()
        if status == "finished" and self.weights.is_file():
            raise CnnlabError(
                f"{self.path}: the run is finished (status finished, {self.weights.name} "
                "written): nothing to resume; evaluate it, or train again with another --out"
            )
        if status == "diverged":
            raise CnnlabError(
                f"{self.path}: the run diverged (loss NaN or inf): resuming would diverge again; "
                "remove it (or choose another --out) and train again"
            )

    def holder(self) -> str:
        """The lock file's text: which process holds (or last held) the folder."""
        try:
            return self.lock_file.read_text(errors="replace")
        except OSError:
            return ""

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


@contextlib.contextmanager
def _held(lock_file: Path, folder: Path) -> Iterator[None]:
    """Hold an advisory lock on ``lock_file`` (the run folder ``folder``'s) for the block; a
    one-line :class:`CnnlabError` naming the holder if another process has it."""
    if fcntl is None:  # not a POSIX system: no lock
        yield
        return
    try:
        handle = open(lock_file, "a+")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise CnnlabError(
            f"{folder}: cannot create the run folder ({exc.strerror or exc})"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            raise CnnlabError(f"{folder}: {_in_use(handle.read())}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"cnnlab (pid {os.getpid()} on {socket.gethostname()}, since {now()})")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _in_use(holder: str) -> str:
    """What a refusal says of the lock's holder (its lock file's text)."""
    return (
        f"in use by {holder.strip() or 'another process'}; wait for it to finish (or stop it) "
        "and try again"
    )


def _tag(split: str, transfer: str | None) -> str:
    if transfer is None:
        return split
    return f"transfer-{transfer}" + ("" if split == "test" else f".{split}")


__all__ = [
    "FINAL_STATES",
    "FORMAT",
    "METRICS_KEYS",
    "SCORE_KEYS",
    "SPLITS",
    "STATES",
    "VISUALIZE_INPUTS",
    "VISUALIZE_SCORES",
    "VISUALIZE_SUMMARY",
    "DatasetFacts",
    "ErrorFiles",
    "Pictures",
    "RunFolder",
    "RunInfo",
    "metrics_record",
    "now",
    "read_history",
    "read_json",
    "read_metrics",
    "read_pictures",
    "write_history",
]
