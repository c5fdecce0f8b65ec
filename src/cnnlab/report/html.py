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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_open
from cnnlab.report import figures
from cnnlab.report.markdown import markdown_summary
from cnnlab.report.records import RunRecord, read_runs
from cnnlab.report.summary import (
    COMPARISON_COLUMNS,
    compact_json,
    comparison_row,
    duration,
    fraction,
    integer,
    percent,
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
) -> Path:
    """Write an HTML report on ``run_dirs`` to ``out`` (and a Markdown summary to ``markdown``).

    Runs without ``metrics-test.json`` are evaluated first. ``figures_dir`` keeps the PNG (and
    SVG) figures; by default they live only inside the page. Returns ``out``.
    """
    out = Path(out)
    targets = [(out, "report"), (markdown, "Markdown summary"), (figures_dir, "figures")]
    for path, what in targets:
        if path is not None:
            _check_writable(Path(path), what, folder=what == "figures")
    records = read_runs(list(run_dirs))
    with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as tmp:
        kept = figures_dir is not None
        page = render_page(records, Path(figures_dir) if kept else Path(tmp), svg=kept)
    _write_text(out, page, "report")
    if markdown is not None:
        _write_text(Path(markdown), markdown_summary(records), "Markdown summary")
    return out


def render_page(records: Sequence[RunRecord], fig_dir: Path, svg: bool = False) -> str:
    """The whole HTML document for ``records``; figures are drawn into ``fig_dir`` (curves
    also as SVG with ``svg``)."""
    from cnnlab import __version__

    labels = ", ".join(r.label for r in records)
    body = [
        "<header>",
        "<h1>cnnlab report</h1>",
        f"<p class='meta'>{len(records)} run{'s' if len(records) != 1 else ''}; generated "
        f"{esc(time.strftime('%Y-%m-%d %H:%M:%S %z'))} by cnnlab {esc(__version__)}.</p>",
    ]
    if len(records) > 1:
        body.append(_contents(records))
    body.append("</header>")
    if len(records) > 1:
        body.append(_comparison(records, fig_dir, svg))
    body += [_run_section(i, record, fig_dir, svg) for i, record in enumerate(records, 1)]
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


def _contents(records: Sequence[RunRecord]) -> str:
    items = "".join(
        f"<li><a href='#run-{i}'>{esc(r.label)}</a></li>" for i, r in enumerate(records, 1)
    )
    return f"<nav><a href='#comparison'>Comparison</a><ol>{items}</ol></nav>"


def _comparison(records: Sequence[RunRecord], fig_dir: Path, svg: bool) -> str:
    rows = []
    best = _best_index(records, "accuracy")
    for i, record in enumerate(records, 1):
        row = comparison_row(record)
        cells: list[Any] = [Raw(f"<a href='#run-{i}'>{esc(row['run'])}</a>")]
        for column in COMPARISON_COLUMNS[1:]:
            text = esc(row[column])
            strong = i - 1 == best and column == "test accuracy"
            cells.append(Raw(f"<strong>{text}</strong>" if strong else text))
        rows.append(cells)
    histories = {r.label: r.history for r in records if r.history}
    parts = [
        "<section id='comparison'>",
        "<h2>Comparison</h2>",
        _table(COMPARISON_COLUMNS, rows, numeric=range(3, len(COMPARISON_COLUMNS))),
        "<p class='note'>Test metrics from each run's <code>metrics-test.json</code>; the best "
        "test accuracy is in bold. Run names link to their sections.</p>",
    ]
    if histories:
        paths = figures.plot_learning_curves(histories, fig_dir, "all-runs-curves", svg=svg)
        parts += ["<h3>Learning curves (all runs)</h3>", _figure_row(paths, "all runs")]
    parts.append("</section>")
    return "\n".join(parts)


def _best_index(records: Sequence[RunRecord], key: str) -> int | None:
    values = [r.metrics.get(key) for r in records]
    known = [(v, i) for i, v in enumerate(values) if isinstance(v, int | float)]
    return max(known)[1] if known else None


def _run_section(index: int, record: RunRecord, fig_dir: Path, svg: bool) -> str:
    stem = f"run{index:02d}"
    parts = [
        f"<section class='run' id='run-{index}'>",
        f"<h2>Run {index}: {esc(record.label)}</h2>",
        f"<p class='path'>{esc(record.path)}</p>",
        "<h3>Provenance</h3>",
        _provenance(record),
        "<h3>Learning curves</h3>",
        _curves(record, fig_dir, stem, svg),
        "<h3>Test metrics</h3>",
        _metrics(record),
        "<h3>Per-class metrics</h3>",
        _per_class(record, fig_dir, stem),
        "<h3>Confusion matrix</h3>",
        _confusion(record, fig_dir, stem),
    ]
    if record.factor_analysis:
        parts += ["<h3>Factor analysis</h3>", _factor_analysis(record)]
    parts.append("</section>")
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
            f"{hardware.get('world_size', 1)} process(es)",
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
    return _figure_row(paths, record.label)


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
    return f"<div class='columns'><div>{overall}</div><div>{averages}</div></div>"


def _per_class(record: RunRecord, fig_dir: Path, stem: str) -> str:
    names = record.class_names
    per = record.metrics["per_class"]
    path = figures.plot_per_class_f1(
        per["f1"], names, fig_dir / f"{stem}-f1.png", factor_levels=record.factor_levels or None
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
    worst = sorted(range(len(names)), key=lambda i: per["f1"][i])[:3]
    lowest = ", ".join(f"{names[i]} {fraction(per['f1'][i])}" for i in worst)
    open_attr = " open" if len(names) <= OPEN_CLASS_TABLE_UP_TO else ""
    details = (
        f"<details{open_attr}><summary>Per-class table ({len(names)} classes; lowest F1: "
        f"{esc(lowest)})</summary>{table}</details>"
    )
    return _figure(path, f"Per-class F1 of {record.label}") + details


def _confusion(record: RunRecord, fig_dir: Path, stem: str) -> str:
    m = record.metrics
    names = record.class_names
    path = fig_dir / f"{stem}-confusion.png"
    if record.factor_levels:
        figures.plot_factor_confusion(
            m["confusion"], record.factor_levels, path, factor_analysis=record.factor_analysis
        )
        note = (
            "Rows are true classes, columns predicted classes, in factor order; colour is the "
            "count on a log scale (white: none). Below: each factor's own confusion matrix "
            "(numbers are counts, colour the share of the true level)."
        )
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


# -- HTML pieces ---------------------------------------------------------------------------------


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Iterable[int] = (),
    head: bool = True,
) -> str:
    """A table; every cell is escaped unless it is :class:`Raw` (a raw ``<th>`` stays a cell)."""
    right = set(numeric)
    out = ["<table>"]
    if head:
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


def _figure(path: Path, alt: str) -> str:
    """``<figure>`` with the PNG at ``path`` embedded, shown at its intended size."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        width = image.width
        dpi = float(image.info.get("dpi", (figures.DPI, figures.DPI))[0]) or figures.DPI
    css_width = round(width * 96 / dpi)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f"<figure><img src='{uri}' alt='{esc(alt)}' width='{css_width}'></figure>"


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
"""
