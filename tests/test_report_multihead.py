"""``build_report`` on tiny multi-head and held-out Lines runs: Heads section, per-factor
comparison, and the held-out combinations' note."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnlab.evaluate import evaluate_run
from cnnlab.report import build_report, markdown_summary, read_run
from cnnlab.report.render import render
from cnnlab.report.run_view import holdout_view
from cnnlab.training import train

DATA = "data.lines={per_class: 10}"
TINY_MH = ("model.channels=[8]", "model.kernel_size=3", "model.shared=[32]", "model.head_hidden=16")
TINY_96 = ("model.channels=[8, 16]", "model.dense=[32]")
HOLDOUT = "data.holdout={combinations: [{color: blue, width: 3, angle: 90}]}"
HELD = ["len7_wid3_ang090_blue", "len15_wid3_ang090_blue"]
EVIL = "<i>held&out</i>"


def _train(preset: str, out: Path, epochs: int, *extra: str) -> Path:
    """A tiny run (a few seconds on a CPU), evaluated on its test split."""
    train(preset, out=out, overrides=(DATA, f"train.epochs={epochs}", *extra), quiet=True)
    evaluate_run(out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    # one thread: these nets are tiny, and on a busy CPU two threads wait on each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _runs(tmp_path_factory.mktemp("mh-runs"))
    finally:
        torch.set_num_threads(threads)


def _runs(base: Path) -> dict[str, Path]:
    runs = {
        "mh": _train("multihead-lines", base / "mh", 2, *TINY_MH),
        "96": _train("part2-lines", base / "96", 1, *TINY_96),
        "mh-ho": _train("multihead-lines", base / "mh-ho", 1, *TINY_MH, HOLDOUT),
        "96-ho": _train("part2-lines", base / "96-ho", 1, *TINY_96, HOLDOUT),
    }
    # a copy whose run.json names one more held-out class, one that needs escaping
    evil = base / "evil-ho"
    shutil.copytree(runs["mh-ho"], evil)
    info = json.loads((evil / "run.json").read_text())
    info["dataset"]["provenance"]["holdout"]["classes"].append(EVIL)
    (evil / "run.json").write_text(json.dumps(info))
    (evil / "metrics-test.json").touch()  # not older than the model: no re-evaluation
    runs["evil-ho"] = evil
    return runs


@pytest.fixture(scope="module")
def page(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("mh-report") / "report.html"
    markdown = out.with_suffix(".md")
    order = ("96", "mh", "96-ho", "mh-ho")
    build_report([runs[k] for k in order], out, markdown)
    return out.read_text() + "\n<!-- markdown -->\n" + markdown.read_text()


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics-test.json").read_text())


def section(page: str, index: int) -> str:
    start = page.index(f"<section class='run' id='run-{index}'>")
    return page[start : page.index("</section>", start)]


def cells(row: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", c))
        for c in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row)
    ]


def heads_table(part: str) -> dict[str, list[str]]:
    table = part[part.index("<h3>Heads</h3>") :]
    table = table[: table.index("</table>")]
    rows = [cells(r) for r in re.findall(r"<tr>(.*?)</tr>", table)]
    return {row[0]: row for row in rows}


def test_heads_section_matches_metrics(page: str, runs: dict[str, Path]) -> None:
    assert page.count("<h3>Heads</h3>") == 2  # the two multi-head runs, not the 96-way ones
    part = section(page, 2)
    m = metrics(runs["mh"])
    rows = heads_table(part)
    assert next(iter(rows)) == "head" and len(m["heads"]) == 4
    for name, head in m["heads"].items():
        row = rows[name]
        assert row[1] == str(len(head["levels"]))
        assert row[2] == f"{head['accuracy']:.4f}"
        assert row[4] == f"{head['loss']:.4f}"
        assert row[5:8] == [f"{head['macro'][k]:.4f}" for k in ("precision", "recall", "f1")]
        # the decoded class's factor accuracy: the same number
        assert row[8] == f"{m['factor_analysis']['factors'][name]['accuracy']:.4f}" == row[2]
    joint = rows["joint: all heads right"]
    assert joint[2] == f"{m['joint_accuracy']:.4f}" == f"{m['accuracy']:.4f}"
    assert "Checked for this run: all 4 heads" in part
    for title in ("Confusion matrix of each head", "Learning curves per head"):
        assert f"<h4>{title}</h4>" in part
    metrics_part, _, errors_part = part.partition("<h3>Where it fails</h3>")
    assert len(re.findall(r"<img\s", metrics_part)) == 6  # curves, heads, curves per head, F1, CM
    assert len(re.findall(r"<img\s", errors_part)) >= 4 + 1  # each head's top losses, reliability
    for head in m["heads"]:
        assert f"<h4>head {head}: " in errors_part
    assert "<h3>Heads</h3>" not in section(page, 1)


def test_comparison_has_factor_accuracy_for_both_kinds(page: str, runs: dict[str, Path]) -> None:
    comparison = page[page.index("<h2>Comparison</h2>") : page.index("<section class='run'")]
    assert "accuracy per factor of the predicted class" in comparison
    body = comparison[comparison.index("<tbody>") : comparison.index("</tbody>")]
    rows = [cells(r) for r in re.findall(r"<tr>(.*?)</tr>", body)]
    header = [cells(r) for r in re.findall(r"<tr>(.*?)</tr>", comparison)][1]
    factors = list(metrics(runs["96"])["factor_analysis"]["factors"])
    assert header == factors
    for row, key in zip(rows, ("96", "mh", "96-ho", "mh-ho"), strict=True):
        m = metrics(runs[key])
        per = m["heads"] if "heads" in m else m["factor_analysis"]["factors"]
        assert row[3] == ("multi-head (4 heads)" if "heads" in m else "96-way")
        assert row[-len(factors) :] == [f"{per[f]['accuracy']:.4f}" for f in factors]
    assert "do not all test on the same images" in comparison


def test_holdout_note_names_the_unseen_classes(page: str, runs: dict[str, Path]) -> None:
    for index, key in ((3, "96-ho"), (4, "mh-ho")):
        part = section(page, index)
        m = metrics(runs[key])
        note = part[part.index("<div class='holdout'>") : part.index("</div>")]
        assert "Tested on 2 combinations never seen in training" in note
        assert all(f"<code>{name}</code>" in note for name in HELD)
        assert f"Decoded-class accuracy on unseen combinations: {m['accuracy']:.4f}" in note
        for factor, value in m["factor_analysis"]["factors"].items():
            assert f"{factor} {value['accuracy']:.4f}" in note
        kind = "A multi-head net names a class by composing" if "heads" in m else "A 96-way net"
        assert kind in note
    assert "<div class='holdout'>" not in section(page, 1) + section(page, 2)
    markdown = page[page.index("<!-- markdown -->") :]
    assert f"tested on 2 combinations never seen in training: {', '.join(HELD)}" in markdown


def test_holdout_class_names_are_escaped(runs: dict[str, Path]) -> None:
    record = read_run(runs["evil-ho"], EVIL)
    note = render("holdout.html.j2", holdout=holdout_view(record))  # alone: no figures to draw
    assert EVIL not in note
    assert "<code>&lt;i&gt;held&amp;out&lt;/i&gt;</code>" in note
    assert "Tested on 3 combinations never seen in training" in note
    markdown = markdown_summary([record])
    assert EVIL not in markdown
    assert f"{', '.join(HELD)}, &lt;i&gt;held&amp;out&lt;/i&gt;" in markdown
