"""Your own images as datasets: class folders, train/test folders, CSV manifests, images .npz."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run
from PIL import Image

from cnnlab.data import LinesConfig, generate_lines, load_dataset, save_lines
from cnnlab.data import images as images_module
from cnnlab.errors import CnnlabError

CLASSES = ("cat", "dog", "owl")


def _png(path: Path, value: int, size: tuple[int, int] = (10, 12), mode: str = "RGB") -> Path:
    """An image whose every pixel is ``value`` (so a test can tell which file it came from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.full((size[1], size[0], bands), value, dtype=np.uint8).squeeze(
        -1 if bands == 1 else ()
    )
    Image.fromarray(pixels, mode).save(path)
    return path


def _flat(root: Path, per_class: int = 5, **kw) -> Path:
    """ROOT/<class>/k.png; class c, file k has pixel value 10 * c + k (so labels are checkable)."""
    for c, name in enumerate(CLASSES):
        for k in range(per_class):
            _png(root / name / f"{k}.png", 10 * c + k, **kw)
    return root


def _labels_match_pixels(split) -> bool:
    return bool(torch.equal(split.images[:, 0, 0, 0].long() // 10, split.labels))


def test_flat_folder_loads_and_splits_stratified_by_seed(tmp_path: Path) -> None:
    root = _flat(tmp_path / "pets", per_class=5)
    (root / "notes.txt").write_text("a loose file: ignored")
    (root / "cat" / ".hidden.png").write_bytes(b"ignored: hidden")
    data = load_dataset(root, seed=3)
    assert data.class_names == CLASSES and data.name == "pets"
    assert data.train.images.shape == (12, 3, 12, 10) and data.train.images.dtype == torch.uint8
    assert len(data.test) == 3
    assert torch.bincount(data.test.labels).tolist() == [1, 1, 1]  # 20 % of each class
    assert _labels_match_pixels(data.train) and _labels_match_pixels(data.test)
    again = load_dataset(root, seed=3)
    assert torch.equal(again.test.images, data.test.images)
    others = [load_dataset(root, seed=s).test.images for s in range(4, 9)]
    assert any(not torch.equal(o, data.test.images) for o in others)
    half = load_dataset(root, seed=3, test_fraction=0.4)
    assert torch.bincount(half.test.labels).tolist() == [2, 2, 2]
    p = data.provenance
    assert p["format"] == "image folder" and p["files"] == 15 and "seed 3" in p["split"]


def test_train_test_folders_are_used_as_given(tmp_path: Path) -> None:
    root = tmp_path / "given"
    for c, name in enumerate(CLASSES):
        for k in range(3):
            _png(root / "train" / name / f"{k}.png", 10 * c + k)
        _png(root / "test" / name / "t.png", 10 * c + 9)
    _png(root / "val" / "cat" / "v.png", 1)
    data = load_dataset(root, seed=0)
    assert (len(data.train), len(data.test)) == (9, 3)
    assert data.test.images[:, 0, 0, 0].tolist() == [9, 19, 29]
    assert _labels_match_pixels(data.train)
    assert data.provenance["split"] == "as given"
    assert data.val is not None and data.val.images[:, 0, 0, 0].tolist() == [1]  # cat only


def test_numeric_class_names_sort_as_numbers(tmp_path: Path) -> None:
    for name in ("10", "2", "1"):
        for k in range(5):
            _png(tmp_path / "n" / name / f"{k}.png", k)
    assert load_dataset(tmp_path / "n").class_names == ("1", "2", "10")


def test_resize_and_channels(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for c, name in enumerate(CLASSES):
        for k in range(5):
            size = (16, 16) if k % 2 else (8, 12)
            mode = "L" if c == 0 else "RGB"
            _png(root / name / f"{k}.png", 10 * c + k, size=size, mode=mode)
    with pytest.raises(CnnlabError, match=r"images differ in size .*data\.image_size") as err:
        load_dataset(root)
    assert "\n" not in str(err.value)
    data = load_dataset(root, image_size=6)
    assert data.train.images.shape[1:] == (3, 6, 6)  # a colour picture: RGB for all
    assert _labels_match_pixels(data.train)  # flat pictures keep their value when resized
    grey = data.train.images[data.train.labels == 0]
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert data.provenance["resized_images"] == 15 and data.provenance["converted_images"] == 5
    assert "BILINEAR" in data.provenance["resize"]
    one = load_dataset(root, image_size=6, channels=1)
    assert one.train.images.shape[1:] == (1, 6, 6)
    # RGB -> grey is Pillow's luma: a pure red picture gives round(255 * 299/1000) = 76
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    assert images_module.conform(red, None, 1, "red").pixels.max() == 76


def test_alpha_and_palette(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 0))  # fully transparent: black
    assert images_module.conform(rgba, None, 3, "a").pixels.max() == 0
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    assert images_module.conform(palette, None, 3, "p").pixels[0, 0].tolist() == [30, 60, 90]


def test_csv_manifest(tmp_path: Path) -> None:
    root = _flat(tmp_path / "imgs", per_class=3)
    rows = [("path", "label", "split")]
    rows += [
        (f"imgs/{name}/{k}.png", name, "test" if k == 0 else "train")
        for name in CLASSES
        for k in range(3)
    ]
    manifest = tmp_path / "list.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    data = load_dataset(manifest)
    assert data.class_names == CLASSES and (len(data.train), len(data.test)) == (6, 3)
    assert data.test.images[:, 0, 0, 0].tolist() == [0, 10, 20]
    assert data.provenance["format"] == "csv manifest"
    plain = tmp_path / "plain.csv"
    plain.write_text("label,path\n" + "".join(f"{r[1]},{r[0]}\n" for r in rows[1:]))
    split = load_dataset(plain, seed=1, test_fraction=0.34)
    assert (len(split.train), len(split.test)) == (6, 3) and _labels_match_pixels(split.test)
    assert root.is_dir()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\nimgs/cat/0.png,cat\n", "bad header"),
        ("path,label,label\nimgs/cat/0.png,cat,cat\n", "bad header"),
        ("path,label\nimgs/cat/0.png,cat,x\n", "line 2 has 3 fields"),
        ("path,label\nimgs/cat/nope.png,cat\n", "line 2: "),
        ("path,label\nimgs/cat/0.png,\n", "line 2 has an empty label"),
        ("path,label\n", "lists no images"),
        ("", "empty file"),
        (
            "path,label,split\nimgs/cat/0.png,cat,train\nimgs/dog/0.png,dog,test\n",
            "dog have no training",
        ),
        ("path,label,split\nimgs/cat/0.png,cat,valid\n", "split 'valid'"),
    ],
)
def test_csv_refusals(tmp_path: Path, text: str, message: str) -> None:
    _flat(tmp_path / "imgs", per_class=1)
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(CnnlabError, match=r"m\.csv") as err:
        load_dataset(manifest)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_images_npz_layouts(tmp_path: Path, layout: str) -> None:
    n, labels = 12, np.arange(12) % 3
    base = np.broadcast_to((labels * 10).astype(np.uint8)[:, None, None], (n, 6, 7)).copy()
    images = {"nhw": base, "nhwc": base[..., None].repeat(3, -1), "nchw": base[:, None]}[layout]
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(CLASSES))
    data = load_dataset(path, seed=0, test_fraction=0.25)
    c = 3 if layout == "nhwc" else 1
    assert data.train.images.shape == (9, c, 6, 7) and data.class_names == CLASSES
    assert _labels_match_pixels(data.train) and _labels_match_pixels(data.test)
    assert data.provenance["format"] == "images npz"
    resized = load_dataset(path, image_size=4, channels=3)
    assert resized.test.images.shape[1:] == (3, 4, 4)


