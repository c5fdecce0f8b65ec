"""The config reference, ``docs/config.md``, built from the :class:`RunConfig` dataclasses.

Every key of a run config with its type, default, allowed values and meaning, then the model
families' options, the augmentation operations, the test-time views and the shipped presets.
The meaning of a key comes from the sentences (or clauses after a semicolon) of its dataclass's
docstring that start with the key, followed by :data:`NOTES` (ranges, and what no docstring
says).

``python -m cnnlab.training.config_reference > docs/config.md`` regenerates the page;
``tests/test_docs.py`` checks that the page equals :func:`config_reference`, so it cannot go
stale.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import types
import typing
from importlib import resources
from typing import Any

import yaml

from cnnlab.training import config as _config

COMMAND = ".venv/bin/python -m cnnlab.training.config_reference > docs/config.md"
"""How to regenerate ``docs/config.md`` (from the repository root)."""

NOTES: dict[str, str] = {
    "name": (
        "The run's name: without `--out` the run goes to `runs/<name>`, so a name that is not a "
        "plain folder name (`../x`) asks for `--out`. Printable text of 1 to "
        f"{_config.NAME_MAX} characters."
    ),
    "seed": (
        "Fixes the data split, the initialisation, the batch order, the augmentation and "
        "dropout: two runs with the same seed on the CPU give identical histories and weights. "
        f"In 0..{_config.SEED_MAX:,}."
    ),
    "device": "`auto` (a CUDA GPU when there is one, else the CPU), `cpu` or `cuda[:N]`.",
    "data.dataset": (
        "A path: a folder of class folders (or `train/`, `test/` and an optional `val/` of "
        "them), a CSV manifest, an `.npz` of images, a saved Lines dataset, or a folder of IDX "
        "or CIFAR files ([datasets.md](datasets.md))."
    ),
    "data.mnist_dir": (
        "The folder with the four IDX files of `mnist` (`.gz` or raw); null: "
        "`$CNNLAB_MNIST_DIR`, else downloaded (checksums verified) into a cache."
    ),
    "data.mnist_split": (
        "`study`: all 70,000 MNIST digits pooled and split 60/40, stratified by class and fixed "
        "by the seed (42,000 / 28,000); `official`: the 60,000 / 10,000 split. Also for a "
        "folder of IDX files (Fashion-MNIST, KMNIST)."
    ),
    "data.lines": (
        "Options of the Lines generator, for `dataset: lines`: a `variant` and any generator "
        "option (see [data.lines](#datalines) below)."
    ),
    "data.lines.image_size": "The image side, px.",
    "data.lines.lengths": "The line lengths, px.",
    "data.lines.widths": "The line widths, px.",
    "data.lines.angle_step": "Degrees between one angle and the next (see above).",
    "data.lines.colors": "The line colours: names, or `#rrggbb`.",
    "data.lines.max_shift": "The largest shift of a `centred` line, whole pixels.",
    "data.lines.per_class": "Images per class.",
    "data.lines.test_fraction": "The share of each class in the test split.",
    "data.lines.seed": "Default: the run's `seed`.",
    "data.image_size": "Null or 4..512 px.",
    "data.test_fraction": "In (0, 1).",
    "data.val_fraction": "In [0, 1); 0: no validation split.",
    "data.train_limit": "Null (every image) or a number of images >= 1.",
    "data.test_limit": "Null (every image) or a number of images >= 1.",
    "data.holdout": (
        "Keys `combinations` and `random_fraction` (see [data.holdout](#dataholdout) below); "
        "needs a dataset with factors (not `mnist`)."
    ),
    "train.epochs": f"Passes over the training split; 1..{_config.EPOCHS_MAX:,}.",
    "train.batch_size": f"Training batch size; 1..{_config.BATCH_MAX:,}.",
    "train.optimizer": (
        "Adam and AdamW use the fused kernel; `sgd` uses Nesterov momentum; frozen layers "
        "(`freeze`) are left out."
    ),
    "train.lr": (
        "The learning rate (> 0): the peak of the `onecycle` and `cosine` schedules, the start of "
        "`step` and `exponential`."
    ),
    "train.momentum": "SGD's and RMSprop's momentum: in [0, 1); in (0, 1) for `sgd`.",
    "train.weight_decay": "The optimiser's weight decay (decoupled for `adamw`); >= 0.",
    "train.scheduler": (
        "The learning-rate schedule, stepped every batch: `none` (constant), `step` (times "
        "`lr_gamma` every `lr_step_epochs` epochs), `exponential` (times `lr_gamma` per epoch), "
        "`cosine` (down to zero over the run), `onecycle` (linear warm-up from 4% of `lr` over "
        "the first 25% of the steps, then cosine to zero)."
    ),
    "train.lr_gamma": (
        "The factor by which the rate decays (`step`, `exponential` schedules); in (0, 1]."
    ),
    "train.lr_step_epochs": (
        f"Epochs between the decays of the `step` schedule; 1..{_config.EPOCHS_MAX:,}."
    ),
    "train.loss": (
        "`cross_entropy`, or `mse`: squared error between the softmax and the one-hot labels. "
        "A multi-head net uses one loss per head (binary cross-entropy for two levels)."
    ),
    "train.label_smoothing": "Label smoothing of the cross-entropy; in [0, 1).",
    "train.head_weights": (
        "A multi-head net's loss is the weighted sum of its heads' losses: head name -> weight "
        "(finite, >= 0); a head not named weighs 1, an unknown head is refused."
    ),
    "train.augment_shift": (
        "Random shifts of every training image by up to this many whole pixels (pad-and-crop, "
        "zeros come in), before `augment`; 0: none. At most half the image side "
        f"({_config.IMAGE_SIZES['mnist'] // 2} for mnist; {_config.SHIFT_MAX_UNKNOWN_SIZE} for "
        "a path, whose size is known only once loaded)."
    ),
    "train.ema": "In [0, 1); 0: off.",
    "train.trunk_lr_factor": "In [0, 1].",
    "train.freeze": "Each a layer name or name prefix, e.g. `features.conv1`.",
    "train.eval_batch_size": (
        f"Batch size of every evaluation (no gradients); 1..{_config.BATCH_MAX:,}."
    ),
    "train.patience": "In 0..epochs; 0: off.",
    "train.min_delta": (
        "The least gain in validation accuracy that counts as better, for `patience`; in [0, 1)."
    ),
    "model.name": (
        "`auto` (a net chosen for the data once it is loaded), a model family (below), or an "
        "import path `package.module:factory` (an `nn.Module` subclass, or a function marked "
        "`@cnnlab.model_factory`). `--set model.name=...` naming another model than the "
        "config's drops the config's model options (all but `init_from`). The section's other "
        "keys are the model's options."
    ),
    "model.init_from": (
        "Start from the weights of a run folder or a `.safetensors` file (read as data, never "
        "code), matched by name and shape; what does not match stays new (fine-tuning)."
    ),
}
"""What the dataclass docstrings do not say about a key (a range, a unit, a key they leave
out), by dotted key; added after the docstring's sentences."""

