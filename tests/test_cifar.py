"""CIFAR-10 / CIFAR-100 binary versions: layout, labels, names, provenance and every refusal."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data.cifar import CIFAR10, CIFAR100, is_cifar_folder, load_cifar
from cnnlab.errors import CnnlabError

C10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
FINE_NAMES = [f"fine{i:02d}" for i in range(100)]
COARSE_NAMES = [f"coarse{i:02d}" for i in range(20)]


# --- helpers ------------------------------------------------------------------------------------


def records(labels: np.ndarray, pixels: np.ndarray) -> bytes:
    """Records as the binary versions store them: label byte(s), then R, G, B planes."""
    labels = np.asarray(labels, dtype=np.uint8).reshape(len(pixels), -1)
    flat = np.asarray(pixels, dtype=np.uint8).reshape(len(pixels), 3072)
    return np.concatenate([labels, flat], axis=1).tobytes()


def random_pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def write_names(path: Path, names: list[str]) -> None:
    path.write_text("\n".join(names) + "\n\n")  # the real files end with a blank line


def make_cifar10(folder: Path, per_file: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny CIFAR-10 binary folder; returns file name -> (labels, pixels) written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for k, name in enumerate([*CIFAR10.train, *CIFAR10.test]):
        labels = (np.arange(per_file) + k) % 10
        pixels = random_pixels(per_file, seed=k)
        (folder / name).write_bytes(records(labels, pixels))
        written[name] = (labels, pixels)
    write_names(folder / "batches.meta.txt", C10_NAMES)
    return written


def make_cifar100(
    folder: Path, n_train: int = 6, n_test: int = 4
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A tiny CIFAR-100 binary folder (fine class f lies in coarse class f // 5)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for k, (name, n) in enumerate([("train.bin", n_train), ("test.bin", n_test)]):
        fine = (np.arange(n) * 17 + k * 3) % 100
        coarse = fine // 5
        pixels = random_pixels(n, seed=10 + k)
        (folder / name).write_bytes(records(np.stack([coarse, fine], axis=1), pixels))
        written[name] = (coarse, fine, pixels)
    write_names(folder / "fine_label_names.txt", FINE_NAMES)
    write_names(folder / "coarse_label_names.txt", COARSE_NAMES)
    return written


def refusal(folder: Path) -> str:
    """The one-line message load_cifar refuses ``folder`` with."""
    with pytest.raises(CnnlabError) as info:
        load_cifar(folder)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- loading ------------------------------------------------------------------------------------


def test_cifar10_shapes_labels_names_and_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    written = make_cifar10(folder)
    data = load_cifar(folder)
    assert data.name == "cifar10"
    assert data.class_names == tuple(C10_NAMES)
    assert data.train.images.shape == (15, 3, 32, 32)
    assert data.test.images.shape == (3, 3, 32, 32)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.images.is_contiguous()
    train = [written[name] for name in CIFAR10.train]
    np.testing.assert_array_equal(data.train.labels, np.concatenate([t[0] for t in train]))
    np.testing.assert_array_equal(data.train.images, np.concatenate([t[1] for t in train]))
    np.testing.assert_array_equal(data.test.labels, written["test_batch.bin"][0])
    np.testing.assert_array_equal(data.test.images, written["test_batch.bin"][1])
    assert data.factor_levels == {} and data.train.factors == {}
    assert (data.channels, data.image_size, data.num_classes) == (3, (32, 32), 10)


def test_pixel_planes_land_in_their_channel_and_position(tmp_path: Path) -> None:
    """Built by hand, byte by byte: R at byte 1 + row*32 + col, G 1024 later, B 2048 later."""
    folder = tmp_path / "c10"
    make_cifar10(folder, per_file=1)
    record = bytearray(3073)
    record[0] = 7
    record[1 + 1 * 32 + 2] = 200  # red, row 1, column 2
    record[1 + 1024 + 5 * 32 + 7] = 150  # green, row 5, column 7
    record[1 + 2048 + 31 * 32 + 0] = 99  # blue, row 31, column 0
    (folder / "test_batch.bin").write_bytes(bytes(record))
    image = load_cifar(folder).test.images[0]
    assert load_cifar(folder).test.labels.tolist() == [7]
    assert image[0, 1, 2] == 200 and image[1, 5, 7] == 150 and image[2, 31, 0] == 99
    assert int(image.sum()) == 200 + 150 + 99


def test_cifar10_provenance_records_files_sha256_and_the_unused_seed(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    make_cifar10(folder, per_file=2)
    data = load_cifar(folder, seed=5)
    p = data.provenance
    assert p["path"] == str(folder.resolve()) and p["format"] == "CIFAR-10 binary version"
    assert set(p["files"]) == set(CIFAR10.files)
    for name, digest in p["files"].items():
        assert digest == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert p["records"] == {name: 2 for name in (*CIFAR10.train, *CIFAR10.test)}
    assert p["split"] == "official" and p["seed"] is None
    other = load_cifar(folder, seed=0)  # the seed changes nothing
    assert torch.equal(other.train.images, data.train.images)
    assert torch.equal(other.test.labels, data.test.labels)


def test_the_folder_the_archive_was_unpacked_into_is_found(tmp_path: Path) -> None:
    make_cifar10(tmp_path / "cifar-10-batches-bin", per_file=1)
    data = load_cifar(tmp_path)
    assert data.provenance["path"] == str((tmp_path / "cifar-10-batches-bin").resolve())
    assert is_cifar_folder(tmp_path) and is_cifar_folder(tmp_path / "cifar-10-batches-bin")


def test_cifar100_fine_labels_are_the_classes_and_coarse_ones_go_to_provenance(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "cifar-100-binary"
    written = make_cifar100(folder)
    data = load_cifar(folder, name="c100")
    assert data.name == "c100" and data.class_names == tuple(FINE_NAMES)
    assert data.train.images.shape == (6, 3, 32, 32) and data.test.images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(data.train.labels, written["train.bin"][1])
    np.testing.assert_array_equal(data.test.labels, written["test.bin"][1])
    np.testing.assert_array_equal(data.train.images, written["train.bin"][2])
    np.testing.assert_array_equal(data.test.images, written["test.bin"][2])
    assert data.factor_levels == {}
    p = data.provenance
    assert p["format"] == "CIFAR-100 binary version" and p["records"] == {
        "train.bin": 6,
        "test.bin": 4,
    }
    for name, digest in p["files"].items():
        assert digest == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert set(p["files"]) == set(CIFAR100.files)
    seen = np.concatenate([written["train.bin"][1], written["test.bin"][1]])
    expected = {name: [] for name in COARSE_NAMES}
    for f in sorted(set(seen.tolist())):
        expected[COARSE_NAMES[f // 5]].append(FINE_NAMES[f])
    assert p["coarse_classes"] == expected


# --- refusals -----------------------------------------------------------------------------------


class _Trap:
    """Unpickling this would create ``marker``: proof that a loader unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_the_python_version_is_refused_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps(_Trap(marker)))
    message = refusal(folder)
    assert "python version" in message and "cifar-10-binary.tar.gz" in message
    assert "data_batch_1.bin" in message and "batches.meta.txt" in message
    assert is_cifar_folder(folder)
    assert "python version" in refusal(tmp_path)  # the folder above it
    assert not marker.exists()


