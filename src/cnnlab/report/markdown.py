"""A Markdown summary of a report, for pasting: the comparison table and headline metrics."""

from __future__ import annotations

import html
from collections.abc import Sequence

from cnnlab.report.records import RunRecord
from cnnlab.report.summary import COMPARISON_COLUMNS, comparison_row, headline


def cell(text: str) -> str:
    """Text that stays inside one table cell and renders as itself (no HTML, no ``|``)."""
    flat = " ".join(str(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def markdown_summary(records: Sequence[RunRecord]) -> str:
    """The comparison table (one row per run), then each run's headline metrics."""
    numeric = {c for c in COMPARISON_COLUMNS if c not in ("run", "dataset", "model")}
    lines = [
        "# cnnlab report",
        "",
        "| " + " | ".join(COMPARISON_COLUMNS) + " |",
        "|" + "|".join("---:" if c in numeric else "---" for c in COMPARISON_COLUMNS) + "|",
    ]
    for record in records:
        row = comparison_row(record)
        lines.append("| " + " | ".join(cell(row[c]) for c in COMPARISON_COLUMNS) + " |")
    for record in records:
        lines += ["", f"## {cell(record.label)}", ""]
        lines += [f"- {cell(line)}" for line in headline(record)]
    return "\n".join(lines) + "\n"
