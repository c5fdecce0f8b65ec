"""One run's section of the report, prepared: its tables, figures and the words about them.

:func:`run_view` reads a :class:`RunRecord`, draws the run's figures into a folder and returns
a :class:`RunView` of plain values, :class:`Table` and :class:`Figure`, which
``templates/run.html.j2`` shows. Nothing here writes markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.report import figures
from cnnlab.report.errors_view import ErrorsView, errors_view
from cnnlab.report.facts import (
    TRANSFER_TITLE,
    HeadsCheck,
    compact_json,
    duration,
    fraction,
    head_rows,
    heads_check,
    holdout_facts,
    holdout_lines,
    integer,
    percent,
    sentence,
    transfer_table,
)
from cnnlab.report.inside_view import inside_view
from cnnlab.report.records import RunRecord
from cnnlab.report.render import Cell, Figure, Table, facts, figure, table

OPEN_CLASS_TABLE_UP_TO = 12
"""Per-class tables with more classes than this start collapsed."""


@dataclass(frozen=True)
class Holdout:
    """The held-out combinations and what the run did on them (the box under the heading)."""

    count: str
    """``Tested on 2 combinations never seen in training``."""
    classes: list[str]
    spec: str
    """``data.holdout`` as compact JSON; empty when the run records none."""
    lines: list[str]
    """The other sentences, capitalised, without their full stop."""


@dataclass(frozen=True)
class Augmented:
    """What the net saw: the grid of augmented training images training drew, and the
    augmentation in effect."""

    figure: Figure
    augment: str | None
    """``train.augment`` written plainly; None when the config has none."""


@dataclass(frozen=True)
class Metrics:
    """The test metrics: overall numbers, averages, the data check and a held-out note."""

    overall: Table
    averages: Table
    check: str | None
    """The data check's sentence (capitalised when it found copies); ``None`` without one."""
    overlap: bool
    """Whether the data check found test images equal to training images."""
    held_out_tested: int | None
    """With held-out combinations: how many held-out classes have test images."""


@dataclass(frozen=True)
class Transfers:
    """The "Tested on other data" table."""

    title: str
    table: Table
    sources: str
    """``name: source`` of each other dataset."""


@dataclass(frozen=True)
class HeadLevels:
    """One head's per-level table."""

    name: str
    accuracy: str
    table: Table


@dataclass(frozen=True)
class Heads:
    """A multi-head run's Heads part."""

    table: Table
    check: HeadsCheck | None
    classes: int
    levels: list[HeadLevels]
    confusion: Figure
    curves: Figure | None


@dataclass(frozen=True)
class PerClass:
    """The per-class F1 figure and the per-class table (collapsed when long)."""

    figure: Figure
    table: Table
    open: bool
    summary: str


@dataclass(frozen=True)
class Confusion:
    figure: Figure
    note: str


@dataclass(frozen=True)
class FactorAnalysis:
    """Accuracy per factor, errors by differing factors and the most-confused pairs."""

    errors: str
    n: str
    share: str
    factors: Table
    differing: Table | None
    """``None`` when there are no errors."""
    pairs: Table | None


@dataclass(frozen=True)
class RunView:
    """Everything one run's section shows."""

    index: int
    label: str
    path: str
    holdout: Holdout | None
    provenance: Table
    config_text: str
    augmented: Augmented | None
    """The augmented training images; None when the run folder has none."""
    curves: list[Figure]
    """Accuracy and loss curves; empty when the run has no ``history.csv``."""
    multihead: bool
    metrics: Metrics
    transfers: Transfers | None
    heads: Heads | None
    per_class: PerClass
    confusion: Confusion
    factor_analysis: FactorAnalysis | None
    errors: ErrorsView | None
    """Where it fails (:func:`cnnlab.report.errors_view.errors_view`)."""
    inside: Any
    """The "Looking inside" part (:func:`cnnlab.report.inside_view.inside_view`)."""


def run_view(index: int, record: RunRecord, fig_dir: Path, svg: bool = False) -> RunView:
    """Run ``index`` (from 1) of the report; its figures are drawn into ``fig_dir`` (curves also
    as SVG with ``svg``)."""
    stem = f"run{index:02d}"
    return RunView(
        index=index,
        label=record.label,
        path=str(record.path),
        holdout=holdout_view(record),
        provenance=provenance_table(record),
        config_text=record.config_text,
        augmented=augmented_view(record),
        curves=curve_figures(record, fig_dir, stem, svg),
        multihead=bool(record.heads),
        metrics=metrics_view(record),
        transfers=transfers_view(record),
        heads=heads_view(record, fig_dir, stem, svg) if record.heads else None,
        per_class=per_class_view(record, fig_dir, stem),
        confusion=confusion_view(record, fig_dir, stem),
        factor_analysis=factor_analysis_view(record) if record.factor_analysis else None,
        errors=errors_view(record, fig_dir, stem),
        inside=inside_view(record),
    )


