"""The ``cnnlab data`` commands end to end: files, summaries, determinism and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import Capsys, assert_one_line_error, run

from cnnlab.data import LinesConfig, generate_lines, lines_config, load_lines, save_lines
from cnnlab.data.npzio import array_digest

CENTRED = ("data", "lines", "--variant", "centred", "--per-class", "100", "--seed", "1")

LINES = ("data", "lines", "--per-class", "4", "--seed", "1")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- data lines ------------------------------------------------------------------------------


def test_lines_writes_npz_and_card_and_prints_a_summary(tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "lines"
    code, stdout, err = run(capsys, *LINES, "--out", out)
    assert (code, err) == (0, "")
    assert stdout.startswith("Lines (generator 2.0, anywhere, antialias): 384 images (")
    assert "96 classes, seed 1; generated in" in stdout
    assert "230 train, 154 test; 0 test images equal a training image" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "lines.npz"]
    assert str(out / "lines.npz") in stdout and str(out / "card.json") in stdout

    # The files hold what the Python API generates for the same settings.
    expected = generate_lines(LinesConfig(per_class=4, seed=1)).arrays
    saved = load_lines(out).arrays
    for name in ("images", "label", "mask", "split", "shift_x", "shift_y"):
        assert np.array_equal(saved[name], expected[name]), name
    assert saved["shift_x"].dtype == saved["shift_y"].dtype == np.float32
    assert not np.all(saved["shift_x"] == np.round(saved["shift_x"])), "sub-pixel centres"
    card = json.loads((out / "card.json").read_text())
    assert card["seed"] == 1 and card["classes"] == 96
    assert card["generator_version"] == "2.0"
    assert card["config"]["position"] == "anywhere" and card["config"]["render"] == "antialias"
    assert card["distinct"] == {"train": 230, "test": 154, "all": 384, "test_in_train": 0}
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


def card_of(out: Path) -> dict:
    return json.loads((out / "card.json").read_text())


def printed_copies(stdout: str) -> int:
    """The count in "...; N test images equal a training image" of ``data lines``."""
    found = re.search(r"; ([\d,]+) test images equal a training image", stdout)
    assert found, stdout
    return int(found.group(1).replace(",", ""))


def test_centred_variant_prints_its_test_images_that_equal_training_images(
    tmp_path: Path, capsys: Capsys
) -> None:
    out = tmp_path / "centred"
    code, stdout, err = run(capsys, *CENTRED, "--out", out)
    assert (code, err) == (0, "")
    assert stdout.startswith("Lines (generator 2.0, centred, sharp): 9600 images (5760 train")
    distinct = card_of(out)["distinct"]
    copies = printed_copies(stdout)
    assert copies == distinct["test_in_train"] > 3840 // 2  # 49 pictures per class, reused
    assert f"{distinct['train']:,d} train, {distinct['test']:,d} test;" in stdout
    shifts = np.stack([load_lines(out).arrays[k] for k in ("shift_x", "shift_y")])
    assert shifts.dtype == np.float32
    assert np.array_equal(shifts, np.round(shifts)) and np.abs(shifts).max() == 3


@pytest.mark.parametrize(
    ("options", "header"),
    [
        (("--variant", "centred"), "centred, sharp"),
        (("--position", "centred"), "centred, antialias"),
        (("--variant", "centred", "--render", "antialias"), "centred, antialias"),
    ],
)
def test_centred_without_shifts_copies_every_test_image(
    tmp_path: Path, capsys: Capsys, options: tuple[str, ...], header: str
) -> None:
    """One picture per class: all 154 test images equal a training image."""
    out = tmp_path / "lines"
    code, stdout, _ = run(capsys, *LINES, *options, "--max-shift", "0", "--out", out)
    assert code == 0
    assert stdout.startswith(f"Lines (generator 2.0, {header}): 384 images")
    assert "distinct pictures: 96 train, 96 test; 154 test images" in stdout
    assert card_of(out)["distinct"]["test_in_train"] == card_of(out)["counts"]["test"] == 154


def test_default_variant_prints_no_test_image_equal_to_a_training_image(
    tmp_path: Path, capsys: Capsys
) -> None:
    out = tmp_path / "default"
    args = ("data", "lines", "--per-class", "100", "--seed", "1", "--variant", "default")
    code, stdout, _ = run(capsys, *args, "--out", out)
    assert code == 0
    assert stdout.startswith("Lines (generator 2.0, anywhere, antialias): 9600 images")
    assert printed_copies(stdout) == card_of(out)["distinct"]["test_in_train"] == 0


def test_max_shift_only_moves_centred_lines(tmp_path: Path, capsys: Capsys) -> None:
    def images(name: str, *options: str) -> np.ndarray:
        assert run(capsys, *LINES, *options, "--out", tmp_path / name)[0] == 0
        return load_lines(tmp_path / name).arrays["images"]

    assert np.array_equal(images("anywhere"), images("anywhere-1", "--max-shift", "1"))
    assert not np.array_equal(
        images("centred-3", "--position", "centred"),
        images("centred-1", "--position", "centred", "--max-shift", "1"),
    )
    assert np.abs(load_lines(tmp_path / "centred-1").arrays["shift_x"]).max() == 1


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (("--lengths", "40"), "length 40"),
        (("--colors", "red,nope"), "'nope'"),
        (("--angle-step", "0"), "angle_step"),
        (("--per-class", "1"), "per_class"),
        (("--max-shift", "-1"), "max_shift"),
        (("--test-fraction", "1.5"), "test_fraction"),
        (("--variant", "nope"), "variant: expected one of default, centred, sharp, jpeg, noisy"),
        (("--render", "blur"), "--render"),
        (("--position", "left"), "--position"),
        (("--jpeg-quality", "101"), "jpeg_quality"),
        (("--jpeg-quality", "-1"), "jpeg_quality"),
        (("--noise", "-1"), "noise"),
        (("--variant", "centred", "--max-shift", "9"), "max_shift"),
        (("--antialias",), "--antialias"),  # generator 1.0's flag: now --render antialias
    ],
)
def test_lines_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: Capsys, option: tuple[str, ...], fragment: str
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
    assert done.stdout.startswith("Lines (generator 2.0, anywhere, antialias): 384 images")
    assert (out / "lines.npz").is_file() and (out / "card.json").is_file()


# --- data check ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two saved Lines datasets: ``centred`` (copies across splits) and ``default`` (none)."""
    folder = tmp_path_factory.mktemp("saved")
    for variant in ("centred", "default"):
        config = lines_config(variant, per_class=100, seed=1)
        save_lines(generate_lines(config), folder / variant)
    return folder


