"""Functions stay short enough to read at once: over 60 lines (docstring included), a function
says why it is one piece in a ``# long:`` comment on the line above it (above its decorators)."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "cnnlab"
LONGEST = 60


def long_functions(path: Path) -> list[tuple[int, str, int, str]]:
    """(line, name, length, the line above it) of each function of ``path`` over LONGEST."""
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if length > LONGEST:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                above = lines[first - 2].strip() if first >= 2 else ""
                found.append((node.lineno, node.name, length, above))
    return found


def test_every_long_function_says_why() -> None:
    unexplained = [
        f"{path.relative_to(SOURCE.parent)}:{line} {name} ({length} lines)"
        for path in sorted(SOURCE.rglob("*.py"))
        for line, name, length, above in long_functions(path)
        if not above.startswith("# long:")
    ]
    assert not unexplained, "over 60 lines without a '# long:' reason: " + ", ".join(unexplained)


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST))
    plain = tmp_path / "plain.py"
    plain.write_text(f"def f():\n{body}\n")
    explained = tmp_path / "explained.py"
    explained.write_text(f"# long: a table of constants\n@staticmethod\ndef f():\n{body}\n")
    assert [(n, length) for _, n, length, _ in long_functions(plain)] == [("f", LONGEST + 1)]
    assert long_functions(explained)[0][3].startswith("# long:")