_ROLE = re.compile(r":(?:func|mod|class|data|attr|meth):`~?([^`]+)`")
_SENTENCE_END = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.!?])\s+(?=``|[A-Za-z(])")
_LEADING_KEYS = re.compile(r"^((?:``\w+``/)*``\w+``)")


def config_reference() -> str:
    """``docs/config.md``: the Markdown reference of every run-config key and preset."""
    hints = typing.get_type_hints(_config.RunConfig)
    summary, _ = _docstring(_config.RunConfig)
    parts = [
        "# Config reference",
        "",
        "Every key of a run config (type, default, allowed values, meaning), the model "
        "families' options, the augmentation operations and the shipped presets. Back to the "
        "[README](../README.md); how training uses them: [training.md](training.md).",
        "",
        f"Generated from `src/cnnlab/training/config.py` by `{COMMAND}`: edit the dataclass "
        "docstrings (or `NOTES` in `cnnlab.training.config_reference`), not this page.",
        "",
        _markdown(summary + " " + _paragraphs(_config.__doc__ or "")[1]),
        "",
        "A config is a YAML file or a preset; `--set key=value` (a dotted key, the value read "
        "as YAML) overrides any key, e.g. `--set train.lr=0.01 --set "
        "'data.holdout={random_fraction: 0.1}'`.",
        "",
        "## Top level",
        "",
        *_table([_row(f, hints[f.name], "") for f in _plain_fields(_config.RunConfig)]),
    ]
    for f in dataclasses.fields(_config.RunConfig):
        kind = hints[f.name]
        if f.name == "model":  # one open mapping, not its dataclass's fields
            parts += _model_dict_section(f)
        elif dataclasses.is_dataclass(kind):
            parts += _section(f.name, typing.cast(type, kind))
        parts += _EXTRAS.get(f.name, lambda: [])()
    parts += _presets()
    return "\n".join(parts).rstrip("\n") + "\n"


# -- keys -----------------------------------------------------------------------------------------


def _plain_fields(cls: type) -> list[dataclasses.Field[Any]]:
    hints = typing.get_type_hints(cls)
    return [
        f
        for f in dataclasses.fields(cls)
        if not dataclasses.is_dataclass(hints[f.name]) and f.name != "model"
    ]


def _section(name: str, cls: type) -> list[str]:
    summary, sentences = _docstring(cls)
    hints = typing.get_type_hints(cls)
    rows = [_row(f, hints[f.name], f"{name}.", sentences) for f in dataclasses.fields(cls)]
    return [f"## {name}", "", _intro(summary, sentences, cls), "", *_table(rows)]


def _intro(summary: str, sentences: list[str], cls: type) -> str:
    """The summary, and the sentences that start with none of ``cls``'s fields."""
    names = [f.name for f in dataclasses.fields(cls)]
    rest = [s for s in sentences if not any(_sentences_about(n, [s]) for n in names)]
    return _markdown(" ".join([summary, *rest]))


def _model_dict_section(f: dataclasses.Field[Any]) -> list[str]:
    """``model`` as a mapping: ``name``, ``init_from``, then the family's options."""
    from cnnlab.training.config import INIT_FROM

    default = _default(f)
    rows = [
        ["`model.name`", "str", _cell(default.name), NOTES["model.name"]],
        [f"`model.{INIT_FROM}`", "str or null", "`null`", NOTES[f"model.{INIT_FROM}"]],
    ]
    return ["## model", "", "The network and its options.", "", *_table(rows)]


def _row(
    f: dataclasses.Field[Any], hint: Any, prefix: str, sentences: list[str] | None = None
) -> list[str]:
    key = prefix + f.name
    words = [_markdown(s) for s in _sentences_about(f.name, sentences or [])]
    if key in NOTES:
        words.append(NOTES[key])
    choices = _config.CHOICES.get(key)
    if choices:
        words.append("One of " + ", ".join(f"`{c}`" for c in choices) + ".")
    return [f"`{key}`", _type_name(hint), _cell(_default(f)), " ".join(words)]


def _table(rows: list[list[str]]) -> list[str]:
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return [*lines, ""]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _type_name(hint: Any) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    base = typing.get_origin(hint) or hint
    if base is tuple or base is list:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    names = {type(None): "null", dict: "mapping"}
    return names.get(base, getattr(base, "__name__", str(base)))


def _yaml(value: Any) -> str:
    """``value`` as it is written in a config."""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str) and value:
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").strip()


