"""Checkpoints that load without running code, written atomically.

A checkpoint is one ``torch.save`` file of plain containers and tensors (model, optimiser and
scheduler states, RNG state, position in the run, history so far). It is read back with
``torch.load(weights_only=True)``, which refuses anything that could execute code.
Final weights are also written as ``model.safetensors``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CnnlabError(f"{path}: no checkpoint here")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # torch refused a Python object
            raise CnnlabError(
                f"{path}: not a cnnlab checkpoint: it holds Python objects besides tensors "
                "and plain containers, and cnnlab never unpickles those"
            ) from None
        raise CnnlabError(f"{path}: not a readable cnnlab checkpoint (damaged)") from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"{path}: not a readable cnnlab checkpoint ({first})") from None


def save_weights(path: Path, model: nn.Module) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def load_weights(path: Path, model: nn.Module) -> None:
    if not path.is_file():
        raise CnnlabError(f"{path}: no model weights here (has the run finished?)")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CnnlabError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CnnlabError(
            f"{path}: weights do not fit the model of the run's config ({first})"
        ) from None
