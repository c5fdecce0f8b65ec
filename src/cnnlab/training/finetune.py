"""Fine-tuning: ``model.init_from`` (start from another run's or file's weights, matched by name
and shape), ``train.freeze`` (layers that do not train) and ``train.trunk_lr_factor`` (a lower
rate for every layer but the classifier head).

A run folder named by ``init_from`` is read as data: its ``safetensors`` weights only (and its
config's bytes, for their digest), never its code, whoever made it. :func:`prepare` does all
three to a freshly built model before the engine makes its optimiser; a resumed run is not
initialised again (its checkpoint holds the weights), but is frozen and scaled as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder
from cnnlab.training.config import INIT_FROM, RunConfig
from cnnlab.training.optim import LR_FACTOR

OPTION = f"model.{INIT_FROM}"
_SHOWN = 4
"""How many names a refusal shows."""


# -- model.init_from ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The weights ``init_from`` names, read: the tensors and what to record of them."""

    given: str
    tensors: dict[str, torch.Tensor]
    record: dict[str, Any]


def read_source(value: Any) -> Source:
    """The tensors of a run folder's final weights or of a ``.safetensors`` file; a one-line
    :class:`CnnlabError` for anything else."""
    path, record = _locate(value)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CnnlabError(f"{OPTION} {path}: cannot read ({exc.strerror})") from None
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types
        raise _not_safetensors(path, exc) from None
    return Source(value, tensors, {**record, "sha256": hashlib.sha256(data).hexdigest()})


def check_source(value: Any) -> None:
    """Refuse what :func:`read_source` would refuse, reading only the file's header (before
    the data of a new run is loaded)."""
    path, _ = _locate(value)
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:
        raise _not_safetensors(path, exc) from None


def _locate(value: Any) -> tuple[Path, dict[str, Any]]:
    """The weights file ``init_from`` names, and what to record of where it is."""
    if not isinstance(value, str) or not value.strip():
        raise CnnlabError(f"{OPTION}: expected a run folder or a .safetensors file, got {value!r}")
    path = Path(value).expanduser()
    record: dict[str, Any] = {"path": str(path.resolve())}
    if path.is_dir():
        folder = RunFolder(path)
        try:
            folder.require(finished=True)
        except CnnlabError as exc:
            raise CnnlabError(f"{OPTION}: {exc}") from None
        record["config_sha256"] = hashlib.sha256(folder.config.read_bytes()).hexdigest()
        path = folder.weights
        record["weights"] = str(path.resolve())
    elif not path.is_file():
        raise CnnlabError(f"{OPTION} {value}: no such run folder or .safetensors file")
    return path, record


def _not_safetensors(path: Path, exc: Exception) -> CnnlabError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return CnnlabError(
        f"{OPTION} {path}: not a safetensors file ({first}); cnnlab reads weights only from "
        "safetensors, never from pickles (.pt, .pth)"
    )


@dataclass(frozen=True)
class Loaded:
    """What :func:`load_matching` did: each tensor of the model loaded or left new."""

    source: Source
    loaded: tuple[str, ...]
    new: tuple[str, ...]
    """Both in the order of the model's ``state_dict``."""
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    """Name -> (shape in the file, shape in the model), for the tensors left new by shape."""
    unused: tuple[str, ...] = ()
    """The file's tensors the model has no name for."""
    order: tuple[str, ...] = ()
    """Every tensor of the model, in its ``state_dict``'s order."""

    def record(self) -> dict[str, Any]:
        """What ``run.json`` keeps (``model.init_from``): where from, digests, what is new."""
        return {**self.source.record, "loaded": len(self.loaded), "new": list(self.new)}

    def table(self) -> list[str]:
        """A short table: one row per layer prefix whose tensors were all loaded or all new."""
        status = {n: "loaded" for n in self.loaded} | {n: "new" for n in self.new}
        lines = [
            f"Initialised from {self.source.record['path']} ({OPTION}): "
            f"{len(self.loaded)} of {len(status)} tensors loaded, {len(self.new)} left new"
            + (f", {len(self.unused)} of the file's not in this model" if self.unused else "")
        ]
        for prefix, kind, names in _grouped(self.order, status):
            first = next((n for n in names if n in self.mismatched), None)
            why = ""
            if first is not None:
                file_shape, model_shape = self.mismatched[first]
                more = sum(n in self.mismatched for n in names) - 1
                why = f"  shape differs: {first} file {file_shape}, model {model_shape}" + (
                    f" (+{more} more)" if more else ""
                )
            elif kind == "new":
                why = "  not in the file"
            count = f"{len(names)} tensor{'s' if len(names) != 1 else ''}"
            lines.append(f"  {kind:<6s}  {prefix or '(all)':<28s} {count:>11s}{why}")
        return lines


