"""CIFAR-10 and CIFAR-100 in their binary versions: find, check and load.

Only the binary versions are read (``cifar-10-binary.tar.gz`` -> ``cifar-10-batches-bin/``,
``cifar-100-binary.tar.gz`` -> ``cifar-100-binary/``, www.cs.toronto.edu/~kriz/cifar.html).
Each record there is the label byte(s) then 3072 pixel bytes: 1024 red, 1024 green, 1024 blue,
each plane a 32x32 image in row-major order. The "python versions" hold the same images as
pickles, and unpickling a file runs whatever code it names, so they are refused, never opened.

The shipped train/test split is used as is. CIFAR-100's classes are its 100 fine labels; its
20 coarse labels ("superclasses") are not a factor (factors compose the class index, and a fine
label already fixes its coarse one), so which fine classes make up each coarse class is kept in
the provenance instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, Split
from cnnlab.errors import CnnlabError
from cnnlab.fileio import sha256_bytes

IMAGE_SHAPE = (3, 32, 32)
PIXEL_BYTES = 3 * 32 * 32
MAX_CIFAR_FILE_BYTES = 1 << 30
"""The largest data file read: 1 GiB, about seven times CIFAR-100's ``train.bin`` (154 MB)."""
MAX_NAMES_FILE_BYTES = 1 << 20
_SITE = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class CifarLayout:
    """One binary version: its files, record layout and the python version it must not be."""

    name: str
    title: str
    folder: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int
    """1 (the class) or 2 (coarse label, then the fine label that is the class)."""
    class_names_file: tuple[str, int]
    coarse_names_file: tuple[str, int] | None
    python_folder: str
    python_files: tuple[str, ...]
    python_min: int
    """How many of ``python_files`` mark a folder as the python version (CIFAR-100's names
    ``train``, ``test``, ``meta`` are too plain to go by one)."""

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + PIXEL_BYTES

    @property
    def names_files(self) -> tuple[tuple[str, int], ...]:
        return (self.class_names_file,) + (
            (self.coarse_names_file,) if self.coarse_names_file else ()
        )

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the folder must hold, data first."""
        return (*self.train, *self.test, *(name for name, _ in self.names_files))

    def wanted(self) -> str:
        """What to download and which files to give, for error messages."""
        return (
            f"download the binary version {self.archive} ({_SITE}{self.archive}) and give the "
            f"folder {self.folder}/ holding {', '.join(self.files)}"
        )


CIFAR10 = CifarLayout(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-bin",
    archive="cifar-10-binary.tar.gz",
    train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test=("test_batch.bin",),
    label_bytes=1,
    class_names_file=("batches.meta.txt", 10),
    coarse_names_file=None,
    python_folder="cifar-10-batches-py",
    python_files=("data_batch_1", "test_batch", "batches.meta"),
    python_min=1,
)
CIFAR100 = CifarLayout(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-binary",
    archive="cifar-100-binary.tar.gz",
    train=("train.bin",),
    test=("test.bin",),
    label_bytes=2,
    class_names_file=("fine_label_names.txt", 100),
    coarse_names_file=("coarse_label_names.txt", 20),
    python_folder="cifar-100-python",
    python_files=("train", "test", "meta"),
    python_min=2,
)
LAYOUTS = (CIFAR10, CIFAR100)


def is_cifar_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds CIFAR-10 or CIFAR-100 files (binary or python version, or
    the archive's folder): for :func:`cnnlab.data.registry.load_dataset` to tell a CIFAR folder
    from one of IDX files. Damaged or refused CIFAR folders count, so :func:`load_cifar` can say
    what is wrong with them."""
    try:
        _find(Path(folder).expanduser())
    except _NotCifar:
        return False
    except CnnlabError:
        return True
    return True


