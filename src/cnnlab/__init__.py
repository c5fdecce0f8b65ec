"""cnnlab: build, train, evaluate and look inside convolutional networks.

The Python API mirrors the CLI, one function per verb: ``generate_lines`` / ``load_dataset``
(``cnnlab data``), ``train`` (``cnnlab train``), ``load_run`` and ``predict``
(``cnnlab predict``), ``run_study`` (``cnnlab study``) and ``reproduce`` (``cnnlab reproduce``).
"""

__version__ = "0.1.0"

from cnnlab.data import ImageDataset, LinesConfig, generate_lines, load_dataset, load_mnist
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict
from cnnlab.reproduce import reproduce
from cnnlab.study import run_study
from cnnlab.training import load_run, train

__all__ = [
    "CnnlabError",
    "ImageDataset",
    "LinesConfig",
    "__version__",
    "generate_lines",
    "load_dataset",
    "load_mnist",
    "load_run",
    "predict",
    "reproduce",
    "run_study",
    "train",
]
