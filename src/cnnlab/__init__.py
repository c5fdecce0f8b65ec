"""cnnlab: build, train, evaluate and look inside convolutional networks.

The Python API mirrors the CLI, one function per verb: ``generate_lines`` / ``lines_config`` /
``load_dataset`` (``cnnlab data``), ``check_dataset`` (``cnnlab data check``), ``train``
(``cnnlab train``), ``evaluate_run`` (``cnnlab evaluate``), ``load_run`` and ``predict``
(``cnnlab predict``), ``report_runs`` (``cnnlab report``), ``run_study`` (``cnnlab study``) and
``reproduce`` (``cnnlab reproduce``).
"""

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
from cnnlab.pipeline import report_runs
from cnnlab.predict import predict
from cnnlab.reproduce import reproduce
from cnnlab.study import run_study
from cnnlab.training import load_run, train
from cnnlab.version import __version__

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
    "report_runs",
    "reproduce",
    "run_study",
    "train",
]