def load_cifar(folder: str | Path, seed: int = 0, *, name: str | None = None) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 (binary version) from ``folder`` as an :class:`ImageDataset`.

    ``folder`` holds the files of ``cifar-10-batches-bin/`` or ``cifar-100-binary/`` (or is the
    folder the archive was unpacked into). Images are (N, 3, 32, 32) uint8, labels the class
    (CIFAR-100: the fine label), class names from the names file. The shipped train/test split
    is used as is: ``seed`` plays no part (it is taken so every loader has the same signature,
    and recorded as None). Refused in one line naming the file: the pickled python version, a
    missing file, a size that is not a whole number of records, a label out of range, a names
    file without exactly the expected number of names.
    """
    del seed  # the split is the shipped one
    path, layout = _find(Path(folder).expanduser().resolve())
    missing = [f for f in layout.files if not (path / f).is_file()]
    if missing:
        raise CnnlabError(
            f"{layout.title} folder {path} is missing {', '.join(missing)}: {layout.wanted()}"
        )
    digests: dict[str, str] = {}
    records: dict[str, int] = {}
    names = {}
    for file, count in layout.names_files:
        names[file], digests[file] = _read_names(path / file, count)
    class_names = names[layout.class_names_file[0]]
    coarse_names = names[layout.coarse_names_file[0]] if layout.coarse_names_file else ()
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split, files in (("train", layout.train), ("test", layout.test)):
        for file in files:
            data = _read_records(path / file, layout, digests, records)
            _check_labels(path / file, data, layout, len(class_names), len(coarse_names))
            parts[split].append(data)
    provenance: dict[str, Any] = {
        "source": "folder",
        "path": str(path),
        "format": f"{layout.title} binary version",
        "files": digests,
        "records": records,
        "split": "official",
        "seed": None,
    }
    splits = {}
    first_pixel = layout.label_bytes
    for split, arrays in parts.items():  # one contiguous copy each, straight from the records
        labels = np.concatenate([data[:, first_pixel - 1] for data in arrays]).astype(np.int64)
        images = np.concatenate([data[:, first_pixel:] for data in arrays])
        splits[split] = Split(
            torch.from_numpy(images.reshape(-1, *IMAGE_SHAPE)), torch.from_numpy(labels)
        )
    if coarse_names:
        provenance["coarse_classes"] = _coarse_classes(parts, class_names, coarse_names, path)
    return ImageDataset(
        name=name or layout.name,
        train=splits["train"],
        test=splits["test"],
        class_names=class_names,
        provenance=provenance,
    )


class _NotCifar(CnnlabError):
    """The path is not a folder holding any CIFAR file."""


def _find(folder: Path) -> tuple[Path, CifarLayout]:
    """The folder that holds the binary files, and which version they are."""
    if not folder.exists():
        raise _NotCifar(f"CIFAR folder {folder} does not exist")
    if not folder.is_dir():
        hint = (
            f"; unpack it first (tar -xzf {folder.name})" if folder.name.endswith(".tar.gz") else ""
        )
        raise _NotCifar(
            f"{folder} is not a folder: expected a folder of the CIFAR-10 or CIFAR-100 "
            f"binary files{hint}"
        )
    found = []
    for layout in LAYOUTS:
        if any((folder / f).is_file() for f in layout.files):
            found.append((folder, layout))
        elif (folder / layout.folder).is_dir():
            found.append((folder / layout.folder, layout))
    if len(found) > 1:
        raise CnnlabError(
            f"{folder} holds both CIFAR-10 and CIFAR-100 files: give the folder of one of them "
            f"({CIFAR10.folder}/ or {CIFAR100.folder}/)"
        )
    if found:
        return found[0]
    for layout in LAYOUTS:
        pickles = [f for f in layout.python_files if (folder / f).is_file()]
        if (folder / layout.python_folder).is_dir():
            pickles.append(layout.python_folder + "/")
        if len(pickles) >= layout.python_min or (pickles and folder.name == layout.python_folder):
            raise CnnlabError(
                f"{folder} holds the {layout.title} python version ({', '.join(pickles)}: "
                f"pickles, which cnnlab never unpickles): {layout.wanted()}"
            )
    raise _NotCifar(
        f"{folder} holds no CIFAR files: expected {CIFAR10.folder}/ ({', '.join(CIFAR10.files)}) "
        f"or {CIFAR100.folder}/ ({', '.join(CIFAR100.files)})"
    )


def _read_names(path: Path, count: int) -> tuple[tuple[str, ...], str]:
    """The names in a names file (one a line, blank lines skipped) and the file's SHA-256."""
    data = _read_bytes(path, MAX_NAMES_FILE_BYTES).tobytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CnnlabError(
            f"{path}: not UTF-8 text (byte {exc.start}): expected {count} class names, one a line"
        ) from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != count:
        raise CnnlabError(f"{path}: expected {count} class names, one a line, found {len(names)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CnnlabError(f"{path}: class names must differ, found {', '.join(repeated)} twice")
    return names, sha256_bytes(data)


def _read_records(
    path: Path, layout: CifarLayout, digests: dict[str, str], records: dict[str, int]
) -> np.ndarray:
    """One data file as a writable (N, record_bytes) uint8 array; notes its SHA-256 and N."""
    data = _read_bytes(path, MAX_CIFAR_FILE_BYTES)
    size, step = len(data), layout.record_bytes
    labels = "1 label byte" if layout.label_bytes == 1 else "2 label bytes (coarse, fine)"
    what = f"{layout.title} records of {step} bytes ({labels} + {PIXEL_BYTES} pixels)"
    if size == 0:
        raise CnnlabError(f"{path}: empty: expected whole {what}")
    if size % step:
        raise CnnlabError(
            f"{path}: {size} bytes is not a whole number of {what}: "
            f"{size // step} records and {size % step} bytes over; is it the binary version?"
        )
    digests[path.name] = sha256_bytes(memoryview(data))
    records[path.name] = size // step
    return data.reshape(-1, step)


def _read_bytes(path: Path, limit: int) -> np.ndarray:
    """The whole file as uint8, refused unread if it is larger than ``limit`` bytes."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise CnnlabError(
                f"{path}: {size} bytes, more than the {limit} bytes such a file may hold; "
                "refusing to read it"
            )
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise CnnlabError(f"{path}: no such file") from None
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _check_labels(
    path: Path, data: np.ndarray, layout: CifarLayout, n_classes: int, n_coarse: int
) -> None:
    """Every record's label (CIFAR-100: fine and coarse label) is below its number of names."""
    if layout.label_bytes == 1:
        checks = [("label", data[:, 0], n_classes)]
    else:
        checks = [("coarse label", data[:, 0], n_coarse), ("fine label", data[:, 1], n_classes)]
    for what, labels, n in checks:
        bad = np.flatnonzero(labels >= n)
        if bad.size:
            raise CnnlabError(
                f"{path}: record {int(bad[0])} has {what} {int(labels[bad[0]])}, out of range "
                f"for {n} classes (0..{n - 1})"
            )


def _coarse_classes(
    parts: dict[str, list[np.ndarray]],
    fine_names: tuple[str, ...],
    coarse_names: tuple[str, ...],
    folder: Path,
) -> dict[str, list[str]]:
    """Each coarse class's fine classes, in order; a fine label with two coarse labels is
    refused."""
    arrays = [data for split in parts.values() for data in split]
    pairs = np.concatenate([data[:, :2] for data in arrays]).astype(np.int64)
    coarse, fine = pairs[:, 0], pairs[:, 1]
    unique = np.unique(fine * len(coarse_names) + coarse)
    fine_of, coarse_of = unique // len(coarse_names), unique % len(coarse_names)
    twice = fine_of[1:][fine_of[1:] == fine_of[:-1]]
    if twice.size:
        f = int(twice[0])
        both = sorted(coarse_names[c] for c in coarse_of[fine_of == f])
        raise CnnlabError(
            f"{folder}: fine class {fine_names[f]!r} appears under more than one coarse class "
            f"({', '.join(both)}): expected each fine class in exactly one"
        )
    grouped: dict[str, list[str]] = {name: [] for name in coarse_names}
    for f, c in zip(fine_of.tolist(), coarse_of.tolist(), strict=True):
        grouped[coarse_names[c]].append(fine_names[f])
    return grouped
