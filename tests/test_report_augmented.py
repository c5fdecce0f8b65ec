"""The report shows what the net saw: a run trained with ``train.augment`` gets its grid of
augmented training images and the augmentation in effect; a run without the grid gets nothing."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.preview import captioned_grid
from cnnlab.pipeline import prepare_runs
from cnnlab.report import build_report
from cnnlab.runfolder import RunFolder
from cnnlab.training import train

TINY = (  # 6 classes (one length, width and colour; 30-degree steps), 4 images each
    "data.dataset=lines",
    "data.lines={per_class: 4, test_fraction: 0.25, lengths: [15], widths: [1], colors: [red], "
    "angle_step: 30}",
    "train.epochs=1",
    "train.batch_size=32",
    "train.augment=[hflip, {noise: {std: 0.05}}]",
)
HEADING = "<h3>What the net saw</h3>"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("augmented-runs")
    augmented = base / "augmented"
    train("part1-lines", out=augmented, overrides=TINY, quiet=True)
    grid = RunFolder(augmented).augmented
    if not grid.is_file():  # training that does not draw the grid yet: draw one here
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
        captions = ["len15_wid1_ang150_red", "a 70% + b 30%", "c", "d"]
        captioned_grid(images, captions, grid, title="hflip, noise(std=0.05)")
    prepare_runs([augmented])
    # the same run without its grid, as an older run (or one without augmentation) has none
    plain = base / "plain"
    shutil.copytree(augmented, plain, ignore=shutil.ignore_patterns(grid.name))
    assert not RunFolder(plain).augmented.exists()
    runs = [augmented, plain]
    out = base / "report.html"
    markdown = base / "summary.md"
    build_report(runs, out, markdown)
    return {"html": out.read_text(), "markdown": markdown.read_text(), "grid": grid}


def section(page: str, index: int) -> str:
    match = re.search(rf"<section class='run' id='run-{index}'>.*?</section>", page, re.S)
    assert match, index
    return match.group(0)


def test_the_augmented_run_shows_its_grid_and_augmentation(report) -> None:
    part = section(report["html"], 1)
    assert part.count(HEADING) == 1
    block = part[part.index(HEADING) : part.index("<h3>Learning curves</h3>")]
    png = base64.b64encode(Path(report["grid"]).read_bytes()).decode("ascii")
    assert f"src='data:image/png;base64,{png}'" in block
    assert "<code>train.augment: hflip, noise(std=0.05)</code>" in block
    assert "Labels follow the operations that change them" in block
    assert "left out" in block


def test_a_run_without_the_grid_shows_nothing(report) -> None:
    part = section(report["html"], 2)
    assert HEADING not in part and "train.augment:" not in part
    assert "<h3>Learning curves</h3>" in part


def test_markdown_names_the_augmentation(report) -> None:
    markdown = str(report["markdown"])
    part = markdown[markdown.index("## augmented") : markdown.index("## plain")]
    assert "- trained with augmentation: train.augment hflip, noise(std=0.05)" in part
