"""A CSV manifest with several label columns: per-image factors, combined classes, one head each."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.dataset import decode_factors
from cnnlab.errors import CnnlabError

SHAPES = ("bar", "dot", "post")
COLOURS = {"blue": 2, "red": 0}


def _draw(shape: str, colour: str, rng: np.random.Generator) -> np.ndarray:
    """A 16x16 RGB image: a horizontal bar, a square dot or a vertical post, in one channel."""
    pixels = rng.integers(0, 30, (16, 16, 3), dtype=np.uint8)
    y, x = rng.integers(3, 10, size=2)
    box = {"bar": (slice(y, y + 2), slice(2, 14)), "dot": (slice(y, y + 4), slice(x, x + 4))}
    box["post"] = (slice(2, 14), slice(x, x + 2))
    pixels[(*box[shape], COLOURS[colour])] = 250
    return pixels


def _manifest(
    root: Path, per_class: int = 8, skip: tuple[str, str] | None = None, header=None
) -> Path:
    """root/images/*.png and root/list.csv with the columns path, shape, colour."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = [header or ("path", "shape", "colour")]
    for shape in SHAPES:
        for colour in COLOURS:
            if (shape, colour) == skip:
                continue
            for k in range(per_class):
                name = f"images/{shape}-{colour}-{k}.png"
                Image.fromarray(_draw(shape, colour, rng)).save(root / name)
                rows.append((name, shape, colour))
    path = root / "list.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_label_columns_are_factors_and_their_combination_is_the_class(tmp_path: Path) -> None:
    data = load_dataset(_manifest(tmp_path), seed=3, test_fraction=0.25)
    assert data.factor_levels == {"shape": SHAPES, "colour": ("blue", "red")}
    assert data.class_names == (
        "bar_blue", "bar_red", "dot_blue", "dot_red", "post_blue", "post_red"
    )  # fmt: skip
    assert (len(data.train), len(data.test)) == (36, 12)
    for split in (data.train, data.test):
        decoded = decode_factors(split.labels.numpy(), data.factor_levels)
        for name in data.factor_levels:
            assert np.array_equal(split.factors[name].numpy(), decoded[name])
        red = split.factors["colour"].numpy() == 1  # red lives in channel 0, blue in channel 2
        brightest = split.images.amax(dim=(2, 3)).argmax(dim=1).numpy()
        assert np.array_equal(brightest, np.where(red, 0, 2))


@pytest.mark.parametrize(
    ("header", "skip", "message"),
    [
        (None, ("dot", "red"), "dot_red have no training images (every combination"),
        (("path", "shape", "a.b"), None, "bad header"),
        (("path", "shape", "shape"), None, "bad header"),
        (("path", "split", "shape"), None, "bad header"),
    ],
)
def test_refusals(tmp_path: Path, header, skip, message: str) -> None:
    if header == ("path", "split", "shape"):  # no label column left beside path and split
        path = tmp_path / "list.csv"
        path.write_text("path,split\nimages/x.png,train\n")
    else:
        path = _manifest(tmp_path, per_class=2, skip=skip, header=header)
    with pytest.raises(CnnlabError, match=r"list\.csv") as err:
        load_dataset(path)
    assert message in str(err.value)


def test_multihead_trains_one_head_per_column(tmp_path: Path, capsys) -> None:
    manifest = _manifest(tmp_path / "data", per_class=12)
    out = tmp_path / "run"
    sets = [f"data.dataset={manifest}", "train.epochs=4", "train.batch_size=16", "seed=1"]
    code, _, err = run(
        capsys, "train", "multihead-lines", "--out", out, "--quiet",
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "evaluate", out)
    assert code == 0, err
    metrics = json.loads((out / "metrics-test.json").read_text())
    heads = metrics["heads"]
    assert set(heads) == {"shape", "colour"}
    assert heads["shape"]["levels"] == list(SHAPES) and heads["colour"]["levels"] == ["blue", "red"]
    assert heads["colour"]["accuracy"] > 0.9  # colour is one channel: learnt at once
    stored = np.load(out / "predictions-test.npz")
    truth = decode_factors(stored["label"], {"shape": SHAPES, "colour": ("blue", "red")})
    joint = (stored["predicted_shape"] == truth["shape"]) & (
        stored["predicted_colour"] == truth["colour"]
    )
    assert metrics["joint_accuracy"] == pytest.approx(joint.mean())
    image = tmp_path / "one.png"
    Image.fromarray(_draw("post", "red", np.random.default_rng(5))).save(image)
    code, table, err = run(capsys, "predict", out, image)
    assert code == 0, err
    assert "shape" in table.splitlines()[0] and "colour" in table.splitlines()[0]
