"""The ``cnnlab data`` commands end to end: files, summaries, determinism and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.data import LinesConfig, generate_lines, load_lines
from cnnlab.data.npzio import array_digest

LINES = ("data", "lines", "--per-class", "4", "--seed", "1")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Capsys = pytest.CaptureFixture[str]


def run(capsys: Capsys, *args: str | Path) -> tuple[int, str, str]:
    """``cnnlab ARGS`` in this process: exit code, stdout, stderr (argparse exits count too)."""
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    """Exit 2, nothing on stdout, and one line on stderr that names what is wrong."""
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cnnlab: error: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


# --- data lines ------------------------------------------------------------------------------


def test_lines_writes_npz_and_card_and_prints_a_summary(tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "lines"
    code, stdout, err = run(capsys, *LINES, "--out", out)
    assert (code, err) == (0, "")
    assert stdout.startswith("Lines (generator 1.0): 384 images (")
    assert "96 classes, seed 1; generated in" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "lines.npz"]
    assert str(out / "lines.npz") in stdout and str(out / "card.json") in stdout

    # The files hold what the Python API generates for the same settings.
    expected = generate_lines(LinesConfig(per_class=4, seed=1)).arrays
    saved = load_lines(out).arrays
    for name in ("images", "label", "mask", "split", "shift_x", "shift_y"):
        assert np.array_equal(saved[name], expected[name]), name
    card = json.loads((out / "card.json").read_text())
    assert card["seed"] == 1 and card["classes"] == 96
    assert card["counts"]["total"] == 384
    assert card["arrays"]["images"] == json.loads(json.dumps(array_digest(expected["images"])))


def test_lines_png_writes_a_preview_and_an_image_folder_tree(
    tmp_path: Path, capsys: Capsys
) -> None:
    out = tmp_path / "lines"
    code, stdout, _ = run(capsys, *LINES, "--out", out, "--png")
    assert code == 0
    assert (out / "preview.png").read_bytes().startswith(PNG_MAGIC)
    assert "preview" in stdout and "png" in stdout
    pngs = sorted((out / "png").glob("*/*/*.png"))
    assert len(pngs) == 384
    assert {p.parent.parent.name for p in pngs} == {"train", "test"}
    assert {p.parent.name for p in pngs} == set(LinesConfig().class_names())
    assert not list(out.glob(".*")), "no staging or temporary files left behind"


def test_lines_same_seed_gives_identical_bytes(tmp_path: Path, capsys: Capsys) -> None:
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        args = ("data", "lines", "--per-class", "4", "--seed", seed, "--out", tmp_path / name)
        assert run(capsys, *args)[0] == 0

    def read(name: str, file: str) -> bytes:
        return (tmp_path / name / file).read_bytes()

    assert read("a", "lines.npz") == read("b", "lines.npz")
    assert read("a", "card.json") == read("b", "card.json")
    assert read("a", "lines.npz") != read("c", "lines.npz"), "another seed must give other data"


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (("--lengths", "40"), "length 40"),
        (("--colors", "red,nope"), "'nope'"),
        (("--angle-step", "0"), "angle_step"),
        (("--per-class", "1"), "per_class"),
        (("--max-shift", "-1"), "max_shift"),
        (("--test-fraction", "1.5"), "test_fraction"),
    ],
)
def test_lines_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: Capsys, option: tuple[str, str], fragment: str
) -> None:
    out = tmp_path / "lines"
    assert_one_line_error(*run(capsys, *LINES, "--out", out, *option), fragment)
    assert not out.exists()


@pytest.mark.parametrize("below", ["file/sub", "file"], ids=["under-a-file", "is-a-file"])
def test_lines_unwritable_out_is_one_line(tmp_path: Path, capsys: Capsys, below: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    assert_one_line_error(*run(capsys, *LINES, "--out", tmp_path / below), "--out")
    assert (tmp_path / "file").read_text() == "not a folder"


def test_lines_unparsable_option_is_one_line(tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "lines"
    assert_one_line_error(*run(capsys, *LINES, "--out", out, "--lengths", "abc"), "--lengths")


def test_cnnlab_runs_as_a_program(tmp_path: Path) -> None:
    out = tmp_path / "lines"
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", *LINES, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.startswith("Lines (generator 1.0): 384 images")
    assert (out / "lines.npz").is_file() and (out / "card.json").is_file()


# --- data mnist ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "counts"),
    [("study", "42000 train / 28000 test"), ("official", "60000 train / 10000 test")],
)
def test_mnist_prints_its_split(mnist_dir: Path, capsys: Capsys, split: str, counts: str) -> None:
    code, stdout, err = run(capsys, "data", "mnist", "--dir", mnist_dir, "--split", split)
    assert (code, err) == (0, "")
    assert stdout.startswith(f"mnist: {counts} images, 28x28x1, 10 classes")
    assert f"source: folder {mnist_dir}" in stdout


def test_mnist_missing_folder_is_one_line(tmp_path: Path, capsys: Capsys) -> None:
    missing = tmp_path / "nowhere"
    assert_one_line_error(*run(capsys, "data", "mnist", "--dir", missing), str(missing))


def test_mnist_out_exports_npz_card_and_preview(
    mnist_dir: Path, tmp_path: Path, capsys: Capsys
) -> None:
    out = tmp_path / "mnist"
    code, stdout, _ = run(capsys, "data", "mnist", "--dir", mnist_dir, "--out", out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "mnist.npz", "preview.png"]
    assert (out / "preview.png").read_bytes().startswith(PNG_MAGIC)
    with np.load(out / "mnist.npz", allow_pickle=False) as archive:
        assert archive["images"].shape == (70000, 28, 28, 1)
        assert archive["images"].dtype == np.uint8
        assert np.bincount(archive["label"]).sum() == 70000
        assert (archive["split"] == "test").sum() == 28000
    card = json.loads((out / "card.json").read_text())
    assert card["counts"] == {"train": 42000, "test": 28000}
    assert str(out / "mnist.npz") in stdout