def _cell(value: Any) -> str:
    return f"`{_yaml(value)}`"


# -- docstrings -----------------------------------------------------------------------------------


def _paragraphs(doc: str) -> list[str]:
    """``doc``'s paragraphs, each on one line."""
    text = re.sub(r"(?<=[A-Za-z]-)\n\s*", "", inspect.cleandoc(doc))  # counter-\nclockwise
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def _attribute_doc(module: types.ModuleType, name: str) -> str:
    """The string literal under ``name = ...`` in ``module``'s source (an attribute's
    docstring, which Python does not keep), on one line; empty if none."""
    body = ast.parse(inspect.getsource(module)).body
    for statement, following in itertools.pairwise(body):
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            return " ".join(following.value.value.split())
    return ""


def _docstring(obj: Any) -> tuple[str, list[str]]:
    """The summary line and the other sentences of ``obj``'s docstring (reST as written); a
    dataclass's sentences are also cut where a clause starts with one of its fields
    (``...; ``field`` ...``)."""
    paragraphs = [*_paragraphs(inspect.getdoc(obj) or ""), ""]
    sentences = [s for p in paragraphs[1:] for s in _SENTENCE_END.split(p) if s]
    if dataclasses.is_dataclass(obj):
        names = "|".join(re.escape(f.name) for f in dataclasses.fields(obj))
        clause = re.compile(rf";\s+(?=``(?:{names})``)")
        sentences = [c if c[-1] in ".!?" else c + "." for s in sentences for c in clause.split(s)]
    return paragraphs[0], sentences


