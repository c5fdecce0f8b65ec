"""Study files: a base run config, variants of it, seeds; strictly validated before any training.

A study is a YAML file (or a preset shipped in ``cnnlab/presets/studies``)::

    name: variations-mnist          # default: the file name
    description: ...
    base: part1-mnist               # a run preset or YAML file (relative to the study file)
    set: {train.epochs: 3}          # overrides for every run, as `cnnlab train --set`
    seeds: [0, 1, 2]                # default [0]
    target: 0.9848                  # test accuracy for "epochs to target" (optional)
    baseline: base                  # the variant the others are compared with (default: base,
                                    # else the first variant)
    quick: {seeds: [0], set: {data.train_limit: 500}}   # what --quick changes
    variants:                       # name -> overrides ({} or empty: the base itself)
      base: {}
      filter-2x2: {model.kernel_size: 2}
    grid:                           # the cartesian product: one variant per combination,
      model.kernel_size: [3, 5]     # named kernel_size-3 ... (joined with '_')

Overrides are dotted keys with YAML values: a key sets one value, a mapping value replaces that
key's value as a whole (``model: {name: convnet, ...}``), exactly like ``--set``. Every run's
config is built (base, then ``set``, then ``quick.set``, then the variant, then the seed) and
validated with the run config's own rules, and its model options are checked against the model
family, so a typo fails in one line naming the file and the variant before anything trains.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.overrides import (
    apply_overrides,
    check_key,
    check_known,
    load_yaml_mapping,
    merge_overrides,
    parse_set,
    preset_names,
    read_source,
    short_repr,
    shown,
)
from cnnlab.training.config import RunConfig, config_from_dict, load_config

STUDY_KEYS = ("name", "description", "base", "set", "seeds", "target", "baseline", "quick")
VARIANT_KEYS = ("variants", "grid")
QUICK_KEYS = ("seeds", "set")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: "$" would let "name\n" in
_RESERVED = ("seed", "name")  # the study sets these for every run
PRESETS = "presets/studies"  # the package folder of the study presets
SLUG_MAX = 40  # the most characters a grid value takes in a variant name
MAX_RUNS = 10_000
"""The most runs (variants x seeds) one study may plan: every run's config is built and checked
before anything trains (a few ms each), and a grid multiplies fast."""


@dataclass(frozen=True)
class Variant:
    """One variant: its name and its own overrides (dotted key -> value)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``key=value; key=value`` (``(base config)`` for none)."""
        if not self.overrides:
            return "(base config)"
        return "; ".join(f"{k}={_flow(v)}" for k, v in self.overrides.items())


@dataclass(frozen=True)
class PlannedRun:
    """One variant trained with one seed: the run folder ``runs/<variant>-seed<seed>``."""

    variant: str
    seed: int
    config: RunConfig

    @property
    def name(self) -> str:
        return f"{self.variant}-seed{self.seed}"


@dataclass(frozen=True)
class Study:
    """A validated study: what to train, with which seeds, and what to compare with."""

    name: str
    description: str
    origin: str
    source: str
    base: str
    overrides: dict[str, Any]
    seeds: tuple[int, ...]
    target: float | None
    baseline: str
    variants: tuple[Variant, ...]
    quick: bool
    runs: tuple[PlannedRun, ...]
    extra: tuple[str, ...] = ()

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "base": self.base,
            "set": self.overrides,
            "seeds": list(self.seeds),
            "target": self.target,
            "baseline": self.baseline,
            "quick": self.quick,
            "variants": {v.name: v.overrides for v in self.variants},
        }


def study_names() -> tuple[str, ...]:
    """The study presets shipped in the package."""
    return preset_names(PRESETS)


def load_study(
    source: str | Path,
    *,
    quick: bool = False,
    seeds: tuple[int, ...] | None = None,
    extra: tuple[str, ...] = (),
) -> Study:
    """Read, expand and validate a study file or preset; ``seeds`` replaces its seeds and
    ``extra`` (``key=value``, as ``--set``) is applied after ``set`` and ``quick.set``."""
    text, origin, path = read_source(source, PRESETS, "study", preset="study preset")
    where = None if path is None else path.resolve().parent  # base: is relative to the file
    resolved = str(source) if path is None else str(path.resolve())  # as plan.json records it
    raw = load_yaml_mapping(text, origin, "study keys")
    check_known(raw, (*STUDY_KEYS, *VARIANT_KEYS), origin, "")
    name, description, base = _heading(raw, Path(str(source)).stem, origin)
    overrides, run_seeds = _settings(raw, origin, quick, seeds, extra)
    target = _target(raw.get("target"), origin)
    variants = _variants(raw, origin)
    if len(variants) * len(run_seeds) > MAX_RUNS:
        raise CnnlabError(
            f"{origin}: {len(variants):,} variants x {len(run_seeds):,} seeds make more than "
            f"{MAX_RUNS:,} runs; expected at most {MAX_RUNS:,}"
        )
    baseline = _baseline(raw.get("baseline"), variants, origin)
    base_path = _base_source(base, where)
    base_config = load_config(base_path)
    runs = [
        PlannedRun(v.name, seed, _run_config(base_config, overrides, v, seed, name, origin))
        for v in variants
        for seed in run_seeds
    ]
    runs.sort(key=lambda r: run_seeds.index(r.seed))  # seed-major: whole pairs finish first
    return Study(
        name=name,
        description=description.strip(),
        origin=origin,
        source=resolved,
        base=str(base_path),
        overrides=overrides,
        seeds=run_seeds,
        target=target,
        baseline=baseline,
        variants=tuple(variants),
        quick=quick,
        runs=tuple(runs),
        extra=tuple(extra),
    )


# -- pieces -------------------------------------------------------------------------------------


def _heading(raw: dict[str, Any], stem: str, origin: str) -> tuple[str, str, str]:
    """The study's name (default: ``stem``), description and base, checked."""
    name = raw.get("name", stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CnnlabError(
            f"{origin}: name must be letters, digits, '.', '_' or '-', got {short_repr(name)}"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise CnnlabError(f"{origin}: description must be text")
    base = raw.get("base")
    if not isinstance(base, str) or not base:
        raise CnnlabError(f"{origin}: base is required: a run preset name or a YAML file")
    return name, description, base


def _settings(
    raw: dict[str, Any],
    origin: str,
    quick: bool,
    seeds: tuple[int, ...] | None,
    extra: tuple[str, ...],
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """The overrides of every run and the seeds: the study's, then ``quick``'s (with
    ``quick``), then ``extra`` and ``seeds`` (the command line's)."""
    overrides = _overrides(raw.get("set"), origin, "set")
    run_seeds = _seeds(raw.get("seeds", [0]), origin, "seeds")
    quick_raw = raw.get("quick") or {}
    if not isinstance(quick_raw, dict):
        raise CnnlabError(f"{origin}: quick must be a mapping with seeds and/or set")
    check_known(quick_raw, QUICK_KEYS, origin, "quick.")
    if quick:
        quick_set = _overrides(quick_raw.get("set"), origin, "quick.set")
        overrides = merge_overrides(overrides, quick_set)
        if "seeds" in quick_raw:
            run_seeds = _seeds(quick_raw["seeds"], origin, "quick.seeds")
    overrides = merge_overrides(overrides, _overrides(parse_set(extra, origin), origin, "--set"))
    if seeds is not None:
        run_seeds = _seeds(list(seeds), origin, "--seeds")
    return overrides, run_seeds


def _target(target: Any, origin: str) -> float | None:
    if target is not None and (
        isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1
    ):
        raise CnnlabError(
            f"{origin}: target must be an accuracy in (0, 1], got {short_repr(target)}"
        )
    return None if target is None else float(target)


def _baseline(baseline: Any, variants: list[Variant], origin: str) -> str:
    """The variant the others are compared with (default: ``base``, else the first)."""
    names = [v.name for v in variants]
    if baseline is None:
        return "base" if "base" in names else names[0]
    if baseline not in names:
        raise CnnlabError(
            f"{origin}: baseline {short_repr(baseline)} is not a variant; "
            f"variants: {', '.join(names)}"
        )
    return baseline


def _overrides(value: Any, origin: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CnnlabError(f"{origin}: {where} must be a mapping of dotted keys to values")
    for key in value:
        check_key(key, f"{origin}: {where}")
        if key.split(".")[0] in _RESERVED:
            raise CnnlabError(
                f"{origin}: {where}: {shown(key)} is set by the study for every run "
                "(seeds: and name:)"
            )
    return dict(value)


def _seeds(value: Any, origin: str, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)
    ):
        raise CnnlabError(
            f"{origin}: {where} must be a list of whole numbers >= 0, got {short_repr(value)}"
        )
    if len(set(value)) != len(value):
        raise CnnlabError(f"{origin}: {where} lists a seed twice: {short_repr(value)}")
    return tuple(value)


def _variants(raw: dict[str, Any], origin: str) -> list[Variant]:
    explicit = raw.get("variants") or {}
    if not isinstance(explicit, dict):
        raise CnnlabError(f"{origin}: variants must map variant names to overrides")
    variants = []
    for name, overrides in explicit.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise CnnlabError(
                f"{origin}: variants: {short_repr(name)} is not a usable name "
                "(letters, digits, '.', '_' or '-'; it names the run folders)"
            )
        variants.append(Variant(name, _overrides(overrides, origin, f"variants.{name}")))
    variants += _grid(raw.get("grid"), origin)
    if not variants:
        raise CnnlabError(f"{origin}: no variants: give variants: and/or grid:")
    seen: set[str] = set()
    for variant in variants:
        if variant.name in seen:
            raise CnnlabError(f"{origin}: two variants are named {variant.name!r}")
        seen.add(variant.name)
    return variants


def _grid(grid: Any, origin: str) -> list[Variant]:
    """One variant per combination of the grid's values, named ``<key>-<value>_...``."""
    if grid is None:
        return []
    if not isinstance(grid, dict) or not grid:
        raise CnnlabError(f"{origin}: grid must map dotted keys to lists of values")
    _overrides(grid, origin, "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise CnnlabError(f"{origin}: grid: {shown(key)} must list at least one value")
    count = math.prod(len(values) for values in grid.values())
    if count > MAX_RUNS:
        raise CnnlabError(
            f"{origin}: grid makes {count:,} combinations (variants); at most {MAX_RUNS:,} runs"
        )
    variants = []
    for combination in itertools.product(*grid.values()):
        overrides = dict(zip(grid, combination, strict=True))
        name = "_".join(f"{k.split('.')[-1]}-{_slug(v)}" for k, v in overrides.items())
        variants.append(Variant(name, overrides))
    return variants


def _slug(value: Any) -> str:
    """``value`` in a variant name: letters, digits and '.'; a long one cut short, kept apart
    from others by a hash of it (the name names run folders, 255 characters at most)."""
    text = _flow(value) if isinstance(value, list | dict) else str(value)
    slug = re.sub(r"[^A-Za-z0-9.]+", "x", text).strip("x") or "x"
    if len(slug) > SLUG_MAX:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        slug = f"{slug[: SLUG_MAX - 9]}-{digest[:8]}"
    return slug


def _flow(value: Any) -> str:
    """A value as one line of YAML (what ``--set`` would take)."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")
    )


def _base_source(base: str, folder: Path | None) -> str | Path:
    try:
        if folder is not None and (folder / base).is_file():
            return folder / base
    except OSError:  # a name too long to look up: load_config says what is wrong
        pass
    return base


def _run_config(
    base: RunConfig,
    overrides: dict[str, Any],
    variant: Variant,
    seed: int,
    study: str,
    origin: str,
) -> RunConfig:
    where = f"{origin}: variants.{shown(variant.name)}"
    raw = base.to_dict()
    apply_overrides(raw, overrides, f"{origin}: set")
    apply_overrides(raw, variant.overrides, where)
    raw["seed"] = seed
    raw["name"] = f"{study}-{variant.name}-seed{seed}"
    config = config_from_dict(raw, where)
    _check_model_options(config, where)
    return config


def _check_model_options(config: RunConfig, where: str) -> None:
    from cnnlab.models.registry import check_model_options
    from cnnlab.training.config import AUTO_MODEL

    if config.model.name == AUTO_MODEL:  # chosen once the data is loaded
        return
    try:
        check_model_options(config.model.name, config.model.options)
    except CnnlabError as exc:
        raise CnnlabError(f"{where}: {exc}") from None