def test_a_lone_data_batch_1_without_bin_is_the_python_version(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04.")
    message = refusal(tmp_path)
    assert "CIFAR-10 python version" in message and "cifar-10-binary.tar.gz" in message


def test_the_cifar100_python_version_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"\x80\x04.")
    message = refusal(folder)
    assert "CIFAR-100 python version" in message and "cifar-100-binary.tar.gz" in message
    assert "train.bin" in message and "fine_label_names.txt" in message


@pytest.mark.parametrize("extra", [5, 3072])
def test_a_size_that_is_not_whole_records_is_refused(tmp_path: Path, extra: int) -> None:
    make_cifar10(tmp_path, per_file=2)
    (tmp_path / "data_batch_2.bin").write_bytes(
        records([1, 2], random_pixels(2, 0)) + b"\0" * extra
    )
    message = refusal(tmp_path)
    assert "data_batch_2.bin" in message and "3073" in message
    assert f"{2 * 3073 + extra} bytes" in message


def test_cifar10_records_in_a_cifar100_file_are_refused(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    (tmp_path / "test.bin").write_bytes(records([1, 2], random_pixels(2, 0)))  # 3073-byte records
    message = refusal(tmp_path)
    assert "test.bin" in message and "3074" in message


def test_an_empty_data_file_is_refused(tmp_path: Path) -> None:
    make_cifar10(tmp_path, per_file=1)
    (tmp_path / "test_batch.bin").write_bytes(b"")
    assert "test_batch.bin: empty" in refusal(tmp_path)


def test_a_label_out_of_range_is_refused_naming_file_and_record(tmp_path: Path) -> None:
    make_cifar10(tmp_path, per_file=3)
    (tmp_path / "data_batch_4.bin").write_bytes(records([0, 10, 3], random_pixels(3, 0)))
    message = refusal(tmp_path)
    assert "data_batch_4.bin" in message and "record 1" in message
    assert "label 10" in message and "10 classes" in message


@pytest.mark.parametrize(("column", "value", "what"), [(1, 100, "fine"), (0, 20, "coarse")])
def test_cifar100_labels_out_of_range_are_refused(
    tmp_path: Path, column: int, value: int, what: str
) -> None:
    make_cifar100(tmp_path)
    labels = np.array([[0, 0], [1, 5], [0, 1]])
    labels[2, column] = value
    (tmp_path / "train.bin").write_bytes(records(labels, random_pixels(3, 0)))
    message = refusal(tmp_path)
    assert "train.bin" in message and "record 2" in message and f"{what} label {value}" in message


def test_a_fine_class_under_two_coarse_classes_is_refused(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    (tmp_path / "test.bin").write_bytes(records([[3, 0], [4, 0]], random_pixels(2, 0)))
    message = refusal(tmp_path)
    assert "fine00" in message and "coarse03" in message and "coarse04" in message


@pytest.mark.parametrize("missing", ["batches.meta.txt", "data_batch_3.bin", "test_batch.bin"])
def test_a_missing_file_is_refused(tmp_path: Path, missing: str) -> None:
    make_cifar10(tmp_path, per_file=1)
    (tmp_path / missing).unlink()
    message = refusal(tmp_path)
    assert f"missing {missing}:" in message and "cifar-10-binary.tar.gz" in message


def test_missing_cifar100_names_are_refused(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    (tmp_path / "coarse_label_names.txt").unlink()
    assert "missing coarse_label_names.txt" in refusal(tmp_path)


@pytest.mark.parametrize(
    ("file", "names", "expected"),
    [
        ("batches.meta.txt", C10_NAMES[:9], "expected 10 class names, one a line, found 9"),
        ("batches.meta.txt", [*C10_NAMES, "extra"], "expected 10 class names"),
        ("batches.meta.txt", [*C10_NAMES[:9], "cat"], "found cat twice"),
    ],
)
def test_a_cifar10_names_file_with_the_wrong_names_is_refused(
    tmp_path: Path, file: str, names: list[str], expected: str
) -> None:
    make_cifar10(tmp_path, per_file=1)
    write_names(tmp_path / file, names)
    message = refusal(tmp_path)
    assert file in message and expected in message


@pytest.mark.parametrize(
    ("file", "names", "expected"),
    [
        ("fine_label_names.txt", FINE_NAMES[:99], "expected 100 class names"),
        ("coarse_label_names.txt", COARSE_NAMES[:19], "expected 20 class names"),
    ],
)
def test_a_cifar100_names_file_with_the_wrong_count_is_refused(
    tmp_path: Path, file: str, names: list[str], expected: str
) -> None:
    make_cifar100(tmp_path)
    write_names(tmp_path / file, names)
    message = refusal(tmp_path)
    assert file in message and expected in message


def test_a_names_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    make_cifar10(tmp_path, per_file=1)
    (tmp_path / "batches.meta.txt").write_bytes(b"\x80\x02}q\x00")
    assert "batches.meta.txt: not UTF-8 text" in refusal(tmp_path)


def test_a_folder_with_both_versions_is_refused(tmp_path: Path) -> None:
    make_cifar10(tmp_path / "cifar-10-batches-bin", per_file=1)
    make_cifar100(tmp_path / "cifar-100-binary")
    assert "both CIFAR-10 and CIFAR-100" in refusal(tmp_path)
    assert is_cifar_folder(tmp_path)


def test_folders_that_are_not_cifar(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert not is_cifar_folder(tmp_path)
    assert "holds no CIFAR files" in refusal(tmp_path)
    assert not is_cifar_folder(tmp_path / "absent")
    assert "does not exist" in refusal(tmp_path / "absent")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    assert not is_cifar_folder(archive)
    assert "unpack it first" in refusal(archive)


def test_load_dataset_and_training_take_a_cifar_folder(tmp_path: Path) -> None:
    """``data.dataset`` = the folder: the same loader behind ``load_dataset`` and a training."""
    from cnnlab.data import load_dataset
    from cnnlab.training import train

    make_cifar10(tmp_path / "cifar-10-batches-bin", per_file=4)
    data = load_dataset(tmp_path)  # the folder the archive was unpacked into
    assert data.name == "cifar10"
    assert tuple(data.train.images.shape[1:]) == (3, 32, 32) and len(data.class_names) == 10
    run = train(
        "part1-mnist",
        out=tmp_path / "run",
        overrides=(f"data.dataset={tmp_path}", "train.epochs=1", "train.augment_shift=0"),
        quiet=True,
    )
    assert len(run.history) == 1 and run.class_names == data.class_names
