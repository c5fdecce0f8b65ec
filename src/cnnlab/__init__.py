"""cnnlab: build, train, evaluate and look inside convolutional networks.

The Python API mirrors the CLI, one function per verb: ``generate_lines`` / ``lines_config`` /
``load_dataset`` (``cnnlab data``), ``check_dataset`` (``cnnlab data check``), ``train``
(``cnnlab train``), ``evaluate_run`` (``cnnlab evaluate``), ``load_run`` and ``predict``
(``cnnlab predict``), ``run_study`` (``cnnlab study``) and ``reproduce`` (``cnnlab reproduce``).
"""

__version__ = "0.1.0"

from cnnlab.data import (
    ImageDataset,
    LinesConfig,
    check_dataset,
    generate_lines,
    lines_config,
    load_dataset,
    load_mnist,
)
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.predict import predict
from cnnlab.reproduce import reproduce
from cnnlab.study import run_study
from cnnlab.training import load_run, train

__all__ = [
    "CnnlabError",
    "ImageDataset",
    "LinesConfig",
    "__version__",
    "check_dataset",
    "evaluate_run",
    "generate_lines",
    "lines_config",
    "load_dataset",
    "load_mnist",
    "load_run",
    "predict",
    "reproduce",
    "run_study",
    "train",
]
