"""Hostile or broken input files are refused where they enter, with one line naming the file:
IDX gzip bombs, absurd and empty IDX headers, broken ``lines.npz`` arrays, and what
``predict`` reads (empty or pickled arrays, NaN, complex, huge and 16-bit pictures)."""

from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import LinesConfig, generate_lines, load_lines, save_lines
from cnnlab.data.idx import MAX_IDX_BYTES, SLACK_BYTES, read_idx
from cnnlab.data.mnist import MNIST_FILES, load_mnist
from cnnlab.data.npzio import read_npz
from cnnlab.errors import CnnlabError
from cnnlab.models.inference import Preprocess
from cnnlab.predict import read_images

TRAIN_IMAGES = MNIST_FILES["train_images"].name
RGB = Preprocess(channels=3, image_size=(28, 28), mean=(0.5,) * 3, std=(0.5,) * 3)
GREY = Preprocess(channels=1, image_size=(28, 28), mean=(0.5,), std=(0.5,))


def refused(call: Callable[[], object], *fragments: str) -> str:
    """Run ``call``, expect a one-line CnnlabError holding every fragment; return it."""
    with pytest.raises(CnnlabError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- IDX: gzip bombs, absurd and empty headers --------------------------------------------------


def idx_header(shape: tuple[int, ...], type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + np.array(shape, dtype=">u4").tobytes()


def gzip_bomb(path: Path, shape: tuple[int, ...], extra_mib: int) -> Path:
    """An honest IDX header and payload, then ``extra_mib`` MiB of zeros, as gzip members
    (a few KB on disk); ``gzip.decompress`` would inflate all of it."""
    payload = idx_header(shape) + bytes(int(np.prod(shape)))
    zeros = gzip.compress(bytes(1 << 20), compresslevel=9)  # 1 MiB -> about 1 KB
    with open(path, "wb") as out:
        out.write(gzip.compress(payload))
        for _ in range(extra_mib):
            out.write(zeros)
    return path


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    path = gzip_bomb(tmp_path / TRAIN_IMAGES, (10, 28, 28), extra_mib=256)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(CnnlabError) as err:
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"read_idx held {peak} bytes at once"
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert f"over {SLACK_BYTES} trailing bytes" in message and "7840 bytes" in message


def test_gzip_bomb_under_a_memory_limit(tmp_path: Path) -> None:
    """The tester's case: a file that inflates to 1 GiB, read by a process allowed 256 MiB
    more address space than it has after its imports; one line, exit status 3."""
    pytest.importorskip("resource")
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status to size the limit")
    path = gzip_bomb(tmp_path / TRAIN_IMAGES, (10, 28, 28), extra_mib=1024)
    child = textwrap.dedent(
        """
        import resource, sys
        from cnnlab.data.idx import read_idx
        from cnnlab.errors import CnnlabError
        status = open("/proc/self/status").read().split("VmSize:")[1]
        size = int(status.split()[0]) * 1024
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        limit = size + (256 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard < 0 else min(limit, hard), hard))
        try:
            read_idx(sys.argv[1])
        except CnnlabError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout.count("\n") == 1 and "trailing bytes" in done.stdout


def test_raw_file_with_trailing_data_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_header((2, 4, 4)) + bytes(32) + bytes(4 << 20))
    refused(lambda: read_idx(path), str(path), f"over {SLACK_BYTES} trailing bytes")


def test_absurd_header_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(gzip.compress(idx_header((4_000_000_000, 28, 28)) + bytes(100)))
    refused(
        lambda: read_idx(path),
        str(path),
        "4000000000x28x28 uint8 = 3136000000000 bytes",
        f"more than the {MAX_IDX_BYTES} bytes (1 GiB)",
    )


def test_shorter_than_announced(tmp_path: Path) -> None:
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(gzip.compress(idx_header((10, 28, 28)) + bytes(3920)))
    refused(lambda: read_idx(path), str(path), "truncated: expected 7840 bytes", "found 3920")


@pytest.mark.parametrize("part", ["train_images", "test_images", "train_labels"])
def test_zero_images_are_refused_at_load(tmp_path: Path, part: str) -> None:
    """One of the four files holds no items (before: a ZeroDivisionError later on)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 8)):
        arrays = {
            "images": rng.integers(0, 256, (n, 6, 6), dtype=np.uint8),
            "labels": (np.arange(n) % 10).astype(np.uint8),
        }
        for kind, array in arrays.items():
            if f"{split}_{kind}" == part:
                array = array[:0]
            data = idx_header(array.shape) + array.tobytes()
            (tmp_path / MNIST_FILES[f"{split}_{kind}"].name).write_bytes(gzip.compress(data))
    refused(lambda: load_mnist(tmp_path), MNIST_FILES[part].name, "empty", "no items")


# --- lines.npz ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lines_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lines")
    save_lines(generate_lines(LinesConfig(per_class=5, seed=2)), folder)
    return folder / "lines.npz"


def rewritten(source: Path, target: Path, change: Callable[[dict[str, np.ndarray]], None]) -> Path:
    """``source`` with its arrays edited by ``change``, saved as ``target``."""
    with np.load(source) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    np.savez(target, **arrays)
    return target


def _set(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[name] = make(arrays[name])

    return change


def _first(n: int) -> Callable[[dict], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        for name in arrays:
            if name != "meta":
                arrays[name] = arrays[name][:n]

    return change


def _label_500(label: np.ndarray) -> np.ndarray:
    label = label.copy()
    label[7] = 500
    return label


def _nan_shift(shift: np.ndarray) -> np.ndarray:
    shift = shift.copy()
    shift[3] = np.nan
    return shift


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (
            _set("images", lambda a: a.astype(np.float32) / 255),
            ["array 'images' has dtype float32, expected uint8"],
        ),
        (
            _set("images", lambda a: a[..., 0]),
            ["array 'images' has shape (480, 28, 28), expected (480, 28, 28, 3)"],
        ),
        (_set("images", lambda a: a[:, :14]), ["expected (480, 28, 28, 3)"]),
        (
            _set("width", lambda a: a[:-1]),
            ["array 'width' holds 479 entries", "'label' holds 480"],
        ),
        (_set("label", lambda a: a.reshape(48, 10)), ["array 'label' has shape (48, 10)"]),
        (_set("label", _label_500), ["array 'label' holds 500, outside 0..95"]),
        (_set("color", lambda a: a + 5), ["array 'color' holds values outside 0..1"]),
        (_set("label", lambda a: a.astype(np.float64)), ["'label' has dtype float64"]),
        (_set("mask", lambda a: a.astype(np.uint8)), ["'mask' has dtype uint8, expected bool"]),
        (_set("shift_x", _nan_shift), ["array 'shift_x' holds NaN"]),
        (_set("shift_y", lambda a: a.astype(np.complex64)), ["'shift_y' has dtype complex64"]),
        (_set("split", lambda a: np.full_like(a, "train")), ["names no 'test' image"]),
        (_first(0), ["holds 0 images"]),
        (_set("meta", lambda a: np.array(["{}", "{}"])), ["array 'meta'", "one JSON text"]),
        (_set("meta", lambda a: np.array('{"config": [1]}')), ["unreadable generator settings"]),
        (
            _set("meta", lambda a: np.array('{"config": {"image_size": 2}}')),
            ["generator settings in 'meta' are invalid: image_size"],
        ),
    ],
)
def test_broken_lines_npz_is_refused(lines_file: Path, tmp_path: Path, change, fragments) -> None:
    path = rewritten(lines_file, tmp_path / "broken.npz", change)
    refused(lambda: load_lines(path), str(path), *fragments)


def test_lines_npz_round_trip_still_loads(lines_file: Path) -> None:
    assert len(load_lines(lines_file)) == 480


def test_pickled_arrays_are_never_unpickled(
    lines_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("something unpickled an input file")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    path = rewritten(
        lines_file, tmp_path / "pickled.npz", _set("label", lambda a: a.astype(object))
    )
    refused(lambda: load_lines(path), "array 'label' holds Python objects", "unpickle")
    np.savez(tmp_path / "objects.npz", images=np.array([{"a": 1}, None], dtype=object))
    refused(lambda: read_images(tmp_path / "objects.npz", RGB), "'images' holds Python objects")


def npz_with_member(path: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, data)
    return path


def test_npz_header_announcing_more_than_its_member_holds(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28, 3)}
    )
    path = npz_with_member(tmp_path / "liar.npz", "images.npy", header.getvalue() + bytes(64))
    refused(
        lambda: read_npz(path, ("images",)),
        str(path),
        "array 'images' announces 1000000000x28x28x3 uint8",
        "holds only",
    )
    path = npz_with_member(tmp_path / "notes.npz", "notes.txt", b"hello")
    refused(lambda: read_npz(path), "member 'notes.txt' is not a .npy array")
    (tmp_path / "plain.npz").write_bytes(b"\x93NUMPY not a zip")
    refused(lambda: read_npz(tmp_path / "plain.npz"), "not a readable .npz archive")


