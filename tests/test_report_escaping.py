"""The report escapes what it takes from run folders: folder names (the run labels), run names
and class names with markup, quotes and ampersands stay text, in elements and in attributes."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from cnnlab.evaluate import evaluate_run
from cnnlab.report import build_report
from cnnlab.training import train

LABEL = "<b>x</b> \"q\" 'a' & co"
"""The first run's folder below the common parent (``</b>`` makes it two folders deep)."""
OTHER = "b & 'c' <i>"
NAME = "<b>name</b> & 'n'"
CLASSES = ["<b>x</b>", '"q"', "'a'", "&amp; raw"]
"""Four classes: Lines with one length, one width, two angles and two colours."""
LINES = "data.lines={per_class: 10, lengths: [7], widths: [1], angle_step: 90}"


class Page(HTMLParser):
    """The parsed page: start tags with their attributes, and the text inside each tag."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.texts: list[tuple[str, str]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.texts.append((self.stack[-1] if self.stack else "", data))

    def count(self, tag: str, **attrs: str) -> int:
        return sum(t == tag and all(a.get(k) == v for k, v in attrs.items()) for t, a in self.tags)


def _rename_classes(value: object, names: dict[str, str]) -> object:
    """``value`` (JSON) with every string that is, or names, a class renamed."""
    if isinstance(value, dict):
        return {k: _rename_classes(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_classes(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("escaping")
    first = base / LABEL
    overrides = (LINES, "train.epochs=1", "model.channels=[8]", "model.dense=[16]", f"name={NAME}")
    train("part2-lines", out=first, overrides=overrides, quiet=True)
    metrics = evaluate_run(first)
    # the classes renamed, as if the dataset had named them so
    names = dict(zip(metrics.class_names, CLASSES, strict=True))
    for file in ("run.json", "metrics-test.json"):
        path = first / file
        path.write_text(json.dumps(_rename_classes(json.loads(path.read_text()), names)))
    os.utime(first / "metrics-test.json")  # not older than the model
    second = base / OTHER
    shutil.copytree(first, second)
    os.utime(second / "metrics-test.json")
    return [first, second]


@pytest.fixture(scope="module")
def page(runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("escaping-report") / "report.html"
    return build_report(runs, out).read_text()


def test_no_markup_from_names(page: str) -> None:
    parsed = Page(page)
    assert "<b>" not in page and "<i>" not in page
    assert parsed.count("b") == 0 and parsed.count("i") == 0
    assert parsed.count("section", **{"class": "run"}) == page.count("<section class='run'") == 2
    assert parsed.count("section", id="comparison") == 1


def test_escaped_forms_are_shown(page: str) -> None:
    for label in (LABEL, OTHER):
        assert str(escape(label)) in page
    assert f"<h2>Run 1: {escape(LABEL)}</h2>" in page
    assert f"<h2>Run 2: {escape(OTHER)}</h2>" in page
    for name in CLASSES:
        assert f"<td>{escape(name)}</td>" in page  # the per-class tables
    assert "&amp;amp; raw" in page  # an entity in a name is text too
    assert str(escape(NAME)) in page  # the run name in the provenance table


def test_texts_and_attributes_survive_parsing(page: str) -> None:
    parsed = Page(page)
    texts = [text for _, text in parsed.texts]
    for label in (LABEL, OTHER):
        assert f"Run {1 if label == LABEL else 2}: {label}" in texts
        # single-quoted attributes: a quote in the label must not end them
        alts = {a.get("alt") for tag, a in parsed.tags if tag == "img"}
        for alt in ("Per-class F1 of", "Confusion matrix of", "accuracy curves of"):
            assert f"{alt} {label}" in alts
    assert {"#run-1", "#run-2"} <= {a.get("href") for tag, a in parsed.tags if tag == "a"}
    cells = {text for tag, text in parsed.texts if tag == "td"}
    assert set(CLASSES) <= cells
    assert NAME in cells
