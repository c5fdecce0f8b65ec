"""Property-based fuzz tests (Hypothesis) of every reader of outside input.

The rule they check: bad outside input gets exactly one :class:`~cnnlab.errors.CnnlabError`
whose message is one non-empty line, or a correct result; never another exception type and
never a hang (each call runs under a time limit). Readers: config values and ``--set`` items,
YAML config and study files, IDX files (and MNIST-layout folders), CIFAR binary folders, ``.npz``
archives, CSV manifests, image files and folders, and what ``predict`` reads.

Profiles (see docs/fuzzing.md): by default few examples, derandomized (the same inputs on every
run); ``CNNLAB_FUZZ=long`` runs 20 times as many, random ones.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import gzip
import io
import math
import os
import signal
import struct
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import (
    HealthCheck,
    Phase,
    currently_in_test_context,
    event,
    example,
    given,
    note,
    settings,
)
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from cnnlab import overrides
from cnnlab.cli import main
from cnnlab.data.arrays import is_image_npz, load_image_npz
from cnnlab.data.cifar import CIFAR10, CIFAR100, PIXEL_BYTES, load_cifar
from cnnlab.data.folder import load_folder
from cnnlab.data.idx import IDX_DTYPES, MAX_IDX_BYTES, read_idx
from cnnlab.data.images import decode_images, open_image
from cnnlab.data.lines import LinesConfig
from cnnlab.data.manifest import load_manifest
from cnnlab.data.mnist import load_mnist
from cnnlab.data.npzio import read_npz
from cnnlab.data.registry import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models.inference import Preprocess
from cnnlab.predict import predict, read_images
from cnnlab.study.spec import MAX_RUNS, load_study
from cnnlab.training.config import (
    CHOICES,
    EPOCHS_MAX,
    RunConfig,
    config_from_dict,
    load_config,
    save_config,
)

# -- profiles -------------------------------------------------------------------------------------

LONG = os.environ.get("CNNLAB_FUZZ", "").strip().lower() == "long"
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# No "explain" phase: its line tracing makes a deep YAML nesting take minutes to refuse.
_PHASES = [Phase.explicit, Phase.generate, Phase.shrink]
settings.register_profile(
    "cnnlab-fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    phases=_PHASES,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "cnnlab-fuzz-long",
    deadline=None,
    database=None,
    phases=_PHASES,
    print_blob=True,
    suppress_health_check=_QUIET,
)
PROFILE = settings.get_profile("cnnlab-fuzz-long" if LONG else "cnnlab-fuzz")
SCALE = 20 if LONG else 1
TIME_LIMIT = 30.0
"""Seconds one call of a reader may take before the test fails as a hang."""


def fuzz(examples: int) -> settings:
    """The file's profile with ``examples`` examples (times :data:`SCALE`)."""
    return settings(PROFILE, max_examples=examples * SCALE)


# -- the rule -------------------------------------------------------------------------------------


class Hang(BaseException):
    """A reader still running after the time limit (a BaseException: no ``except`` hides it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(*_: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_message(message: str) -> str:
    assert message.strip(), "an empty CnnlabError message"
    assert "\n" not in message and "\r" not in message, f"a message of several lines: {message!r}"
    return message


def outcome(call: Callable[[], Any], limit: float = TIME_LIMIT) -> tuple[Any, str | None]:
    """``(result, None)``, or ``(None, message)`` after a clean one-line CnnlabError. Any other
    exception propagates (the test fails); so does a call still running after ``limit`` s."""
    with time_limit(limit):
        try:
            result = call()
        except CnnlabError as exc:
            message = str(exc)
        else:
            if currently_in_test_context():
                event("accepted")
            return result, None
    if currently_in_test_context():
        event("refused")
        note(f"refused: {message}")
    return None, check_message(message)


@pytest.fixture(autouse=True, scope="module")
def no_new_imports() -> Iterator[None]:
    """A ``model.name`` may be an import path, which the config check imports: here only modules
    already loaded are found, so a random name never imports (and runs) a module such as
    ``antigravity``; the refusal of any other name is the one a missing module gets."""
    from cnnlab.models import registry

    def loaded_only(name: str) -> Any:
        if name in sys.modules:
            return sys.modules[name]
        raise ModuleNotFoundError(f"No module named {name!r} (none imported here)", name=name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_import_module", loaded_only)
        yield


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder for one example (function-scoped fixtures are shared by examples)."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-fuzz-") as folder:
        yield Path(folder)


def cli(argv: list[str]) -> tuple[int, str]:
    """``cnnlab ARGV``: exit code and stderr; exit 2 must come with one ``cnnlab: error:`` line."""
    err, out = io.StringIO(), io.StringIO()
    with time_limit(TIME_LIMIT), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    text = err.getvalue()
    if code == 2:
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), text
    return code, text


# -- values: what YAML and --set can hold ---------------------------------------------------------

SPECIAL_NUMBERS = [
    0,
    -1,
    1,
    2**31,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**400,
    0.0,
    -0.0,
    1e-300,
    5e-324,
    1e300,
    math.inf,
    -math.inf,
    math.nan,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.integers(),
    st.sampled_from(SPECIAL_NUMBERS),
    st.sampled_from([4301, 5000]).map(lambda digits: -(10**digits)),  # too long to print
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            *["", "1e-3", "1E5", "1e999", "-1e-999", "nan", ".inf", "auto", "cpu", "cuda:7"],
            *["adam", "sgd", "lines", "mnist", "study", "part1", "convnet", "multihead", "a\nb"],
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6).filter(str.isprintable), inner, max_size=3)
    ),
    max_leaves=8,
)
"""Values as YAML builds them (keys of nested mappings print; the tests at the end give them
line breaks)."""


def dumpable(value: Any) -> bool:
    """Whether YAML can write ``value`` (ints of over 4300 digits it cannot)."""
    if isinstance(value, int):
        return value.bit_length() < 14_000
    if isinstance(value, list):
        return all(dumpable(v) for v in value)
    if isinstance(value, dict):
        return all(dumpable(v) for v in value.values())
    return True


yaml_safe_values = values.filter(dumpable)


def _dotted(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        kind = {"data": "DataConfig", "train": "TrainConfig"}.get(f.name)
        if kind:
            keys += _dotted(type(getattr(RunConfig(), f.name)), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


LINES_FIELDS = [f.name for f in dataclasses.fields(LinesConfig) if f.init]
KNOWN_KEYS = [
    *_dotted(RunConfig),
    *(f"data.lines.{name}" for name in (*LINES_FIELDS, "variant")),
    "data.holdout.combinations",
    "data.holdout.random_fraction",
    "train.head_weights.length",
    "model.name",
    "model.kernel_size",
    "model.filters",
    "model.channels",
    "model.heads",
]


def _flat(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


DEFAULTS = {
    **_flat(RunConfig().to_dict()),
    **{f"data.lines.{n}": getattr(LinesConfig(), n) for n in LINES_FIELDS},
}
TEXT_CHOICES = {
    **CHOICES,
    "name": ("run", "fuzz-1", "", "a b", "x" * 300, "../up"),
    "device": ("auto", "cpu", "cuda:1", "gpu", "cuda:"),
    "data.dataset": ("mnist", "lines", "data/x.npz", ""),
    "data.mnist_dir": ("", "data/mnist"),
    "model.name": ("part1", "convnet", "multihead", "nope", "os:getcwd", "no.such:x", "a:b:c"),
    "data.lines.variant": ("default", "centred", "jpeg", "nope"),
    "data.lines.position": ("anywhere", "centred", "x"),
    "data.lines.render": ("antialias", "sharp", "x"),
    "data.lines.colors": (["red", "blue"], ["red"], ["#00ff00", "white"], ["nope"], []),
    "data.holdout.combinations": ([{"color": "blue"}], [{"length": 7, "angle": 90}], [{}], []),
    "data.holdout.random_fraction": (0.1, 0.5, 1.0, -0.1),
}


def plausible(key: str) -> st.SearchStrategy[Any]:
    """Values near what ``key`` takes: of its type and around its range."""
    default = DEFAULTS.get(key)
    if key in TEXT_CHOICES:
        return st.sampled_from(TEXT_CHOICES[key])
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-1, max(3 * default, 40))
    if isinstance(default, float):
        return st.floats(-0.1, 1.2) | st.sampled_from(["1e-3", "5E-4", "1e-999"])
    if isinstance(default, tuple | list):
        return st.lists(st.integers(-1, 40), max_size=4)
    if key.startswith("model."):
        return st.integers(-1, 9) | st.lists(st.integers(1, 16), max_size=3)
    return st.none() | st.integers(-1, 600) | st.floats(0, 1)


def key_values() -> st.SearchStrategy[tuple[str, Any]]:
    """A known key with a plausible value (mostly) or any value at all."""
    return st.sampled_from(KNOWN_KEYS).flatmap(
        lambda key: st.tuples(
            st.just(key), st.one_of(plausible(key), plausible(key), yaml_safe_values)
        )
    )


keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.sampled_from(["train", "data", "model", "data.lines", "data.holdout", "bogus", "train.x"]),
    st.text(max_size=10),
    st.sampled_from(["", ".", "a..b", "train.", ".lr", "a\nb", "name.x"]),
)

YAML_TOKENS = [
    "",
    "~",
    "null",
    "yes",
    "no",
    "0",
    "-7",
    "3",
    "0x1F",
    "0o17",
    "0b101",
    "1_000",
    "1e-3",
    "1.5e3",
    "1e999",
    "-.inf",
    ".nan",
    "9" * 5000,
    "-" + "7" * 4400,
    "2020-02-30",
    "2001-12-14t21:59:43.10-99:99",
    "12:30:45",
    "!!bool maybe",
    "!!bool yes",
    "!!timestamp x",
    "!!int",
    "!!int ''",
    "!!float ''",
    "!!float x",
    "!!int 0x",
    "!!int 12",
    "!!binary ü",
    "!!binary '%%'",
    "!!binary aGVsbG8=",
    "!!str [1]",
    "!!null x",
    "!!set [1]",
    "!!omap [a]",
    "!!pairs 3",
    "!!map []",
    "!!seq {}",
    "!!python/object/apply:os.getcwd []",
    "!<tag:yaml.org,2002:int> x",
    "!local x",
    "&a [1, *a]",
    "&b {k: *b}",
    "*undefined",
    "{[1]: 2}",
    "{<<: 3}",
    "{<<: [1]}",
    "{a: 1, a: 2}",
    "[" * 40 + "]" * 40,
    "[" * 400 + "]" * 400,
    "[" * 1000 + "]" * 1000,
    "{a: " * 1000,
    "0x" + "F" * 4000,
    "0b" + "1" * 15000,
    "'unterminated",
    '"\\x4"',
    '"\\ud800"',
    '"a\\nb"',
    "|\n  block",
    ">-\n  folded",
    "- a",
    "? a",
    "a: b: c",
    "\t",
    "# comment",
    "@x",
    "`x",
    "...",
    "---",
    "%YAML 1.1",
    "[8, 16]",
    "[3, x]",
    "{name: part1}",
    "{name: convnet, channels: [8]}",
    "{per_class: 2}",
    "{combinations: [{color: blue}]}",
    "{random_fraction: 0.5}",
    "[a, [b, [c]]]",
    "\x00",
    "\ufeff",
    "\u2028",
]


def yaml_flow(value: Any) -> str:
    """``value`` as one line of YAML."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...")