def _sentences_about(name: str, sentences: list[str]) -> list[str]:
    """The sentences that start with ``name`` (alone or in a list: ``a``/``b``)."""
    return [
        s
        for s in sentences
        if (match := _LEADING_KEYS.match(s)) and f"``{name}``" in match.group(1).split("/")
    ]


def _markdown(text: str) -> str:
    """reST roles and double backquotes as Markdown code."""
    text = _ROLE.sub(lambda m: f"``{m.group(1)}``", text)
    return text.replace("``", "`")


# -- what some keys take --------------------------------------------------------------------------


def _lines_options() -> list[str]:
    from cnnlab.data.lines import VARIANTS, LinesConfig

    summary, sentences = _docstring(LinesConfig)
    hints = typing.get_type_hints(LinesConfig)
    rows = [
        [
            "`variant`",
            "str",
            "`default`",
            "A named rendering of the same classes, the other options on top: "
            + "; ".join(
                f"`{n}`" + (f" ({_flow(v)})" if v else " (the defaults)")
                for n, v in VARIANTS.items()
            )
            + ".",
        ]
    ]
    for f in dataclasses.fields(LinesConfig):
        if not f.init:
            continue
        words = [_markdown(s) for s in _sentences_about(f.name, sentences)]
        words += [NOTES[key] for key in [f"data.lines.{f.name}"] if key in NOTES]
        rows.append([f"`{f.name}`", _type_name(hints[f.name]), _cell(_default(f)), " ".join(words)])
    return ["### data.lines", "", _intro(summary, sentences, LinesConfig), "", *_table(rows)]


def _flow(options: dict[str, Any]) -> str:
    return ", ".join(f"`{k}: {_yaml(v)}`" for k, v in options.items())


def _holdout() -> list[str]:
    import cnnlab.data.holdout as holdout

    return [
        "### data.holdout",
        "",
        _markdown(" ".join(_paragraphs(holdout.__doc__ or "")[1:])),
        "",
        f"Keys: {', '.join(f'`{k}`' for k in holdout.HOLDOUT_KEYS)}; `random_fraction` in "
        "[0, 1); every factor and level named must exist.",
        "",
    ]


def _model_families() -> list[str]:
    from cnnlab.models import model_names, model_options
    from cnnlab.models.registry import REQUIRED, resolve_factory

    lines = [
        "### Model families",
        "",
        "Built in (`cnnlab models NAME` prints a family's layers and parameter counts). The data's "
        "shape (`in_channels`, `num_classes`, `image_size`, `factor_levels`) is passed by "
        "cnnlab, not set in the config.",
        "",
    ]
    for name in model_names():
        factory = resolve_factory(name)
        if not factory.__module__.startswith("cnnlab."):
            continue  # registered by the user's code
        doc = " ".join(_paragraphs(inspect.getdoc(factory) or ""))
        options = model_options(name)
        shown = ", ".join(
            f"`{k}`" + ("" if v is REQUIRED else f" (`{_yaml(v)}`)") for k, v in options.items()
        )
        lines += [f"`{name}`: {_markdown(doc)}", "", f"Options (default): {shown}.", ""]
    return lines


