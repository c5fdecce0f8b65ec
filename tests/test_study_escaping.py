"""The study report escapes every text it takes from ``summary.json``.

A study's name and its variants' names are restricted to ``[A-Za-z0-9._-]`` when the study
file is read (:mod:`cnnlab.study.spec`), so the name here is plain; but the report reads
``summary.json`` as it finds it, so the description, the variant names (the baseline's too),
the base config, the settings, the overrides and a verdict carry markup, quotes and ``&``.
The summary is written by hand: no training.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from markupsafe import escape

from cnnlab.study import write_report

MARK = "<b>x</b> \"q\" 'a' & b"
ODD = f"odd {MARK}"  # a variant other than the baseline


def variant(name: str, accuracy: float, baseline: bool) -> dict:
    diff = None if baseline else {"mean": accuracy - 0.9, "ci95": None, "n": 1, "noise": 0.04}
    return {
        "variant": name,
        "overrides": {},
        "overrides_text": f"overrides {MARK}",
        "parameters": 1000,
        "training_flops_per_image": 2e6,
        "seeds_done": 1,
        "seeds_planned": 1,
        "diverged": 0,
        "train_seconds_mean": 1.5,
        "test_accuracy": {"mean": accuracy, "ci95": None, "n": 1},
        "test_loss": {"mean": 0.3, "ci95": None, "n": 1},
        "accuracy_diff": diff,
        "loss_diff": None if baseline else {"mean": 0.1, "ci95": None, "n": 1},
        "within_noise": None if baseline else True,
        "verdict": "baseline" if baseline else f"verdict {MARK}",
        "epochs_to_target": {"target": 0.5, "mean": 1.0, "reached": 1, "of": 1},
        "per_seed": {"0": {"test_accuracy": accuracy, "test_loss": 0.3}},
    }


def summary() -> dict:
    curve = {"0": {"test_acc": [0.5, 0.9], "test_loss": [0.6, 0.3]}}
    return {
        "study": {
            "name": "escaping",
            "description": f"description {MARK}",
            "base": f"base {MARK}",
            "set": {"train.note": MARK},
            "seeds": [0],
            "baseline": MARK,
            "quick": False,
        },
        "target": 0.5,
        "test_images": 100,
        "runs_planned": 2,
        "runs_done": 2,
        "rule": f"rule {MARK}",
        "variants": [variant(MARK, 0.9, True), variant(ODD, 0.92, False)],
        "curves": {MARK: curve, ODD: curve},
    }


class Page(HTMLParser):
    """The tags, the text and the attributes of a page, unescaped by the parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.alts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.alts += [value or "" for name, value in attrs if name == "alt"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_markup_in_summary_json_is_shown_as_text(tmp_path: Path) -> None:
    folder = tmp_path / "escaping"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary()))
    page = write_report(folder).read_text()

    assert "<b>" not in page and MARK not in page  # never raw
    escaped = str(escape(MARK))
    # as text: description, base, settings, both variant names in both tables, both variants'
    # overrides, the odd verdict, the rule (11); and the baseline in the figure's alt text
    assert page.count(escaped) == 12

    parsed = Page()
    parsed.feed(page)
    assert "b" not in parsed.tags
    text = "".join(parsed.text)
    for shown in (f"description {MARK}", f"rule {MARK}", f"base {MARK}", f"train.note={MARK}"):
        assert shown in text, shown
    assert text.count(MARK) == 11
    assert f"verdict {MARK}" in text and text.count(ODD) == 2
    assert f"differences from {MARK}" in parsed.alts  # a quote cannot end the attribute
    assert "<title>cnnlab study: escaping</title>" in page
