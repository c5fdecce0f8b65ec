"""cnnlab: build, train, evaluate and look inside convolutional networks.

The Python API mirrors the CLI: one function per verb.
"""

from cnnlab.data import ImageDataset, LinesConfig, generate_lines, load_dataset, load_mnist
from cnnlab.errors import CnnlabError

__version__ = "0.1.0"

__all__ = [
    "CnnlabError",
    "ImageDataset",
    "LinesConfig",
    "__version__",
    "generate_lines",
    "load_dataset",
    "load_mnist",
]
