"""No silent minutes (issue 30, 5): ``visualize_run`` says as each step ends how long it took,
and ``report --inside``'s preparation says which run of how many, and the time left."""

from __future__ import annotations

from pathlib import Path

import cnnlab
from cnnlab.pipeline import prepare_runs
from cnnlab.visualize import FilterSettings, visualize_run

SMALL = ("data.train_limit=300", "data.test_limit=60", "model.filters=4", "model.dense_units=16")


def _run(folder: Path, mnist_dir: Path) -> Path:
    overrides = (*SMALL, f"data.mnist_dir={mnist_dir}", "train.epochs=1")
    cnnlab.train("part1-mnist", out=folder, overrides=overrides, quiet=True)
    return folder


def test_each_step_of_visualize_says_its_seconds(tmp_path: Path, mnist_dir: Path) -> None:
    run = _run(tmp_path / "run", mnist_dir)
    lines: list[str] = []
    visualize_run(
        run, tmp_path / "pictures", score=True, score_images=8,
        filter_settings=FilterSettings(steps=4), log=lines.append,
    )  # fmt: skip
    names = [line.split(":")[0].strip() for line in lines]
    assert names == ["activations", "filter images", "heatmaps", "scoreboard on 8 images"]
    assert all(line.endswith(" s") for line in lines)


def test_preparing_runs_counts_them_and_says_what_is_left(tmp_path: Path, mnist_dir: Path) -> None:
    runs = [_run(tmp_path / name, mnist_dir) for name in ("a", "b")]
    lines: list[str] = []
    options = {"score_images": 8, "filter_settings": FilterSettings(steps=4)}
    prepare_runs(runs, pictures=True, visualize_options=options, log=lines.append)
    assert lines[0].startswith("[1/2] ") and any(line.startswith("[2/2] ") for line in lines)
    assert sum("s left for the other runs" in line for line in lines) == 1
