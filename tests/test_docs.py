"""The README and docs/ stay true: the generated config reference is current, every relative
link (and #anchor) leads somewhere, the README stays short and free of timings, and its test
command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlab.training.config_reference import COMMAND, config_reference

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HTML = re.compile(r"\b(?:href|src)=[\"']([^\"']+)[\"']")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(_INLINE_CODE.sub("", line))
    return lines


def _links(page: Path) -> list[str]:
    text = "\n".join(_prose(page.read_text(encoding="utf-8")))
    return [*_LINK.findall(text), *_REFERENCE.findall(text), *_HTML.findall(text)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped (``-`` and
    ``_`` kept), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            slug = _slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _command(line: str) -> str:
    """A shell line without its trailing comment."""
    return re.split(r"\s#", line, maxsplit=1)[0].strip()


def test_config_reference_is_current() -> None:
    page = DOCS / "config.md"
    assert page.is_file(), f"docs/config.md is missing: generate it with `{COMMAND}`"
    assert page.read_text(encoding="utf-8") == config_reference(), (
        f"docs/config.md is stale (the config dataclasses or presets changed): regenerate it "
        f"with `{COMMAND}`"
    )


def test_config_reference_explains_every_key() -> None:
    rows = [line for line in config_reference().splitlines() if line.startswith("| `")]
    assert rows
    unexplained = [row.split(" | ")[0] for row in rows if row.rstrip().endswith("|  |")]
    assert not unexplained, (
        f"keys without an explanation in docs/config.md: {', '.join(unexplained)}; describe them "
        "in the dataclass docstring or in NOTES of cnnlab.training.config_reference"
    )


def test_relative_links_lead_to_files_and_headings() -> None:
    broken = []
    for page in _pages():
        for target in _links(page):
            if _SCHEME.match(target):
                continue  # https:, mailto: ...
            path, _, anchor = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            name = f"{page.relative_to(ROOT)}: {target}"
            if not where.exists():
                broken.append(f"{name} (no such file)")
            elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
                broken.append(f"{name} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_docs_pages_link_back_to_the_readme() -> None:
    ours = [p for p in DOCS.glob("*.md") if p.name not in ("fuzzing.md", "hostile-inputs.md")]
    assert ours
    for page in ours:
        lines = page.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# "), f"{page.name}: starts with its title"
        opening = " ".join(lines[:8])
        assert "(../README.md)" in opening, f"{page.name}: links back to the README at the top"


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, at most {README_MAX_LINES}: move detail into docs/"
    )


def test_readme_holds_no_timings() -> None:
    """Timings and their dates live in BENCHMARKS.md; the README links there."""
    timing = re.compile(
        r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b"
        r"|\b20\d\d-\d\d-\d\d\b"
    )
    found = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1)
        if timing.search(line)
    ]
    assert not found, "timings or dates in README.md (they belong in BENCHMARKS.md):\n" + (
        "\n".join(found)
    )


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = [
        _command(line)
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#") and re.search(r"\bmake test\b", line)
    ]
    assert len(ci) == 1, f".ci/run should run `make test` once, found {ci}"
    assert "CNNLAB_MNIST_DIR=" in ci[0]

    text = README.read_text(encoding="utf-8")
    fenced, in_code = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        elif in_code:
            fenced.append(_command(line))
    readme = [line for line in fenced if re.search(r"\bmake test\b", line)]
    assert readme, "README.md gives no `make test` command"
    assert set(readme) == {ci[0]}, f"README.md's test command {readme} is not .ci/run's {ci[0]!r}"

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:", makefile, re.M), "the Makefile has no test target"
    assert re.search(r"^main:", makefile, re.M), "the Makefile has no main target"
