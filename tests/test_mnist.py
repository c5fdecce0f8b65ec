"""MNIST: the IDX reader, the study and official splits, folder layouts, downloads and errors."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.idx import read_idx
from cnnlab.data.mnist import MNIST_FILES, download_mnist, find_mnist_files, load_mnist
from cnnlab.errors import CnnlabError

# Images per class in MNIST's 60,000 + 10,000 images.
CLASS_COUNTS = [6903, 7877, 6990, 7141, 6824, 6313, 6876, 7293, 6825, 6958]
TRAIN_IMAGES, TRAIN_LABELS = MNIST_FILES["train_images"].name, MNIST_FILES["train_labels"].name


# --- helpers ------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, header: bytes | None = None) -> Path:
    """Write a uint8 array as IDX (gzipped if ``path`` ends in .gz); ``header`` overrides it."""
    if header is None:
        dims = np.array(array.shape, dtype=">u4").tobytes()
        header = bytes([0, 0, 0x08, array.ndim]) + dims
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def tiny_mnist(folder: Path, n_train: int = 30, n_test: int = 20, size=(5, 7)) -> Path:
    """A small MNIST-layout folder: random images, labels cycling through 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, *size), dtype=np.uint8)
        write_idx(folder / MNIST_FILES[f"{split}_images"].name, images)
        write_idx(folder / MNIST_FILES[f"{split}_labels"].name, np.arange(n) % 10)
    return folder


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _ShortBodyHandler(_QuietHandler):
    """Announces 1,000 bytes, sends 10, hangs up: a transfer broken half-way."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.close_connection = True


@contextlib.contextmanager
def serve(folder: Path, handler: type = _QuietHandler) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 from a background thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_url() -> str:
    """A base URL on a localhost port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def study(mnist_dir: Path) -> ImageDataset:
    return load_mnist(mnist_dir)


@pytest.fixture(scope="module")
def official(mnist_dir: Path) -> ImageDataset:
    return load_mnist(mnist_dir, split="official")


# --- the real files -----------------------------------------------------------------------------


def test_read_idx_real_files(mnist_dir: Path) -> None:
    images, labels = read_idx(mnist_dir / TRAIN_IMAGES), read_idx(mnist_dir / TRAIN_LABELS)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert labels[:4].tolist() == [5, 0, 4, 1]
    test_labels = read_idx(mnist_dir / MNIST_FILES["test_labels"].name)
    counts = np.bincount(np.concatenate([labels, test_labels]), minlength=10)
    assert counts.tolist() == CLASS_COUNTS and counts.sum() == 70000


def test_study_split_is_exact_and_stratified(study: ImageDataset, mnist_dir: Path) -> None:
    assert (len(study.train), len(study.test)) == (42000, 28000)
    assert study.train.images.shape == (42000, 1, 28, 28)
    assert study.train.images.dtype == torch.uint8
    assert study.test.labels.dtype == torch.int64
    assert study.class_names == tuple("0123456789")
    test_counts = torch.bincount(study.test.labels, minlength=10).tolist()
    train_counts = torch.bincount(study.train.labels, minlength=10).tolist()
    for cls, total in enumerate(CLASS_COUNTS):
        assert train_counts[cls] + test_counts[cls] == total
        assert abs(test_counts[cls] - 0.4 * total) <= 1, f"class {cls}"
    prov = study.provenance
    assert prov["source"] == "folder" and prov["path"] == str(mnist_dir)
    assert (prov["split"], prov["seed"], prov["test_fraction"]) == ("study", 0, 0.4)
    assert prov["files"] == {
        spec.name: hashlib.sha256((mnist_dir / spec.name).read_bytes()).hexdigest()
        for spec in MNIST_FILES.values()
    }


def test_study_split_depends_only_on_seed(study: ImageDataset, mnist_dir: Path) -> None:
    again = load_mnist(mnist_dir, seed=0)
    assert torch.equal(again.test.images, study.test.images)
    assert torch.equal(again.train.labels, study.train.labels)
    other = load_mnist(mnist_dir, seed=1)
    assert len(other.test) == 28000
    assert not torch.equal(other.test.images, study.test.images)


