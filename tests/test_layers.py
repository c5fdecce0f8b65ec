"""The layering of docs/layout.md, enforced: every module of ``src/cnnlab`` imports (at module
level or inside a function) only its own layer or those before it in :data:`LAYERS`, and no
module imports itself back through others."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYOUT = Path(__file__).resolve().parents[1] / "docs" / "layout.md"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "fileio", "version", "hardware"),
    ("overrides",),
    ("runfolder",),
    ("data",),
    ("models",),
    ("training",),
    ("visualize",),
    ("evaluate",),
    ("report",),
    ("pipeline",),
    ("execution",),
    ("jobs",),
    ("study",),
    ("predict",),
    ("export",),
    ("reproduce",),
    ("cli", "launch", "__main__", "__init__"),
)
"""docs/layout.md's list, in its order (names under ``cnnlab``; one tuple is one layer).
``__init__`` is the package ``cnnlab`` itself: the public API, importing every verb lazily."""

ALLOWED: dict[tuple[str, str], str] = {}
"""(importer, imported) pairs allowed against the order, each with its reason. None now."""


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / "cnnlab").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{parent}.{base}".rstrip(".")
            named = [f"{base}.{alias.name}" for alias in node.names]  # submodules, if so
            targets = [t for t in named if t in known] or [base]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def layer(name: str) -> int:
    """The index in :data:`LAYERS` of the module ``name`` (``cnnlab.x.y``: ``x``'s layer)."""
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{name}: in no layer of tests/test_layers.py (add it, and to docs)")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_module_imports_a_later_layer() -> None:
    wrong = [
        f"{importer} imports {imported} (layer {LAYERS[layer(imported)][0]!r} comes after "
        f"{LAYERS[layer(importer)][0]!r})"
        for importer, targets in graph().items()
        for imported in sorted(targets)
        if layer(imported) > layer(importer) and (importer, imported) not in ALLOWED
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: finished

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(edges[module]):
            if state.get(other) == 1:
                cycles.append(" -> ".join([*path[path.index(other) :], other]))
            elif other not in state:
                visit(other, [*path, other])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_layers_follow_docs_layout() -> None:
    """docs/layout.md names the layers in the same order (in the first column of its list)."""
    lines = LAYOUT.read_text().splitlines()
    heads = [re.match(r"(?:\w+(?:/|\.py),?\s*)*", line.strip()).group(0) for line in lines]
    listed = [re.findall(r"(\w+)(?:/|\.py)", head) for head in heads]
    names = [n for group in LAYERS for n in group if n not in ("__init__", "__main__", "launch")]

    def place(name: str) -> int:
        found = [i for i, line in enumerate(listed) if name in line]
        if not found:
            pytest.fail(f"docs/layout.md does not list {name}")
        return found[0]

    places = [place(n) for n in names]
    assert places == sorted(places), f"docs/layout.md lists the layers in another order: {names}"