yaml_scalars = st.one_of(
    st.sampled_from(YAML_TOKENS), st.text(max_size=15), yaml_safe_values.map(yaml_flow)
)
yaml_values = st.one_of(
    yaml_scalars, st.tuples(yaml_scalars, yaml_scalars).map(" ".join), st.text(max_size=40)
)


@st.composite
def yaml_documents(draw: st.DrawFn, roots: list[str]) -> str:
    """YAML-ish text: ``key: value`` blocks under the given dotted roots, odd lines between."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        choice = draw(st.integers(0, 9))
        if choice == 0:
            lines.append(draw(st.text(max_size=30)))
            continue
        key = draw(st.sampled_from(roots) if choice < 8 else keys)
        parts = key.split(".") if key else [key]
        for depth, part in enumerate(parts[:-1]):
            lines.append("  " * depth + f"{part}:")
        lines.append("  " * (len(parts) - 1) + f"{parts[-1]}: {draw(yaml_values)}")
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n...\n", "\n---\n", "\n---\nx: 1"]))


def set_items() -> st.SearchStrategy[list[str]]:
    """``--set`` items: mostly KEY=VALUE with odd keys and YAML-ish values, some odd text."""
    plain = key_values().map(lambda kv: f"{kv[0]}={yaml_flow(kv[1])}")
    item = st.one_of(
        plain,
        plain,
        st.tuples(keys, st.sampled_from(["=", " = ", "=="]), yaml_values).map("".join),
        st.text(max_size=20),
    )
    return st.lists(item, max_size=4)


def put(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted key in nested dicts, replacing whatever is in the way."""
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(raw.get(part), dict):
            raw[part] = {}
        raw = raw[part]
    raw[parts[-1]] = value


def lookup(raw: Any, dotted: str) -> Any:
    """What a dotted key holds in nested dicts (None where it leads nowhere)."""
    for part in dotted.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def base_config(dataset: str) -> dict[str, Any]:
    raw = RunConfig().to_dict()
    raw["data"]["dataset"] = dataset
    raw["model"] = {"name": "part1"}
    return raw


def check_config(config: RunConfig) -> None:
    """What every accepted config holds, and that it round-trips through its YAML file."""
    t, d = config.train, config.data
    assert isinstance(t.epochs, int) and 0 < t.epochs <= EPOCHS_MAX
    assert isinstance(t.lr, float) and math.isfinite(t.lr) and t.lr > 0
    assert d.image_size is None or 4 <= d.image_size <= 512
    assert 0 < d.test_fraction < 1 and 0 <= d.val_fraction < 1
    assert isinstance(config.name, str) and config.name.isprintable()
    with scratch() as folder:
        save_config(config, folder / "config.yaml")
        again = load_config(folder / "config.yaml")
    assert yaml.safe_dump(again.to_dict()) == yaml.safe_dump(config.to_dict())


# -- 1. config values and --set -------------------------------------------------------------------


@fuzz(150)
@given(
    st.sampled_from(["mnist", "lines", "data/x.npz"]),
    st.lists(key_values(), min_size=1, max_size=3),
)
@example("lines", [("data.lines.lengths", [10**5000])])
@example("lines", [("train.lr", 10**400), ("data.image_size", 2**64)])
def test_config_values(dataset: str, changes: list[tuple[str, Any]]) -> None:
    """Random values of known keys: a valid config, or one line naming what is wrong."""
    raw = base_config(dataset)
    for key, value in changes:
        put(raw, key, value)
    config, _ = outcome(lambda: config_from_dict(copy.deepcopy(raw), "fuzz"))
    if config is not None:
        check_config(config)
        for key in dict(changes):  # an accepted number is the number the key holds in raw
            section, _, name = key.partition(".")
            field = getattr(getattr(config, section), name, None) if "." not in name else None
            value = lookup(raw, key)
            if isinstance(value, int | float) and not isinstance(value, bool) and field is not None:
                assert field == value


@fuzz(60)
@given(st.dictionaries(keys, yaml_safe_values, max_size=4))
def test_random_config_mapping(raw: dict[str, Any]) -> None:
    """Any mapping at all: refused in one line, or a valid config."""
    config, _ = outcome(lambda: config_from_dict(raw, "fuzz"))
    if config is not None:
        check_config(config)


