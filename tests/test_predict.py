"""``cnnlab predict``: images, folders or arrays in, one CSV row per image out."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import LinesConfig, generate_lines
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict
from cnnlab.training import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "run"
    train(
        "part1-lines",
        out=out,
        overrides=("data.lines={per_class: 12, test_fraction: 0.25}", "train.epochs=2"),
        quiet=True,
    )
    return out


@pytest.fixture(scope="module")
def lines_images() -> np.ndarray:
    return generate_lines(LinesConfig(per_class=2, test_fraction=0.5, seed=5)).arrays["images"]


def test_npz_gives_one_row_per_image(
    run_dir: Path, lines_images: np.ndarray, tmp_path: Path
) -> None:
    np.savez(tmp_path / "x.npz", images=lines_images[:10])
    rows = predict(run_dir, tmp_path / "x.npz")
    assert len(rows) == 10
    assert all(0 <= r.index < 96 and 0.0 < r.probability <= 1.0 for r in rows)
    assert rows[0].name.startswith("len") and rows[3].source.endswith("x.npz[3]")


def test_cli_writes_csv(run_dir: Path, lines_images: np.ndarray, tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "x.npz", images=lines_images[:4])
    assert (
        main(["predict", str(run_dir), str(tmp_path / "x.npz"), "--out", str(tmp_path / "p.csv")])
        == 0
    )
    table = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert [set(r) for r in table[:1]] == [{"input", "class_index", "class_name", "probability"}]
    assert len(table) == 4
    assert "4 predictions written" in capsys.readouterr().out
    assert main(["predict", str(run_dir), str(tmp_path / "x.npz")]) == 0
    assert capsys.readouterr().out.count("\n") == 5


def test_image_files_and_folders(
    run_dir: Path, lines_images: np.ndarray, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(lines_images[i]).save(folder / f"{i}.png")
    Image.fromarray(lines_images[3]).resize((56, 56)).save(folder / "big.png")  # resized
    Image.fromarray(lines_images[4][..., 0]).save(folder / "grey.png")  # grey -> RGB
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    rows = predict(run_dir, folder)
    assert len(rows) == 5
    assert "resized 1 image(s)" in capsys.readouterr().err
    single = predict(run_dir, folder / "0.png")
    assert single[0].index == rows[0].index


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "no such file or folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no image files"),
        (lambda d: (d / "fake.png").write_text("hello") and d / "fake.png", "not a readable image"),
        (
            lambda d: (
                np.savez(d / "two.npz", images=np.zeros((2, 28, 28, 2), np.uint8)) or d / "two.npz"
            ),
            r"expects \(28, 28, 3\)",
        ),
        (
            lambda d: (
                np.savez(d / "small.npz", images=np.zeros((2, 14, 14, 3), np.uint8))
                or d / "small.npz"
            ),
            r"has shape \(14, 14, 3\) per image",
        ),
        (lambda d: np.savez(d / "other.npz", x=np.zeros(3)) or d / "other.npz", "missing array"),
    ],
)
def test_bad_input_is_refused_clearly(run_dir: Path, tmp_path: Path, capsys, make, message) -> None:
    source = make(tmp_path)
    with pytest.raises(CnnlabError, match=message):
        predict(run_dir, source)
    assert main(["predict", str(run_dir), str(source)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: error:")


def test_not_a_run(tmp_path: Path, lines_images: np.ndarray) -> None:
    np.savez(tmp_path / "x.npz", images=lines_images[:2])
    with pytest.raises(CnnlabError, match="no such run folder"):
        predict(tmp_path / "nope", tmp_path / "x.npz")
