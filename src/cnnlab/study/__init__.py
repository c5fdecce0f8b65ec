"""Variation studies: one base config, variants of it, several seeds, compared paired by seed.

``run_study`` / ``cnnlab study`` trains every variant x seed as an ordinary run folder
(``DIR/runs/<variant>-seed<k>``) through an executor (worker processes here, or a Ray cluster:
:mod:`cnnlab.execution`), resumes what was interrupted, and writes ``results.csv``,
``summary.csv``, ``summary.json`` and ``report.html``; it returns a ``StudySummary``
(``summary.json`` as ``to_dict()``).
"""

from typing import Any

from cnnlab.study.results import StudySummary
from cnnlab.study.runner import run_study
from cnnlab.study.spec import Study, load_study, study_names

__all__ = [
    "Study",
    "StudySummary",
    "load_study",
    "run_study",
    "study_names",
    "study_view",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """The report functions load matplotlib: only when asked for."""
    if name in ("study_view", "write_report"):
        from cnnlab.study import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
