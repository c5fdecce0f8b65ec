"""Config overrides and config sources, shared by run configs, studies and the CLI.

``--set key=value`` items become an ordered mapping of dotted keys to YAML values
(:func:`parse_set`); :func:`apply_overrides` sets them in a nested mapping. A source is a YAML
file or the name of a preset shipped in a package folder (:func:`read_source`). Every problem
is a one-line :class:`~cnnlab.errors.CnnlabError` that names where it came from.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError

EXAMPLE = "train.lr=0.01"


def parse_set(items: Iterable[str], origin: str, example: str = EXAMPLE) -> dict[str, Any]:
    """``key=value`` items as ``{dotted key: value}``, in the order they take effect.

    A value is read as YAML (``3`` is an int, ``[8, 16]`` a list, ``{a: 1}`` a mapping, an
    empty value None); text that is not valid YAML is kept as the string it is. A key given
    twice keeps its last value, placed where it was given last, so applying the mapping in
    order does what applying the items one by one does.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        where = f"{_prefix(origin)}--set {item!r}"
        if not sep:
            raise CnnlabError(f"{where}: expected KEY=VALUE, e.g. {example}")
        check_key(key, where)
        parsed.pop(key, None)
        try:
            parsed[key] = _yaml_value(value)
        except (ValueError, RecursionError) as exc:  # a number too long, nesting too deep
            raise CnnlabError(
                f"{_prefix(origin)}--set {key!r}: not a readable value ({one_line(exc)})"
            ) from None
    return parsed


def merge_overrides(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Override mappings combined as if applied one after another (later layers win)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            merged.pop(key, None)
            merged[key] = value
    return merged


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], origin: str) -> None:
    """Set dotted keys in a nested mapping, in order (the semantics of ``--set``).

    Missing or empty (None) sections on the way are created; a value that is not a mapping
    on the way is an error naming the key. Values are copied, so one mapping can be applied
    to many configs.
    """
    for key, value in overrides.items():
        check_key(key, f"{_prefix(origin)}{key!r}")
        parts = key.split(".")
        target = raw
        for depth, part in enumerate(parts[:-1], start=1):
            if target.get(part) is None:
                target[part] = {}
            target = target[part]
            if not isinstance(target, dict):
                section = ".".join(parts[:depth])
                raise CnnlabError(
                    f"{_prefix(origin)}{key}: {section} is {target!r}, not a section "
                    "that holds keys"
                )
        target[parts[-1]] = copy.deepcopy(value)


def check_key(key: Any, where: str) -> None:
    """Refuse anything but a dotted key: non-empty text with no empty part (``a..b``)."""
    if not isinstance(key, str):
        raise CnnlabError(f"{where}: {key!r} is not a dotted key such as train.lr")
    if not key:
        raise CnnlabError(f"{where}: empty key; expected a dotted key such as train.lr")
    if any(not part for part in key.split(".")):
        raise CnnlabError(
            f"{where}: {key!r} has an empty part; expected a dotted key such as train.lr"
        )


def preset_names(folder: str) -> tuple[str, ...]:
    """The ``*.yaml`` presets in a package folder (e.g. ``presets/studies``), by name."""
    path = resources.files("cnnlab").joinpath(*folder.split("/"))
    if not path.is_dir():
        return ()
    return tuple(sorted(p.name[:-5] for p in path.iterdir() if p.name.endswith(".yaml")))


def read_source(
    source: str | Path, folder: str, kind: str, preset: str = "preset"
) -> tuple[str, str, Path | None]:
    """``(text, origin, path)`` of a YAML file, else of the preset so named in ``folder``.

    ``origin`` names the source in messages (the path, or ``"<preset> <name>"``); ``path`` is
    None for a preset. ``kind`` and ``preset`` word the error, which lists the presets.
    """
    path = Path(source)
    if path.is_file():
        return read_text(path, f"a {kind}"), str(path), path
    names = preset_names(folder)
    if str(source) in names:
        text = resources.files("cnnlab").joinpath(*folder.split("/"), f"{source}.yaml")
        return text.read_text(), f"{preset} {source}", None
    raise CnnlabError(
        f"{kind} {str(source)!r}: no such file and no such {preset}; "
        f"{preset}s: {', '.join(names) or 'none'}"
    )


def load_yaml_mapping(text: str, origin: str, what: str) -> dict[str, Any]:
    """YAML text whose top level is a mapping of ``what`` (an empty document is ``{}``)."""
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        long = re.search(r"[0-9]{4301,}", text)  # Python's limit on int() of text
        if long:
            line = text.count("\n", 0, long.start()) + 1
            raise CnnlabError(
                f"{origin}: line {line}: a number of {len(long.group())} digits; "
                "at most 4300 can be read"
            ) from None
        raise CnnlabError(f"{origin}: not valid YAML ({one_line(exc)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CnnlabError(f"{origin}: expected a mapping of {what} at the top level")
    return raw


def check_known(raw: Mapping[Any, Any], keys: Iterable[str], origin: str, prefix: str) -> None:
    """Refuse keys of ``raw`` not in ``keys``, listing the valid ones.

    ``prefix`` is the section with a trailing dot (``"train."``), or ``""`` at the top level.
    """
    keys = tuple(keys)
    unknown = sorted(str(k) for k in set(raw) - set(keys))
    if unknown:
        section = f" in {prefix.rstrip('.')}" if prefix else ""
        raise CnnlabError(
            f"{origin}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{section}: {', '.join(keys)}"
        )


def _yaml_value(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file; one line naming the file when it cannot be read or is not text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start : exc.start + 1].hex()
        raise CnnlabError(
            f"{path}: not a UTF-8 text file (byte 0x{byte} at offset {exc.start}); "
            f"{what} is YAML text"
        ) from None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _prefix(origin: str) -> str:
    return f"{origin}: " if origin else ""