def test_images_npz_split_and_refusals(tmp_path: Path) -> None:
    images = np.zeros((4, 5, 5), np.uint8)
    path = tmp_path / "s.npz"
    np.savez(
        path,
        images=images,
        labels=np.array([0, 1, 0, 1]),
        split=np.array(["train", "train", "test", "test"]),
    )
    data = load_dataset(path)
    assert (len(data.train), len(data.test)) == (2, 2) and data.class_names == ("0", "1")
    np.savez(path, images=images.astype(np.float32), labels=np.array([0, 1, 0, 1]))
    with pytest.raises(CnnlabError, match=r"s\.npz: array 'images' is float32; expected uint8"):
        load_dataset(path)
    np.savez(path, images=images, labels=np.array([0, 1, 0, 1]), class_names=np.array(["a"]))
    with pytest.raises(CnnlabError, match="only 1 class_names"):
        load_dataset(path)


def test_lines_npz_still_loads(tmp_path: Path) -> None:
    save_lines(generate_lines(LinesConfig(per_class=2, test_fraction=0.5, seed=1)), tmp_path)
    data = load_dataset(tmp_path / "lines.npz")
    assert data.num_classes == 96 and data.factor_names
    with pytest.raises(CnnlabError, match=r"data\.image_size=8, but its images are 28x28"):
        load_dataset(tmp_path / "lines.npz", image_size=8)


