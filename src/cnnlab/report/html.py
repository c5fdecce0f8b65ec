"""``build_report``: one self-contained HTML page (and a Markdown summary) for runs.

The page embeds its figures as base64 PNG data URIs and carries its CSS inline: it needs no
network, no JavaScript and no other file. Every text taken from configs, run files or folder
names is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_open
from cnnlab.report import figures
from cnnlab.report.inside import inside_section, prepare_inside
from cnnlab.report.markdown import markdown_summary
from cnnlab.report.records import RunRecord, read_runs
from cnnlab.report.summary import (
    COMPARISON_COLUMNS,
    FACTOR_SUFFIX,
    TEXT_COLUMNS,
    TRANSFER_TITLE,
    compact_json,
    comparison_columns,
    comparison_row,
    duration,
    fraction,
    groups_by_test_set,
    head_rows,
    holdout_facts,
    holdout_lines,
    integer,
    mixed_test_sets_note,
    percent,
    transfer_table,
)

OPEN_CLASS_TABLE_UP_TO = 12
"""Per-class tables with more classes than this start collapsed."""


class Raw(str):
    """HTML that is already safe (built here from escaped parts): table cells pass it as is."""


def esc(value: Any) -> str:
    """Any value as HTML text, quotes included (safe in attributes too)."""
    return value if isinstance(value, Raw) else html.escape(str(value), quote=True)


def build_report(
    run_dirs: Sequence[Path],
    out: Path,
    markdown: Path | None = None,
    *,
    figures_dir: Path | None = None,
    inside: bool = False,
    visualize_options: Mapping[str, Any] | None = None,
    title: str = "cnnlab report",
    front: Callable[[Sequence[RunRecord]], str] | None = None,
    appendix: Callable[[Path], Sequence[tuple[str, str, str]]] | None = None,
) -> Path:
    """Write an HTML report on ``run_dirs`` to ``out`` (and a Markdown summary to ``markdown``).

    Runs without ``metrics-test.json`` are evaluated first. A run with pictures in
    ``RUN_DIR/visualize`` gets a "Looking inside" section; ``inside`` first makes them
    (``visualize_run``, scored on Lines; ``visualize_options`` passed on) for runs that have
    none or older than their model. ``figures_dir`` keeps the PNG (and SVG) figures; by
    default they live only inside the page. ``front`` makes a section shown first from the
    records; ``appendix`` makes (anchor, title, HTML) sections shown last from the figures
    folder (a reproduction's front page and variation studies). Returns ``out``.
    """
    out = Path(out)
    targets = [(out, "report"), (markdown, "Markdown summary"), (figures_dir, "figures")]
    for path, what in targets:
        if path is not None:
            _check_writable(Path(path), what, folder=what == "figures")
    records = read_runs(list(run_dirs))
    if inside:
        prepare_inside([r.path for r in records], visualize_options)
    with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as tmp:
        kept = figures_dir is not None
        fig_dir = Path(figures_dir) if kept else Path(tmp)
        page = render_page(
            records,
            fig_dir,
            svg=kept,
            title=title,
            front=front(records) if front else "",
            appendix=appendix(fig_dir) if appendix else (),
        )
    _write_text(out, page, "report")
    if markdown is not None:
        _write_text(Path(markdown), markdown_summary(records), "Markdown summary")
    return out


def render_page(
    records: Sequence[RunRecord],
    fig_dir: Path,
    svg: bool = False,
    *,
    title: str = "cnnlab report",
    front: str = "",
    appendix: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The whole HTML document for ``records``; figures are drawn into ``fig_dir`` (curves
    also as SVG with ``svg``). ``front`` comes first (anchor ``front``), the ``appendix``
    sections (anchor, title, HTML) last; both are listed in the contents."""
    from cnnlab import __version__

    labels = ", ".join(r.label for r in records)
    body = [
        "<header>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='meta'>{len(records)} run{'s' if len(records) != 1 else ''}; generated "
        f"{esc(time.strftime('%Y-%m-%d %H:%M:%S %z'))} by cnnlab {esc(__version__)}.</p>",
    ]
    if len(records) > 1 or front or appendix:
        body.append(_contents(records, bool(front), appendix))
    body.append("</header>")
    if front:
        body.append(front)
    if len(records) > 1:
        body.append(_comparison(records, fig_dir, svg))
    body += [_run_section(i, record, fig_dir, svg) for i, record in enumerate(records, 1)]
    body += [html_text for _, _, html_text in appendix]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            "<html lang='en'>",
            "<head>",
            "<meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>cnnlab report: {esc(labels)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


# -- sections -----------------------------------------------------------------------------------


def _contents(
    records: Sequence[RunRecord], front: bool, appendix: Sequence[tuple[str, str, str]]
) -> str:
    items = "".join(
        f"<li><a href='#run-{i}'>{esc(r.label)}</a></li>" for i, r in enumerate(records, 1)
    )
    links = ["<a href='#front'>Against the study</a>"] if front else []
    if len(records) > 1:
        links.append("<a href='#comparison'>Comparison</a>")
    extra = "".join(f"<li><a href='#{esc(a)}'>{esc(t)}</a></li>" for a, t, _ in appendix)
    return (
        f"<nav>{' · '.join(links)}<ol>{items}</ol>"
        + (f"<ul>{extra}</ul>" if extra else "")
        + "</nav>"
    )


def _comparison(records: Sequence[RunRecord], fig_dir: Path, svg: bool) -> str:
    columns = comparison_columns(records)
    factor_columns = columns[len(COMPARISON_COLUMNS) :]
    bold = {"test accuracy", *factor_columns}
    rows_text = [comparison_row(record) for record in records]
    best: dict[str, set[int]] = {column: set() for column in bold}
    for group in groups_by_test_set(records):
        for column in bold:
            values = [
                (float(rows_text[i][column]), i) for i in group if _number(rows_text[i], column)
            ]
            top = max((v for v, _ in values), default=None)
            best[column] |= {i for v, i in values if v == top and len(values) > 1}
    rows = []
    for i, row in enumerate(rows_text):
        cells: list[Any] = [Raw(f"<a href='#run-{i + 1}'>{esc(row['run'])}</a>")]
        for column in columns[1:]:
            text = esc(row.get(column, "–"))
            cells.append(Raw(f"<strong>{text}</strong>" if i in best.get(column, ()) else text))
        rows.append(cells)
    numeric = [i for i, c in enumerate(columns) if c not in TEXT_COLUMNS]
    span = " rowspan=2" if factor_columns else ""
    header = "".join(
        f"<th{span}{' class=num' if i in numeric else ''}>{esc(c)}</th>"
        for i, c in enumerate(COMPARISON_COLUMNS)
    )
    if factor_columns:
        header += (
            f"<th colspan={len(factor_columns)} class=group>accuracy per factor of the "
            "predicted class (multi-head: per head)</th>"
        )
        sub = "".join(
            f"<th class=num>{esc(c.removesuffix(FACTOR_SUFFIX))}</th>" for c in factor_columns
        )
        thead = f"<thead><tr>{header}</tr><tr>{sub}</tr></thead>"
    else:
        thead = f"<thead><tr>{header}</tr></thead>"
    histories = {r.label: r.history for r in records if r.history}
    notes = [
        "Test metrics from each run's <code>metrics-test.json</code>; the best test accuracy "
        "(and per-factor accuracy) among runs on the same test images is in bold. Run names "
        "link to their sections."
    ]
    if factor_columns:
        notes.append(
            "Test accuracy is the accuracy of the predicted class; a multi-head net's predicted "
            "class is its heads' answers composed, so its test accuracy is its joint accuracy "
            "(all heads right). Per factor: how often that factor of the predicted class is "
            "right (for a multi-head net, that head's accuracy), so both kinds of net compare "
            "in the same terms on a shared test set."
        )
    note = mixed_test_sets_note(records)
    if note:
        notes.append(f"<strong>{esc(note)}</strong>")
    parts = [
        "<section id='comparison'>",
        "<h2>Comparison</h2>",
        f"<div class='wide'>{_table(columns, rows, numeric, thead=thead, cls='comparison')}</div>",
        *(f"<p class='note'>{n}</p>" for n in notes),
    ]
    if histories:
        paths = figures.plot_learning_curves(histories, fig_dir, "all-runs-curves", svg=svg)
        parts += ["<h3>Learning curves (all runs)</h3>", _figure_row(paths, "all runs")]
        if any(r.heads for r in records):
            parts.append(
                "<p class='note'>For multi-head runs the curves show the joint accuracy (all "
                "heads right) and the weighted sum of the head losses.</p>"
            )
    parts.append("</section>")
    return "\n".join(parts)


def _number(row: dict[str, str], column: str) -> bool:
    try:
        float(row.get(column, "–"))
    except ValueError:
        return False
    return True


def _run_section(index: int, record: RunRecord, fig_dir: Path, svg: bool) -> str:
    stem = f"run{index:02d}"
    parts = [
        f"<section class='run' id='run-{index}'>",
        f"<h2>Run {index}: {esc(record.label)}</h2>",
        f"<p class='path'>{esc(record.path)}</p>",
        _holdout(record),
        "<h3>Provenance</h3>",
        _provenance(record),
        "<h3>Learning curves</h3>",
        _curves(record, fig_dir, stem, svg),
        "<h3>Test metrics</h3>",
        _metrics(record),
        _transfers(record),
    ]
    if record.heads:
        parts += ["<h3>Heads</h3>", _heads(record, fig_dir, stem, svg)]
    parts += [
        "<h3>Per-class metrics</h3>",
        _per_class(record, fig_dir, stem),
        "<h3>Confusion matrix</h3>",
        _confusion(record, fig_dir, stem),
    ]
    if record.factor_analysis:
        parts += ["<h3>Factor analysis</h3>", _factor_analysis(record)]
    parts += [inside_section(record.path, record.label), "</section>"]
    return "\n".join(parts)


def _provenance(record: RunRecord) -> str:
    info = record.info
    dataset = info.get("dataset", {})
    model = info.get("model", {})
    hardware = info.get("hardware", {})
    versions = info.get("versions", {})
    epochs = len(record.history)
    rows = [
        ("run folder", record.path),
        ("run name", info.get("name", "–")),
        ("status", info.get("status", "–")),
        ("seed", info.get("seed", "–")),
        ("started", info.get("started", "–")),
        ("finished", info.get("finished", "–")),
        ("train time", f"{duration(info.get('train_seconds'))} over {epochs} epochs"),
        ("model", f"{model.get('name', '–')}, {integer(model.get('parameters'))} parameters"),
        (
            "dataset",
            f"{dataset.get('name', '–')}: {integer(dataset.get('train'))} train / "
            f"{integer(dataset.get('test'))} test images, {len(record.class_names)} classes",
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "–"),
        ("git commit", info.get("git_commit") or "unknown"),
        (
            "hardware",
            f"{hardware.get('device', '–')} ({hardware.get('device_name', '–')}), "
            f"{hardware.get('cpu_threads', '–')} CPU threads, "
            f"{hardware.get('world_size', 1)} process(es), "
            f"precision {hardware.get('precision', 'fp32')}",
        ),
        ("preprocess", compact_json(info.get("preprocess", {}))),
        ("dataset provenance", compact_json(dataset.get("provenance", {}))),
    ]
    seconds = record.metrics.get("seconds")
    speed = record.metrics.get("images_per_second")
    if isinstance(seconds, int | float):
        rows.append(("evaluation", f"{seconds:.2f} s, {speed or 0:,.0f} images/s"))
    table = _table(("", ""), [(Raw(f"<th>{esc(k)}</th>"), v) for k, v in rows], head=False)
    config = f"<h4>config.yaml</h4><pre>{esc(record.config_text)}</pre>"
    return f"<div class='columns'><div>{table}</div><div>{config}</div></div>"


def _curves(record: RunRecord, fig_dir: Path, stem: str, svg: bool) -> str:
    if not record.history:
        return "<p class='note'>This run has no history.csv.</p>"
    histories = {record.label: record.history}
    paths = figures.plot_learning_curves(histories, fig_dir, f"{stem}-curves", svg=svg)
    row = _figure_row(paths, record.label)
    if record.heads:
        row += (
            "<p class='note'>Accuracy here is the joint accuracy (all heads right) and loss the "
            "weighted sum of the head losses; each head's curves are under Heads.</p>"
        )
    return row


def _metrics(record: RunRecord) -> str:
    m = record.metrics
    n = m.get("n", 0)
    errors = round(n * (1 - m["accuracy"])) if n else 0
    overall = _table(
        ("accuracy", "loss", "images", "errors"),
        [(fraction(m["accuracy"]), fraction(m["loss"]), integer(n), integer(errors))],
        numeric=range(4),
    )
    averages = _table(
        ("average", "precision", "recall", "F1"),
        [
            (name, *(fraction(m[name][k]) for k in ("precision", "recall", "f1")))
            for name in ("macro", "weighted")
        ],
        numeric=range(1, 4),
    )
    text = f"<div class='columns'><div>{overall}</div><div>{averages}</div></div>"
    check = record.data_check_line
    if check and record.test_overlap:
        text += f"<p class='overlap'><strong>{esc(check[0].upper() + check[1:])}.</strong></p>"
    elif check:
        text += f"<p class='note'>Data check: {esc(check)}.</p>"
    facts = holdout_facts(record)
    if facts:
        text += (
            f"<p class='note'>Only the {facts['tested']} held-out classes have test images: the "
            "macro averages run over the classes that occur among the labels or the predictions "
            "(scikit-learn's convention), the weighted ones over the held-out classes; read the "
            "decoded-class and per-factor accuracy (above) beside them.</p>"
        )
    return text


def _transfers(record: RunRecord) -> str:
    """The "Tested on other data" table: the own test split, then each other dataset."""
    table = transfer_table(record)
    if table is None:
        return ""
    headers, rows = table
    cells = [[Raw(f"<th>{esc(row[0])}</th>"), *row[1:]] for row in rows]
    sources = "; ".join(f"{r['name']}: {r['source']}" for r in record.transfer_results)
    note = (
        "The run's model with its own normalisation, on another dataset with the same classes "
        f"(<code>cnnlab evaluate --dataset</code>; {esc(sources)}). Copies: images equal pixel "
        "for pixel to one of the run's training images; accuracy on them measures memory."
    )
    return (
        f"<h4>{esc(TRANSFER_TITLE)}</h4>"
        + _table(headers, cells, numeric=range(1, len(headers)))
        + f"<p class='note'>{note}</p>"
    )


def _per_class(record: RunRecord, fig_dir: Path, stem: str) -> str:
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
    table = _table(
        ("#", "class", "precision", "recall", "F1", "support"),
        rows,
        numeric=(0, 2, 3, 4, 5),
    )
    present = [i for i in range(len(names)) if per["support"][i]] or list(range(len(names)))
    worst = sorted(present, key=lambda i: per["f1"][i])[:3]
    lowest = ", ".join(f"{names[i]} {fraction(per['f1'][i])}" for i in worst)
    open_attr = " open" if len(names) <= OPEN_CLASS_TABLE_UP_TO else ""
    details = (
        f"<details{open_attr}><summary>Per-class table ({len(names)} classes; lowest F1"
        f"{' of classes with test images' if len(present) < len(names) else ''}: "
        f"{esc(lowest)})</summary>{table}</details>"
    )
    return _figure(path, f"Per-class F1 of {record.label}") + details


def _confusion(record: RunRecord, fig_dir: Path, stem: str) -> str:
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
            note += "Predicted classes are the heads' answers composed; each head's (each "
            note += "factor's) own confusion matrix is under Heads."
        elif analysis:
            note += "Below: each factor's own confusion matrix (numbers are counts, colour the "
            note += "share of the true level)."
    elif len(names) <= figures.SMALL_K:
        figures.plot_confusion(m["confusion"], names, path)
        note = "Rows are true classes, columns predicted classes; blank cells are zero."
    else:
        figures.plot_factor_confusion(m["confusion"], {"class": names}, path)
        note = "Rows are true classes, columns predicted; colour is the count on a log scale."
    return _figure(path, f"Confusion matrix of {record.label}") + f"<p class='note'>{note}</p>"


def _factor_analysis(record: RunRecord) -> str:
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
    differing = analysis.get("errors_by_differing_factors", {})
    differing_rows = [
        (combination, integer(count), percent(count / errors) if errors else "–")
        for combination, count in differing.items()
    ]
    pairs = [
        (p["true"], p["predicted"], integer(p["count"]), p["difference"])
        for p in analysis.get("most_confused", [])
    ]
    share = percent(errors / n) if n else "–"
    parts = [
        f"<p>{integer(errors)} of {integer(n)} test images are misclassified ({share}). A "
        "prediction decodes into a predicted level of every factor:</p>",
        "<h4>Accuracy per factor</h4>",
        _table(
            ("factor", "levels", "accuracy", "macro F1", "chance"), factor_rows, numeric=(2, 3, 4)
        ),
        "<h4>Errors by differing factors</h4>",
        "<p class='note'>Which factors a wrong prediction gets wrong (the others it gets "
        "right).</p>",
        _table(("factors that differ", "errors", "share of errors"), differing_rows, (1, 2))
        if differing_rows
        else "<p>No errors.</p>",
        "<h4>Most-confused pairs</h4>",
        _table(("true class", "predicted class", "count", "difference"), pairs, numeric=(2,))
        if pairs
        else "<p>No errors.</p>",
    ]
    return "\n".join(parts)


def _holdout(record: RunRecord) -> str:
    """The held-out combinations and what the run did on them, in a box under the heading."""
    facts = holdout_facts(record)
    if facts is None:
        return ""
    first, *rest = holdout_lines(record)
    count = first.partition(": ")[0]
    names = ", ".join(f"<code>{esc(c)}</code>" for c in facts["classes"])
    spec = compact_json(facts["spec"]) if facts["spec"] else ""
    items = "".join(f"<li>{esc(line[0].upper() + line[1:])}.</li>" for line in rest)
    return (
        "<div class='holdout'>"
        f"<p><strong>{esc(count[0].upper() + count[1:])}:</strong> "
        f"{names}{f' <span class=note>(data.holdout {esc(spec)})</span>' if spec else ''}.</p>"
        f"<ul>{items}</ul></div>"
    )


def _heads(record: RunRecord, fig_dir: Path, stem: str, svg: bool) -> str:
    m = record.metrics
    heads = record.heads
    rows = head_rows(record)
    table_rows: list[Sequence[Any]] = [
        (
            Raw(f"<th>{esc(r['name'])}</th>"),
            integer(r["levels"]),
            fraction(r["accuracy"]),
            fraction(1 / r["levels"]) if r["levels"] else "–",
            fraction(r["loss"]),
            *(fraction(r["macro"].get(k)) for k in ("precision", "recall", "f1")),
            fraction(r["decoded"]),
        )
        for r in rows
    ]
    k = len(record.class_names)
    table_rows.append(
        (
            Raw("<th>joint: all heads right</th>"),
            integer(k),
            Raw(f"<strong>{esc(fraction(m.get('joint_accuracy')))}</strong>"),
            fraction(1 / k) if k else "–",
            fraction(m.get("loss")),
            *(fraction(m.get("macro", {}).get(x)) for x in ("precision", "recall", "f1")),
            fraction(m.get("accuracy")),
        )
    )
    table = _table(
        (
            "head",
            "levels",
            "accuracy",
            "chance",
            "loss",
            "macro precision",
            "macro recall",
            "macro F1",
            "decoded class: this factor's accuracy",
        ),
        table_rows,
        numeric=range(1, 9),
    )
    disagree = [r["name"] for r in rows if not r["agrees"] or r["accuracy"] != r["decoded"]]
    joint_ok = m.get("joint_accuracy") == m.get("accuracy")
    if not record.factor_analysis:
        check = ""
    elif not disagree and joint_ok:
        check = (
            f"Checked for this run: all {len(rows)} heads' accuracies and confusion matrices "
            "equal those of the decoded class's factors, and the joint accuracy equals the "
            "decoded-class accuracy."
        )
    else:
        what = ", ".join(disagree + ([] if joint_ok else ["joint accuracy"]))
        check = (
            f"<strong class='warn'>Mismatch in this run's metrics-test.json ({esc(what)}): "
            "re-evaluate it with cnnlab evaluate.</strong>"
        )
    explain = (
        "<p>One output head per factor; the predicted class is the heads' answers composed. "
        "So a head's accuracy <em>is</em> the accuracy of that factor of the decoded class "
        "(last column, as in the factor analysis below), its confusion matrix is that factor's "
        "confusion matrix, and the decoded class is right exactly when every head is right "
        "(joint accuracy = test accuracy). Accuracies and F-scores all come from the same "
        f"predictions and cannot contradict each other. {check}</p>"
        "<p class='note'>Macro precision / recall / F1 average over a head's levels; the joint "
        f"row's over the {k} classes. The joint row's loss is the test loss: the sum of the "
        "head losses weighted by <code>train.head_weights</code> (default 1 each).</p>"
    )
    per_level = []
    for name, head in heads.items():
        per = head.get("per_class", {})
        levels = [str(v) for v in head.get("levels", [])]
        level_rows = [
            (
                level,
                *(
                    fraction(per.get(key, [None] * len(levels))[i])
                    for key in ("precision", "recall", "f1")
                ),
                integer(per.get("support", [None] * len(levels))[i]),
            )
            for i, level in enumerate(levels)
        ]
        per_level.append(
            f"<div><h4>{esc(name)}: accuracy {esc(fraction(head.get('accuracy')))}</h4>"
            + _table(
                (name, "precision", "recall", "F1", "support"), level_rows, numeric=(1, 2, 3, 4)
            )
            + "</div>"
        )
    parts = [
        table,
        explain,
        "<details open><summary>Per-level metrics of each head</summary>"
        f"<div class='heads'>{''.join(per_level)}</div></details>",
        "<h4>Confusion matrix of each head</h4>",
        _figure(
            figures.plot_head_confusions(heads, fig_dir / f"{stem}-head-confusion.png"),
            f"Per-head confusion matrices of {record.label}",
        ),
        "<p class='note'>Rows are true levels, columns predicted levels; numbers are counts, "
        "colour the share of the true level.</p>",
    ]
    names = record.head_history()
    if names:
        path = figures.plot_head_curves(
            record.history, names, fig_dir / f"{stem}-head-curves.png", svg=svg
        )
        parts += [
            "<h4>Learning curves per head</h4>",
            _figure(path, f"Per-head learning curves of {record.label}"),
            "<p class='note'>From <code>history.csv</code>'s per-head columns; black: the joint "
            "accuracy (all heads right).</p>",
        ]
    return "\n".join(parts)


# -- HTML pieces ---------------------------------------------------------------------------------


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Iterable[int] = (),
    head: bool = True,
    thead: str | None = None,
    cls: str | None = None,
) -> str:
    """A table; every cell is escaped unless it is :class:`Raw` (a raw ``<th>`` stays a cell).

    ``thead`` replaces the one-row header built from ``headers`` (already safe HTML)."""
    right = set(numeric)
    out = [f"<table class='{esc(cls)}'>" if cls else "<table>"]
    if thead is not None:
        out.append(thead)
    elif head:
        out.append(
            "<thead><tr>"
            + "".join(
                f"<th{' class=num' if i in right else ''}>{esc(h)}</th>"
                for i, h in enumerate(headers)
            )
            + "</tr></thead>"
        )
    out.append("<tbody>")
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if isinstance(value, Raw) and value.startswith("<th>"):
                cells.append(value)
            else:
                cells.append(f"<td{' class=num' if i in right else ''}>{esc(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure_row(paths: Sequence[Path], label: str) -> str:
    items = "".join(_figure(p, f"{p.stem.rsplit('-', 1)[-1]} curves of {label}") for p in paths)
    return f"<div class='figures'>{items}</div>"


def _figure(path: Path, alt: str, caption: str | None = None) -> str:
    """``<figure>`` with the PNG at ``path`` embedded, shown at its intended size (under a
    ``caption``)."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        width = image.width
        dpi = float(image.info.get("dpi", (figures.DPI, figures.DPI))[0]) or figures.DPI
    css_width = round(width * 96 / dpi)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    above = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{above}<img src='{uri}' alt='{esc(alt)}' width='{css_width}'></figure>"


# -- output --------------------------------------------------------------------------------------


def _check_writable(path: Path, what: str, folder: bool = False) -> None:
    """Fail early, in one line, when ``path`` cannot be written (before any slow work)."""
    if path.is_dir() and not folder:
        raise CnnlabError(f"{path}: is a folder; give a file name for the {what}")
    target = path if folder else path.parent
    existing = next(p for p in (target, *target.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise CnnlabError(f"{path}: cannot write the {what} ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CnnlabError(f"{path}: cannot write the {what} ({existing} is not writable)")


def _write_text(path: Path, text: str, what: str) -> None:
    try:
        with atomic_open(path) as handle:
            handle.write(text)
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None


CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 0 auto; padding: 24px 32px 64px; max-width: 1540px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 22px; margin: 40px 0 4px; padding-top: 12px; border-top: 3px solid var(--ink); }
h3 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h4 { font-size: 15px; margin: 18px 0 6px; }
a { color: var(--accent); }
.meta, .path, .note { color: var(--muted); }
.path { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; margin: 0; }
.note { font-size: 13px; }
nav ol { margin: 4px 0; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 3px 9px; text-align: left;
  vertical-align: top; }
thead th { background: #f0f3f8; }
tbody th { background: #f7f9fc; font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td { overflow-wrap: anywhere; }
pre { background: #f7f9fc; border: 1px solid var(--line); padding: 8px 12px; font-size: 13px;
  overflow-x: auto; margin: 0; }
.columns { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.columns > div { flex: 1 1 420px; min-width: 0; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 8px 0; }
img { max-width: 100%; height: auto; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
th.group { text-align: center; }
.wide { overflow-x: auto; }
table.comparison td { overflow-wrap: normal; }
table.comparison td.num { white-space: nowrap; }
.holdout { border: 2px solid #c27c0e; background: #fff8ea; padding: 4px 16px; margin: 12px 0;
  border-radius: 4px; }
.holdout ul { margin: 4px 0 8px; }
.heads { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
.heads h4 { margin: 8px 0 2px; }
.warn { color: #b00020; }
.overlap { border: 2px solid #b00020; background: #fdecee; padding: 6px 16px;
  border-radius: 4px; }
figcaption { font-size: 14px; font-weight: 600; text-align: center; }
figure.input figcaption { font-size: 11px; line-height: 1.3; font-weight: normal;
  color: var(--muted); }
figure.input img { image-rendering: pixelated; }
table.scores td.num { white-space: nowrap; }
"""
