"""The report's Comparison section, prepared: one row per run, the best values marked, the
overlaid learning curves (``templates/report.html.j2`` shows it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.report import figures
from cnnlab.report.facts import (
    COMPARISON_COLUMNS,
    FACTOR_SUFFIX,
    TEXT_COLUMNS,
    comparison_columns,
    comparison_row,
    groups_by_test_set,
    mixed_test_sets_note,
)
from cnnlab.report.records import RunRecord
from cnnlab.report.render import Cell, Figure, Table, table
from cnnlab.report.run_view import curve_row

FACTOR_GROUP = "accuracy per factor of the predicted class (multi-head: per head)"


@dataclass(frozen=True)
class Comparison:
    table: Table
    factors: bool
    """Whether the table has per-factor columns (and so the note on them)."""
    mixed: str | None
    """:func:`mixed_test_sets_note`: the runs do not all test on the same images."""
    curves: list[Figure]
    """All runs' learning curves overlaid; empty when no run has a history."""
    multihead: bool
    """Whether any run is multi-head (a note on what its curves show)."""


def comparison_view(records: Sequence[RunRecord], fig_dir: Path, svg: bool = False) -> Comparison:
    """The comparison of ``records``; the overlaid curves are drawn into ``fig_dir``."""
    columns = comparison_columns(records)
    factor_columns = columns[len(COMPARISON_COLUMNS) :]
    texts = [comparison_row(record) for record in records]
    best = _best(records, texts, {"test accuracy", *factor_columns})
    rows = []
    for i, row in enumerate(texts):
        cells: list[Any] = [Cell(row["run"], href=f"#run-{i + 1}")]
        for column in columns[1:]:
            text = row.get(column, "–")
            cells.append(Cell(text, strong=True) if i in best.get(column, ()) else text)
        rows.append(cells)
    numeric = [i for i, c in enumerate(columns) if c not in TEXT_COLUMNS]
    header_rows = None
    if factor_columns:
        header_rows = [
            [
                *(Cell(c, rowspan=2) for c in COMPARISON_COLUMNS),
                Cell(FACTOR_GROUP, header=True, cls="group", colspan=len(factor_columns)),
            ],
            [Cell(c.removesuffix(FACTOR_SUFFIX), numeric=True) for c in factor_columns],
        ]
    histories = {r.label: r.history for r in records if r.history}
    curves: list[Figure] = []
    if histories:
        paths = figures.plot_learning_curves(histories, fig_dir, "all-runs-curves", svg=svg)
        curves = curve_row(paths, "all runs")
    return Comparison(
        table=table(columns, rows, numeric, cls="comparison", header_rows=header_rows),
        factors=bool(factor_columns),
        mixed=mixed_test_sets_note(records),
        curves=curves,
        multihead=any(r.heads for r in records),
    )


def _best(
    records: Sequence[RunRecord], rows: Sequence[dict[str, str]], columns: set[str]
) -> dict[str, set[int]]:
    """Per column: the rows with the best (highest) value among runs on the same test images
    (none where a test set has only one run)."""
    best: dict[str, set[int]] = {column: set() for column in columns}
    for group in groups_by_test_set(records):
        for column in columns:
            values = [(_number(rows[i].get(column)), i) for i in group]
            values = [(v, i) for v, i in values if v is not None]
            top = max((v for v, _ in values), default=None)
            best[column] |= {i for v, i in values if v == top and len(values) > 1}
    return best


def _number(text: str | None) -> float | None:
    try:
        return float(text if text is not None else "–")
    except ValueError:
        return None
