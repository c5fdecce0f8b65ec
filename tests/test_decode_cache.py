"""The cache of decoded image files (cnnlab.data.cache): hits, invalidation, corruption, off."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import cache as cache_module
from cnnlab.data import folder as folder_module
from cnnlab.data import images as images_module
from cnnlab.data import load_dataset
from cnnlab.data.cache import cache_dir
from cnnlab.errors import CnnlabError

CLASSES = ("cat", "dog", "owl")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own (never the user's home)."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DECODE_CACHE", raising=False)
    return tmp_path / "cache" / "decoded"


class Counter:
    """Wraps decode_images and counts its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.real = images_module.decode_images
        monkeypatch.setattr(images_module, "decode_images", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter:
    return Counter(monkeypatch)


def _tree(root: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    return root


def _same(a, b) -> bool:
    return all(
        torch.equal(getattr(a, part).images, getattr(b, part).images)
        and torch.equal(getattr(a, part).labels, getattr(b, part).labels)
        for part in ("train", "test")
    )


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.npy"))


def test_second_load_uses_the_cache(tmp_path: Path, cache: Path, decodes: Counter) -> None:
    root = _tree(tmp_path / "pets")
    first = load_dataset(root, image_size=8)
    assert decodes.calls == 1 and first.provenance["decode_cache"]["used"] is False
    assert first.provenance["decode_cache"]["stored"] is True
    (npy,) = _entries(cache)
    info = json.loads(npy.with_suffix(".json").read_text())
    assert info["shape"] == [12, 3, 8, 8] and info["dtype"] == "uint8"
    second = load_dataset(root, image_size=8)
    assert decodes.calls == 1, "decoded again despite a valid cache entry"
    assert second.provenance["decode_cache"] == {"used": True}
    assert _same(first, second)
    for k in ("resized_images", "converted_images", "scaled_16bit_images", "image_size"):
        assert second.provenance[k] == first.provenance[k]
    assert second.train.images.is_contiguous()
    second.train.images[0] += 1  # a private copy: writable, the entry untouched
    assert _same(first, load_dataset(root, image_size=8)) and decodes.calls == 1


def test_changed_files_make_another_entry(tmp_path: Path, cache: Path, decodes: Counter) -> None:
    root = _tree(tmp_path / "pets")
    load_dataset(root)
    file = root / "dog" / "1.png"
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched
    load_dataset(root)
    assert decodes.calls == 2
    load_dataset(root)
    assert decodes.calls == 2
    file.rename(root / "dog" / "9.png")  # renamed
    load_dataset(root)
    assert decodes.calls == 3
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(root / "owl" / "7.png")  # added
    data = load_dataset(root)
    assert decodes.calls == 4 and len(data.train) + len(data.test) == 13
    added = (root / "owl" / "7.png").stat().st_mtime_ns
    pixels = np.full((12, 10, 3), 77, np.uint8)
    Image.fromarray(pixels).save(root / "owl" / "7.png")  # rewritten: new content
    os.utime(root / "owl" / "7.png", ns=(added, added + 1_000_000))
    data = load_dataset(root, seed=0)
    assert decodes.calls == 5
    assert len(_entries(cache)) == 5


def test_settings_make_another_entry(tmp_path: Path, cache: Path, decodes: Counter) -> None:
    root = _tree(tmp_path / "pets")
    grey = load_dataset(root, channels=1)
    small = load_dataset(root, image_size=6)
    colour = load_dataset(root)
    assert decodes.calls == 3 and len(_entries(cache)) == 3
    assert grey.channels == 1 and small.image_size == (6, 6) and colour.channels == 3
    assert _same(grey, load_dataset(root, channels=1)) and decodes.calls == 3
    assert _same(small, load_dataset(root, image_size=6)) and decodes.calls == 3


def test_same_names_elsewhere_do_not_share_an_entry(
    tmp_path: Path, cache: Path, decodes: Counter
) -> None:
    a, b = _tree(tmp_path / "a"), tmp_path / "b"
    for name in CLASSES:  # other pictures, same names, sizes and times
        (b / name).mkdir(parents=True)
        for k in range(4):
            source = a / name / f"{k}.png"
            (b / name / f"{k}.png").write_bytes(source.read_bytes()[::-1])
            st = source.stat()
            os.utime(b / name / f"{k}.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    load_dataset(a)
    with pytest.raises(Exception, match="not a readable image"):
        load_dataset(b)  # decoded, not served from a's entry
    assert decodes.calls == 2


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip", "sidecar", "shape", "gone"])
def test_a_damaged_entry_is_ignored_and_rewritten(
    tmp_path: Path, cache: Path, decodes: Counter, damage: str
) -> None:
    root = _tree(tmp_path / "pets")
    first = load_dataset(root)
    (npy,) = _entries(cache)
    sidecar = npy.with_suffix(".json")
    whole = npy.read_bytes()
    if damage == "garbage":
        npy.write_bytes(b"this is not an npy file")
    elif damage == "truncate":
        npy.write_bytes(whole[: len(whole) // 2])
    elif damage == "flip":
        npy.write_bytes(whole[:-1] + bytes([whole[-1] ^ 0xFF]))
    elif damage == "sidecar":
        sidecar.write_text("{not json")
    elif damage == "shape":
        info = json.loads(sidecar.read_text())
        info["shape"][2] = 99
        sidecar.write_text(json.dumps(info))
    else:
        npy.unlink()
    again = load_dataset(root)
    assert decodes.calls == 2 and _same(first, again)
    assert again.provenance["decode_cache"]["used"] is False
    assert npy.read_bytes() == whole  # rewritten
    assert load_dataset(root).provenance["decode_cache"]["used"] is True and decodes.calls == 2


def test_an_unwritable_cache_only_costs_speed(tmp_path: Path, monkeypatch, decodes) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("CNNLAB_CACHE", str(blocker / "cache"))
    root = _tree(tmp_path / "pets")
    data = load_dataset(root)
    assert data.provenance["decode_cache"]["stored"] is False
    assert len(data.train) + len(data.test) == 12


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CNNLAB_DECODE_CACHE", "off"), ("CNNLAB_DECODE_CACHE", "0"), ("CNNLAB_CACHE", "OFF")],
)
def test_the_off_switch(tmp_path: Path, monkeypatch, decodes, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    assert cache_dir() is None
    root = _tree(tmp_path / "pets")
    load_dataset(root)
    data = load_dataset(root)
    assert decodes.calls == 2
    assert data.provenance["decode_cache"]["used"] is False
    assert "off" in data.provenance["decode_cache"]["reason"]
    assert not any(tmp_path.rglob("*.npy"))


def test_default_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == tmp_path / "cache" / "decoded"  # beside $CNNLAB_CACHE/mnist
    monkeypatch.delenv("CNNLAB_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "cnnlab" / "decoded"
    monkeypatch.setenv("CNNLAB_DECODE_CACHE", "on")
    assert cache_dir() == Path.home() / ".cache" / "cnnlab" / "decoded"


def test_a_manifest_uses_the_cache(tmp_path: Path, decodes: Counter) -> None:
    _tree(tmp_path / "imgs")
    manifest = tmp_path / "list.csv"
    with manifest.open("w", newline="") as handle:
        rows = [("path", "label")] + [
            (f"imgs/{name}/{k}.png", name) for name in CLASSES for k in range(4)
        ]
        csv.writer(handle).writerows(rows)
    first = load_dataset(manifest)
    second = load_dataset(manifest)
    assert decodes.calls == 1 and _same(first, second)
    assert second.provenance["decode_cache"]["used"] is True


def test_a_full_disk_stores_nothing(tmp_path: Path, cache: Path, monkeypatch, decodes) -> None:
    monkeypatch.setattr(cache_module, "MIN_FREE_BYTES", 1 << 62)
    root = _tree(tmp_path / "pets")
    assert load_dataset(root).provenance["decode_cache"]["stored"] is False
    assert not _entries(cache) and decodes.calls == 1


def test_a_vanished_file_gets_the_decoding_error(tmp_path: Path, monkeypatch) -> None:
    root = _tree(tmp_path / "pets")
    real = images_module.image_files

    def listed_then_gone(folder: Path) -> list[Path]:
        return [*real(folder), folder / "gone.png"]

    monkeypatch.setattr(folder_module, "image_files", listed_then_gone)
    with pytest.raises(CnnlabError, match=r"gone\.png"):
        load_dataset(root)
