"""The report's "Looking inside" section on tiny Lines runs (part1 and a multi-head net): made
first by ``prepare_runs(pictures=True)``, every layer and head shown, scores as in
``scores.json``, and bad or missing visualize folders as a note, never a crash."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from markupsafe import escape

from cnnlab.cli import main
from cnnlab.pipeline import prepare_runs
from cnnlab.report import build_report
from cnnlab.report.inside_view import inside_section, render_inside, view
from cnnlab.report.inside_words import METHOD_NAMES, inside_line, score_reading
from cnnlab.runfolder import RunFolder
from cnnlab.training import train
from cnnlab.visualize import FilterSettings

DATA = (
    "data.lines={per_class: 10}",
    "data.train_limit=128",
    "data.test_limit=96",
    "train.epochs=1",
    "train.batch_size=64",
)
TINY_MH = ("model.channels=[8]", "model.kernel_size=3", "model.shared=[32]")
OPTIONS = {"filter_settings": FilterSettings(steps=4), "score_images": 32}
HEADS = ("length", "width", "color", "angle")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A part1 run and a small multi-head run: a second or two each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: threads only wait on each other
    base = tmp_path_factory.mktemp("inside-runs")
    try:
        train("part1-lines", out=base / "p1", overrides=DATA, quiet=True)
        train("multihead-lines", out=base / "mh", overrides=(*DATA, *TINY_MH), quiet=True)
        yield {"p1": base / "p1", "mh": base / "mh"}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def report(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("inside-report") / "report.html"
    markdown = out.with_suffix(".md")
    assert needs_pictures(runs["p1"]) and needs_pictures(runs["mh"])
    made = prepare_runs([runs["p1"], runs["mh"]], pictures=True, visualize_options=OPTIONS)
    assert made == [runs["p1"], runs["mh"]]  # evaluated and looked inside, as cnnlab report does
    build_report([runs["p1"], runs["mh"]], out, markdown)
    return {"html": out.read_text(), "markdown": markdown.read_text()}


def needs_pictures(run: Path) -> bool:
    return not RunFolder(run).pictures_current()


def section_html(page: str, index: int) -> str:
    start = page.index(f"<section class='run' id='run-{index}'>")
    return page[start : page.index("</section>", start)]


def section(page: str, index: int) -> str:
    """The "Looking inside" part of run ``index``'s section."""
    part = section_html(page, index)
    return part[part.index("<h3>Looking inside</h3>") :]


def summary(run: Path) -> dict:
    return json.loads((run / "visualize" / "summary.json").read_text())


def embedded(part: str, alt: str) -> bytes:
    found = re.search(rf"<img src='data:image/png;base64,([^']*)' alt='{re.escape(alt)}'", part)
    assert found, alt
    return base64.b64decode(found.group(1))


def test_section_shows_every_layer_and_head(report: dict[str, str], runs) -> None:
    page = report["html"]
    assert page.count("<h3>Looking inside</h3>") == 2
    for index, key in ((1, "p1"), (2, "mh")):
        part, info = section(page, index), summary(runs[key])
        layers = info["layers"]
        assert layers == ["conv1", "pool1"]  # every conv/pool layer of both nets
        assert part.count("<figure class='input'>") == 8
        for layer in layers:
            assert f"alt='activations of {layer} in {key}'" in part
        for layer in info["filters"]:
            assert f"alt='filters of {layer} in {key}'" in part
        for word in ("images", "explained class", "filter images", "scores", "4 steps"):
            assert word in part, word
        assert "seed 0" in part and "test index" in part
    mh = section(page, 2)
    for head in HEADS:
        assert f"<figcaption>head {head}</figcaption>" in mh
        for kind in ("Grad-CAM", "Guided Grad-CAM", "Saliency and guided backpropagation"):
            assert f"alt='{kind} of mh, head {head}'" in mh
    # the PNGs visualize wrote, embedded as they are
    png = runs["mh"] / "visualize" / "gradcam_angle.png"
    assert embedded(mh, "Grad-CAM of mh, head angle") == png.read_bytes()
    assert "Grad-CAM of p1'" in section(page, 1)


