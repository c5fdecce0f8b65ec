"""``build_report``: one self-contained HTML page (and a Markdown summary) for runs.

The page embeds its figures as base64 PNG data URIs and carries its CSS inline: it needs no
network, no JavaScript and no other file. Python prepares what it shows
(:mod:`cnnlab.report.run_view`, :mod:`cnnlab.report.comparison_view`); the templates
``report.html.j2`` and ``run.html.j2`` write it, escaping every value (texts from configs, run
files or folder names included).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnlab.report.comparison_view import comparison_view
from cnnlab.report.markdown import markdown_summary
from cnnlab.report.records import RunRecord, read_runs
from cnnlab.report.render import check_writable, render, write_text
from cnnlab.report.run_view import run_view


def build_report(
    run_dirs: Sequence[Path],
    out: Path,
    markdown: Path | None = None,
    *,
    figures_dir: Path | None = None,
    title: str = "cnnlab report",
    front: Callable[[Sequence[RunRecord]], Any] | None = None,
    appendix: Callable[[Path], Sequence[Any]] | None = None,
) -> Path:
    """Write an HTML report on ``run_dirs`` to ``out`` (and a Markdown summary to ``markdown``).

    The report only reads the run folders: every run must have current test metrics, and a
    run with pictures from ``cnnlab visualize`` gets a "Looking inside" section
    (:func:`cnnlab.pipeline.prepare_runs` makes both first; a run without metrics is refused
    in one line). ``figures_dir`` keeps the PNG (and SVG) figures; by
    default they live only inside the page. ``front`` makes from the records the part shown
    first (``templates/front.html.j2`` renders it, anchor ``front``); ``appendix`` makes from
    the figures folder the study sections shown last (each with ``anchor`` and ``title``,
    rendered by ``templates/study_section.html.j2``): a reproduction's front page and
    variation studies. Returns ``out``.
    """
    out = Path(out)
    check_targets(out, markdown, figures_dir)
    records = read_runs(list(run_dirs))
    with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as tmp:
        kept = figures_dir is not None
        fig_dir = Path(figures_dir) if kept else Path(tmp)
        page = render_page(
            records,
            fig_dir,
            svg=kept,
            title=title,
            front=front(records) if front else None,
            appendix=appendix(fig_dir) if appendix else (),
        )
    write_text(out, page, "report")
    if markdown is not None:
        write_text(Path(markdown), markdown_summary(records), "Markdown summary")
    return out


def check_targets(out: Path, markdown: Path | None, figures_dir: Path | None) -> None:
    """Fail early, in one line, when the report, its summary or its figures folder cannot be
    written (before any slow work)."""
    targets = [(out, "report"), (markdown, "Markdown summary"), (figures_dir, "figures")]
    for path, what in targets:
        if path is not None:
            check_writable(Path(path), what, folder=what == "figures")


def render_page(
    records: Sequence[RunRecord],
    fig_dir: Path,
    svg: bool = False,
    *,
    title: str = "cnnlab report",
    front: Any = None,
    appendix: Sequence[Any] = (),
) -> str:
    """The whole HTML document for ``records``; figures are drawn into ``fig_dir`` (curves
    also as SVG with ``svg``). ``front`` comes first, the ``appendix`` studies last; both are
    listed in the contents."""
    return render(
        "report.html.j2",
        title=title,
        front=front,
        comparison=comparison_view(records, fig_dir, svg) if len(records) > 1 else None,
        runs=[run_view(i, record, fig_dir, svg) for i, record in enumerate(records, 1)],
        appendix=list(appendix),
    )
