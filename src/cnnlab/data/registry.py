"""``load_dataset``: one entry point from a dataset name or path to an :class:`ImageDataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.lines import generate_lines, lines_config
from cnnlab.data.lines_files import load_lines
from cnnlab.data.mnist import load_mnist
from cnnlab.errors import CnnlabError

DATASET_NAMES = ("mnist", "lines")


def load_dataset(
    source: str | Path,
    *,
    seed: int = 0,
    mnist_dir: str | Path | None = None,
    mnist_split: str = "study",
    lines: dict[str, Any] | None = None,
) -> ImageDataset:
    """Load a dataset by name or path.

    - ``"mnist"``: MNIST from ``mnist_dir`` (or ``$CNNLAB_MNIST_DIR``, or a verified download),
      split ``mnist_split`` (``"study"``: 60/40 stratified, or ``"official"``);
    - ``"lines"``: the Lines dataset generated in memory with ``seed`` and ``lines`` options
      (LinesConfig fields, and ``variant``: a name from ``cnnlab.data.VARIANTS``);
    - a ``lines.npz`` file or a folder holding one: a saved Lines dataset;
    - any other folder: IDX files in MNIST's layout (Fashion-MNIST, KMNIST ...).
    """
    text = str(source)
    if text == "mnist":
        return load_mnist(mnist_dir, split=mnist_split, seed=seed)
    if text == "lines":
        return generate_lines(lines_config(**{"seed": seed, **(lines or {})})).to_dataset()
    path = Path(source)
    if path.suffix == ".npz" or (path.is_dir() and (path / "lines.npz").is_file()):
        return load_lines(path).to_dataset({"source": str(path)})
    if path.is_dir():
        return load_mnist(path, split=mnist_split, seed=seed, name=path.name)
    raise CnnlabError(
        f"dataset {text!r}: expected one of {', '.join(DATASET_NAMES)}, a lines.npz file, "
        "or a folder of IDX files"
    )
