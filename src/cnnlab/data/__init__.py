"""Datasets: the Lines generator, MNIST-style IDX folders, and the one in-memory dataset API."""

from cnnlab.data.dataset import ImageDataset, Split, normalize, stratified_split
from cnnlab.data.idx import read_idx
from cnnlab.data.lines import GENERATOR_VERSION, LinesConfig, LinesData, generate_lines
from cnnlab.data.lines_files import load_lines, save_lines
from cnnlab.data.mnist import MNIST_FILES, download_mnist, load_mnist
from cnnlab.data.registry import DATASET_NAMES, load_dataset

__all__ = [
    "DATASET_NAMES",
    "GENERATOR_VERSION",
    "MNIST_FILES",
    "ImageDataset",
    "LinesConfig",
    "LinesData",
    "Split",
    "download_mnist",
    "generate_lines",
    "load_dataset",
    "load_lines",
    "load_mnist",
    "normalize",
    "read_idx",
    "save_lines",
    "stratified_split",
]
