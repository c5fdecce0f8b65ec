"""Every run-config key refuses bad values in one line that names it (issue 16).

A table feeds each key of :class:`RunConfig` out-of-range, wrong-typed and non-finite values
through ``load_config("part1-mnist", ("key=value",))``: each must give one
:class:`CnnlabError` whose message names the key, never another exception and never a config.
Nothing here trains or loads data.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.study import load_study
from cnnlab.training import train
from cnnlab.training.config import (
    BATCH_MAX,
    EPOCHS_MAX,
    SEED_MAX,
    RunConfig,
    config_from_dict,
    load_config,
    preset_names,
    save_config,
)

BASE = "part1-mnist"

# What every value of a kind can be fed and must refuse (YAML text, as --set reads it).
NOT_NUMBERS = ("abc", "[1, 2]", "{a: 1}", "true", "false", "''", "null")
NOT_FINITE = (".nan", ".inf", "-.inf", "1e999", "9" * 400)
NOT_INT = (*NOT_NUMBERS, "1.5", "1e3", ".nan", ".inf")
NOT_LIMIT = tuple(v for v in NOT_INT if v != "null")  # null: no limit
NOT_TEXT = ("1", "1.5", "[a, b]", "{a: 1}", "true", "null")
NOT_MAPPING = ("abc", "1", "[1, 2]", "true", "null")

BAD: dict[str, tuple[str, ...]] = {
    # top level
    "name": (*NOT_TEXT, "''", "x" * 256, '"a\\nb"', '"a\\tb"'),
    "seed": (*NOT_INT, "-1", str(SEED_MAX + 1), str(2**63), str(10**23)),
    "device": (*NOT_TEXT, "gpu", "cudax", "cuda:", "cuda:a", "''", "' cpu'"),
    "data": NOT_MAPPING,
    "model": NOT_MAPPING,
    "train": NOT_MAPPING,
    # data
    "data.dataset": (*NOT_TEXT, "''"),
    "data.mnist_dir": ("1", "[a]", "{a: 1}", "true", "''"),
    "data.mnist_split": (*NOT_TEXT, "train", "''"),
    "data.lines": (
        *NOT_MAPPING,
        "{foo: 1}",
        "{factor_order: [a]}",
        "{image_size: 2}",
        "{image_size: abc}",
        "{image_size: 28.5}",
        "{image_size: true}",
        "{per_class: 1}",
        "{per_class: true}",
        "{noise: .nan}",
        "{noise: -1}",
        "{noise: abc}",
        "{lengths: 7}",
        "{lengths: [7, abc]}",
        "{lengths: []}",
        "{colors: red}",
        "{colors: [black]}",
        "{colors: [1]}",
        "{test_fraction: 1}",
        "{test_fraction: .nan}",
        "{jpeg_quality: 101}",
        "{variant: nope}",
        "{variant: 1}",
        "{seed: -1}",
        "{seed: true}",
        f"{{seed: {10**23}}}",
        "{angle_step: 0}",
        "{position: nowhere}",
        "{max_shift: -1}",
    ),
    "data.train_limit": (*NOT_LIMIT, "0", "-1", str(-(10**23))),
    "data.test_limit": (*NOT_LIMIT, "0", "-1"),
    "data.image_size": (*NOT_LIMIT, "0", "3", "513", "-28"),
    "data.channels": (*NOT_LIMIT, "0", "2", "4"),
    "data.test_fraction": (*NOT_NUMBERS, *NOT_FINITE, "0", "1", "-0.1", "1.5"),
    "data.val_fraction": (*NOT_NUMBERS, *NOT_FINITE, "1", "-0.1"),
    "data.upright": ("1", "0", "abc", "[true]", "{a: 1}", "''"),
    "data.holdout": (
        *NOT_MAPPING,
        "{fraction: 0.1}",
        "{random_fraction: 1}",
        "{random_fraction: -0.1}",
        "{random_fraction: .nan}",
        "{random_fraction: abc}",
        "{random_fraction: 0}",
        "{combinations: abc}",
        "{combinations: [1]}",
        "{combinations: [{}]}",
        "{combinations: [{color: [a]}]}",
        "{combinations: [{color: blue}]}",  # mnist has no factors
    ),
    # model
    "model.name": ("resnet9", "1", "[part1]", "{a: 1}", "true", "null", "''"),
    "model.init_from": ("1", "[runs/x]", "{a: 1}", "true", "''"),
    # train
    "train.epochs": (*NOT_INT, "0", "-1", str(EPOCHS_MAX + 1), str(10**23)),
    "train.batch_size": (*NOT_INT, "0", "-1", str(BATCH_MAX + 1), str(10**23)),
    "train.eval_batch_size": (*NOT_INT, "0", "-1", str(BATCH_MAX + 1), str(10**23)),
    "train.optimizer": (*NOT_TEXT, "adamax", "''", "Adam"),
    "train.lr": (*NOT_NUMBERS, *NOT_FINITE, "0", "-1", "-1e-3", "'0.001'", "fast", "1e-3x"),
    "train.momentum": (*NOT_NUMBERS, *NOT_FINITE, "-0.1", "-1", "1", "1.5", str(10**23)),
    "train.weight_decay": (*NOT_NUMBERS, *NOT_FINITE, "-1", "-1e-4"),
    "train.scheduler": (*NOT_TEXT, "linear", "''"),
    "train.lr_gamma": (*NOT_NUMBERS, *NOT_FINITE, "0", "-1", "-0.5", "1.5", str(10**23)),
    "train.lr_step_epochs": (*NOT_INT, "0", "-1", str(EPOCHS_MAX + 1), str(10**23)),
    "train.loss": (*NOT_TEXT, "hinge", "''"),
    "train.label_smoothing": (*NOT_NUMBERS, *NOT_FINITE, "-0.1", "1", "1.5"),
    "train.head_weights": (
        *NOT_MAPPING,
        "{length: -1}",
        "{length: .nan}",
        "{length: .inf}",
        "{length: abc}",
        "{length: true}",
        "{length: [1]}",
        "{1: 1}",
        "{'': 1}",
    ),
    "train.augment_shift": (*NOT_INT, "-1", "15", "100000", str(10**23)),
    "train.augment": ("1", "true", "{a: 1}", "flips", "''", "[warp]", "[{hflip: {p: 2}}]", "[[a]]"),
    "train.ema": (*NOT_NUMBERS, *NOT_FINITE, "-0.1", "1", "1.5"),
    "train.tta": ("1", "true", "{a: 1}", "mirror", "''", "[warp]", "[hflip, hflip]", "[[a]]"),
    "train.freeze": ("1", "abc", "true", "{a: 1}", "[1]", "['']", "[null]"),
    "train.trunk_lr_factor": (*NOT_NUMBERS, *NOT_FINITE, "-0.1", "1.5"),
    "train.keep": (*NOT_TEXT, "first", "''"),
    "train.precision": (*NOT_TEXT, "fp16", "''"),
    "train.patience": (*NOT_INT, "-1", str(EPOCHS_MAX + 1)),
    "train.min_delta": (*NOT_NUMBERS, *NOT_FINITE, "-0.1", "1", "1.5"),
    "train.tensorboard": ("1", "0", "abc", "[true]", "{a: 1}", "null", "''"),
}

CASES = [(key, value) for key, values in BAD.items() for value in values]


def config_keys() -> set[str]:
    """Every key of a RunConfig: sections, their fields, and the model section's own keys
    (its options are the family's)."""
    keys = {"model.name", "model.init_from"}
    for name, kind in typing.get_type_hints(RunConfig).items():
        keys.add(name)
        if dataclasses.is_dataclass(kind) and name != "model":
            keys |= {f"{name}.{f.name}" for f in dataclasses.fields(kind)}
    return keys


def refused(*items: str, source: str | Path = BASE) -> str:
    """The one-line message of the CnnlabError that loading with ``items`` must raise."""
    with pytest.raises(CnnlabError) as caught:
        load_config(source, items)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600, message
    return message


def test_the_table_covers_every_config_key() -> None:
    assert config_keys() == set(BAD)


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v[:30]}" for k, v in CASES])
def test_every_bad_value_is_one_error_naming_the_key(key: str, value: str) -> None:
    message = refused(f"{key}={value}")
    assert message.startswith(f"preset {BASE}: ")
    assert key in message, message