def load_matching(model: nn.Module, source: Source, head: Collection[str] = ()) -> Loaded:
    """Copy into ``model`` every tensor of ``source`` with the name and shape of one of its
    own; refuse (one line) when no parameter matches, or when every weight of the trunk
    (``model``'s parameters but ``head``'s, of two or more dimensions) differs in shape."""
    own = model.state_dict()
    theirs = source.tensors
    matched = {k: v for k, v in theirs.items() if k in own and v.shape == own[k].shape}
    mismatched = {
        k: (tuple(theirs[k].shape), tuple(own[k].shape))
        for k in own
        if k in theirs and k not in matched
    }
    params = dict(model.named_parameters())
    where = f"{OPTION} {source.record['path']}"
    if not any(k in theirs for k in params):
        raise CnnlabError(
            f"{where}: no tensor of the file has the name of a parameter of this model: the "
            f"model expects {_few(params)}; the file has {_few(sorted(theirs))}; another "
            "model family?"
        )
    trunk = [k for k in params if k not in head and params[k].dim() >= 2]
    for kind, names in (("tensor", list(params)), ("weight of the trunk", trunk)):
        differ = [k for k in names if k in mismatched]
        if differ and not any(k in matched for k in names):
            shown = "; ".join(
                f"{k}: file {mismatched[k][0]}, model {mismatched[k][1]}" for k in differ[:2]
            )
            raise CnnlabError(
                f"{where}: the shape of every {kind} differs ({shown}; {len(differ)} in all); "
                "not the model options the file was trained with?"
            )
    model.load_state_dict(matched, strict=False)
    return Loaded(
        source,
        loaded=tuple(k for k in own if k in matched),
        new=tuple(k for k in own if k not in matched),
        mismatched=mismatched,
        unused=tuple(k for k in theirs if k not in own),
        order=tuple(own),
    )


