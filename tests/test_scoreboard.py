"""The scoreboard of explanation methods on any data (issue 30, item 4): one sample size for
``cnnlab visualize --score`` and ``cnnlab report --inside``, a terminal table with only the
columns that apply and their directions, methods worse than random flagged (table, report and
``scores.json``), the figure written by ``visualize --score``, and no words about lines or
masks where the data has none."""

from __future__ import annotations

import contextlib
import html
import inspect
import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import run

from cnnlab.pipeline import prepare_runs
from cnnlab.report.inside_view import inside_section, render_inside, view
from cnnlab.report.inside_words import score_reading
from cnnlab.runfolder import RunFolder
from cnnlab.training import train
from cnnlab.visualize import (
    SCORE_IMAGES,
    flag_worse_than_random,
    format_scoreboard,
    format_scores,
    score_run,
    visualize_run,
    worse_than_random,
)

MNIST = (
    "data.train_limit=300",
    "data.test_limit=160",  # more than SCORE_IMAGES: the default sample is drawn in full
    "model.filters=4",
    "model.dense_units=16",
    "train.epochs=1",
)
LINES = (
    "data.lines={per_class: 10}",
    "data.train_limit=128",
    "data.test_limit=96",
    "train.epochs=1",
    "train.batch_size=64",
)
CHEAP = ("--method", "gradcam", "--layer", "pool1")
"""One method at one layer: the default sample size, scored in seconds."""

MASK_COLUMNS = ("pointing", "pointing_1px", "energy", "topk_iou")


@pytest.fixture(scope="module")
def runs(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A tiny MNIST run (no masks) and a tiny Lines run (masks)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: threads only wait on each other
    base = tmp_path_factory.mktemp("scoreboard")
    try:
        mnist = (*MNIST, f"data.mnist_dir={mnist_dir}")
        train("part1-mnist", out=base / "mnist", overrides=mnist, quiet=True, device="cpu")
        train("part1-lines", out=base / "lines", overrides=LINES, quiet=True, device="cpu")
        yield {"mnist": base / "mnist", "lines": base / "lines"}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cli_scored(runs: dict[str, Path]) -> dict[str, Any]:
    """``cnnlab visualize MNIST_RUN --score`` with the default sample size: what it printed
    and the scores it wrote (into the run's visualize folder)."""
    from cnnlab.cli import main

    folder = RunFolder(runs["mnist"]).visualize
    out = io.StringIO()  # a module fixture cannot take capsys
    with contextlib.redirect_stdout(out):
        assert main(["visualize", str(runs["mnist"]), "--score", *CHEAP]) == 0
    scores = json.loads((folder / "scores.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    return {"out": out.getvalue(), "scores": scores, "summary": summary, "folder": folder}


def rows_of(*triples: tuple[str | None, str, float | None, float | None]) -> list[dict]:
    """Score rows without masks: (head, method, deletion, insertion) each."""
    return [
        {
            "head": head,
            "method": method,
            "layer": "conv1" if method == "gradcam" else None,
            **dict.fromkeys(MASK_COLUMNS),
            "deletion": deletion,
            "insertion": insertion,
            "rank_corr_random": None if method == "random" else 0.2,
        }
        for head, method, deletion, insertion in triples
    ]


def visible_text(page: str) -> str:
    """The words of a rendered section: no tags, no embedded images."""
    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"data:image/[^']*", "", page)))


# -- one sample size ------------------------------------------------------------------------------