def _augment() -> list[str]:
    from cnnlab.training import augment

    rows = [
        [f"`{name}`", ", ".join(f"`{k}: {_yaml(v)}`" for k, v in params.items()) or "none"]
        for name, params in augment.OPERATIONS.items()
    ]
    sets = "; ".join(f"`{n}`: " + (", ".join(ops) or "nothing") for n, ops in augment.SETS.items())
    table = ["| operation | parameters (default) |", "| --- | --- |"]
    table += [f"| {a} | {b} |" for a, b in rows]
    return [
        "### train.augment",
        "",
        _markdown(" ".join(_paragraphs(augment.__doc__ or "")[1:])),
        "",
        f"{_markdown(_attribute_doc(augment, 'SETS'))} The sets: {sets}.",
        "",
        *table,
        "",
        _markdown(_attribute_doc(augment, "OPERATIONS")),
        "",
        "An item of the list is a set name, an operation name, or `{operation: {param: value}}`, "
        "e.g. `--set 'train.augment=[standard, {mixup: {alpha: 0.2}}]'`.",
        "",
    ]


def _tta() -> list[str]:
    from cnnlab.models import tta

    return [
        "### train.tta",
        "",
        _markdown(" ".join(_paragraphs(tta.__doc__ or "")[1:])),
        "",
        f"Named: {', '.join(f'`{n}`' for n in tta.SETS)}; views: "
        f"{', '.join(f'`{v}`' for v in tta.VIEWS)}.",
        "",
    ]


def _extras_data() -> list[str]:
    return [*_lines_options(), *_holdout()]


def _extras_train() -> list[str]:
    return [*_augment(), *_tta()]


_EXTRAS = {"data": _extras_data, "model": _model_families, "train": _extras_train}


# -- presets --------------------------------------------------------------------------------------


def _presets() -> list[str]:
    lines = [
        "## Presets",
        "",
        "Shipped configs, used by name: `cnnlab train PRESET`, `cnnlab train DATA --recipe "
        "PRESET`, or `base:` in a study. The first sentence of each preset's comment:",
        "",
        "| preset | dataset | model | epochs | what |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in _config.preset_names():
        text = _preset_text(_config.PRESETS, name)
        raw = yaml.safe_load(text)
        lines.append(
            f"| `{name}` | `{raw['data']['dataset']}` | `{raw['model']['name']}` | "
            f"{raw['train']['epochs']} | {_first_sentence(_comment(text))} |"
        )
    studies = f"{_config.PRESETS}/studies"
    lines += [
        "",
        "Study presets (`cnnlab study NAME`; see [studies.md](studies.md)):",
        "",
        "| study | base | variants | seeds | what |",
        "| --- | --- | --- | --- | --- |",
    ]
    from cnnlab.overrides import preset_names

    for name in preset_names(studies):
        raw = yaml.safe_load(_preset_text(studies, name))
        lines.append(
            f"| `{name}` | `{raw['base']}` | {len(raw['variants'])} | "
            f"{', '.join(map(str, raw['seeds']))} | {_first_sentence(raw['description'])} |"
        )
    return [*lines, ""]


def _preset_text(folder: str, name: str) -> str:
    return resources.files("cnnlab").joinpath(*folder.split("/"), f"{name}.yaml").read_text()


def _comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _first_sentence(text: str) -> str:
    first = _SENTENCE_END.split(" ".join(text.split()))[0]
    return first.replace("|", "\\|")


if __name__ == "__main__":
    print(config_reference(), end="")
