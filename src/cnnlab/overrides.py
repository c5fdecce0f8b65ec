"""Config overrides and config sources, shared by run configs, studies and the CLI.

``--set key=value`` items become an ordered mapping of dotted keys to YAML values
(:func:`parse_set`); :func:`apply_overrides` sets them in a nested mapping. A source is a YAML
file or the name of a preset shipped in a package folder (:func:`read_source`). Every problem
is a one-line :class:`~cnnlab.errors.CnnlabError` that names where it came from.
"""

from __future__ import annotations

import copy
import re
import reprlib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError

EXAMPLE = "train.lr=0.01"
YAML_ERRORS = (yaml.YAMLError, ValueError, RecursionError, KeyError, IndexError, AttributeError)
"""What ``yaml.safe_load`` raises for text it cannot read: besides YAMLError, ValueError (a
number too long, a date that does not exist), RecursionError (nesting too deep), and KeyError,
IndexError or AttributeError from PyYAML's constructors for some tagged scalars (``!!bool maybe``,
``!!int ''``, ``!!timestamp x``)."""
MAX_VALUES = 100_000
"""The most values (scalars, lists and mappings, counted as often as aliases repeat them) one
YAML document or ``--set`` value may hold: a few hundred bytes of anchors and aliases can stand
for billions ("billion laughs"), which every later copy, check or message would expand."""
MAX_DEPTH = 100
"""The deepest nesting of lists and mappings one YAML document or ``--set`` value may hold:
copying, saving and printing a config recurse once a level (Python stops at 1000)."""
_INT_LIMIT = 10**4300  # Python's default limit on printing an int: 4300 digits


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
        except YAML_ERRORS as exc:  # a number too long, nesting too deep, a tag it cannot read
            raise CnnlabError(
                f"{_prefix(origin)}--set {key!r}: not a readable value ({_yaml_problem(exc)})"
            ) from None
        check_value(parsed[key], f"{_prefix(origin)}--set {key!r}")
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
                    f"{_prefix(origin)}{shown(key)}: {shown(section)} is {short_repr(target)}, "
                    "not a section that holds keys"
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
    if _is_file(path):
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
    except YAML_ERRORS as exc:
        long = re.search(r"[0-9]{4301,}", text)  # Python's limit on int() of text
        if long:
            line = text.count("\n", 0, long.start()) + 1
            raise CnnlabError(
                f"{origin}: line {line}: a number of {len(long.group())} digits; "
                "at most 4300 can be read"
            ) from None
        raise CnnlabError(f"{origin}: not valid YAML ({_yaml_problem(exc)})") from None
    check_value(raw, origin)
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
            f"{origin}: unknown key(s) {', '.join(shown(prefix + k) for k in unknown)}; "
            f"valid keys{section}: {', '.join(keys)}"
        )


def check_value(value: Any, where: str) -> None:
    """Refuse what YAML builds but nothing here can take: a value that contains itself (an
    alias inside its own anchor), one of over :data:`MAX_VALUES` values once aliases are
    expanded, lists and mappings nested over :data:`MAX_DEPTH` deep, an int of over 4300
    digits (``0x`` + 3600 digits: Python cannot print it). Linear in the distinct values,
    however far aliases expand them."""
    sizes: dict[int, int] = {}  # id -> expanded size, of the lists and mappings done
    open_: set[int] = set()  # ids of the lists and mappings being walked (the ancestors)
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, done = stack.pop()
        if done:
            open_.discard(id(item))
            sizes[id(item)] = 1 + sum(sizes.get(id(c), 1) for c in _children(item))
            if sizes[id(item)] > MAX_VALUES:
                raise CnnlabError(
                    f"{where}: over {MAX_VALUES:,} values, counting each alias (*name) as "
                    "often as it repeats its anchor; expected plain values"
                )
        elif isinstance(item, list | tuple | set | dict):
            if id(item) in open_:
                raise CnnlabError(
                    f"{where}: a value that contains itself (an alias inside its own anchor)"
                )
            if len(open_) >= MAX_DEPTH:
                raise CnnlabError(
                    f"{where}: lists or mappings nested over {MAX_DEPTH} deep; expected plain "
                    "values"
                )
            if id(item) not in sizes:
                open_.add(id(item))
                stack.append((item, True))
                stack.extend((child, False) for child in _children(item))
        elif isinstance(item, int) and abs(item) >= _INT_LIMIT:
            raise CnnlabError(
                f"{where}: a number of {item.bit_length()} bits, over 4300 digits; "
                "at most 4300 can be read"
            )


def _children(item: Any) -> list[Any]:
    return [*item, *item.values()] if isinstance(item, dict) else list(item)


def _yaml_value(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _yaml_problem(exc: BaseException) -> str:
    """What was wrong with YAML text, in words (PyYAML's constructors raise bare KeyErrors ...)."""
    if isinstance(exc, KeyError | IndexError | AttributeError):
        return f"a tagged value such as !!bool or !!int that cannot be read: {one_line(exc)}"
    return one_line(exc)


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name cannot be looked up at all (too long ...)."""
    try:
        return path.is_file()
    except OSError:
        return False


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


def shown(text: str) -> str:
    """``text`` for a one-line message: as it is, or quoted (``repr``) when it holds a line
    break or another character that does not print."""
    return text if text.isprintable() else repr(text)


class _Short(reprlib.Repr):
    """reprlib's repr, which stops at a few items per level; ints too long to print named."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 3, 60, 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:
            return f"<a {x.bit_length()}-bit number>"


_SHORT = _Short()


def short_repr(value: Any, most: int = 80) -> str:
    """``repr(value)`` on one line of at most about ``most`` characters, cut short as it is made
    (a few hundred bytes of YAML with aliases can hold millions of items)."""
    text = " ".join(_SHORT.repr(value).split())
    return text if len(text) <= most else text[: most - 3] + "..."


def _prefix(origin: str) -> str:
    return f"{origin}: " if origin else ""