def test_one_default_sample_size_for_every_path(
    runs: dict[str, Path],
    cli_scored: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SCORE_IMAGES == 128
    assert inspect.signature(visualize_run).parameters["score_images"].default == SCORE_IMAGES
    assert inspect.signature(score_run).parameters["n"].default == SCORE_IMAGES
    # cnnlab visualize --score, with its default: every image of the sample recorded
    scores = cli_scored["scores"]
    assert scores["images"] == SCORE_IMAGES
    assert scores["faithfulness_images"] == SCORE_IMAGES and scores["sanity_images"] == 64
    # report --inside (prepare_runs) on a copy of the run: the same count, the same scores
    copy = tmp_path / "copy"
    shutil.copytree(runs["mnist"], copy, ignore=shutil.ignore_patterns("visualize"))
    options = {"methods": ["gradcam"], "layers": ["pool1"], "filters": False}
    assert prepare_runs([copy], pictures=True, visualize_options=options) == [copy]
    again = json.loads((RunFolder(copy).visualize / "scores.json").read_text())
    assert again["images"] == scores["images"] == SCORE_IMAGES
    assert again["rows"] == scores["rows"]  # the same seeded images: the same scoreboard
    assert (RunFolder(copy).visualize / "scores.png").is_file()  # and the same figure
    # report --inside passes no count of its own: visualize_run's default decides
    seen: list[dict] = []
    monkeypatch.setattr("cnnlab.visualize.visualize_run", lambda *a, **k: seen.append(k))
    (RunFolder(copy).visualize / "summary.json").unlink()  # its pictures: to be made again
    assert prepare_runs([copy], pictures=True) == [copy]
    assert seen and seen[0]["score"] is True and "score_images" not in seen[0]


# -- the terminal table ---------------------------------------------------------------------------


def test_printed_table_without_masks(cli_scored: dict[str, Any]) -> None:
    out = cli_scored["out"]
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("scoreboard of"))
    assert f"on {SCORE_IMAGES} test images (seed 0)" in lines[start]
    assert "no localisation (the data has no masks)" in lines[start]
    header = lines[start + 1]
    assert header.split()[:2] == ["method", "layer"]
    assert "deletion ↓" in header and "insertion ↑" in header and "rank_corr_random ↓" in header
    assert not any(column in header for column in ("pointing", "energy", "topk_iou"))
    assert "higher is better" in out and "lower is better" in out
    rows = lines[start + 3 : start + 3 + len(cli_scored["scores"]["rows"])]
    assert [r.split()[0] for r in rows] == ["random", "gradcam"]
    assert "mask" not in out.replace("no masks", "")


def test_columns_that_do_not_apply_are_hidden() -> None:
    rows = rows_of((None, "random", None, None), (None, "gradcam", None, None))
    header = format_scores(rows).splitlines()[0]
    assert header.split() == ["method", "layer", "rank_corr_random", "↓"]
    with_masks = [{**r, "pointing": 0.5, "energy": 0.25} for r in rows]
    header = format_scores(with_masks).splitlines()[0]
    assert "pointing ↑" in header and "energy ↑" in header
    assert "topk_iou" not in header and "deletion" not in header


def test_rows_worse_than_random_are_flagged() -> None:
    rows = rows_of(
        ("a", "random", 0.40, 0.40),
        ("a", "gradcam", 0.30, 0.50),  # better on both
        ("a", "saliency", 0.45, 0.50),  # deletes worse
        ("a", "guided_backprop", 0.30, 0.35),  # inserts worse
        ("b", "random", 0.20, 0.60),
        ("b", "saliency", 0.45, 0.50),  # worse than b's reference on both, not a's
        ("b", "occlusion", None, None),  # not measured
    )
    assert worse_than_random(rows[1], rows[0]) == ()
    assert worse_than_random(rows[2], rows[0]) == ("deletion",)
    assert worse_than_random(rows[3], rows[0]) == ("insertion",)
    assert worse_than_random(rows[5], rows[4]) == ("deletion", "insertion")
    assert worse_than_random(rows[0], rows[0]) == () and worse_than_random(rows[6], rows[4]) == ()
    flagged = flag_worse_than_random(rows)
    assert [r["worse_than_random"] for r in flagged] == [
        False,
        False,
        True,
        True,
        False,
        True,
        None,
    ]
    assert "worse_than_random" not in rows[0]  # a copy: the rows given are left alone
    lines = format_scores(rows).splitlines()
    table = lines[2 : 2 + len(rows)]
    assert [line.endswith("worse than random (deletion)") for line in table] == [
        False, False, True, False, False, False, False,
    ]  # fmt: skip
    assert table[3].endswith("worse than random (insertion)")
    assert table[5].endswith("worse than random (deletion, insertion)")
    assert "a larger deletion or a smaller insertion area" in format_scores(rows)
    assert "worse than random" not in format_scores(rows[:2])