def test_folder_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(root: Path, *fragments: str, **kw) -> None:
        with pytest.raises(CnnlabError) as err:
            load_dataset(root, **kw)
        assert "\n" not in str(err.value)
        for fragment in fragments:
            assert fragment in str(err.value), str(err.value)

    bad = _flat(tmp_path / "bad")
    (bad / "dog" / "9.png").write_bytes(b"not a picture")
    refused(bad, str(bad / "dog" / "9.png"), "not a readable image")
    truncated = _flat(tmp_path / "cut")
    whole = (truncated / "owl" / "0.png").read_bytes()
    (truncated / "owl" / "0.png").write_bytes(whole[: len(whole) // 2])
    refused(truncated, str(truncated / "owl" / "0.png"))
    empty_class = _flat(tmp_path / "emptyclass")
    (empty_class / "yak").mkdir()
    (empty_class / "yak" / "readme.txt").write_text("no images")
    refused(empty_class, str(empty_class / "yak"), "class folder with no images")
    differ = tmp_path / "differ"
    _flat(differ / "train")
    _flat(differ / "test")
    (differ / "test" / "owl").rename(differ / "test" / "emu")
    refused(differ, "different classes", "only in train/: owl", "only in test/: emu")
    half = tmp_path / "half"
    _flat(half / "train")
    refused(half, "no test/ folder")
    tiny = _flat(tmp_path / "tiny", per_class=1)
    refused(tiny, "test split would hold no images", test_fraction=0.1)
    refused(tmp_path / "nowhere", "there is no file or folder")
    monkeypatch.setattr(images_module, "MAX_DATASET_BYTES", 1000)
    refused(_flat(tmp_path / "big"), "GiB cap", "15 images of 12x10x3")


def test_train_evaluate_predict_on_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        for k in range(6):
            pixels = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
            pixels[:, :, c] += 150  # each class is brightest in one channel
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    code, out, err = run(capsys, "data", "check", root)
    assert code == 0 and "shapes" in out
    out_dir = tmp_path / "run"
    args = ["train", "part1-lines", "--out", out_dir, "--quiet"]
    sets = [f"data.dataset={root}", "data.image_size=16", "train.epochs=1", "train.batch_size=8"]
    code, out, err = run(capsys, *args, *[a for s in sets for a in ("--set", s)])
    assert code == 0, err
    info = json.loads((out_dir / "run.json").read_text())
    assert "BILINEAR" in json.dumps(info)
    code, out, err = run(capsys, "evaluate", out_dir)
    assert code == 0, err
    Image.fromarray(np.full((40, 30), 200, np.uint8)).save(tmp_path / "other.png")  # grey, 30x40
    code, out, err = run(capsys, "predict", out_dir, tmp_path / "other.png")
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 1 and table[0]["class_name"] in CLASSES
    assert "resized 1 image(s) to the model's 16x16 input" in err
    code, out, err = run(capsys, "data", "check", tmp_path / "shapes" / "cat" / "0.png")
    assert_one_line_error(code, out, err, "0.png")


def test_data_check_resizes_a_folder_of_mixed_sizes(tmp_path: Path, capsys) -> None:
    from cnnlab.cli import main

    for k, colour in enumerate(((200, 0, 0), (0, 200, 0))):
        folder = tmp_path / "mixed" / f"c{k}"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (20 + i, 20), tuple(v // (i + 1) for v in colour)).save(
                folder / f"{i}.png"
            )
    assert main(["data", "check", str(tmp_path / "mixed")]) == 2
    assert "images differ in size" in capsys.readouterr().err
    args = ["--image-size", "16", "--channels", "1", "--test-fraction", "0.5"]
    assert main(["data", "check", str(tmp_path / "mixed"), *args]) == 0
    assert "train 4 images" in capsys.readouterr().out


def test_a_val_folder_is_the_validation_split(tmp_path: Path) -> None:
    from cnnlab.training import load_config, train
    from cnnlab.training.run import prepare_dataset

    root = tmp_path / "three"
    for part, count in (("train", 6), ("val", 2), ("test", 3)):
        for k, colour in enumerate(((255, 0, 0), (0, 0, 255))):
            folder = root / part / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(count):
                shade = tuple(v * (i + 1) // (count + 1) for v in colour)
                Image.new("RGB", (12, 12), shade).save(folder / f"{part}{i}.png")
    data = load_dataset(root)
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 6)
    assert data.val.labels.tolist() == [0, 0, 1, 1]
    assert data.provenance["layout"] == "train/, val/ and test/ folders"
    overrides = (f"data.dataset={root}", "train.epochs=2", "train.augment_shift=0")
    run = train("part1-mnist", out=tmp_path / "run", overrides=overrides, quiet=True)
    assert "val_acc" in run.history[0] and (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    with pytest.raises(CnnlabError, match="has a validation split of its own"):
        prepare_dataset(load_config("part1-mnist", (*overrides, "data.val_fraction=0.2")))
    (root / "val" / "c9").mkdir()
    Image.new("RGB", (12, 12)).save(root / "val" / "c9" / "x.png")
    with pytest.raises(CnnlabError, match=r"classes not in train/: c9"):
        load_dataset(root)


def test_a_manifest_can_name_validation_images(tmp_path: Path) -> None:
    _flat(tmp_path / "imgs", per_class=4)
    parts = ("test", "val", "train", "train")
    rows = [("path", "label", "split")]
    rows += [(f"imgs/{name}/{k}.png", name, parts[k]) for name in CLASSES for k in range(4)]
    manifest = tmp_path / "list.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    data = load_dataset(manifest)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 3, 3)
    assert data.val.images[:, 0, 0, 0].tolist() == [1, 11, 21] and _labels_match_pixels(data.val)