def curve_figures(record: RunRecord, fig_dir: Path, stem: str, svg: bool = False) -> list[Figure]:
    """The run's accuracy and loss curves (none without a history)."""
    if not record.history:
        return []
    paths = figures.plot_learning_curves(
        {record.label: record.history}, fig_dir, f"{stem}-curves", svg=svg
    )
    return curve_row(paths, record.label)


def curve_row(paths: Sequence[Path], label: str) -> list[Figure]:
    """Figures of learning curves (``...-accuracy.png``, ``...-loss.png``) of ``label``."""
    return [figure(p, f"{p.stem.rsplit('-', 1)[-1]} curves of {label}") for p in paths]


def augmented_view(record: RunRecord) -> Augmented | None:
    """The run's grid of augmented training images (None without one: no augmentation, or a
    run older than the grid)."""
    if record.augmented is None:
        return None
    alt = f"Augmented training images of {record.label}, with their labels"
    return Augmented(figure(record.augmented, alt), record.augment_text)


def holdout_view(record: RunRecord) -> Holdout | None:
    facts_ = holdout_facts(record)
    if facts_ is None:
        return None
    first, *rest = holdout_lines(record)
    return Holdout(
        count=sentence(first.partition(": ")[0]),
        classes=list(facts_["classes"]),
        spec=compact_json(facts_["spec"]) if facts_["spec"] else "",
        lines=[sentence(line) for line in rest],
    )


def provenance_table(record: RunRecord) -> Table:
    run, data = record.run, record.run.dataset
    hardware = run.hardware  # as the run recorded it (older runs may lack a field)
    splits = [f"{integer(data.train)} train", f"{integer(data.test)} test images"]
    if data.val:
        splits.insert(1, f"{integer(data.val)} validation")
    rows: list[tuple[str, Any]] = [
        ("run folder", record.path),
        ("run name", run.name),
        ("status", run.status),
        ("seed", run.seed),
        ("started", run.started or "–"),
        ("finished", run.finished or "–"),
        ("train time", f"{duration(run.train_seconds)} over {len(record.history)} epochs"),
        ("weights", _weights_kept(run.weights)),
        (
            "model",
            f"{run.model.get('name', '–')}, {integer(run.model.get('parameters'))} parameters",
        ),
        ("dataset", f"{data.name}: {' / '.join(splits)}, {len(record.class_names)} classes"),
        ("versions", ", ".join(f"{k} {v}" for k, v in run.versions.items()) or "–"),
        ("git commit", run.git_commit or "unknown"),
        (
            "hardware",
            f"{hardware.get('device', '–')} ({hardware.get('device_name', '–')}), "
            f"{hardware.get('cpu_threads', '–')} CPU threads, "
            f"{hardware.get('world_size', 1)} process(es), "
            f"precision {hardware.get('precision', 'fp32')}",
        ),
        ("preprocess", settings_table(run.preprocess)),
        ("dataset provenance", settings_table(data.provenance)),
    ]
    seconds = record.metrics.get("seconds")
    speed = record.metrics.get("images_per_second")
    if isinstance(seconds, int | float):
        rows.append(("evaluation", f"{seconds:.2f} s, {speed or 0:,.0f} images/s"))
    return facts(rows)


HASH_SHOWN = 12
"""Characters of a file hash the provenance shows (the whole hash in the cell's title and in
``run.json``)."""

LIST_SHOWN = 12
"""Items of a list the provenance shows (all of them in the cell's title)."""


def settings_table(values: Mapping[str, Any], depth: int = 0) -> Table | str:
    """A mapping from ``run.json`` (the preprocessing, the dataset's provenance) as a small
    key/value table: nested mappings as nested tables (two levels; deeper ones as plain text),
    lists as comma-separated items, numbers rounded, file hashes shortened (whole in the
    cell's title)."""
    if not values:
        return "–"
    rows = [
        (Cell(str(key), header=True), _setting(value, depth + 1)) for key, value in values.items()
    ]
    return table(("", ""), rows, cls="kv", head=False)