def test_official_split(official: ImageDataset) -> None:
    assert (len(official.train), len(official.test)) == (60000, 10000)
    assert official.test.images.shape == (10000, 1, 28, 28)
    assert official.train.labels[:4].tolist() == [5, 0, 4, 1]
    assert (official.provenance["split"], official.provenance["seed"]) == ("official", None)


def test_raw_files_load_like_gz(tmp_path: Path, mnist_dir: Path, official: ImageDataset) -> None:
    raw_names = {"train_images": "train-images.idx3-ubyte"}  # the dotted spelling
    for part, spec in MNIST_FILES.items():
        name = raw_names.get(part, spec.raw_names[0])
        (tmp_path / name).write_bytes(gzip.decompress((mnist_dir / spec.name).read_bytes()))
    assert find_mnist_files(tmp_path)["train_images"].name == "train-images.idx3-ubyte"
    raw = load_mnist(tmp_path, split="official")
    assert torch.equal(raw.train.images, official.train.images)
    assert torch.equal(raw.test.labels, official.test.labels)


def test_folder_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CNNLAB_MNIST_DIR", str(tiny_mnist(tmp_path / "env")))
    data = load_mnist(split="official")
    assert data.provenance["path"] == str(tmp_path / "env")


def test_other_sizes_and_class_names(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(10)]
    data = load_mnist(tiny_mnist(tmp_path), test_fraction=0.5, class_names=names, name="tiny")
    assert data.train.images.shape == (25, 1, 5, 7) and len(data.test) == 25
    assert data.class_names == tuple(names) and data.name == "tiny"


# --- bad input ----------------------------------------------------------------------------------


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match=r"MNIST folder .*nowhere does not exist"):
        load_mnist(tmp_path / "nowhere")
    folder = tiny_mnist(tmp_path / "tiny")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(CnnlabError) as err:
        load_mnist(folder)
    message = str(err.value)
    assert str(folder) in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "train-labels" not in message and "\n" not in message


def test_truncated_gzip(tmp_path: Path, mnist_dir: Path) -> None:
    data = (mnist_dir / TRAIN_LABELS).read_bytes()
    path = tmp_path / TRAIN_LABELS
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CnnlabError, match=rf"{TRAIN_LABELS}: truncated gzip stream"):
        read_idx(path)


def test_truncated_and_overlong_payload(tmp_path: Path) -> None:
    header = bytes([0, 0, 8, 3]) + np.array([60000, 28, 28], dtype=">u4").tobytes()
    path = write_idx(tmp_path / TRAIN_IMAGES, np.zeros(1000), header=header)
    expected = f"{TRAIN_IMAGES}: truncated: expected 47040000 bytes of data after the header"
    with pytest.raises(CnnlabError, match=rf"{expected} \(60000x28x28 uint8\), found 1000$"):
        read_idx(path)
    header = bytes([0, 0, 8, 1]) + np.array([10], dtype=">u4").tobytes()
    path = write_idx(tmp_path / "labels", np.zeros(12), header=header)
    with pytest.raises(CnnlabError, match=r"labels: 2 trailing bytes: expected 10 bytes"):
        read_idx(path)


def test_corrupt_gzip_stream(tmp_path: Path, mnist_dir: Path) -> None:
    data = bytearray((mnist_dir / TRAIN_LABELS).read_bytes())
    data[1000:1100] = bytes(100)
    path = tmp_path / TRAIN_LABELS
    path.write_bytes(bytes(data))
    with pytest.raises(CnnlabError, match=rf"{TRAIN_LABELS}: corrupt gzip stream"):
        read_idx(path)
    path.write_bytes(b"plain text, not gzip")
    with pytest.raises(CnnlabError, match=r"not a gzip file: expected magic bytes 1f 8b, found 70"):
        read_idx(path)