@fuzz(150)
@given(set_items())
@example(["train.lr=!!bool maybe"])
@example(["train.lr=!!timestamp x"])
@example(["train.epochs=!!int"])
@example(["a\nb.c=1"])
def test_parse_set(items: list[str]) -> None:
    """``--set`` items: an ordered mapping of valid dotted keys, or one clean line."""
    parsed, _ = outcome(lambda: overrides.parse_set(items, "fuzz"))
    if parsed is not None:
        for key in parsed:
            overrides.check_key(key, "fuzz")
        assert set(parsed) == {i.partition("=")[0].strip() for i in items}


@fuzz(80)
@given(st.dictionaries(keys, values, max_size=3), st.dictionaries(keys, values, max_size=3))
def test_apply_overrides(raw: dict[str, Any], changes: dict[str, Any]) -> None:
    """Dotted keys set in a nested mapping: each lands where it says, or one clean line."""
    target = copy.deepcopy(raw)
    done, _ = outcome(lambda: overrides.apply_overrides(target, changes, "fuzz") or True)
    if done:  # each key holds its value, unless a later key changed or replaced it
        order = list(changes)
        for k, key in enumerate(order):
            later = order[k + 1 :]
            if any(o.startswith(key + ".") or key.startswith(o + ".") for o in later):
                continue
            node: Any = target
            for part in key.split("."):
                node = node[part]
            assert node == changes[key] or (node != node and changes[key] != changes[key])


@fuzz(100)
@given(set_items())
@example(["data.lines={per_class: 0}"])
@example(["model.name=part1", "model.kernel_size=!!int ''"])
@example(["model.x=" + "[" * 400 + "]" * 400])  # taken, then saving it recursed too deep
def test_load_config_with_set(items: list[str]) -> None:
    """A preset with random ``--set`` items: a valid config, or one clean line (also in the
    CLI's ``cnnlab train`` path up to loading the config)."""
    config, _ = outcome(lambda: load_config("part1-lines", items))
    if config is not None:
        check_config(config)


# -- 2. YAML files: configs and studies -----------------------------------------------------------

CONFIG_ROOTS = [*KNOWN_KEYS, "train", "data", "model"]


@fuzz(120)
@given(
    st.one_of(
        yaml_documents(CONFIG_ROOTS),
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    ),
    st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8-sig"]),
    st.sampled_from(["", "model:\n  name: part1\ndata:\n  dataset: lines\n"]),
)
def test_config_yaml_file(text: str, encoding: str, head: str) -> None:
    """Random YAML-ish text or bytes in a config file: a config, or one line naming the file."""
    with scratch() as folder:
        path = folder / "config.yaml"
        try:
            path.write_bytes((head + text).encode(encoding))
        except UnicodeEncodeError:
            path.write_bytes((head + text).encode("utf-8", "surrogatepass"))
        config, message = outcome(lambda: load_config(path))
        if config is not None:
            check_config(config)
        else:
            assert str(path) in message or "--set" in message


STUDY_ROOTS = [
    "name",
    "description",
    "base",
    "set",
    "seeds",
    "target",
    "baseline",
    "quick",
    "quick.seeds",
    "quick.set",
    "variants",
    "variants.a",
    "variants.a.train.lr",
    "grid",
    "grid.train.lr",
    "grid.model.kernel_size",
]


@st.composite
def study_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A study: mostly plausible parts (overrides of known keys, seeds, a small grid), some of
    them replaced by odd or random values."""
    overrides = st.lists(key_values(), max_size=2).map(dict)
    spec: dict[str, Any] = {
        "name": "s",
        "base": draw(st.sampled_from(["part1-lines", "base.yaml"])),
        "seeds": draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True)),
        "variants": draw(
            st.dictionaries(
                st.sampled_from(["base", "a", "b-2"]),
                st.one_of(st.none(), overrides, overrides, overrides, yaml_safe_values),
                min_size=1,
                max_size=3,
            )
        ),
    }
    if draw(st.booleans()):
        spec["grid"] = draw(
            st.dictionaries(
                st.sampled_from(["train.lr", "train.epochs", "model.kernel_size", "seed", "x"]),
                st.lists(st.sampled_from([0.01, 1, 3, 5, 2.5, "x", None, -1]), max_size=3)
                | yaml_safe_values,
                max_size=2,
            )
        )
    odd = {  # the first ones change least (Hypothesis tries first items first)
        "set": overrides | yaml_safe_values,
        "quick": st.fixed_dictionaries({"set": overrides, "seeds": st.lists(st.integers(0, 5))})
        | yaml_safe_values,
        "target": st.floats(-0.5, 1.5) | yaml_safe_values,
        "baseline": st.sampled_from(["base", "a", "zz"]) | yaml_safe_values,
        "description": st.text(max_size=10) | yaml_safe_values,
        "seeds": yaml_safe_values,
        "name": st.sampled_from(["fuzz-1", "a\n", "", "../x", 3]) | yaml_safe_values,
        "base": st.sampled_from(["nope", "", "/dev/null", "x" * 300]) | yaml_safe_values,
        "variants": st.dictionaries(
            st.sampled_from(["a\n", "", "x y", "seed", "base"]) | st.text(max_size=5),
            overrides | yaml_safe_values,
        )
        | yaml_safe_values,
        "unknown": yaml_safe_values,
    }
    if draw(st.integers(0, 2)) == 2:  # one odd part in three studies
        key = draw(st.sampled_from(list(odd)))
        spec[key] = draw(odd[key])
    return spec


@fuzz(60)
@given(
    st.one_of(
        study_specs().map(lambda s: yaml.safe_dump(s, allow_unicode=True)),
        study_specs().map(lambda s: yaml.safe_dump(s, allow_unicode=True)),
        yaml_documents(STUDY_ROOTS).map(lambda t: "base: part1-lines\n" + t),
        st.text(max_size=200),
    ),
    st.booleans(),
    st.just(()) | set_items().map(tuple),
)
def test_study_file(text: str, quick: bool, extra: tuple[str, ...]) -> None:
    """Random study files: a study whose every run has a valid config, or one clean line."""
    with scratch() as folder:
        (folder / "base.yaml").write_text("model: {name: part1}\ndata: {dataset: lines}\n")
        path = folder / "study.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        study, _ = outcome(lambda: load_study(path, quick=quick, extra=extra))
        if study is not None:
            assert study.runs and study.baseline in {v.name for v in study.variants}
            for run in study.runs:
                assert run.config.seed == run.seed and "\n" not in run.name


# -- 3. IDX files ---------------------------------------------------------------------------------


@st.composite
def idx_files(draw: st.DrawFn) -> bytes:
    """IDX bytes: random ones, or a header (of any type code, rank and dimensions) then data
    of about the size it announces, maybe with a tail or cut short."""
    kind = draw(st.sampled_from(["random", "valid", "valid", "odd"]))
    if kind == "random":
        return draw(st.binary(max_size=80))
    if kind == "valid":
        code = draw(st.sampled_from(sorted(IDX_DTYPES)))
        dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
        ndim = len(dims)
    else:
        code = draw(st.one_of(st.sampled_from(sorted(IDX_DTYPES)), st.integers(0, 255)))
        ndim = draw(st.one_of(st.integers(0, 4), st.just(255)))
        small = st.integers(0, 4)
        dims = draw(
            st.lists(
                st.one_of(small, small, st.sampled_from([2**32 - 1, 2**31, 65536])),
                min_size=min(ndim, 6),
                max_size=min(ndim, 6),
            )
        )
    header = bytes([0, 0, code, ndim]) + np.array(dims, dtype=">u4").tobytes()
    size = math.prod(dims) * IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 0
    if not 0 < size <= 1024 or ndim != len(dims):
        size = draw(st.integers(0, 64))
    data = header + draw(st.binary(min_size=size, max_size=size))
    if kind == "valid":
        return data
    data += draw(st.one_of(st.just(b""), st.binary(max_size=8)))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(IDX_DTYPES[code]).tobytes()


@st.composite
def mnist_folders(draw: st.DrawFn) -> dict[str, bytes]:
    """MNIST's four files (small), consistent or with one of them changed."""
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    files = {}
    for part in ("train", "t10k"):
        n = draw(st.integers(1, 12))
        pixels = draw(hnp.arrays(np.uint8, (n, h, w)))
        labels = draw(hnp.arrays(np.uint8, (n,), elements=st.integers(0, 9)))
        files[f"{part}-images-idx3-ubyte"] = idx_bytes(pixels, 0x08)
        files[f"{part}-labels-idx1-ubyte"] = idx_bytes(labels, 0x08)
    change = draw(st.sampled_from(["none", "none", "file", "labels", "images", "gzip", "drop"]))
    name = draw(st.sampled_from(sorted(files)))
    if change == "file":
        files[name] = draw(idx_files())
    elif change == "labels":
        values = draw(hnp.arrays(np.int64, (draw(st.integers(0, 12)),)))
        code = draw(st.sampled_from(sorted(IDX_DTYPES)))
        files[name.replace("images-idx3", "labels-idx1")] = idx_bytes(
            cast(values, IDX_DTYPES[code]), code
        )
    elif change == "images":
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=5))
        code = draw(st.sampled_from(sorted(IDX_DTYPES)))
        files[name.replace("labels-idx1", "images-idx3")] = idx_bytes(np.ones(shape), code)
    elif change == "gzip":
        files[name + ".gz"] = gzip.compress(files.pop(name))
    elif change == "drop":
        del files[name]
    return files