# -- what the tester found (issue 16) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("data.train_limit=0", r"data\.train_limit must be null \(every image\) or a number of"),
        ("data.train_limit=-1", r"data\.train_limit must be .* >= 1, got -1$"),
        ("data.test_limit=0", r"data\.test_limit must be .* >= 1, got 0$"),
        ("train.lr=.nan", r"train\.lr must be a finite number, got nan$"),
        ("train.weight_decay=-0.01", r"train\.weight_decay must be >= 0, got -0\.01$"),
        ("train.momentum=-0.5", r"train\.momentum must be in \[0, 1\), got -0\.5$"),
        ("train.lr_step_epochs=0", r"train\.lr_step_epochs must be > 0 and <= 1,000,000, got 0$"),
        ("seed=-1", r"seed must be in 0\.\.100,000,000, got -1$"),
        (f"seed={10**23}", rf"seed must be in 0\.\.100,000,000, got {10**23}$"),
        ("train.lr_gamma=-0.1", r"train\.lr_gamma must be in \(0, 1\] .*, got -0\.1$"),
        (
            "data.lines={widht: 3}",
            r"unknown key\(s\) data\.lines\.widht; valid keys in data\.lines",
        ),
        ("train.head_weights=length", r"train\.head_weights must be a mapping, got 'length'$"),
        ("train.augment_shift=100000", r"train\.augment_shift must be in 0\.\.14 px .*got 100000$"),
        ("train.optimizer=sgd", None),  # momentum 0.9 by default: fine
    ],
)
def test_the_reported_values_are_refused_clearly(item: str, message: str | None) -> None:
    if message is None:
        load_config(BASE, (item,))
        return
    text = refused(item)
    assert re.search(message, text), text