def test_wrong_magic_number(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros(4), header=b"\x08\x03\0\0")
    with pytest.raises(CnnlabError, match=r"t10k-images-idx3-ubyte: not an IDX file: .* 08 03"):
        read_idx(path)
    path = write_idx(path, np.zeros(4), header=b"\0\0\x07\x01" + bytes([0, 0, 0, 4]))
    with pytest.raises(CnnlabError, match=r"unsupported IDX data type 0x07 \(expected one of 0x08"):
        read_idx(path)
    with pytest.raises(CnnlabError, match=r"t10k-images-idx3-ubyte\.gz: no such file"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte.gz")


def test_mismatched_counts(tmp_path: Path) -> None:
    folder = tiny_mnist(tmp_path)
    write_idx(folder / TRAIN_LABELS, np.arange(29) % 10)
    with pytest.raises(CnnlabError) as err:
        load_mnist(folder)
    assert f"{TRAIN_IMAGES} holds 30 images but {TRAIN_LABELS} holds 29 labels" in str(err.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    folder = tiny_mnist(tmp_path)
    write_idx(folder / TRAIN_LABELS, np.arange(30) % 13)
    with pytest.raises(CnnlabError, match=rf"{TRAIN_LABELS}: label 10 is out of range for 10"):
        load_mnist(folder)
    assert load_mnist(folder, class_names=[str(i) for i in range(13)]).num_classes == 13


def test_bad_split_and_fraction(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match=r"unknown MNIST split 'all': choose one of study, offic"):
        load_mnist(tmp_path, split="all")
    with pytest.raises(CnnlabError, match=r"test_fraction must be between 0 and 1, got 1.5"):
        load_mnist(tmp_path, test_fraction=1.5)


# --- downloads ----------------------------------------------------------------------------------


def test_download_verifies_and_falls_back(tmp_path: Path, mnist_dir: Path, closed_url: str) -> None:
    cache = tmp_path / "cache"
    with serve(mnist_dir) as url:
        assert download_mnist(cache, mirrors=[closed_url, url], timeout=5) == cache
    assert sorted(os.listdir(cache)) == sorted(spec.name for spec in MNIST_FILES.values())
    assert all(md5(cache / spec.name) == spec.md5 for spec in MNIST_FILES.values())
    download_mnist(cache, mirrors=[closed_url], timeout=5)  # all cached: no network needed
    (cache / TRAIN_LABELS).write_bytes(b"damaged")
    with serve(mnist_dir) as url:
        download_mnist(cache, mirrors=[url], timeout=5)
    assert md5(cache / TRAIN_LABELS) == MNIST_FILES["train_labels"].md5


def test_load_mnist_downloads_into_cache(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CNNLAB_MNIST_DIR", raising=False)
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    with pytest.raises(CnnlabError, match=r"MNIST is not in the cache .* download is off"):
        load_mnist(download=False)
    with serve(mnist_dir) as url:
        monkeypatch.setenv("CNNLAB_MNIST_MIRRORS", url)
        data = load_mnist(split="official")
    assert len(data.train) == 60000
    prov = data.provenance
    assert prov["source"] == "download" and prov["path"] == str(tmp_path / "mnist")
    assert prov["fetched"][TRAIN_IMAGES] == url + TRAIN_IMAGES


def assert_download_fails(cache: Path, mirrors: list[str], *needles: str) -> None:
    """download_mnist raises one line naming the first file and ``needles``; cache stays empty."""
    with pytest.raises(CnnlabError) as err:
        download_mnist(cache, mirrors=mirrors, timeout=5)
    message = str(err.value)
    assert message.startswith(f"could not download {TRAIN_IMAGES}: tried ") and "\n" not in message
    for needle in [*mirrors, *needles, "--mnist-dir DIR", "CNNLAB_MNIST_DIR=DIR"]:
        assert needle in message
    assert os.listdir(cache) == []


def test_download_checksum_mismatch(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for spec in MNIST_FILES.values():
        (served / spec.name).write_bytes(b"not mnist")
    bad_md5 = hashlib.md5(b"not mnist").hexdigest()
    with serve(served) as url:
        expected = MNIST_FILES["train_images"].md5
        needle = f"checksum mismatch: expected MD5 {expected}, got {bad_md5}"
        assert_download_fails(tmp_path / "cache", [url], needle)


def test_download_no_network(tmp_path: Path, closed_url: str) -> None:
    assert_download_fails(tmp_path / "cache", [closed_url], "no network or server unreachable")


def test_download_http_error_and_broken_transfer(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with serve(tmp_path / "empty") as empty, serve(tmp_path, _ShortBodyHandler) as broken:
        needles = ("HTTP error 404", "transfer broken off after 10 of 1000 bytes")
        assert_download_fails(tmp_path / "cache", [empty, broken], *needles)