def idx_reference(data: bytes) -> np.ndarray | None:
    """What IDX bytes hold by the format's definition (native byte order); None if not IDX or
    empty, over :data:`MAX_IDX_BYTES`, or not exactly as long as the header announces."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES or data[3] == 0:
        return None
    ndim, dtype = data[3], IDX_DTYPES[data[2]]
    if len(data) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    size = math.prod(dims) * dtype.itemsize
    if not 0 < size <= MAX_IDX_BYTES or len(data) != 4 + 4 * ndim + size:
        return None
    return (
        np.frombuffer(data[4 + 4 * ndim :], dtype=dtype)
        .reshape(dims)
        .astype(dtype.newbyteorder("="))
    )


def idx_file_reference(content: bytes, name: str) -> np.ndarray | None:
    """What ``read_idx`` must return for a file: gzip (by its first bytes) is unpacked first; a
    ``.gz`` name on anything else is refused."""
    if content[:2] == b"\x1f\x8b":
        try:
            return idx_reference(gzip.decompress(content))
        except (OSError, EOFError, zlib.error):
            return None
    return None if name.endswith(".gz") else idx_reference(content)


@fuzz(150)
@given(
    idx_files(),
    st.sampled_from(["raw", "gzip", "gzip-named-raw", "raw-named-gz", "gzip-cut", "gzip-flip"]),
    st.data(),
)
def test_idx(content: bytes, packing: str, data: st.DataObject) -> None:
    """IDX files (raw or gzip, cut or damaged): exactly the array the format defines, or one
    line naming the file."""
    gz = packing in ("gzip", "raw-named-gz", "gzip-cut", "gzip-flip")
    name = "x-idx3-ubyte.gz" if gz else "x-idx3-ubyte"
    if packing.startswith("gzip"):
        content = gzip.compress(content, mtime=0)
    if packing == "gzip-cut":
        content = content[: data.draw(st.integers(0, len(content) - 1))]
    if packing == "gzip-flip":
        at = data.draw(st.integers(0, len(content) - 1))
        flip = data.draw(st.integers(1, 255))
        content = content[:at] + bytes([content[at] ^ flip]) + content[at + 1 :]
    expected = idx_file_reference(content, name)
    with scratch() as folder:
        path = folder / name
        path.write_bytes(content)
        array, message = outcome(lambda: read_idx(path))
    if expected is None:
        assert message is not None and str(path) in message
    else:
        assert message is None, message
        assert array.dtype == expected.dtype and array.shape == expected.shape
        assert array.tobytes() == expected.tobytes()


@fuzz(40)
@given(mnist_folders(), st.sampled_from(["study", "official"]))
def test_idx_folder(files: dict[str, bytes], split: str) -> None:
    """A folder of MNIST's four IDX files (small, some changed): a dataset whose images and
    labels are the files', or one clean line."""
    with scratch() as folder:
        for name, content in files.items():
            (folder / name).write_bytes(content)
        dataset, _ = outcome(lambda: load_mnist(folder, split=split, download=False))
        code, err = cli(["data", "check", str(folder), "--mnist-split", split])
    assert code in (0, 2) and (code == 0) == (dataset is not None), err
    if dataset is not None:
        counts = sum(len(idx_file_reference(files[n], n)) for n in files if "labels" in n)
        assert len(dataset.train.labels) + len(dataset.test.labels) == counts
        assert dataset.train.images.dtype == torch.uint8 and dataset.train.images.shape[1] == 1


@st.composite
def cifar_folders(draw: st.DrawFn) -> tuple[dict[str, bytes], int | None]:
    """(files, expected image count): a small CIFAR-10 or CIFAR-100 binary folder, consistent
    (the count) or with one file changed (None: it may be refused)."""
    layout = draw(st.sampled_from([CIFAR10, CIFAR100]))
    files, count = {}, 0
    for name in (*layout.train, *layout.test):
        n = draw(st.integers(1, 3))
        count += n
        labels = draw(hnp.arrays(np.uint8, (n, layout.label_bytes), elements=st.integers(0, 9)))
        labels[:, 0] = labels[:, 0] % 10 if layout is CIFAR10 else labels[:, 0] % 2  # coarse 0/1
        if layout is CIFAR100:  # a fine label under one coarse label: fine = coarse * 5 + k
            labels[:, -1] = labels[:, 0] * 5 + labels[:, -1] % 5
        pixels = np.full((n, PIXEL_BYTES), draw(st.integers(0, 255)), np.uint8)
        files[name] = np.concatenate([labels, pixels], axis=1).tobytes()
    for name, k in layout.names_files:
        files[name] = "".join(f"class{i}\n" for i in range(k)).encode()
    change = draw(st.sampled_from(["none", "none", "size", "bytes", "label", "names", "drop"]))
    if change == "none":
        return files, count
    name = draw(st.sampled_from(sorted(files)))
    if change == "size":
        files[name] = files[name][: draw(st.integers(0, len(files[name])))]
        files[name] += draw(st.binary(max_size=4))
    elif change == "bytes":
        files[name] = draw(st.binary(max_size=40))
    elif change == "label" and name.endswith(".bin"):
        data = bytearray(files[name])
        data[draw(st.sampled_from([0, layout.label_bytes - 1]))] = draw(st.integers(0, 255))
        files[name] = bytes(data)
    elif change == "names":
        files[name] = draw(
            st.sampled_from([b"", b"a\na\n", "\n".join(["x"] * 100).encode(), b"\xff\xfe"])
            | st.binary(max_size=30)
        )
    elif change == "drop":
        del files[name]
    return files, None


