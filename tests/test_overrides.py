"""``cnnlab.overrides``: ``--set`` parsing and applying, config sources and their messages, and
the same ``--set`` item giving the same config through ``cnnlab train`` and ``cnnlab study``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cnnlab import overrides
from cnnlab.errors import CnnlabError
from cnnlab.study import load_study, study_names
from cnnlab.training.config import load_config
from cnnlab.training.config import preset_names as run_preset_names

# -- parse_set ----------------------------------------------------------------------------------


def test_values_are_typed_by_yaml_and_keys_stay_dotted() -> None:
    parsed = overrides.parse_set(
        [
            "train.epochs=3",
            "train.lr=0.01",
            "model.channels=[8, 16]",
            "data.lines={per_class: 10}",
            "data.dataset=lines",
            "data.train_limit=",
            "train.augment_shift = 2",
        ],
        "here",
    )
    assert parsed == {
        "train.epochs": 3,
        "train.lr": 0.01,
        "model.channels": [8, 16],
        "data.lines": {"per_class": 10},
        "data.dataset": "lines",
        "data.train_limit": None,
        "train.augment_shift": 2,
    }
    assert type(parsed["train.epochs"]) is int and type(parsed["train.lr"]) is float
    assert list(parsed) == [
        "train.epochs",
        "train.lr",
        "model.channels",
        "data.lines",
        "data.dataset",
        "data.train_limit",
        "train.augment_shift",
    ]


def test_a_value_that_is_not_yaml_is_kept_as_text() -> None:
    assert overrides.parse_set(["name=a: b: c", "data.mnist_dir=x=y"], "o") == {
        "name": "a: b: c",
        "data.mnist_dir": "x=y",
    }


def test_a_key_given_twice_takes_effect_where_it_was_given_last() -> None:
    parsed = overrides.parse_set(["model.filters=4", "model={name: part1}", "model.filters=6"], "o")
    assert list(parsed.items()) == [("model", {"name": "part1"}), ("model.filters", 6)]
    raw: dict = {}
    overrides.apply_overrides(raw, parsed, "o")
    assert raw == {"model": {"name": "part1", "filters": 6}}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("foo", r"^origin: --set 'foo': expected KEY=VALUE, e\.g\. train\.lr=0\.01$"),
        ("=1", r"^origin: --set '=1': empty key; expected a dotted key such as train\.lr$"),
        ("a..b=1", r"^origin: --set 'a\.\.b=1': 'a\.\.b' has an empty part; expected a dotted"),
        (".a=1", r"'\.a' has an empty part"),
        ("a.=1", r"'a\.' has an empty part"),
    ],
)
def test_bad_set_items_are_refused_in_one_line(item: str, message: str) -> None:
    with pytest.raises(CnnlabError, match=message) as caught:
        overrides.parse_set(["train.lr=0.1", item], "origin")
    assert "\n" not in str(caught.value)


# -- apply_overrides ----------------------------------------------------------------------------


def test_dotted_keys_nest_create_sections_and_replace_whole_values() -> None:
    raw = {"train": {"lr": 0.1, "epochs": 2}, "data": None, "model": {"name": "part1", "x": 1}}
    shared = [1, 2]
    overrides.apply_overrides(
        raw,
        {"train.lr": 0.5, "data.lines.per_class": 3, "model": {"name": "convnet"}, "a.b": shared},
        "o",
    )
    assert raw == {
        "train": {"lr": 0.5, "epochs": 2},
        "data": {"lines": {"per_class": 3}},
        "model": {"name": "convnet"},
        "a": {"b": [1, 2]},
    }
    raw["a"]["b"].append(3)
    assert shared == [1, 2]  # values are copied


def test_a_path_through_a_value_is_refused_naming_the_key() -> None:
    raw = {"train": {"lr": 0.1}}
    with pytest.raises(CnnlabError, match=r"^o: train\.lr\.x: train\.lr is 0\.1, not a section"):
        overrides.apply_overrides(raw, {"train.lr.x": 1}, "o")
    with pytest.raises(CnnlabError, match=r"^o: 'a\.\.b': 'a\.\.b' has an empty part"):
        overrides.apply_overrides(raw, {"a..b": 1}, "o")


def test_merge_is_applying_one_layer_after_another() -> None:
    merged = overrides.merge_overrides({"model.x": 1, "model": {"name": "a"}}, {"model.x": 2})
    raw: dict = {}
    overrides.apply_overrides(raw, merged, "o")
    assert raw == {"model": {"name": "a", "x": 2}}


# -- sources and messages -----------------------------------------------------------------------


def test_unknown_keys_are_listed_with_the_valid_ones() -> None:
    overrides.check_known({"lr": 1}, ("lr", "epochs"), "o", "train.")
    with pytest.raises(
        CnnlabError, match=r"^o: unknown key\(s\) train\.lrr, train\.z; valid keys in train: lr, ep"
    ):
        overrides.check_known({"z": 1, "lrr": 1, "lr": 2}, ("lr", "epochs"), "o", "train.")
    with pytest.raises(CnnlabError, match=r"^o: unknown key\(s\) 3, colour; valid keys: a, b$"):
        overrides.check_known({"colour": 1, 3: 2}, ("a", "b"), "o", "")


def test_read_source_reads_files_and_presets_and_lists_presets(tmp_path: Path) -> None:
    assert overrides.preset_names("presets") == run_preset_names()
    assert overrides.preset_names("presets/studies") == study_names()
    assert "part1-mnist" in run_preset_names() and "variations-mnist" in study_names()
    assert overrides.preset_names("no/such/folder") == ()
    text, origin, path = overrides.read_source("part1-mnist", "presets", "config")
    assert origin == "preset part1-mnist" and path is None and "part1" in text
    file = tmp_path / "c.yaml"
    file.write_text("seed: 1\n")
    assert overrides.read_source(file, "presets", "config") == ("seed: 1\n", str(file), file)
    with pytest.raises(CnnlabError) as caught:
        overrides.read_source("nope", "presets", "config")
    assert str(caught.value) == (
        f"config 'nope': no such file and no such preset; presets: {', '.join(run_preset_names())}"
    )
    with pytest.raises(CnnlabError, match=r"^study 'nope': .*study presets: variations-lines, "):
        overrides.read_source("nope", "presets/studies", "study", preset="study preset")


def test_yaml_mappings() -> None:
    assert overrides.load_yaml_mapping("a: 1\n", "o", "config keys") == {"a": 1}
    assert overrides.load_yaml_mapping("", "o", "config keys") == {}
    with pytest.raises(CnnlabError, match=r"^o: expected a mapping of config keys at the top"):
        overrides.load_yaml_mapping("- 1\n", "o", "config keys")
    with pytest.raises(CnnlabError, match=r"^o: not valid YAML \(") as caught:
        overrides.load_yaml_mapping("a: [1\nb: 2\n", "o", "config keys")
    assert "\n" not in str(caught.value)


# -- one behaviour for train and study ----------------------------------------------------------


def test_the_same_set_gives_the_same_config_through_train_and_study(tmp_path: Path) -> None:
    items = ("train.lr=0.01", "data.lines={per_class: 10}", "model.filters=4")
    config = load_config("part1-mnist", items)
    assert config.train.lr == 0.01 and config.data.lines == {"per_class": 10}
    assert config.model.options["filters"] == 4
    study_file = tmp_path / "s.yaml"
    study_file.write_text(
        yaml.safe_dump({"base": "part1-mnist", "variants": {"base": {}}, "seeds": [0]})
    )
    study = load_study(study_file, extra=items)
    (run,) = study.runs
    assert run.config.train == config.train
    assert run.config.data == config.data
    assert run.config.model == config.model
    assert study.overrides == overrides.parse_set(items, "o")


def test_a_bad_set_item_is_refused_alike_by_train_and_study(tmp_path: Path) -> None:
    study_file = tmp_path / "s.yaml"
    study_file.write_text(yaml.safe_dump({"base": "part1-mnist", "variants": {"base": {}}}))
    for bad in ("train.lr", "a..b=1"):
        with pytest.raises(CnnlabError) as by_train:
            load_config("part1-mnist", (bad,))
        with pytest.raises(CnnlabError) as by_study:
            load_study(study_file, extra=(bad,))
        tail = str(by_train.value).split(": --set ", 1)[1]
        assert str(by_study.value).endswith(tail)


def test_an_empty_section_in_a_config_file_takes_set_keys(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("data:\nmodel: {name: part1}\n")
    config = load_config(file, ("data.train_limit=5",))
    assert config.data.train_limit == 5 and config.data.dataset == "mnist"
    with pytest.raises(CnnlabError, match=r"--set: train\.lr\.x: train\.lr is 0\.001, not a"):
        load_config("part1-mnist", ("train.lr.x=1",))