def _setting(value: Any, depth: int) -> Any:
    """One value of :func:`settings_table`: a nested table, a shortened :class:`Cell` or text."""
    if isinstance(value, Mapping):
        return settings_table(value, depth) if depth < 2 else _plain(value)
    if isinstance(value, str) and _is_hash(value):
        return Cell(value[:HASH_SHOWN] + "…", title=value)
    if isinstance(value, list | tuple) and len(value) > LIST_SHOWN:
        shown = _plain(list(value[:LIST_SHOWN]))
        return Cell(f"{shown}, … ({len(value)} in all)", title=_plain(value))
    text = _plain(value)
    items = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(v, float) for v in items):  # rounded: the exact numbers in the title
        exact = ", ".join(str(v) for v in items)
        return Cell(text, title=exact) if exact != text else text
    return text


def _plain(value: Any) -> str:
    """``value`` as words, no JSON braces: ``a 1, b 2``; lists comma-separated (``;`` between
    mappings); floats to 4 significant digits."""
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {_plain(v)}" for key, v in value.items()) or "–"
    if isinstance(value, list | tuple):
        joint = "; " if any(isinstance(v, Mapping | list | tuple) for v in value) else ", "
        return joint.join(_plain(v) for v in value) or "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def _is_hash(text: str) -> bool:
    """A hex digest (sha256, md5 and the like): too long to read, worth comparing."""
    return len(text) >= 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def _weights_kept(weights: dict[str, Any] | None) -> str:
    """Which epoch's weights every figure of the run comes from, and why."""
    if not weights:
        return "not recorded (a run from an older cnnlab)"
    return f"epoch {weights['epoch']} of {weights['epochs']}: {weights['chosen']}"


def metrics_view(record: RunRecord) -> Metrics:
    m = record.metrics
    n = m.get("n", 0)
    errors = round(n * (1 - m["accuracy"])) if n else 0
    overall = table(
        ("accuracy", "loss", "images", "errors"),
        [(fraction(m["accuracy"]), fraction(m["loss"]), integer(n), integer(errors))],
        numeric=range(4),
    )
    averages = table(
        ("average", "precision", "recall", "F1"),
        [
            (name, *(fraction(m[name][k]) for k in ("precision", "recall", "f1")))
            for name in ("macro", "weighted")
        ],
        numeric=range(1, 4),
    )
    check = record.data_check_line
    if check and record.test_overlap:
        check = sentence(check)
    held = holdout_facts(record)
    return Metrics(
        overall=overall,
        averages=averages,
        check=check,
        overlap=bool(check) and record.test_overlap,
        held_out_tested=held["tested"] if held else None,
    )


def transfers_view(record: RunRecord) -> Transfers | None:
    """The "Tested on other data" table: the own test split, then each other dataset."""
    found = transfer_table(record)
    if found is None:
        return None
    headers, rows = found
    cells = [[Cell(row[0], header=True), *row[1:]] for row in rows]
    return Transfers(
        title=TRANSFER_TITLE,
        table=table(headers, cells, numeric=range(1, len(headers))),
        sources="; ".join(f"{r['name']}: {r['source']}" for r in record.transfer_results),
    )


HEAD_COLUMNS = (
    "head",
    "levels",
    "accuracy",
    "chance",
    "loss",
    "macro precision",
    "macro recall",
    "macro F1",
    "decoded class: this factor's accuracy",
)


def heads_view(record: RunRecord, fig_dir: Path, stem: str, svg: bool = False) -> Heads:
    m = record.metrics
    heads = record.heads
    rows: list[list[Any]] = [
        [
            Cell(r["name"], header=True),
            integer(r["levels"]),
            fraction(r["accuracy"]),
            fraction(1 / r["levels"]) if r["levels"] else "–",
            fraction(r["loss"]),
            *(fraction(r["macro"].get(k)) for k in ("precision", "recall", "f1")),
            fraction(r["decoded"]),
        ]
        for r in head_rows(record)
    ]
    k = len(record.class_names)
    rows.append(
        [
            Cell("joint: all heads right", header=True),
            integer(k),
            Cell(fraction(m.get("joint_accuracy")), strong=True),
            fraction(1 / k) if k else "–",
            fraction(m.get("loss")),
            *(fraction(m.get("macro", {}).get(x)) for x in ("precision", "recall", "f1")),
            fraction(m.get("accuracy")),
        ]
    )
    levels = [_head_levels(name, head) for name, head in heads.items()]
    confusion = figures.plot_head_confusions(heads, fig_dir / f"{stem}-head-confusion.png")
    curves = None
    names = record.head_history()
    if names:
        path = figures.plot_head_curves(
            record.history, names, fig_dir / f"{stem}-head-curves.png", svg=svg
        )
        curves = figure(path, f"Per-head learning curves of {record.label}")
    return Heads(
        table=table(HEAD_COLUMNS, rows, numeric=range(1, 9)),
        check=heads_check(record),
        classes=k,
        levels=levels,
        confusion=figure(confusion, f"Per-head confusion matrices of {record.label}"),
        curves=curves,
    )


