"""``cnnlab reproduce --quick`` on tiny slices: every step runs, the report holds every section,
and a second call redoes nothing. The reproduction is made on a local Ray (``--executor ray``)
when Ray is installed (CI installs it), and continued by the default executor."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.jobs import job_status
from cnnlab.reproduce import RUNS, STUDIES, TRANSFER_VARIANTS, reproduce

TINY = ("data.train_limit=192", "data.test_limit=96", "train.epochs=1")


@pytest.fixture(scope="module")
def reproduction(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("repro") / "reproduction"
    executor = "ray" if importlib.util.find_spec("ray") else "local"
    said: list[str] = []
    reproduce(
        out, quick=True, mnist_dir=mnist_dir, overrides=TINY, executor=executor, log=said.append
    )
    where = "Ray at a local Ray" if executor == "ray" else "2 worker processes"
    assert any(line.startswith(f"[....] {len(RUNS)} runs on {where}") for line in said), said
    progress = [line for line in said if line.startswith("[progress] ")]  # not a terminal:
    assert progress and all("\x1b" not in line for line in progress)  # plain lines
    assert any(
        re.search(r"epoch 1/1, test accuracy 0\.\d{4} \| reproduction ", p) for p in progress
    )
    return out


def test_every_step_leaves_its_output(reproduction: Path) -> None:
    assert (reproduction / "data" / "lines" / "lines.npz").is_file()
    assert (reproduction / "data" / "lines" / "preview.png").is_file()
    for preset in RUNS:
        run = reproduction / "runs" / preset
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "finished", preset
        assert (run / "metrics-test.json").is_file(), preset
        assert (run / "visualize" / "summary.json").is_file(), preset
        transfers = sorted(p.name for p in run.glob("metrics-transfer-*.json"))
        expected = [f"metrics-transfer-{v}.json" for v in TRANSFER_VARIANTS]
        assert transfers == (sorted(expected) if "lines" in preset else []), preset
        assert info["data_check"]["duplicates"]["test_in_train"] == 0, preset
    for variant in TRANSFER_VARIANTS:
        card = json.loads((reproduction / "data" / f"lines-{variant}" / "card.json").read_text())
        assert card["seed"] == 1 and card["counts"]["total"] == 96 * 50, variant
    for name in STUDIES:
        assert (reproduction / "studies" / name / "summary.csv").is_file(), name
    state = json.loads((reproduction / "reproduce.json").read_text())
    assert state["mode"] == "quick"
    assert {f"{s} {p}" for s in ("train", "evaluate", "visualize") for p in RUNS} <= set(
        state["steps"]
    )
    assert state["wall_seconds"] > 0


def test_status_reads_the_plan_the_reproduction_wrote(reproduction: Path) -> None:
    status = job_status(reproduction)
    assert [r.name for r in status.runs[: len(RUNS)]] == list(RUNS)
    assert {r.name.split("/")[0] for r in status.runs[len(RUNS) :]} == set(STUDIES)
    total = len(status.runs)
    assert (
        status.headline()
        == f"reproduction {reproduction}: {total}/{total} runs done, 0 training, 0 left"
    )


def test_report_holds_every_section(reproduction: Path) -> None:
    page = (reproduction / "report.html").read_text()
    assert "Quick mode" in page
    front = page[page.index("id='front'") : page.index("</section>", page.index("id='front'"))]
    for study_figure in ("0.9848", "0.9657", "0.9914", "0.9939", "0.9588"):
        assert study_figure in front
    links = re.findall(r"href='#run-(\d+)'", front)
    assert links and all(f"id='run-{i}'" in page for i in links)
    assert page.count("<section class='run'") == len(RUNS)
    assert page.count("Looking inside") >= len(RUNS)
    for name in STUDIES:
        assert name in page
    metrics = json.loads((reproduction / "runs" / "part1-mnist" / "metrics-test.json").read_text())
    assert f"{metrics['accuracy']:.4f}" in front
    assert "none equal to a training image" in front
    transfer = reproduction / "runs" / "part2-lines" / "metrics-transfer-jpeg.json"
    accuracy = json.loads(transfer.read_text())["accuracy"]
    table = front[front.index("drawn another way") :]
    columns = [table.index(f"<th>{v}</th>") for v in TRANSFER_VARIANTS]
    assert columns == sorted(columns), "the columns follow TRANSFER_VARIANTS"
    assert f"{accuracy:.4f}" in table


def test_second_call_redoes_nothing(reproduction: Path, mnist_dir: Path) -> None:
    model = reproduction / "runs" / "part1-mnist" / "model.safetensors"
    before = model.stat().st_mtime_ns
    said: list[str] = []
    reproduce(reproduction, quick=True, mnist_dir=mnist_dir, overrides=TINY, log=said.append)
    assert model.stat().st_mtime_ns == before
    assert not any(line.startswith("[....]") for line in said)


def test_outputs_of_an_older_cnnlab_are_made_again(reproduction: Path, mnist_dir: Path) -> None:
    """Steps recorded as done whose output an older cnnlab made (an evaluation without its
    error analysis, scores without the scoreboard) run again, and only they."""
    lines, mnist = reproduction / "runs" / "part1-lines", reproduction / "runs" / "part1-mnist"
    shutil.rmtree(mnist / "errors-test")
    scores_path = lines / "visualize" / "scores.json"
    scores = json.loads(scores_path.read_text())
    del scores["agreement"]
    scores_path.write_text(json.dumps(scores))
    model = mnist / "model.safetensors"
    before = model.stat().st_mtime_ns
    said: list[str] = []
    reproduce(reproduction, quick=True, mnist_dir=mnist_dir, overrides=TINY, log=said.append)
    started = [k for k, line in enumerate(said) if line.startswith("[....]")]
    assert len(started) == 1 and said[started[0]].startswith("[....] 2 runs"), said
    after = [line.split(" (")[0] for line in said[started[0] :] if line.startswith("[done]")]
    redone = {line for line in after if not line.startswith("[done] study")}  # already done
    assert redone == {"[done] evaluate part1-mnist", "[done] visualize part1-lines"}, said
    assert (mnist / "errors-test" / "errors.json").is_file()
    assert "agreement" in json.loads(scores_path.read_text())
    assert model.stat().st_mtime_ns == before  # nothing trained again


def test_mode_mismatch_is_refused(reproduction: Path, mnist_dir: Path) -> None:
    with pytest.raises(CnnlabError, match="quick reproduction"):
        reproduce(reproduction, quick=False, mnist_dir=mnist_dir, log=lambda _: None)


def test_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "something.txt").write_text("mine")
    with pytest.raises(CnnlabError, match="not a reproduction folder"):
        reproduce(tmp_path, quick=True, log=lambda _: None)


def test_jobs_below_one_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="--jobs must be at least 1, got 0"):
        reproduce(tmp_path / "r", quick=True, jobs=0, log=lambda _: None)
    assert not (tmp_path / "r").exists()