def test_score_table_equals_scores_json(report: dict[str, str], runs) -> None:
    for index, key in ((1, "p1"), (2, "mh")):
        part = section(report["html"], index)
        scores = json.loads((runs[key] / "visualize" / "scores.json").read_text())
        assert scores["images"] == 32
        table = part[part.index("<table class='scores'>") :]
        table = table[: table.index("</table>")]
        rows = [
            [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td.*?</td>", r)]
            for r in re.findall(r"<tr>(.*?)</tr>", table)
        ]
        rows = [r for r in rows if r]
        assert len(rows) == len(scores["rows"])
        metrics = (
            "pointing", "pointing_1px", "energy", "topk_iou", "deletion", "insertion",
            "rank_corr_random",
        )  # fmt: skip
        for cells, row in zip(rows, scores["rows"], strict=True):
            numbers = cells[-len(metrics) - 2 : -2]
            assert numbers == ["–" if row[m] is None else f"{row[m]:.3f}" for m in metrics]
            rho = row["rank_corr_random"]
            assert cells[-2] == ("–" if rho is None else "passes" if rho < 0.5 else "fails")
            assert cells[-1] == ("worse than random" if row["worse_than_random"] else "")
            names = [row["head"]] if key == "mh" else []
            names += [METHOD_NAMES[row["method"]], row["layer"] or "–"]
            assert cells[: len(names)] == names
        reading = " ".join(score_reading(scores))
        assert escape(reading) in part
        assert "randomisation check" in reading and "of 32 test images" in reading
        assert "most faithful" in reading and "Spearman" in reading
        assert "Explanation methods of " + key in part  # the localisation-faithfulness figure


def test_markdown_has_the_best_localisation(report: dict[str, str], runs) -> None:
    lines = report["markdown"].splitlines()
    found = [line for line in lines if "looking inside, best localisation" in line]
    assert len(found) == 2
    best = max(
        json.loads((runs["p1"] / "visualize" / "scores.json").read_text())["rows"],
        key=lambda r: (r["method"] != "random", r["pointing"], r["energy"], r["topk_iou"]),
    )
    assert f"pointing game {best['pointing']:.3f}" in found[0]
    assert all(f"{head}: " in found[1] for head in HEADS)


def test_reading_names_a_failing_method_and_the_best_that_passes() -> None:
    rows = [
        {"method": "guided_backprop", "layer": None, "pointing": 0.9, "pointing_1px": 1.0,
         "energy": 0.1, "topk_iou": 0.3, "rank_corr_random": 0.8},
        {"method": "gradcam", "layer": "conv1", "pointing": 0.5, "pointing_1px": 0.7,
         "energy": 0.4, "topk_iou": 0.2, "rank_corr_random": 0.1},
    ]  # fmt: skip
    text = " ".join(score_reading({"images": 10, "rows": rows}))
    assert text.startswith("Guided backprop points at the line best")
    assert "90% of 10 test images" in text and "fails the randomisation check" in text
    assert "best that passes is Grad-CAM at conv1 (50% on the line" in text
    assert "1 of 2 rows pass; guided backprop fails" in text


def damaged(run: Path, tmp_path: Path, damage: str) -> Path:
    """A copy of ``run`` whose visualize folder is broken in the way ``damage`` names."""
    copy = tmp_path / damage
    shutil.copytree(run, copy)
    folder = copy / "visualize"
    if damage == "corrupt":
        (folder / "summary.json").write_text('{"layers": [')
    elif damage == "old":
        info = summary(copy)
        del info["heatmaps"]
        (folder / "summary.json").write_text(json.dumps(info))
    elif damage == "partial":
        (folder / "gradcam.png").unlink()
    elif damage == "png":
        (folder / "saliency.png").write_bytes(b"not a png")
    else:
        (folder / "scores.json").write_text('{"rows": 3}')
    return copy


@pytest.mark.parametrize(
    ("damage", "note"),
    [
        ("corrupt", "summary.json cannot be read"),
        ("old", "summary.json has no heatmaps (written by an older cnnlab?)"),
        ("partial", "gradcam.png is missing (an interrupted run?)"),
        ("png", "UnidentifiedImageError"),
        ("scores", "The localisation scores are left out: scores.json has no rows"),
    ],
)
def test_bad_visualize_folder_gives_a_note(
    report, runs, tmp_path: Path, damage: str, note: str
) -> None:
    run = damaged(runs["p1"], tmp_path, damage)
    part = inside_section(run, "p1")
    assert part.startswith("<h3>Looking inside</h3>") and escape(note) in part
    pictures = RunFolder(run).read_pictures() if damage in ("png", "scores") else None
    assert (inside_line(pictures and pictures.scores) is None) == (damage != "png")
    if damage == "scores":
        assert "alt='activations of conv1 in p1'" in part and "class='scores'" not in part
    else:
        assert "<img" not in part and needs_pictures(run) == (damage != "png")


def test_missing_and_broken_pictures_in_one_report(report, runs, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(runs["p1"], plain, ignore=shutil.ignore_patterns("visualize"))
    corrupt = damaged(runs["p1"], tmp_path, "corrupt")
    out, markdown = tmp_path / "r.html", tmp_path / "r.md"
    page = build_report([plain, corrupt], out, markdown).read_text()
    assert "Looking inside" not in section_html(page, 1)
    assert "summary.json cannot be read" in section_html(page, 2)
    assert "<img" not in section(page, 2) and "Test metrics" in section_html(page, 2)
    assert "looking inside" not in markdown.read_text()


def test_stale_pictures_are_noted_and_remade(report, runs, tmp_path: Path) -> None:
    assert prepare_runs([runs["p1"], runs["mh"]], pictures=True) == []  # nothing to make
    stale = tmp_path / "stale"
    shutil.copytree(runs["p1"], stale)
    (stale / "model.safetensors").touch()
    assert needs_pictures(stale) and not needs_pictures(runs["p1"])
    part = inside_section(stale, "stale")
    assert escape("older than the run's model.safetensors") in part
    assert "alt='activations of conv1 in stale'" in part


def test_middle_layers_fold_away(report, runs) -> None:
    inside = RunFolder(runs["p1"]).read_pictures()
    activations = inside.summary["activations"]
    entry = activations["conv1"]
    many = {**inside.summary, "activations": {f"l{i}": entry for i in range(4)}}
    page = render_inside(view(replace(inside, summary=many), "p1"))
    part = page[page.index("<h4>Activations</h4>") : page.index("<h4>Filter images</h4>")]
    assert part.count("<figure>") == 4 and part.count("<details><summary>") == 2
    assert part.index("alt='activations of l0") < part.index("<details>")
    assert "<summary>l1: 32 feature maps of 22×22</summary>" in part


def test_cli_report_inside(runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(runs["p1"], plain, ignore=shutil.ignore_patterns("visualize"))
    calls, prepared = [], []
    monkeypatch.setattr("cnnlab.report.build_report", lambda *a, **k: calls.append(a) or a[1])
    monkeypatch.setattr("cnnlab.pipeline.prepare_runs", lambda *a, **k: prepared.append(k))
    args = ["report", str(plain), str(runs["mh"]), "--out", "x.html"]
    assert main([*args, "--inside"]) == 0
    assert prepared[-1]["pictures"] is True and calls[-1][0] == [plain, runs["mh"]]
    assert main(args) == 0
    assert prepared[-1]["pictures"] is False
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "--inside" in capsys.readouterr().out
