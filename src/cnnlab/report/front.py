"""The front page of a reproduction: cnnlab's results beside the original study's table,
prepared by :func:`front_view` for ``templates/front.html.j2``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.report.records import RunRecord
from cnnlab.report.render import Cell, Table, table

ORIGINAL = "the original study (Keras/TensorFlow)"

DATASET_TITLES = {"mnist": "MNIST", "lines": "Lines"}
"""How the front page names the study's datasets."""


@dataclass(frozen=True)
class Row:
    """One figure of the original study's tables and the run that reproduces it."""

    task: str
    figure: str
    run: str
    study: float
    head: str | None = None  # a multi-head run's head; None: the run's accuracy


STUDY_TABLE: tuple[Row, ...] = (
    Row("Task 1, part 1 (prescribed CNN)", "MNIST", "part1-mnist", 0.9848),
    Row("Task 1, part 1 (prescribed CNN)", "Lines, 96 classes", "part1-lines", 0.9657),
    Row("Task 1, part 2 (improved CNN)", "MNIST", "part2-mnist", 0.9914),
    Row("Task 1, part 2 (improved CNN)", "Lines, 96 classes", "part2-lines", 0.9939),
    Row("Task 2 (multi-head)", "length", "multihead-lines", 0.9982, "length"),
    Row("Task 2 (multi-head)", "width", "multihead-lines", 0.9987, "width"),
    Row("Task 2 (multi-head)", "colour", "multihead-lines", 0.9999, "color"),
    Row("Task 2 (multi-head)", "angle", "multihead-lines", 0.9588, "angle"),
)
"""The original study's test accuracies: the floor cnnlab must beat."""


def result(record: RunRecord, head: str | None) -> tuple[float, float] | None:
    """Test accuracy and macro F1 of a run (or of one of its heads); None when missing."""
    source: Mapping[str, Any] = record.heads.get(head, {}) if head else record.metrics
    accuracy, macro = source.get("accuracy"), source.get("macro") or {}
    if not isinstance(accuracy, int | float):
        return None
    return float(accuracy), float(macro.get("f1", float("nan")))


@dataclass(frozen=True)
class StudyRow:
    """One row of the front table: the study's figure and cnnlab's (None: not run)."""

    task: str
    figure: str
    study: str
    accuracy: str | None = None
    f1: str = ""
    run: str = ""
    index: int = 0  # the run's section, ``#run-INDEX``
    beats: bool = False


@dataclass(frozen=True)
class Beyond:
    """A run beyond the study (a stronger variant): its section and its result in words."""

    name: str
    index: int
    text: str


@dataclass(frozen=True)
class FrontView:
    """What the reproduction's front page shows (``templates/front.html.j2``)."""

    quick: bool
    original: str
    rows: tuple[StudyRow, ...]
    checks: tuple[tuple[str, str], ...]  # (data, the data check in words)
    transfer: Table | None  # the Lines runs on other renderings
    beyond: tuple[Beyond, ...]
    studies: tuple[tuple[str, str], ...]  # (anchor, title) of the variation studies
    wall_time: str | None
    steps: tuple[tuple[str, str], ...]  # (step, duration)


def front_view(
    records: Mapping[str, tuple[int, RunRecord]],
    *,
    quick: bool,
    steps: Sequence[tuple[str, float]] = (),
    wall_seconds: float | None = None,
    extra: Sequence[str] = (),
    studies: Sequence[tuple[str, str]] = (),
    transfer_order: Sequence[str] = (),
) -> FrontView:
    """The study's table with cnnlab's figures, links to run sections, wall time.

    ``records`` maps a preset name to (section index, record); ``steps`` are (step, seconds)
    pairs of the reproduction and ``wall_seconds`` its wall time (default: their sum);
    ``extra`` lists more runs shown below the table (stronger variants), by preset name;
    ``studies`` (anchor, title) link to the variation studies; ``transfer_order`` orders the
    columns of the table of evaluations on other data (others follow, by name).
    """
    rows = _study_rows(records)
    beyond = _beyond(records, extra)
    total = wall_seconds if wall_seconds is not None else sum(s for _, s in steps)
    return FrontView(
        quick=quick,
        original=ORIGINAL,
        rows=tuple(rows),
        checks=_data_checks(records),
        transfer=_transfer_table(records, transfer_order),
        beyond=tuple(beyond),
        studies=tuple(studies),
        wall_time=_duration(total) if steps else None,
        steps=tuple((name, _duration(seconds)) for name, seconds in steps),
    )


def _study_rows(records: Mapping[str, tuple[int, RunRecord]]) -> list[StudyRow]:
    """The study's table: its figure beside cnnlab's, where the run is there."""
    rows = []
    for row in STUDY_TABLE:
        entry = records.get(row.run)
        got = result(entry[1], row.head) if entry else None
        if entry is None or got is None:
            rows.append(StudyRow(row.task, row.figure, f"{row.study:.4f}"))
            continue
        accuracy, f1 = got
        rows.append(
            StudyRow(
                row.task,
                row.figure,
                f"{row.study:.4f}",
                f"{accuracy:.4f}",
                f"{f1:.4f}",
                row.run,
                entry[0],
                accuracy > row.study,
            )
        )
    return rows


def _beyond(records: Mapping[str, tuple[int, RunRecord]], extra: Sequence[str]) -> list[Beyond]:
    """One line per run beyond the study's table: its accuracy (multi-head: per head)."""
    beyond = []
    for name in extra:
        if name not in records:
            continue
        index, record = records[name]
        joint = record.metrics.get("joint_accuracy")
        text = f"test accuracy {record.metrics.get('accuracy', float('nan')):.4f}"
        if record.heads:
            heads = ", ".join(f"{h} {v['accuracy']:.4f}" for h, v in record.heads.items())
            text = f"joint accuracy {joint:.4f} ({heads})"
        beyond.append(Beyond(name, index, text))
    return beyond


def _data_checks(records: Mapping[str, tuple[int, RunRecord]]) -> tuple[tuple[str, str], ...]:
    """What the test splits hold (the data check), once per dataset."""
    checks: dict[str, str] = {}
    for _, record in records.values():
        line = record.data_check_line
        if line is not None:
            name = record.run.dataset.name
            checks.setdefault(DATASET_TITLES.get(name, name), line)
    return tuple(checks.items())


def _transfer_table(
    records: Mapping[str, tuple[int, RunRecord]], order: Sequence[str] = ()
) -> Table | None:
    """How the Lines runs do on renderings they never saw (``metrics-transfer-*.json``)."""
    lines_runs = [(n, i, r) for n, (i, r) in records.items() if r.transfer_results]
    if not lines_runs:
        return None
    found = {t["name"] for _, _, r in lines_runs for t in r.transfer_results}
    names = [n for n in order if n in found] + sorted(found - set(order))
    rows = []
    for name, index, record in lines_runs:
        by_name = {t["name"]: t for t in record.transfer_results}
        cells: list[Any] = [Cell(name, href=f"#run-{index}")]
        for result in [record.own_result, *(by_name.get(n) for n in names)]:
            cells.append(_score(result) if result else "–")
        rows.append(cells)
    return table(["run", "own test split", *names], rows, cls="front")


def _score(result: Mapping[str, Any]) -> str:
    value = result.get("joint_accuracy")
    value = value if isinstance(value, int | float) else result.get("accuracy")
    return f"{value:.4f}" if isinstance(value, int | float) else "–"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"