@fuzz(30)
@given(cifar_folders(), st.sampled_from(["", "cifar-10-batches-bin", "cifar-100-binary"]))
def test_cifar_folder(folder_files: tuple[dict[str, bytes], int | None], sub: str) -> None:
    """CIFAR binary folders, whole or with a file cut, garbled, mislabelled, renamed or gone:
    every record as an image, or one line naming the file."""
    files, count = folder_files
    with scratch() as folder:
        where = folder / sub if sub else folder
        where.mkdir(exist_ok=True)
        for name, content in files.items():
            (where / name).write_bytes(content)
        dataset, _ = outcome(lambda: load_cifar(folder))
        code, err = cli(["data", "check", str(folder)])
    assert code in (0, 2) and (code == 2) == (dataset is None), err
    if count is not None and dataset is not None:
        assert len(dataset.train.labels) + len(dataset.test.labels) == count
        assert dataset.train.images.shape[1:] == (3, 32, 32)


# -- 4. .npz archives -----------------------------------------------------------------------------

dtypes = st.one_of(
    hnp.scalar_dtypes(),
    hnp.byte_string_dtypes(max_len=4),
    hnp.unicode_string_dtypes(max_len=4),
    st.just(np.dtype([("a", "<i4"), ("b", "u1")])),
)
shapes = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5)
odd_arrays = st.one_of(
    hnp.arrays(dtypes, shapes),
    st.sampled_from(["V0", "S0", "U0", "M8[ns]", "m8", "c16", "f2", ">u1", ">i8"]).flatmap(
        lambda d: shapes.map(lambda shape: np.zeros(shape, d))
    ),
)


def images_arrays() -> st.SearchStrategy[np.ndarray]:
    plausible = st.tuples(
        st.integers(0, 6), st.integers(1, 6), st.integers(1, 6), st.sampled_from([0, 1, 2, 3, 4])
    ).flatmap(
        lambda s: hnp.arrays(
            st.sampled_from([np.uint8, np.uint8, np.int16, np.float32]),
            s[:3] if s[3] == 0 else s,
        )
    )
    return st.one_of(plausible, odd_arrays)


@st.composite
def npz_arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    arrays = {}
    if draw(st.integers(0, 9)):
        images = draw(images_arrays())
        arrays["images"] = images
        n = images.shape[0] if images.ndim else 1
        if draw(st.integers(0, 9)):
            arrays["labels"] = draw(
                st.one_of(
                    st.sampled_from([np.int64, np.uint8, np.int8]).flatmap(
                        lambda d: hnp.arrays(np.int64, (n,), elements=st.integers(-1, 4)).map(
                            lambda v: cast(v, d)
                        )
                    ),
                    odd_arrays,
                )
            )
    for name in draw(
        st.lists(st.sampled_from(["class_names", "split", "x", "label", "meta"]), max_size=2)
    ):
        arrays[name] = draw(
            st.one_of(
                hnp.arrays(
                    np.dtype("<U5"),
                    (draw(st.integers(0, 6)),),
                    elements=st.sampled_from(["train", "test", "val", "a", "b", "", "a\nb"]),
                ),
                odd_arrays,
            )
        )
    if draw(st.integers(0, 9)) == 0:
        arrays[draw(st.sampled_from(["images", "labels", "class_names"]))] = np.array(
            [1, "x", None], dtype=object
        )
    return arrays


def write_archive(path: Path, arrays: dict[str, np.ndarray], how: str) -> None:
    if how == "savez":
        np.savez(path, **arrays)
    elif how == "savez_compressed":
        np.savez_compressed(path, **arrays)
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=True)


def damage(content: bytes, how: str, data: st.DataObject) -> bytes:
    if how == "cut":
        return content[: data.draw(st.integers(0, max(0, len(content) - 1)))]
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(content) - 1))
            content = (
                content[:at]
                + bytes([content[at] ^ data.draw(st.integers(1, 255))])
                + content[at + 1 :]
            )
        return content
    if how == "append":
        return content + data.draw(st.binary(min_size=1, max_size=30))
    return content


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@fuzz(150)
@given(
    npz_arrays(),
    st.sampled_from(["savez", "savez_compressed", "zip"]),
    st.sampled_from(["none", "none", "cut", "flip", "append"]),
    st.data(),
)
def test_npz(arrays: dict[str, np.ndarray], how: str, harm: str, data: st.DataObject) -> None:
    """Random arrays in an ``.npz`` (cut, damaged): read back exactly, loaded as an images
    dataset, or refused in one line naming the file."""
    with scratch() as folder:
        path = folder / "data.npz"
        write_archive(path, arrays, how)
        path.write_bytes(damage(path.read_bytes(), harm, data))
        assert isinstance(is_image_npz(path), bool)
        read, message = outcome(lambda: read_npz(path))
        pickled = any(a.dtype.hasobject for a in arrays.values())
        if harm == "none":
            if pickled:
                assert message is not None and "objects" in message
            else:
                assert message is None, message
        if read is not None and harm == "none":
            assert set(read) == set(arrays)
            assert all(same(read[k], arrays[k]) for k in arrays)
        if message is not None:
            assert str(path) in message
        size = data.draw(st.sampled_from([None, None, 4, 9]))
        channels = data.draw(st.sampled_from([None, None, 1, 3]))
        dataset, _ = outcome(lambda: load_image_npz(path, image_size=size, channels=channels))
        if dataset is not None:
            n = len(dataset.train.labels) + len(dataset.test.labels)
            assert n == len(arrays["labels"])
            assert int(dataset.train.labels.max()) < len(dataset.class_names)
            if size is not None:
                assert dataset.image_size == (size, size)
            if channels is not None:
                assert dataset.channels == channels


NPY_HEADERS = [
    "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }",
    "{'descr': '|V0', 'fortran_order': False, 'shape': (99999999999999,), }",
    "{'descr': '|S0', 'fortran_order': False, 'shape': (18446744073709551616,), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (-1,), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (-1, -1), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (" + "9" * 5000 + ",), }",
    "{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (1,), }",
    "{'descr': 5, 'fortran_order': False, 'shape': (1,), }",
    "{'descr': 'x', 'fortran_order': 0, 'shape': [1], }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': ('a',), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
    "{[]: 1}",
    "{{}: 1}",
    "[1, 2]",
    "(" * 300 + ")" * 300,
    "1" * 5000,
    "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }" + "\x00",
    "",
]


@fuzz(80)
@given(
    st.one_of(st.sampled_from(NPY_HEADERS), st.text(max_size=80)),
    st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 9)]),
    st.binary(max_size=40),
    st.sampled_from(["images", "labels", "x"]),
)
def test_npz_crafted_member_header(
    header: str, version: tuple[int, int], payload: bytes, name: str
) -> None:
    """``.npy`` members with odd headers (made by hand): read, or one clean line."""
    text = header.encode("utf-8", "surrogatepass")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    size = struct.pack("<H", len(text)) if version[0] == 1 else struct.pack("<I", len(text))
    member = b"\x93NUMPY" + bytes(version) + size + text + payload
    with scratch() as folder:
        path = folder / "crafted.npz"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{name}.npy", member)
        outcome(lambda: read_npz(path))
        outcome(lambda: read_images(path, Preprocess(3, (4, 4), (0.5,) * 3, (0.5,) * 3)))


@fuzz(40)
@given(
    st.sampled_from([0, 8, 0, 8, 1, 9, 12, 14, 93, 99, 0xFFFF]),
    st.sampled_from([0, 0x1, 0x8, 0x40, 0x800, 0x2000]),
    st.sampled_from([20, 45, 63, 109]),
    st.booleans(),
    st.booleans(),
)
@example(0, 0, 109, False, False)  # "zip file version 10.9": NotImplementedError in ZipFile()
@example(0, 0x800, 20, False, True)  # a name flagged UTF-8 that is not: UnicodeDecodeError
def test_npz_zip_entries(method: int, flags: int, needs: int, compress: bool, name: bool) -> None:
    """Zip entries with compression methods zipfile lacks, encryption flags, a version it
    cannot extract or a name that is not the UTF-8 it claims: read exactly, or one clean line
    (detection, ``is_image_npz``, never raises)."""
    with scratch() as folder:
        path = folder / "odd.npz"
        images, labels = np.zeros((2, 4, 4), np.uint8), np.array([0, 1])
        (np.savez_compressed if compress else np.savez)(path, images=images, labels=labels)
        content = bytearray(path.read_bytes())
        local = content.find(b"PK\x03\x04")
        central = content.find(b"PK\x01\x02")
        struct.pack_into("<HH", content, local + 6, flags, method)
        struct.pack_into("<HHH", content, central + 6, needs, flags, method)
        if name:
            content[central + 46] = 0xFF  # the first byte of the first name
        path.write_bytes(bytes(content))
        assert isinstance(is_image_npz(path), bool)
        arrays, _ = outcome(lambda: read_npz(path))
        outcome(lambda: load_dataset(path))
    if arrays is not None:
        assert same(arrays["images"], images) and same(arrays["labels"], labels)


