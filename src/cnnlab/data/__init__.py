"""Datasets: the Lines generator, MNIST-style IDX folders, folders/CSV/.npz of your own images,
and the one in-memory dataset API."""

from cnnlab.data.arrays import load_image_npz
from cnnlab.data.check import check_dataset, check_summary_lines, overlap_warning
from cnnlab.data.cifar import load_cifar
from cnnlab.data.dataset import ImageDataset, Split, normalize, stratified_split
from cnnlab.data.folder import load_folder
from cnnlab.data.idx import read_idx
from cnnlab.data.images import IMAGE_SUFFIXES, conform, decode_images
from cnnlab.data.lines import (
    GENERATOR_VERSION,
    VARIANTS,
    LinesConfig,
    LinesData,
    generate_lines,
    lines_config,
)
from cnnlab.data.lines_files import load_lines, save_lines
from cnnlab.data.manifest import load_manifest
from cnnlab.data.mnist import MNIST_FILES, download_mnist, load_mnist
from cnnlab.data.registry import DATASET_NAMES, load_dataset

__all__ = [
    "DATASET_NAMES",
    "GENERATOR_VERSION",
    "IMAGE_SUFFIXES",
    "MNIST_FILES",
    "VARIANTS",
    "ImageDataset",
    "LinesConfig",
    "LinesData",
    "Split",
    "check_dataset",
    "check_summary_lines",
    "conform",
    "decode_images",
    "download_mnist",
    "generate_lines",
    "lines_config",
    "load_cifar",
    "load_dataset",
    "load_folder",
    "load_image_npz",
    "load_lines",
    "load_manifest",
    "load_mnist",
    "normalize",
    "overlap_warning",
    "read_idx",
    "save_lines",
    "stratified_split",
]
