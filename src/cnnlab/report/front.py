"""The front page of a reproduction: cnnlab's results beside the original study's table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.report.html import esc
from cnnlab.report.records import RunRecord

ORIGINAL = "the original study (Keras/TensorFlow)"


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


def front_section(
    records: Mapping[str, tuple[int, RunRecord]],
    *,
    quick: bool,
    steps: Sequence[tuple[str, float]] = (),
    wall_seconds: float | None = None,
    extra: Sequence[str] = (),
    studies: Sequence[tuple[str, str]] = (),
    transfer_order: Sequence[str] = (),
) -> str:
    """HTML: the study's table with cnnlab's figures, links to run sections, wall time.

    ``records`` maps a preset name to (section index, record); ``steps`` are (step, seconds)
    pairs of the reproduction and ``wall_seconds`` its wall time (default: their sum);
    ``extra`` lists more runs shown below the table (stronger variants), by preset name;
    ``studies`` (anchor, title) link to the variation studies; ``transfer_order`` orders the
    columns of the table of evaluations on other data (others follow, by name).
    """
    parts = ["<section class='front' id='front'>", "<h2>cnnlab against the original study</h2>"]
    if quick:
        parts.append(
            "<p class='warn'><strong>Quick mode:</strong> reduced data and epochs, to check that "
            "everything runs. These figures are NOT the study's; run <code>cnnlab reproduce</code> "
            "without <code>--quick</code> for them.</p>"
        )
    rows = []
    for row in STUDY_TABLE:
        cells = [esc(row.task), esc(row.figure), f"{row.study:.4f}"]
        entry = records.get(row.run)
        got = result(entry[1], row.head) if entry else None
        if entry is None or got is None:
            cells += ["not run", "", ""]
        else:
            accuracy, f1 = got
            verdict = "beats" if accuracy > row.study else "does not beat"
            cells += [
                f"<strong>{accuracy:.4f}</strong>",
                f"{f1:.4f}",
                f"<a href='#run-{entry[0]}'>{esc(row.run)}</a> ({verdict})",
            ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = ["task", "figure", "study accuracy", "cnnlab accuracy", "cnnlab macro F1", "run"]
    parts += [
        f"<p>Test accuracy on the study's splits: figures of {ORIGINAL} beside cnnlab's, each "
        "computed from the run's one confusion matrix, so accuracy and F1 cannot contradict "
        "each other. A multi-head figure is that head's accuracy.</p>",
        "<table class='front'>",
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table>",
    ]
    parts += _data_section(records, transfer_order)
    more = [name for name in extra if name in records]
    if more:
        parts.append("<h3>Beyond the study</h3><ul>")
        for name in more:
            index, record = records[name]
            joint = record.metrics.get("joint_accuracy")
            text = f"test accuracy {record.metrics.get('accuracy', float('nan')):.4f}"
            if record.heads:
                heads = ", ".join(f"{h} {v['accuracy']:.4f}" for h, v in record.heads.items())
                text = f"joint accuracy {joint:.4f} ({heads})"
            parts.append(f"<li><a href='#run-{index}'>{esc(name)}</a>: {esc(text)}</li>")
        parts.append("</ul>")
    if studies:
        links = "".join(f"<li><a href='#{esc(a)}'>{esc(t)}</a></li>" for a, t in studies)
        parts.append(
            "<h3>Task 1, part 2: the variations</h3><p>Each variation of the prescribed net, "
            "trained on the same splits over several seeds, with 95% confidence intervals and "
            f"a verdict on whether it differs from the base beyond noise:</p><ul>{links}</ul>"
        )
    if steps:
        total = wall_seconds if wall_seconds is not None else sum(s for _, s in steps)
        items = "".join(f"<li>{esc(name)}: {_duration(seconds)}</li>" for name, seconds in steps)
        parts += [
            f"<h3>Wall time: {_duration(total)}</h3>",
            "<details><summary>per step, over this and earlier invocations (runs trained side "
            "by side overlap)</summary>",
            f"<ul>{items}</ul></details>",
        ]
    parts.append("</section>")
    return "\n".join(parts)


def _data_section(
    records: Mapping[str, tuple[int, RunRecord]], order: Sequence[str] = ()
) -> list[str]:
    """What the test splits hold (the data check) and how the Lines runs do on renderings
    they never saw (``metrics-transfer-*.json``)."""
    checks = {}
    for name, (_, record) in records.items():
        line = record.data_check_line
        if line is not None:
            checks.setdefault("Lines" if "lines" in name else "MNIST", line)
    parts = []
    if checks:
        items = "".join(f"<li>{esc(data)}: {esc(line)}</li>" for data, line in checks.items())
        parts.append(
            "<p>Every figure above is on images the model never saw: the data check at the start "
            f"of each training compares every test image with every training image.</p><ul>{items}"
            "</ul>"
        )
    lines_runs = [(n, i, r) for n, (i, r) in records.items() if r.transfer_results]
    if not lines_runs:
        return parts
    found = {t["name"] for _, _, r in lines_runs for t in r.transfer_results}
    names = [n for n in order if n in found] + sorted(found - set(order))
    rows = []
    for name, index, record in lines_runs:
        by_name = {t["name"]: t for t in record.transfer_results}
        cells = [f"<a href='#run-{index}'>{esc(name)}</a>"]
        for result in [record.own_result, *(by_name.get(n) for n in names)]:
            cells.append(_score(result) if result else "–")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = ["run", "own test split", *names]
    parts += [
        "<h3>Lines: the same classes, drawn another way</h3>",
        "<p>Each Lines run tested on other renderings of its 96 classes, drawn with another "
        "seed (<code>cnnlab data lines --variant NAME</code>): <em>centred</em> is generator "
        "1.0's layout (whole-pixel shifts about the centre), <em>sharp</em> hard-edged lines, "
        "<em>jpeg</em> those stored as JPEG at quality 95 as the study stored its images, "
        "<em>noisy</em> Gaussian noise of 20 grey levels. Accuracy; for multi-head runs, "
        "joint accuracy (all four heads right).</p>",
        "<table class='front'>",
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table>",
    ]
    return parts


def _score(result: Mapping[str, Any]) -> str:
    value = result.get("joint_accuracy")
    value = value if isinstance(value, int | float) else result.get("accuracy")
    return f"{value:.4f}" if isinstance(value, int | float) else "–"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"