def _head_levels(name: str, head: Mapping[str, Any]) -> HeadLevels:
    """One head's accuracy and its per-level precision, recall, F1 and support."""
    per = head.get("per_class", {})
    names = [str(v) for v in head.get("levels", [])]
    missing = [None] * len(names)
    level_rows = [
        (
            level,
            *(fraction(per.get(key, missing)[i]) for key in ("precision", "recall", "f1")),
            integer(per.get("support", missing)[i]),
        )
        for i, level in enumerate(names)
    ]
    return HeadLevels(
        name=name,
        accuracy=fraction(head.get("accuracy")),
        table=table((name, "precision", "recall", "F1", "support"), level_rows, (1, 2, 3, 4)),
    )


def per_class_view(record: RunRecord, fig_dir: Path, stem: str) -> PerClass:
    names = record.class_names
    per = record.metrics["per_class"]
    path = figures.plot_per_class_f1(
        per["f1"],
        names,
        fig_dir / f"{stem}-f1.png",
        factor_levels=record.factor_levels or None,
        macro=record.metrics["macro"]["f1"],
    )
    rows = [
        (i, name, *(fraction(per[k][i]) for k in ("precision", "recall", "f1")), per["support"][i])
        for i, name in enumerate(names)
    ]
    present = [i for i in range(len(names)) if per["support"][i]] or list(range(len(names)))
    worst = sorted(present, key=lambda i: per["f1"][i])[:3]
    lowest = ", ".join(f"{names[i]} {fraction(per['f1'][i])}" for i in worst)
    which = " of classes with test images" if len(present) < len(names) else ""
    return PerClass(
        figure=figure(path, f"Per-class F1 of {record.label}"),
        table=table(
            ("#", "class", "precision", "recall", "F1", "support"), rows, numeric=(0, 2, 3, 4, 5)
        ),
        open=len(names) <= OPEN_CLASS_TABLE_UP_TO,
        summary=f"Per-class table ({len(names)} classes; lowest F1{which}: {lowest})",
    )


def confusion_view(record: RunRecord, fig_dir: Path, stem: str) -> Confusion:
    m = record.metrics
    names = record.class_names
    path = fig_dir / f"{stem}-confusion.png"
    if record.factor_levels:
        analysis = None if record.heads else record.factor_analysis
        figures.plot_factor_confusion(
            m["confusion"], record.factor_levels, path, factor_analysis=analysis
        )
        note = (
            "Rows are true classes, columns predicted classes, in factor order; colour is the "
            "count on a log scale (white: none). "
        )
        if record.heads:
            note += (
                "Predicted classes are the heads' answers composed; each head's (each factor's) "
                "own confusion matrix is under Heads."
            )
        elif analysis:
            note += (
                "Below: each factor's own confusion matrix (numbers are counts, colour the share "
                "of the true level)."
            )
    elif len(names) <= figures.SMALL_K:
        figures.plot_confusion(m["confusion"], names, path)
        note = "Rows are true classes, columns predicted classes; blank cells are zero."
    else:
        figures.plot_factor_confusion(m["confusion"], {"class": names}, path)
        note = "Rows are true classes, columns predicted; colour is the count on a log scale."
    return Confusion(figure(path, f"Confusion matrix of {record.label}"), note)


def factor_analysis_view(record: RunRecord) -> FactorAnalysis:
    analysis = record.factor_analysis or {}
    n = record.metrics.get("n", 0)
    errors = analysis.get("errors", 0)
    factor_rows = [
        (
            name,
            ", ".join(f["levels"]),
            fraction(f["accuracy"]),
            fraction(f["macro"]["f1"]),
            fraction(1 / len(f["levels"])),
        )
        for name, f in analysis.get("factors", {}).items()
    ]
    differing = [
        (combination, integer(count), percent(count / errors) if errors else "–")
        for combination, count in analysis.get("errors_by_differing_factors", {}).items()
    ]
    pairs = [
        (p["true"], p["predicted"], integer(p["count"]), p["difference"])
        for p in analysis.get("most_confused", [])
    ]
    return FactorAnalysis(
        errors=integer(errors),
        n=integer(n),
        share=percent(errors / n) if n else "–",
        factors=table(
            ("factor", "levels", "accuracy", "macro F1", "chance"), factor_rows, (2, 3, 4)
        ),
        differing=table(("factors that differ", "errors", "share of errors"), differing, (1, 2))
        if differing
        else None,
        pairs=table(("true class", "predicted class", "count", "difference"), pairs, (2,))
        if pairs
        else None,
    )