# -- 5. CSV manifests -----------------------------------------------------------------------------


def make_pictures(folder: Path) -> None:
    """A few files a manifest or a folder can name: good, odd and broken pictures."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (6, 6), np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 255, (6, 6, 3), np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (6, 6, 3), np.uint8)).save(folder / "sub" / "c.jpg")
    Image.fromarray(rng.integers(0, 255, (9, 5, 4), np.uint8)).save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (6, 6), np.uint16) * 250).save(folder / "deep.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not a picture")
    good = (folder / "rgb.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])


GOOD_PATHS = ["grey.png", "rgb.png", "sub/c.jpg", "deep.png"]  # all 6x6
ODD_PATHS = [
    "rgba.png",
    "empty.png",
    "text.png",
    "cut.png",
    "missing.png",
    "sub",
    "",
    " rgb.png ",
    "/nonexistent/x.png",
    "x" * 300 + ".png",
    "a\nb.png",
    "a\x00b.png",
    "../grey.png",
]
LABELS = ["0", "1", "cat"]
ODD_LABELS = ["10", "2", "dog", "", " x ", "a_b", "a\nb", "٣", "9" * 5000, "é", "a,b", '"']
COLUMNS = ["path", "split", "label", "label", "colour", "shape", "", "a.b", "Path", " path"]


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """CSV text: a header of (mostly) known columns, rows naming (mostly good) pictures."""
    plain = st.sampled_from([["path", "label"], ["path", "label", "split"], ["a", "path", "b"]])
    header = draw(plain | plain | st.lists(st.sampled_from(COLUMNS), max_size=4))
    odd = draw(st.sampled_from([0, 0, 0, 0.1, 0.5]))  # the share of odd cells
    cell = {
        "path": (GOOD_PATHS, ODD_PATHS),
        "split": (["train", "train", "test"], ["val", "", "TEST", "x"]),
    }
    rows = [header]
    for _ in range(draw(st.integers(0, 10) | st.integers(4, 10))):
        row = []
        for column in header:
            good, bad = cell.get(column, (LABELS, ODD_LABELS))
            row.append(draw(st.sampled_from(bad if draw(st.floats(0, 1)) < odd else good)))
        if odd and draw(st.integers(0, 15)) == 0:
            row = row[: draw(st.integers(0, len(row)))] + draw(
                st.lists(st.text(max_size=5), max_size=2)
            )
        rows.append(row)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


@fuzz(80)
@given(
    st.one_of(manifests(), manifests(), manifests(), st.text(max_size=120)),
    st.just("utf-8") | st.just("utf-8") | st.sampled_from(["utf-8-sig", "utf-16", "latin-1"]),
    st.sampled_from([None, None, 5]),
    st.sampled_from([None, 1, 3]),
)
@example("path,label\ngrey.png,0\nrgb.png," + "9" * 5000 + "\ndeep.png,0\n", "utf-8", None, None)
def test_manifest(text: str, encoding: str, size: int | None, channels: int | None) -> None:
    """Random CSV manifests: a dataset of exactly the listed images and labels, or one line
    naming the CSV."""
    with scratch() as folder:
        make_pictures(folder)
        path = folder / "data.csv"
        try:
            path.write_bytes(text.encode(encoding, "surrogatepass"))
        except UnicodeEncodeError:
            path.write_bytes(text.encode(encoding, "replace"))
        dataset, _ = outcome(lambda: load_manifest(path, image_size=size, channels=channels))
        code, err = cli(["data", "check", str(path)])
    assert code in (0, 2) and (code == 2) == (dataset is None), err
    if dataset is None:
        return
    parts = [dataset.train, dataset.test] + ([dataset.val] if dataset.val else [])
    assert sum(len(p.labels) for p in parts) == dataset.provenance["files"]
    assert all(p.images.dtype == torch.uint8 for p in parts)
    if size is not None:
        assert dataset.image_size == (size, size)
    if channels is not None:
        assert dataset.channels == channels
    if encoding.startswith("utf-8"):
        rows = list(csv.reader(io.StringIO(text, newline="")))
        header = [c.strip() for c in rows[0]]
        listed = [r for r in rows[1:] if any(c.strip() for c in r)]
        assert len(listed) == dataset.provenance["files"]
        if [c for c in header if c not in ("path", "split")] == ["label"]:
            labels = {r[header.index("label")].strip() for r in listed}
            assert set(dataset.class_names) == labels


# -- 6. image files and folders -------------------------------------------------------------------

MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "PA", "I", "I;16", "F", "CMYK", "YCbCr", "LAB", "HSV"]
FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "BMP": ".bmp",
    "GIF": ".gif",
    "TIFF": ".tif",
    "WEBP": ".webp",
}


def _picture(mode: str, w: int, h: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 4), np.uint8)
    if mode == "P":
        return Image.fromarray(pixels[..., :3], "RGB").quantize(4)
    if mode == "PA":
        return Image.frombytes("PA", (w, h), pixels[..., :2].tobytes())
    if mode in ("I", "I;16", "F"):
        return Image.fromarray(pixels[..., 0].astype(np.int32) * 200).convert(mode)
    return Image.fromarray(pixels, "RGBA").convert(mode)


def _saves(mode: str, fmt: str) -> bool:
    try:
        _picture(mode, 2, 2, 0).save(io.BytesIO(), fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


PICTURE_KINDS = [(mode, fmt) for mode in MODES for fmt in FORMATS if _saves(mode, fmt)]
"""(mode, format) pairs this Pillow writes."""


@st.composite
def picture_files(draw: st.DrawFn, side: int | None = None) -> tuple[bytes, str, bool]:
    """(bytes, suffix, intact): a picture Pillow wrote in one of its modes and formats (of
    ``side`` x ``side`` pixels, else any size up to 9), maybe cut short, damaged or emptied;
    or random bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=100)), draw(st.sampled_from(sorted(FORMATS.values()))), False
    mode, fmt = draw(st.sampled_from(PICTURE_KINDS))
    w, h = (side, side) if side else (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    buffer = io.BytesIO()
    _picture(mode, w, h, draw(st.integers(0, 2**16))).save(buffer, fmt)
    content = buffer.getvalue()
    harm = draw(st.sampled_from(["none", "none", "none", "cut", "flip", "zero"]))
    if harm == "cut":
        content = content[: draw(st.integers(0, len(content) - 1))]
    elif harm == "flip":
        at = draw(st.integers(0, len(content) - 1))
        flip = draw(st.integers(1, 255))
        content = content[:at] + bytes([content[at] ^ flip]) + content[at + 1 :]
    elif harm == "zero":
        content = b""
    return content, FORMATS[fmt], harm == "none"


@fuzz(150)
@given(picture_files(), st.sampled_from([None, None, 3, 8]), st.sampled_from([None, 1, 3]))
def test_picture_files(
    file: tuple[bytes, str, bool], size: int | None, channels: int | None
) -> None:
    """Pictures of odd modes, sizes and formats, cut, damaged or random bytes: decoded to
    (1, C, H, W) uint8, or refused in one line naming the file."""
    content, suffix, intact = file
    with scratch() as folder:
        path = folder / f"picture{suffix}"
        path.write_bytes(content)
        decoded, message = outcome(
            lambda: decode_images(
                [path], image_size=size, channels=channels, what="fuzz", workers=1
            )
        )
        if decoded is not None:
            n, c, h, w = decoded.images.shape
            assert n == 1 and decoded.images.dtype == torch.uint8
            assert c == channels if channels else c in (1, 3)
            if size:
                assert (h, w) == (size, size)
        else:
            assert str(path) in message or "fuzz" in message
        if intact and size is None:  # the header alone tells the same size
            with open_image(path, load=False) as picture:
                assert decoded is None or (h, w) == (picture.height, picture.width)
        rgb = Preprocess(3, (5, 5), (0.5,) * 3, (0.5,) * 3)
        read, _ = outcome(lambda: read_images(path, rgb))
        if read is not None:
            images, labels = read
            assert labels == [str(path)]
            assert images.shape == (1, 3, 5, 5) and images.dtype == torch.uint8


FOLDER_NAMES = ["0", "1", "10", "cat", "train", "test", "val", ".hidden", "٣", "sub dir", "a\nb"]


@st.composite
def folder_trees(draw: st.DrawFn) -> tuple[str, list[tuple[str, list[int]]]]:
    """(style, [(folder under the root, picture numbers)]): one folder per class, train/ and
    test/ (and val/) folders of class folders, or folders of any names and depth."""
    style = draw(st.sampled_from(["classes", "split", "any"]))
    pick = st.lists(st.integers(0, 8), min_size=1, max_size=3)
    if style == "any":
        top, sub = st.sampled_from(FOLDER_NAMES), st.none() | st.sampled_from(FOLDER_NAMES)
        tree = draw(st.lists(st.tuples(top, sub, st.lists(st.integers(0, 8), max_size=3))))
        return style, [(t if s is None else f"{t}/{s}", p) for t, s, p in tree]
    names = draw(st.lists(st.sampled_from(["0", "1", "2", "10", "cat"]), min_size=1, unique=True))
    if style == "classes":
        return style, [(name, draw(pick)) for name in names]
    parts = ["train", "test"] + (["val"] if draw(st.booleans()) else [])
    return style, [(f"{part}/{name}", draw(pick)) for part in parts for name in names]


@fuzz(40)
@given(
    folder_trees(),
    st.one_of(
        st.lists(picture_files(side=5), min_size=1, max_size=3),
        st.lists(picture_files(), min_size=1, max_size=3),
    ),
    st.sampled_from([None, None, 4]),
)
def test_image_folder(
    tree: tuple[str, list[tuple[str, list[int]]]],
    pictures: list[tuple[bytes, str, bool]],
    size: int | None,
) -> None:
    """Folder trees of pictures (good and bad): a dataset of exactly the pictures in its class
    folders, or one clean line."""
    style, layout = tree
    with scratch() as folder:
        root = folder / "root"
        root.mkdir()
        count = 0
        for where, picks in layout:
            (root / where).mkdir(parents=True, exist_ok=True)
            for k in picks:
                content, suffix, _ = pictures[k % len(pictures)]
                (root / where / f"{count}{suffix}").write_bytes(content)
                count += 1
        dataset, _ = outcome(lambda: load_folder(root, image_size=size))
        code, err = cli(["data", "check", str(root), *(["--image-size", "4"] if size else [])])
    assert code in (0, 2) and (code == 2) == (dataset is None), err
    if dataset is not None:
        if style == "any":
            assert dataset.provenance["files"] <= count
        else:
            assert dataset.provenance["files"] == count
        assert len(dataset.class_names) == len(set(dataset.class_names))
        if style == "classes":
            assert set(dataset.class_names) == {where for where, _ in layout}


# -- 7. predict -----------------------------------------------------------------------------------

RGB28 = Preprocess(channels=3, image_size=(28, 28), mean=(0.5,) * 3, std=(0.5,) * 3)
GREY6 = Preprocess(channels=1, image_size=(6, 6), mean=(0.5,), std=(0.5,))


def predict_arrays(h: int, w: int, c: int) -> st.SearchStrategy[np.ndarray]:
    """Arrays near what a model of (h, w, c) wants: odd dtypes, shapes and values."""
    dtype = st.one_of(
        st.sampled_from([np.uint8, np.int8, np.int16, np.int64, np.uint16, np.uint64]),
        st.sampled_from([np.float16, np.float32, np.float64, np.bool_, np.complex64]),
        hnp.scalar_dtypes(),
    )
    shape = st.one_of(
        st.integers(0, 3).map(lambda n: (n, h, w, c)),
        st.integers(1, 3).map(lambda n: (n, c, h, w)),
        st.integers(1, 3).map(lambda n: (n, h, w)),
        hnp.array_shapes(min_dims=0, max_dims=5, max_side=4),
    )
    elements = st.sampled_from(
        [st.floats(0, 1), st.floats(0, 255), st.integers(0, 255), st.floats(), st.integers(-5, 300)]
    )
    return st.tuples(dtype, shape, elements).flatmap(
        lambda t: hnp.arrays(np.float64, t[1], elements=t[2]).map(lambda v: cast(v, t[0]))
    )


def cast(values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` as ``dtype`` the way numpy casts (wrapping, NaN to some integer ...)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return values.astype(dtype)


def expected_pixels(array: np.ndarray) -> np.ndarray | None:
    """What ``predict`` must read from ``array`` (channels last), None if it must refuse it."""
    kind = array.dtype.kind
    if kind not in "iuf" or array.size == 0:
        return None
    if kind == "f" and not np.isfinite(array).all():
        return None
    if array.min() < 0 or array.max() > 255:
        return None
    if kind == "f":
        return np.rint(array * 255.0 if array.max() <= 1 else array).astype(np.uint8)
    return array.astype(np.uint8)


@fuzz(150)
@given(
    st.sampled_from([RGB28, GREY6]).flatmap(
        lambda p: st.tuples(st.just(p), predict_arrays(*p.image_size, p.channels))
    )
)
def test_predict_arrays(case: tuple[Preprocess, np.ndarray]) -> None:
    """``images`` arrays of random dtypes, shapes and values: exactly the pixels they stand for
    (channels last or first; uint8, integers 0..255, floats in [0, 1] or [0, 255]), or one
    line naming the file."""
    preprocess, array = case
    h, w = preprocess.image_size
    c = preprocess.channels
    with scratch() as folder:
        path = folder / "x.npz"
        np.savez(path, images=array)
        read, message = outcome(lambda: read_images(path, preprocess))
    pixels = array[..., None] if array.ndim == 3 and c == 1 else array
    if pixels.ndim == 4 and pixels.shape[-1] != c and pixels.shape[1] == c:
        pixels = np.moveaxis(pixels, 1, -1)
    fits = pixels.ndim == 4 and pixels.shape[1:] == (h, w, c)
    want = expected_pixels(pixels) if fits else None
    if want is None:
        assert message is not None and str(path) in message
    else:
        assert message is None, message
        images, labels = read
        assert torch.equal(images, torch.from_numpy(want).permute(0, 3, 1, 2))
        assert labels == [f"{path}[{i}]" for i in range(len(want))]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Lines run trained for one epoch on two images per class (a few seconds)."""
    from cnnlab.training import train

    out = tmp_path_factory.mktemp("fuzz-run") / "run"
    overrides_ = ("data.lines={per_class: 2, test_fraction: 0.5}", "train.epochs=1")
    train("part1-lines", out=out, overrides=overrides_, quiet=True)
    return out


@fuzz(15)
@given(data=st.data())
def test_predict_end_to_end(trained_run: Path, data: st.DataObject) -> None:
    """``cnnlab predict RUN FILE`` on random arrays and pictures: one row per image, or exit 2
    with one ``cnnlab: error:`` line."""
    with scratch() as folder:
        kind = data.draw(st.sampled_from(["npz", "picture", "npy"]))
        if kind == "npz":
            path = folder / "x.npz"
            np.savez(path, images=data.draw(predict_arrays(28, 28, 3)))
        elif kind == "npy":  # not an input predict reads: refused as a picture
            path = folder / "x.npy"
            np.save(path, data.draw(predict_arrays(28, 28, 3)))
        else:
            content, suffix, _ = data.draw(picture_files())
            path = folder / f"x{suffix}"
            path.write_bytes(content)
        rows, _ = outcome(lambda: predict(trained_run, path))
        if rows is not None:
            assert rows and all(0 <= r.index < 96 and 0 < r.probability <= 1 for r in rows)
        code, err = cli(["predict", str(trained_run), str(path)])
        assert code == (0 if rows is not None else 2), err


# -- alias bombs and grids: a few hundred bytes that stand for millions ---------------------------


def alias_bomb(depth: int, width: int) -> str:
    """A YAML flow list whose last item holds ``width ** depth`` zeros through aliases."""
    items = ["&a0 [" + ", ".join(["0"] * width) + "]"]
    items += [f"&a{d} [" + ", ".join([f"*a{d - 1}"] * width) + "]" for d in range(1, depth + 1)]
    return "[" + ", ".join(items) + "]"


BOMB_CONFIGS = {
    "train.lr": "model: {{name: part1}}\ntrain: {{lr: {bomb}}}\n",
    "model option": "model: {{name: part1, kernel_size: {bomb}}}\n",
    "data.lines.lengths": "data: {{dataset: lines, lines: {{lengths: {bomb}}}}}\n",
    "data.holdout": "data: {{dataset: lines, holdout: {{combinations: {bomb}}}}}\n",
    "self": "model: {{name: part1, x: &self [1, *self]}}\n",
}
BOMB_STUDIES = {
    "seeds": "base: part1-lines\nseeds: {bomb}\nvariants: {{a: {{}}}}\n",
    "target": "base: part1-lines\ntarget: {bomb}\nvariants: {{a: {{}}}}\n",
    "baseline": "base: part1-lines\nbaseline: {bomb}\nvariants: {{a: {{}}}}\n",
    "variant": "base: part1-lines\nvariants: {{a: {{train.lr: {bomb}}}}}\n",
    "grid": "base: part1-lines\ngrid: {{train.lr: [{bomb}]}}\n",
    "set": "base: part1-lines\nset: {{model: {bomb}, model.x: 1}}\nvariants: {{a: {{}}}}\n",
    "base file": "base: base.yaml\nvariants: {{a: {{}}}}\n",
}


@fuzz(30)
@given(
    st.integers(0, 9),
    st.integers(2, 12),
    st.sampled_from(sorted(BOMB_CONFIGS) + sorted(BOMB_STUDIES) + ["--set"]),
)
@example(9, 10, "train.lr")
@example(9, 10, "base file")
def test_alias_bombs(depth: int, width: int, where: str) -> None:
    """YAML anchors and aliases that expand to up to 10**9 values: refused (or taken) at once,
    with a short one-line message; never expanded by a copy, a check or a message."""
    bomb = alias_bomb(depth, width)
    with scratch() as folder:
        if where == "--set":
            call = lambda: load_config("part1-lines", [f"model.kernel_size={bomb}"])  # noqa: E731
        elif where in BOMB_CONFIGS:
            (folder / "c.yaml").write_text(BOMB_CONFIGS[where].format(bomb=bomb))
            call = lambda: load_config(folder / "c.yaml")  # noqa: E731
        else:
            (folder / "base.yaml").write_text(BOMB_CONFIGS["model option"].format(bomb=bomb))
            (folder / "s.yaml").write_text(BOMB_STUDIES[where].format(bomb=bomb))
            call = lambda: load_study(folder / "s.yaml")  # noqa: E731
        _, message = outcome(call, limit=20)  # a 10**9 expansion would not end in time
    if message is not None and where != "data.holdout":  # see test_holdout_message_length
        assert len(message) < 400, message
    if width**depth > 10**6 and where != "self":
        assert message is not None and "over 100,000 values" in message
    if where == "self":
        assert message is not None and "contains itself" in message


@fuzz(20)
@given(st.integers(1, 8), st.integers(1, 12), st.integers(1, 40))
@example(6, 10, 1)
@example(1, 2, 6000)
def test_grid_size(keys: int, values: int, seeds: int) -> None:
    """Grids of up to 12**8 combinations, times many seeds: refused at once past the limit of
    runs a study may plan, never expanded."""
    grid = {f"model.k{k}": list(range(values)) for k in range(keys)}
    spec = {"base": "part1-lines", "grid": grid, "seeds": list(range(seeds))}
    with scratch() as folder:
        (folder / "s.yaml").write_text(yaml.safe_dump(spec))
        _, message = outcome(lambda: load_study(folder / "s.yaml"), limit=20)
    assert message is not None  # model.k0 ... are no options of part1
    if values**keys * seeds > MAX_RUNS:
        assert "runs" in message or "combinations" in message, message


@fuzz(25)
@given(st.lists(st.text(min_size=1, max_size=400), min_size=1, max_size=3, unique=True))
@example(["y" * 300 + "a", "y" * 300 + "b"])
def test_grid_of_long_values(datasets: list[str]) -> None:
    """Grid values of any text: variants named within a folder name's 255 characters, or one
    clean line (two values that name the same variant, say)."""
    spec = {"base": "part1-lines", "grid": {"data.dataset": datasets}}
    with scratch() as folder:
        (folder / "s.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
        study, _ = outcome(lambda: load_study(folder / "s.yaml"))
    if study is not None:
        assert len(study.variants) == len(datasets)
        assert all(len(run.config.name) <= 255 and run.name.isprintable() for run in study.runs)


# -- found in config.py, holdout.py and the model registry, fixed there ----------------------------
# Reached from YAML files unless named "api" (values a program builds itself).


def refused_in_one_line(call: Callable[[], Any]) -> None:
    with pytest.raises(CnnlabError) as err:
        call()
    check_message(str(err.value))


def test_head_weight_name_with_a_line_break(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text('train: {head_weights: {"a\\nb": -1}}\n')
    refused_in_one_line(lambda: load_config(tmp_path / "c.yaml"))


def test_holdout_key_with_a_line_break(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text('data: {dataset: lines, holdout: {"a\\nb": 1}}\n')
    refused_in_one_line(lambda: load_config(tmp_path / "c.yaml"))


def test_model_option_with_a_line_break(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text('base: part1-lines\nvariants: {a: {"model.a\\nb": 1}}\n')
    refused_in_one_line(lambda: load_study(tmp_path / "s.yaml"))


def test_holdout_message_length(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "data: {dataset: lines, holdout: {combinations: [" + "1, " * 3000 + "]}}\n"
    )
    with pytest.raises(CnnlabError) as err:
        load_config(tmp_path / "c.yaml")
    assert len(str(err.value)) < 1000


def test_api_list_holding_a_huge_int() -> None:
    refused_in_one_line(lambda: config_from_dict({"name": [10**5000]}))


def test_api_model_option_holding_a_huge_int(tmp_path: Path) -> None:
    config, _ = outcome(
        lambda: config_from_dict({"model": {"name": "part1", "kernel_size": 10**5000}})
    )
    if config is not None:
        save_config(config, tmp_path / "config.yaml")


def test_api_holdout_level_holding_a_huge_int() -> None:
    raw = {"data": {"dataset": "lines", "holdout": {"combinations": [{"length": 10**5000}]}}}
    refused_in_one_line(lambda: config_from_dict(raw))
