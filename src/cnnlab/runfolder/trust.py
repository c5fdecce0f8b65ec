"""A run folder is data: the code its config names runs only where the user trusts it.

A run's ``config.yaml`` names its model: one of cnnlab's families (cnnlab's own code: always
fine) or an import path ``package.module:factory`` (code from the user's Python path). Every
command that opens a run folder (evaluate, errors, predict, report, visualize, export,
``train --resume``, and the Python functions behind them) imports that path only when

* this user trained the run here: training records the folder's real path with the SHA-256 of
  its ``config.yaml`` in the user's state folder (``$CNNLAB_STATE/trusted``, by default
  ``~/.local/state/cnnlab/trusted``); a folder copied from elsewhere, moved, or whose config was
  changed since is not recorded;
* or the user says so: ``--trust-code`` for one command (``with trusting_code():`` in Python),
  or ``cnnlab trust RUN`` to record it, as after reading its config.

Otherwise the command refuses in one line before anything is imported, saying what the folder
names. Whatever is trusted, a factory must still be an ``nn.Module`` subclass or a function
marked ``@cnnlab.model_factory``, checked before it is called
(:func:`cnnlab.models.registry.is_model_factory`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.fileio import write_json
from cnnlab.runfolder.records import now, read_json

STATE_VARIABLE = "CNNLAB_STATE"
"""The environment variable naming cnnlab's per-user state folder (the trust records)."""

_TRUSTING: contextvars.ContextVar[bool] = contextvars.ContextVar("trusting_code", default=False)


@contextlib.contextmanager
def trusting_code() -> Iterator[None]:
    """In this block every run folder is trusted (``--trust-code``): the code its config names
    may be imported and called."""
    token = _TRUSTING.set(True)
    try:
        yield
    finally:
        _TRUSTING.reset(token)


def state_folder() -> Path:
    """``$CNNLAB_STATE``, or ``$XDG_STATE_HOME/cnnlab`` (``~/.local/state/cnnlab``)."""
    root = os.environ.get(STATE_VARIABLE)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(xdg).expanduser() / "cnnlab"


def record_trust(run_dir: Path, config_file: Path, model: str) -> Path:
    """Record that this user trusts the run folder ``run_dir`` as its ``config_file`` reads
    now (training does it; so does ``cnnlab trust``). Returns the record's path."""
    path = _record_path(run_dir)
    try:
        write_json(
            path,
            {
                "folder": str(run_dir.resolve()),
                "config_sha256": _digest(config_file),
                "model": model,
                "trusted": now(),
            },
        )
    except OSError as exc:
        raise CnnlabError(
            f"{path}: cannot write the trust record ({exc.strerror or exc}); set "
            f"{STATE_VARIABLE} to a folder you can write"
        ) from None
    return path


def is_trusted(run_dir: Path, config_file: Path) -> bool:
    """Whether the code the run folder's config names may run: inside :func:`trusting_code`,
    or recorded by :func:`record_trust` with the config as it reads now."""
    if _TRUSTING.get():
        return True
    try:
        record = read_json(_record_path(run_dir))
        return record.get("config_sha256") == _digest(config_file)
    except (CnnlabError, OSError, AttributeError):
        return False


def require_trust(run_dir: Path, config_file: Path, model: str) -> None:
    """Refuse, in one line and before anything is imported, a run folder whose config names
    code (``model.name`` ``model``, an import path) that this user has not trusted."""
    if is_trusted(run_dir, config_file):
        return
    raise CnnlabError(
        f"{run_dir}: its config names code to run (model.name {model!r}), and cnnlab runs no "
        "code a run folder names unless you trust the folder; if you know where it comes "
        f"from, add --trust-code (in Python: with cnnlab.trusting_code()) or record it once "
        f"with: cnnlab trust {run_dir}"
    )


def _record_path(run_dir: Path) -> Path:
    key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()
    return state_folder() / "trusted" / f"{key}.json"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
