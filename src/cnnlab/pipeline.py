"""What a report needs, made first: each run's test evaluation and, on request, its pictures.

The report only reads run folders; :func:`report_runs` (``cnnlab report``) calls
:func:`prepare_runs` before it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder


def prepare_runs(
    run_dirs: Iterable[str | Path],
    *,
    pictures: bool = False,
    visualize_options: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Evaluate every finished run that has no current test metrics and, with ``pictures``,
    look inside every run whose pictures are missing or older than its model (with the
    scoreboard of explanation methods on ``cnnlab.visualize.api.SCORE_IMAGES`` test images, as
    ``cnnlab visualize --score`` makes it; ``visualize_options`` go to ``visualize_run`` and
    win). Returns the runs it worked on; a run that is not finished is left for the report
    to refuse with its own message."""
    from cnnlab.evaluate import evaluate_run

    plan = []
    for folder in map(RunFolder, run_dirs):
        if not folder.config.is_file() or not folder.weights.is_file():
            continue
        todo = [
            *(["evaluate"] if not folder.evaluated() else []),
            *(["pictures"] if pictures and not folder.pictures_current() else []),
        ]
        if not todo:
            continue
        if not os.access(folder.path, os.W_OK | os.X_OK):
            raise CnnlabError(f"{folder.path}: cannot write its {' and '.join(todo)} (read-only)")
        plan.append((folder, todo))
    started = time.perf_counter()
    for done, (folder, todo) in enumerate(plan):
        if log is not None:
            log(f"[{done + 1}/{len(plan)}] {folder.path}: {' and '.join(todo)} first")
        if "evaluate" in todo:
            evaluate_run(folder.path)
        if "pictures" in todo:
            _pictures(folder, visualize_options, log)
        if log is not None and done + 1 < len(plan):
            pace = (time.perf_counter() - started) / (done + 1)
            log(f"  about {pace * (len(plan) - done - 1):.0f} s left for the other runs")
    return [folder.path for folder, _ in plan]


def _pictures(
    folder: RunFolder, options: Mapping[str, Any] | None, log: Callable[[str], None] | None
) -> None:
    from cnnlab.report.inside_view import scoreboard_figure
    from cnnlab.visualize import visualize_run

    # The scoreboard's sample size is visualize_run's default: the one cnnlab visualize uses.
    settings = {
        "score": True,
        "scoreboard_figure": scoreboard_figure,
        "log": log,
        **(options or {}),
    }
    visualize_run(folder.path, folder.visualize, **settings)


def report_runs(
    run_dirs: Iterable[str | Path],
    out: str | Path = "report.html",
    markdown: str | Path | None = None,
    *,
    figures_dir: str | Path | None = None,
    inside: bool = False,
    visualize_options: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``cnnlab report``: :func:`prepare_runs` (pictures too with ``inside``), then the page
    (:func:`cnnlab.report.build_report`). Unwritable outputs are refused before any work."""
    from cnnlab.report import build_report
    from cnnlab.report.html import check_targets

    paths = [Path(p) for p in run_dirs]
    out = Path(out)
    markdown = None if markdown is None else Path(markdown)
    figures = None if figures_dir is None else Path(figures_dir)
    check_targets(out, markdown, figures)
    prepare_runs(paths, pictures=inside, visualize_options=visualize_options, log=log)
    return build_report(paths, out, markdown, figures_dir=figures)