def test_sgd_needs_momentum_for_nesterov() -> None:
    assert "train.momentum must be in (0, 1) for sgd, got 0.0" in refused(
        "train.optimizer=sgd", "train.momentum=0"
    )
    assert load_config(BASE, ("train.optimizer=rmsprop", "train.momentum=0")).train.momentum == 0


def test_a_bad_name_never_reaches_the_file_system(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path / "..")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("../../escaped", "a/b", "/tmp/x", ".hidden", "..", "a b", "é"):
        with pytest.raises(CnnlabError, match=r"is not a plain folder name .* give --out"):
            train(BASE, overrides=(f"name={name}",), quiet=True)
    assert not (tmp_path.parent / "escaped").exists() and not (work / "runs").exists()


def test_a_file_that_is_not_utf8_text_is_one_line_naming_it(tmp_path: Path) -> None:
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    message = refused(source=binary)
    assert message.startswith(f"{binary}: not a UTF-8 text file (byte 0x89 at offset 0)")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert refused(source=latin1).startswith(f"{latin1}: not a UTF-8 text file")
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"name: a\x00b\n")
    assert refused(source=nul).startswith(f"{nul}: not valid YAML (")


def test_a_number_too_long_to_read_is_named(tmp_path: Path) -> None:
    file = tmp_path / "long.yaml"
    file.write_text("model: {name: part1}\ntrain:\n  epochs: " + "9" * 5000 + "\n")
    assert (
        refused(source=file) == f"{file}: line 3: a number of 5000 digits; at most 4300 can be read"
    )
    message = refused("train.epochs=" + "9" * 5000)
    assert message.startswith(f"preset {BASE}: --set 'train.epochs': not a readable value")
    assert "train.epochs" in refused("train.epochs=" + "[" * 1000 + "]" * 1000)


# -- what is accepted -----------------------------------------------------------------------------


