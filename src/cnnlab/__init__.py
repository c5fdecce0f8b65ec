"""cnnlab: build, train, evaluate and look inside convolutional networks.

The Python API mirrors the CLI, one function per verb: ``generate_lines`` / ``lines_config`` /
``load_dataset`` (``cnnlab data``), ``check_dataset`` (``cnnlab data check``), ``train``
(``cnnlab train``), ``evaluate_run`` (``cnnlab evaluate``), ``load_run`` and ``predict``
(``cnnlab predict``), ``report_runs`` (``cnnlab report``), ``run_study`` (``cnnlab study``),
``reproduce`` (``cnnlab reproduce``) and ``trusting_code`` (``--trust-code``). ``evaluate_run``
and ``run_study`` return an ``Evaluation`` and a ``StudySummary``: typed, ``to_dict()`` the
record they wrote.

Each name is imported when first used (PEP 562), so ``import cnnlab`` and the ``cnnlab``
command start without loading torch until a verb needs it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CnnlabError
from cnnlab.version import __version__

_WHERE = {
    "Callback": "cnnlab.training.engine",
    "Evaluation": "cnnlab.evaluate",
    "StudySummary": "cnnlab.study",
    "ImageDataset": "cnnlab.data",
    "LinesConfig": "cnnlab.data",
    "check_dataset": "cnnlab.data",
    "generate_lines": "cnnlab.data",
    "lines_config": "cnnlab.data",
    "load_dataset": "cnnlab.data",
    "load_mnist": "cnnlab.data",
    "evaluate_run": "cnnlab.evaluate",
    "model_factory": "cnnlab.models",
    "report_runs": "cnnlab.pipeline",
    "predict": "cnnlab.predict",
    "reproduce": "cnnlab.reproduce",
    "trusting_code": "cnnlab.runfolder.trust",
    "run_study": "cnnlab.study",
    "load_run": "cnnlab.training",
    "train": "cnnlab.training",
}

if TYPE_CHECKING:
    from cnnlab.data import (
        ImageDataset,
        LinesConfig,
        check_dataset,
        generate_lines,
        lines_config,
        load_dataset,
        load_mnist,
    )
    from cnnlab.evaluate import Evaluation, evaluate_run
    from cnnlab.models import model_factory
    from cnnlab.pipeline import report_runs
    from cnnlab.predict import predict
    from cnnlab.reproduce import reproduce
    from cnnlab.runfolder.trust import trusting_code
    from cnnlab.study import StudySummary, run_study
    from cnnlab.training import load_run, train
    from cnnlab.training.engine import Callback


class _Package(types.ModuleType):
    """``cnnlab`` itself: ``predict`` and ``reproduce`` are functions here although submodules
    share their names. Importing such a submodule sets the package's attribute to the module;
    the function is kept instead, as ``from cnnlab import predict`` expects."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE and _WHERE[name].endswith(name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "Callback",
    "CnnlabError",
    "Evaluation",
    "ImageDataset",
    "LinesConfig",
    "StudySummary",
    "__version__",
    "check_dataset",
    "evaluate_run",
    "generate_lines",
    "lines_config",
    "load_dataset",
    "load_mnist",
    "load_run",
    "model_factory",
    "predict",
    "report_runs",
    "reproduce",
    "run_study",
    "train",
    "trusting_code",
]