def test_scores_json_flags_every_row(cli_scored: dict[str, Any]) -> None:
    rows = cli_scored["scores"]["rows"]
    reference = rows[0]
    assert reference["method"] == "random" and reference["worse_than_random"] is False
    for row in rows[1:]:
        assert row["worse_than_random"] is bool(worse_than_random(row, reference))


# -- the figure -----------------------------------------------------------------------------------


def test_visualize_score_writes_the_figure(cli_scored: dict[str, Any]) -> None:
    folder, summary = cli_scored["folder"], cli_scored["summary"]
    png = folder / "scores.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["scores_png"] == str(png) and summary["scores_json"] == str(
        folder / "scores.json"
    )
    assert (
        f"scoreboard written to {folder}: scores.json and its figure scores.png"
        in (cli_scored["out"])
    )


def test_no_figure_without_scores(runs: dict[str, Path], tmp_path: Path) -> None:
    plain = visualize_run(runs["lines"], tmp_path, layers=["pool1"], filters=False)
    assert plain.scores_png is None and "scores_png" not in plain.to_dict()
    assert not (tmp_path / "scores.png").exists()


# -- words that fit the data ----------------------------------------------------------------------


def test_report_words_without_masks(cli_scored: dict[str, Any], runs: dict[str, Path]) -> None:
    text = visible_text(inside_section(runs["mnist"], "mnist"))
    assert "Explanation methods, ranked by evidence" in text and "most faithful" in text
    assert f"{SCORE_IMAGES} test images (seed 0)" in text
    assert not re.search(r"\blines?\b", text, re.I), re.findall(r".{60}\blines?\b.{20}", text)
    assert "mask" not in text.lower() and "pointing" not in text.lower()
    assert "as a bar" in text  # the figure's note in the words of the data


def test_report_words_with_masks(runs: dict[str, Path]) -> None:
    folder = RunFolder(runs["lines"]).visualize
    visualize_run(
        runs["lines"], folder, layers=["pool1"], filters=False, methods=["gradcam"], score=True,
        score_images=16,
    )  # fmt: skip
    text = visible_text(inside_section(runs["lines"], "lines"))
    assert "points at the line best" in text and "of its positive heat falls on the line" in text
    assert "against the line masks" in text and "positive heat on the line" in text
    assert "pointing game ↑" in text and "deletion area ↓" in text
    assert "Cyan outlines are the line's true pixels" in text


def test_report_flags_worse_than_random(cli_scored: dict[str, Any], runs: dict[str, Path]) -> None:
    pictures = RunFolder(runs["mnist"]).read_pictures()
    assert pictures is not None and pictures.scores is not None
    rows = pictures.scores["rows"]
    made = [{**rows[0]}, {**rows[1], "worse_than_random": True}]
    scores = {**pictures.scores, "rows": made}
    page = render_inside(view(replace(pictures, scores=scores), "mnist"))
    table = page[page.index("<table class='scores'>") :]
    table = table[: table.index("</table>")]
    body = [r for r in re.findall(r"<tr>(.*?)</tr>", table) if "<td" in r]
    assert "faithfulness" in table and len(body) == 2
    assert "worse than random" not in body[0] and body[1].rstrip().endswith(
        "worse than random</td>"
    )
    reading = " ".join(score_reading(scores))
    assert "Grad-CAM at pool1 does worse than random maps on deletion or insertion" in reading
    quiet = " ".join(score_reading({**scores, "rows": [made[0], {**rows[1]}]}))
    assert ("worse than random" in quiet) == bool(rows[1]["worse_than_random"])


def test_the_scoreboard_text_names_its_sample() -> None:
    rows = rows_of((None, "random", 0.4, 0.4), (None, "gradcam", 0.3, 0.5))
    scores = {"images": 7, "faithfulness_images": 7, "sanity_images": 5, "seed": 3}
    text = format_scoreboard({**scores, "masks": False, "rows": rows})
    assert text.startswith("scoreboard of explanation methods on 7 test images (seed 3)")
    assert "on the first 5" in text and "no masks" in text
    masked = format_scoreboard({**scores, "masks": True, "rows": rows})
    assert "localisation against the masks on all 7" in masked and "no masks" not in masked


def test_cli_help_says_where_the_figure_goes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "visualize", "--help")
    assert code == 0 and "scores.png" in out and "report --inside" in " ".join(out.split())