def test_a_float_written_with_an_exponent_is_read_as_a_number(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("model: {name: part1}\ntrain:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    assert yaml.safe_load(file.read_text())["train"]["lr"] == "1e-3"  # YAML 1.1: text
    config = load_config(file)
    assert config.train.lr == 0.001 and config.train.weight_decay == 0.0005
    assert type(config.train.lr) is float
    via_set = load_config(BASE, ("train.lr=1e-3", "train.lr_gamma=5E-1", "train.momentum=+9e-1"))
    assert (via_set.train.lr, via_set.train.lr_gamma, via_set.train.momentum) == (1e-3, 0.5, 0.9)
    assert load_config(BASE, ("train.lr=1.5e-3",)).train.lr == 0.0015
    assert load_config(BASE, ("train.lr=.5e-2",)).train.lr == 0.005
    # ... and saved as a number, so the run folder's config.yaml loads back the same
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_exponent_text_is_a_number_only_where_a_float_is_expected() -> None:
    assert "train.epochs must be int, got '1e3'" in refused("train.epochs=1e3")
    assert load_config(BASE, ("name=1e3",)).name == "1e3"  # a name stays text
    assert "train.lr must be float, got '0.001'" in refused("train.lr='0.001'")


def test_numbers_in_nested_options_are_coerced_too() -> None:
    config = load_config(
        "multihead-lines",
        (
            "data.lines={per_class: 10, noise: 1e1, test_fraction: 4e-1}",
            "train.head_weights={length: 2e0, angle: 1}",
            "data.holdout={random_fraction: 1e-1}",
        ),
    )
    assert config.data.lines == {"per_class": 10, "noise": 10.0, "test_fraction": 0.4}
    assert config.train.head_weights == {"length": 2.0, "angle": 1.0}
    assert config.data.holdout == {"random_fraction": 0.1}


@pytest.mark.parametrize(
    "item",
    [
        "data.train_limit=1",
        "data.test_limit=1",
        f"data.train_limit={10**23}",  # more than the split: the whole split
        "data.train_limit=",
        "seed=0",
        f"seed={SEED_MAX}",
        f"train.epochs={EPOCHS_MAX}",
        f"train.batch_size={BATCH_MAX}",
        "train.momentum=0",
        "train.weight_decay=0",
        "train.lr_gamma=1",
        "train.label_smoothing=0.999",
        "train.augment_shift=14",
        "train.head_weights={length: 0}",
        "name=a",
        "name=part1-mnist_v2.0",
        "name=_x",
        "name=" + "x" * 255,
        "device=cuda:1",
        "device=cpu",
        "data.dataset=lines",
        "data.mnist_dir=/somewhere",
        "data.lines={variant: jpeg, per_class: 2, test_fraction: 0.5}",
    ],
)
def test_values_at_the_edge_of_their_range_are_accepted(item: str) -> None:
    load_config(BASE, (item,))


def test_augment_shift_is_bounded_by_the_image_size() -> None:
    lines = ("data.dataset=lines", "data.lines={image_size: 40}")
    assert load_config(BASE, (*lines, "train.augment_shift=20")).train.augment_shift == 20
    assert "in 0..20 px for dataset lines" in refused(*lines, "train.augment_shift=21")
    assert "in 0..14 px for dataset lines" in refused(
        "data.dataset=lines", "train.augment_shift=15"
    )
    assert load_config(BASE, ("data.dataset=some/folder", "train.augment_shift=32"))
    assert "in 0..32 px" in refused("data.dataset=some/folder", "train.augment_shift=33")


def test_holdout_factors_are_checked_for_lines_before_loading() -> None:
    lines = ("data.dataset=lines",)
    assert "no factor 'colour'" in refused(*lines, "data.holdout={combinations: [{colour: red}]}")
    assert "angle has no level 7" in refused(*lines, "data.holdout={combinations: [{angle: 7}]}")
    ok = load_config(BASE, (*lines, "data.holdout={combinations: [{color: blue, angle: 90}]}"))
    assert ok.data.holdout == {"combinations": [{"color": "blue", "angle": 90}]}


def test_every_preset_is_valid() -> None:
    for name in preset_names():
        load_config(name)


def test_studies_refuse_bad_values_through_the_same_checks(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"base": BASE, "variants": {"a": {"train.lr": "1e-3"}}}))
    (run,) = load_study(study).runs[:1]
    assert run.config.train.lr == 0.001
    study.write_text(yaml.safe_dump({"base": BASE, "variants": {"a": {"train.lr": -1}}}))
    with pytest.raises(CnnlabError, match=r"variants\.a: train\.lr must be > 0, got -1\.0$"):
        load_study(study)
    study.write_text(yaml.safe_dump({"base": BASE, "variants": {"a": {}}, "seeds": [10**9]}))
    with pytest.raises(CnnlabError, match=r"seed must be in 0\.\.100,000,000, got 1000000000$"):
        load_study(study)


def test_config_from_dict_checks_what_it_is_given() -> None:
    raw = load_config(BASE).to_dict()
    raw["train"]["lr"] = float("inf")
    with pytest.raises(CnnlabError, match=r"^here: train\.lr must be a finite number, got inf$"):
        config_from_dict(raw, "here")
    raw["train"]["lr"] = 10**5000  # too long even to print
    with pytest.raises(CnnlabError, match=r"^here: a number of 16610 bits, over 4300 digits"):
        config_from_dict(raw, "here")


def test_a_lines_dataset_too_large_for_memory_is_refused_before_any_work() -> None:
    message = refused("data.dataset=lines", "data.lines={per_class: 1000000000}")
    assert "data.lines: per_class/image_size: 96 classes x 1000000000 images" in message
    assert "at most 8 GiB" in message