def test_unwanted_arrays_are_not_read(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**9,)}
    )
    path = tmp_path / "extra.npz"
    np.savez(path, images=np.zeros((1, 28, 28, 3), np.uint8))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("junk.npy", header.getvalue())
    assert set(read_npz(path, ("images",), only_required=True)) == {"images"}
    images, names = read_images(path, RGB)
    assert images.shape == (1, 3, 28, 28) and names == [f"{path}[0]"]


# --- predict inputs -----------------------------------------------------------------------------


def saved(path: Path, images: np.ndarray) -> Path:
    np.savez(path, images=images)
    return path


@pytest.mark.parametrize(
    ("images", "fragments"),
    [
        (np.zeros((0, 28, 28, 3), np.uint8), ["holds 0 images"]),
        (np.full((2, 28, 28, 3), np.nan, np.float32), ["NaN or infinite"]),
        (np.full((2, 28, 28, 3), np.inf), ["NaN or infinite"]),
        (np.zeros((2, 28, 28, 3), np.complex64), ["complex numbers", "expected uint8"]),
        (np.zeros((2, 28, 28, 3), bool), ["dtype bool"]),
        (np.full((2, 28, 28, 3), 300, np.int64), ["values from 300 to 300", "nothing is clipped"]),
        (np.full((2, 28, 28, 3), -0.5), ["values from -0.5"]),
        (np.full((2, 28, 28, 3), 256.0, np.float32), ["values from 256.0 to 256.0"]),
    ],
)
def test_bad_npz_images_are_refused(tmp_path: Path, images: np.ndarray, fragments) -> None:
    path = saved(tmp_path / "x.npz", images)
    refused(lambda: read_images(path, RGB), str(path), "array 'images'", *fragments)