def test_check_reports_the_overlap_of_a_centred_dataset(saved: Path, capsys: Capsys) -> None:
    copies = card_of(saved / "centred")["distinct"]["test_in_train"]
    assert copies > 0
    code, stdout, err = run(capsys, "data", "check", saved / "centred")
    assert (code, err) == (0, "")
    assert stdout.startswith(f"lines ({saved / 'centred'})\ndata check: train 5,760 images")
    assert f"  {copies:,d} test images equal a training image" in stdout
    assert f"warning: {copies:,d} of 3,840 test images" in stdout

    code, strict, err = run(capsys, "data", "check", saved / "centred", "--strict")
    assert (code, err) == (1, "")
    assert f"warning: {copies:,d} of 3,840 test images" in strict


def test_check_strict_passes_a_default_dataset(saved: Path, capsys: Capsys) -> None:
    npz = saved / "default" / "lines.npz"
    code, stdout, err = run(capsys, "data", "check", npz, "--strict")
    assert (code, err) == (0, "")
    assert stdout.startswith(f"lines ({npz})\n")
    assert "  0 test images equal a training image" in stdout
    assert "warning" not in stdout


def test_check_json_writes_the_counts(saved: Path, tmp_path: Path, capsys: Capsys) -> None:
    path = tmp_path / "check.json"
    code, stdout, _ = run(capsys, "data", "check", saved / "centred", "--json", path)
    assert code == 0
    assert f"written: {path}" in stdout
    result = json.loads(path.read_text())
    distinct = card_of(saved / "centred")["distinct"]
    assert result["dataset"] == str(saved / "centred")
    assert result["images"] == {"train": 5760, "test": 3840}
    assert result["distinct"] == {k: distinct[k] for k in ("train", "test", "all")}
    assert result["duplicates"]["test_in_train"] == distinct["test_in_train"]
    assert result["duplicates"]["within_train"] == 5760 - distinct["train"]
    assert result["conflicting_labels"] == {"groups": 0, "images": 0}
    assert result["class_counts"] == {"train": [60] * 96, "test": [40] * 96}
    assert result["overlap"] is True


def test_check_missing_path_is_one_line(tmp_path: Path, capsys: Capsys) -> None:
    missing = tmp_path / "nowhere"
    assert_one_line_error(*run(capsys, "data", "check", missing), str(missing))
    assert_one_line_error(*run(capsys, "data", "check", missing / "lines.npz"), str(missing))


def test_check_mnist_finds_no_test_image_in_training(mnist_dir: Path, capsys: Capsys) -> None:
    code, stdout, err = run(capsys, "data", "check", "mnist", "--mnist-dir", mnist_dir, "--strict")
    assert (code, err) == (0, "")
    assert stdout.startswith("mnist (mnist)\ndata check: train 42,000 images (42,000 distinct)")
    assert "  0 test images equal a training image" in stdout
    assert "warning" not in stdout


# --- data mnist ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "counts"),
    [("study", "42000 train / 28000 test"), ("official", "60000 train / 10000 test")],
)
def test_mnist_prints_its_split(mnist_dir: Path, capsys: Capsys, split: str, counts: str) -> None:
    code, stdout, err = run(
        capsys, "data", "mnist", "--mnist-dir", mnist_dir, "--mnist-split", split
    )
    assert (code, err) == (0, "")
    assert stdout.startswith(f"mnist: {counts} images, 28x28x1, 10 classes")
    assert f"source: folder {mnist_dir}" in stdout


def test_mnist_missing_folder_is_one_line(tmp_path: Path, capsys: Capsys) -> None:
    missing = tmp_path / "nowhere"
    assert_one_line_error(*run(capsys, "data", "mnist", "--mnist-dir", missing), str(missing))


def test_mnist_out_exports_npz_card_and_preview(
    mnist_dir: Path, tmp_path: Path, capsys: Capsys
) -> None:
    out = tmp_path / "mnist"
    code, stdout, _ = run(capsys, "data", "mnist", "--mnist-dir", mnist_dir, "--out", out)
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
