"""A Markdown summary of a report, for pasting: the comparison table and headline metrics."""

from __future__ import annotations

import html
from collections.abc import Sequence

from cnnlab.report.facts import (
    TEXT_COLUMNS,
    TRANSFER_TITLE,
    comparison_columns,
    comparison_row,
    headline,
    mixed_test_sets_note,
    transfer_table,
)
from cnnlab.report.inside_words import inside_line
from cnnlab.report.records import RunRecord


def cell(text: str) -> str:
    """Text that stays inside one table cell and renders as itself (no HTML, no ``|``)."""
    flat = " ".join(str(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def markdown_summary(records: Sequence[RunRecord]) -> str:
    """The comparison table (one row per run), then each run's headline metrics, its
    augmentation (when it trained with one) and its best localisation score (when
    ``cnnlab visualize --score`` measured them)."""
    columns = comparison_columns(records)
    lines = [
        "# cnnlab report",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if c in TEXT_COLUMNS else "---:" for c in columns) + "|",
    ]
    for record in records:
        row = comparison_row(record)
        lines.append("| " + " | ".join(cell(row.get(c, "–")) for c in columns) + " |")
    note = mixed_test_sets_note(records)
    if note:
        lines += ["", cell(note)]
    for record in records:
        lines += ["", f"## {cell(record.label)}", ""]
        lines += [f"- {cell(line)}" for line in headline(record)]
        if record.augment_text not in (None, "none"):
            lines.append(f"- trained with augmentation: train.augment {cell(record.augment_text)}")
        inside = inside_line(record.pictures.scores if record.pictures else None)
        if inside:
            lines.append(f"- {cell(inside)}")
        lines += transfer_markdown(record)
    return "\n".join(lines) + "\n"


def transfer_markdown(record: RunRecord) -> list[str]:
    """The "Tested on other data" table of one run (no lines when it has none)."""
    table = transfer_table(record)
    if table is None:
        return []
    headers, rows = table
    return [
        "",
        f"{TRANSFER_TITLE}:",
        "",
        "| " + " | ".join(headers) + " |",
        "|---|" + "---:|" * (len(headers) - 1),
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows),
    ]