def _few(names: Collection[str]) -> str:
    shown = ", ".join(list(names)[:_SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > _SHOWN else shown or "nothing"


def _grouped(names: Sequence[str], status: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    """(prefix, status, names): the fewest layer prefixes, in the model's order, under each of
    which every tensor has one status."""

    def walk(prefix: str, under: list[str]) -> Iterator[tuple[str, str, list[str]]]:
        if len({status[n] for n in under}) == 1:
            yield prefix, status[under[0]], under
            return
        depth = prefix.count(".") + 1 if prefix else 0
        children: dict[str, list[str]] = {}
        for n in under:
            children.setdefault(".".join(n.split(".")[: depth + 1]), []).append(n)
        for child, members in children.items():
            yield from walk(child, members)

    return list(walk("", list(names))) if names else []


# -- train.freeze ---------------------------------------------------------------------------------


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze(model: nn.Module, names: Sequence[str]) -> tuple[int, int]:
    """Stop the parameters under ``names`` (a layer or parameter name, or its prefix) from
    training, and keep the BatchNorm layers under them in eval mode (their running statistics
    stay as they are); returns (parameters, BatchNorm layers) frozen."""
    params = dict(model.named_parameters())
    for name in names:
        if not any(_under(n, name) for n in params):
            layers = ", ".join(n for n, _ in model.named_children()) or "none"
            raise CnnlabError(
                f"train.freeze: {name!r} names no parameter of the model; its top-level "
                f"layers: {layers}"
            )
    frozen = [p for n, p in params.items() if any(_under(n, x) for x in names)]
    if len(frozen) == len(params):
        raise CnnlabError(
            f"train.freeze {list(names)}: that is every parameter of the model; nothing would train"
        )
    for p in frozen:
        p.requires_grad_(False)
    norms = [
        m
        for n, m in model.named_modules()
        if isinstance(m, _BatchNorm) and any(_under(n, x) for x in names)
    ]
    for m in norms:
        _hold(m)
    return len(frozen), len(norms)


def hold_frozen_norms(model: nn.Module) -> int:
    """Keep in eval mode every BatchNorm layer of ``model`` whose parameters are all frozen
    (for layers made anew after :func:`freeze`, as ``SyncBatchNorm`` conversion does);
    returns how many."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm)
        and next(m.parameters(), None) is not None
        and not any(p.requires_grad for p in m.parameters())
    ]
    for m in norms:
        _hold(m)
    return len(norms)


def _hold(norm: nn.Module) -> None:
    if _keep_eval not in norm._forward_pre_hooks.values():
        norm.register_forward_pre_hook(_keep_eval)


def _keep_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook of a frozen BatchNorm layer: it normalises with its running statistics
    and leaves them as they are, whatever mode the training puts the model in."""
    module.training = False


# -- train.trunk_lr_factor ------------------------------------------------------------------------


def head_parameters(
    model: nn.Module, in_channels: int, image_size: tuple[int, int]
) -> tuple[str, ...]:
    """The classifier head's parameters: those of the layers whose output is one of the model's
    outputs (every head of a multi-head model), found by one eval-mode forward pass of a blank
    image; else those of the model's last ``nn.Linear``."""
    layers = {n: m for n, m in model.named_modules() if next(m.parameters(False), None) is not None}
    seen: dict[str, torch.Tensor] = {}  # held: no output's memory is reused by another's

    def hook(name: str) -> Any:
        def keep(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                seen[name] = output

        return keep

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    try:
        device = next(model.parameters()).device
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            outputs = model.eval()(torch.zeros(1, in_channels, *image_size, device=device))
        ends = {t.untyped_storage().data_ptr() for t in _tensors(outputs)}
        heads = [n for n, t in seen.items() if t.untyped_storage().data_ptr() in ends]
    except Exception:  # the model's own code: fall back on its last linear layer
        heads = []
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not heads:
        heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1:]
    if not heads:
        raise CnnlabError(
            "train.trunk_lr_factor: cannot tell this model's classifier head (no layer's output "
            "is the model's output, and it has no nn.Linear layer); leave it at 1"
        )
    return tuple(
        f"{n}.{p}" if n else p for n in heads for p, _ in layers[n].named_parameters(recurse=False)
    )


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def scale_lr(model: nn.Module, factor: float, head: Collection[str]) -> None:
    """Every parameter but ``head``'s trains at ``train.lr * factor`` (the optimiser's
    param groups, :func:`cnnlab.training.optim.param_groups`)."""
    for name, p in model.named_parameters():
        if name in head or factor == 1.0:
            p.__dict__.pop(LR_FACTOR, None)
        else:
            setattr(p, LR_FACTOR, factor)


# -- all three ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuning:
    """What :func:`prepare` did: lines to print, and ``init_from``'s record for ``run.json``."""

    lines: tuple[str, ...] = ()
    record: dict[str, Any] | None = None


def prepare(
    model: nn.Module,
    config: RunConfig,
    in_channels: int,
    image_size: tuple[int, int],
    resumed: dict[str, Any] | None = None,
) -> FineTuning:
    """Initialise (``model.init_from``), freeze (``train.freeze``) and scale the trunk's rate
    (``train.trunk_lr_factor``) of a freshly built ``model``, before its optimiser is made.
    ``resumed``: a resumed run's ``run.json`` model record; it is not initialised again, and
    its head is what its initialisation left new, as in the run it continues."""
    t, value = config.train, config.model.init_from
    lines: list[str] = []
    record = None
    new: Sequence[str] = ()
    scaled = t.trunk_lr_factor != 1.0
    if value is not None and resumed is None:
        structural = head_parameters(model, in_channels, image_size)
        loaded = load_matching(model, read_source(value), structural)
        lines += loaded.table()
        record, new = loaded.record(), loaded.new
    elif value is not None:
        record = resumed.get(INIT_FROM)
        new = (record or {}).get("new") or ()
    if t.freeze:
        count, norms = freeze(model, t.freeze)
        lines.append(
            f"Frozen (train.freeze): {count} parameter tensor{'s' if count != 1 else ''} "
            f"under {', '.join(t.freeze)}"
            + (f"; {norms} BatchNorm layers kept in eval mode" if norms else "")
        )
    params = dict(model.named_parameters())
    head: Collection[str] = [n for n in new if n in params]
    if scaled and not head:
        head = head_parameters(model, in_channels, image_size)
    scale_lr(model, t.trunk_lr_factor, head)
    if scaled:
        lines.append(
            f"Trunk rate (train.trunk_lr_factor): train.lr x {t.trunk_lr_factor} for every "
            f"layer but the head ({', '.join(_layers(head))})"
        )
    return FineTuning(tuple(lines), record)


def _layers(names: Collection[str]) -> list[str]:
    """Parameter names as their layers' names, in order, once each."""
    return list(dict.fromkeys(n.rpartition(".")[0] or n for n in names))
