"""``build_report`` on two tiny Lines runs: sections, embedded images, escaping, bad input."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.pipeline import prepare_runs
from cnnlab.report import build_report
from cnnlab.training import train

EVIL = "<script>alert(1)</script>"
RUN_HEADINGS = (
    "Provenance",
    "Learning curves",
    "Test metrics",
    "Per-class metrics",
    "Confusion matrix",
    "Factor analysis",
)
TINY = ("model.channels=[8, 16]", "model.dense=[32]")


def tiny_lines_run(out: Path, epochs: int, *extra: str) -> Path:
    """A small convnet on Lines with 10 images per class: about a second on a CPU."""
    train(
        "part2-lines",
        out=out,
        overrides=("data.lines={per_class: 10}", f"train.epochs={epochs}", *TINY, *extra),
        quiet=True,
    )
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("report-runs")
    first = tiny_lines_run(base / "lines", 2)
    evaluate_run(first)
    # the second is named to inject HTML, and has no metrics-test.json: prepare_runs (which
    # cnnlab report calls first) evaluates it
    second = tiny_lines_run(base / EVIL, 1, f"name={EVIL}", "seed=3")
    return first, second


@pytest.fixture(scope="module")
def report(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    markdown = out.parent / "summary.md"
    assert prepare_runs(list(runs)) == [runs[1]]
    assert build_report(list(runs), out, markdown) == out
    return {"html": out.read_text(), "markdown": markdown.read_text()}


def images(page: str) -> list[str]:
    return re.findall(r"<img\s[^>]*src='([^']*)'", page)


def test_report_has_every_section(report: dict[str, str]) -> None:
    page = report["html"]
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<h2>Comparison</h2>") == 1
    assert page.count("<h3>Learning curves (all runs)</h3>") == 1
    for heading in RUN_HEADINGS:
        assert page.count(f"<h3>{heading}</h3>") == 2, heading
    for heading in ("Accuracy per factor", "Errors by differing factors", "Most-confused pairs"):
        assert page.count(f"<h4>{heading}</h4>") == 2, heading
    assert page.count("<details>") == 2  # 96-class tables start collapsed
    assert page.count("<tr>") > 2 * 96


def test_comparison_links_each_run(report: dict[str, str]) -> None:
    page = report["html"]
    comparison = page[page.index("<h2>Comparison</h2>") : page.index("<section class='run'")]
    for column in ("dataset", "model", "kind", "epochs", "test accuracy", "train time"):
        assert f">{column}</th>" in comparison
    assert "accuracy per factor of the predicted class" in comparison
    for factor in ("length", "width", "angle", "color"):
        assert f"<th class=num>{factor}</th>" in comparison
    assert comparison.count(">96-way</td>") == 2
    # the second run's seed draws other Lines images: the page says so
    assert "do not all test on the same images" in comparison
    assert "lines alone (384 images)" in comparison
    for i in (1, 2):
        assert f"<a href='#run-{i}'>" in comparison
        assert f"<section class='run' id='run-{i}'>" in page


def test_images_are_embedded_png_data_uris(report: dict[str, str]) -> None:
    sources = images(report["html"])
    # overlaid curves; per run: 2 curves, F1, confusion, and where it fails: the top losses,
    # the confused pairs and the reliability diagram
    assert len(sources) == 2 + 2 * (4 + 3)
    for source in sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        data = base64.b64decode(source[len(prefix) :], validate=True)
        assert len(data) > 5000
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.width > 300 and image.height > 200


def test_page_is_self_contained(report: dict[str, str]) -> None:
    page = report["html"]
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page, re.IGNORECASE)
    assert "<style>" in page


def test_run_names_and_paths_are_escaped(report: dict[str, str], runs) -> None:
    page = report["html"]
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert EVIL not in page
    assert page.count(escaped) >= 4  # contents, comparison, heading, run name, config, path
    assert f"name: {escaped}" in page  # config.yaml, verbatim but escaped
    assert (runs[1] / "metrics-test.json").is_file()  # evaluated for the report


def test_provenance(report: dict[str, str], runs) -> None:
    page = report["html"]
    info = json.loads((runs[0] / "run.json").read_text())
    for text in (
        "run folder",
        "seed",
        "git commit",
        "versions",
        "hardware",
        "train time",
        "status",
        info["versions"]["torch"],
        "config.yaml",
        "per_class: 10",
    ):
        assert text in page, text


def test_markdown_summary(report: dict[str, str]) -> None:
    lines = report["markdown"].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| run |"))
    assert "test accuracy" in lines[header] and "macro F1" in lines[header]
    assert re.fullmatch(r"\|(-{3}:?\|)+", lines[header + 1].replace("---:", "---"))
    rows = lines[header + 2 : header + 4]
    assert rows[0].startswith("| lines | lines | convnet |")
    assert rows[1].startswith("| &lt;script&gt;alert(1)&lt;/script&gt; |")
    assert all(row.count("|") == lines[header].count("|") for row in rows)
    assert "accuracy per factor" in report["markdown"]


def test_single_run_report(runs, tmp_path: Path) -> None:
    page = build_report([runs[0]], tmp_path / "one.html").read_text()
    assert "<h2>Comparison</h2>" not in page
    assert all(f"<h3>{h}</h3>" in page for h in RUN_HEADINGS)
    assert len(images(page)) == 4 + 3  # curves, F1, confusion; top losses, pairs, reliability


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CnnlabError, match=re.escape(f"{missing}: no such run folder")):
        build_report([missing], tmp_path / "r.html")


def test_not_a_run_folder(tmp_path: Path, runs) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CnnlabError, match=re.escape(f"{empty}: not a run folder (no config.yaml)")):
        build_report([runs[0], empty], tmp_path / "r.html")
    shutil.copy(runs[0] / "config.yaml", empty)
    with pytest.raises(CnnlabError, match=re.escape(f"{empty}: not a run folder (no run.json)")):
        build_report([empty], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_unfinished_run(tmp_path: Path, runs) -> None:
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs[0], unfinished)
    (unfinished / "model.safetensors").unlink()
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    with pytest.raises(CnnlabError, match=re.escape(f"{unfinished}: the run has no model")) as err:
        build_report([unfinished], tmp_path / "r.html")
    assert "interrupted" in str(err.value) and "\n" not in str(err.value)


def test_unwritable_outputs(tmp_path: Path, runs) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "report.html", blocker / "deeper" / "report.html"):
        with pytest.raises(CnnlabError, match=re.escape(f"{out}: cannot write the report")):
            build_report([runs[0]], out)
    with pytest.raises(CnnlabError, match=re.escape(f"{tmp_path}: is a folder")):
        build_report([runs[0]], tmp_path)
    markdown = blocker / "summary.md"
    with pytest.raises(CnnlabError, match=re.escape(f"{markdown}: cannot write the Markdown")):
        build_report([runs[0]], tmp_path / "r.html", markdown)
    assert not (tmp_path / "r.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