def test_accepted_npz_values_are_stated(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    unit = np.linspace(0, 1, 28 * 28 * 3).reshape(1, 28, 28, 3)
    images, _ = read_images(saved(tmp_path / "unit.npz", unit), RGB)
    assert images.dtype.is_floating_point is False and int(images.max()) == 255
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), np.rint(unit * 255).astype(np.uint8))
    assert "[0, 1], scaled by 255" in capsys.readouterr().err
    wide = unit * 255
    images, _ = read_images(saved(tmp_path / "wide.npz", wide), RGB)
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), np.rint(wide).astype(np.uint8))
    assert "[0, 255]" in capsys.readouterr().err
    ints = np.arange(28 * 28, dtype=np.int32).reshape(1, 28, 28) % 256
    images, _ = read_images(saved(tmp_path / "ints.npz", ints), GREY)
    assert np.array_equal(images[0, 0].numpy(), ints[0].astype(np.uint8))


@pytest.mark.parametrize(("size", "kind"), [(28, "error"), (12, "warning")])
def test_decompression_bomb_png_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, kind: str
) -> None:
    """Over twice Pillow's limit it raises, between once and twice it only warns: both refused."""
    path = tmp_path / "bomb.png"
    Image.new("RGB", (size, size)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    refused(lambda: read_images(path, RGB), str(path), "too many pixels", "MAX_IMAGE_PIXELS is 100")
    folder = tmp_path
    refused(lambda: read_images(folder, RGB), str(path), "too many pixels")


@pytest.mark.parametrize("preprocess", [GREY, RGB], ids=["grey", "rgb"])
def test_16_bit_png_is_scaled_to_8_bit(
    tmp_path: Path, preprocess: Preprocess, capsys: pytest.CaptureFixture
) -> None:
    levels = np.array([0, 128, 129, 257 * 100, 65535], dtype=np.uint16)
    wide = np.resize(levels, (28, 28)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(wide).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # really a 16-bit picture
    images, _ = read_images(path, preprocess)
    expected = np.resize(np.array([0, 0, 1, 100, 255], np.uint8), (28, 28))
    for channel in images[0].numpy():
        assert np.array_equal(channel, expected)
    assert "scaled 1 16-bit image(s) to 8 bit" in capsys.readouterr().err


def test_32_bit_pictures_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.tiff"
    Image.fromarray(np.zeros((28, 28), np.float32)).save(path)
    refused(lambda: read_images(path, GREY), str(path), "32-bit float pixels are not supported")


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    refused(lambda: read_images(path, RGB), str(path), "not a readable image")
