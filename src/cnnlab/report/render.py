"""The page engine: Jinja2 templates (autoescaped) over plain values, figures embedded as PNG.

Every page (a run report, a study report, a reproduction's front page) extends
``templates/page.html.j2`` and carries ``static/report.css`` inline; tables and figures are
the macros of ``templates/macros.html.j2`` over :class:`Table`, :class:`Cell` and
:class:`Figure`. Python prepares values and words; only the templates write markup, and the
template engine escapes every value.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_open
from cnnlab.report.figures import DPI
from cnnlab.version import __version__


@dataclass(frozen=True)
class Cell:
    """A table cell with more than a value: a header cell, bold, a link, a CSS class or span;
    ``numeric`` right-aligns it (class ``num``) whatever its column (``None``: as the column)."""

    value: Any
    header: bool = False
    strong: bool = False
    href: str | None = None
    cls: str | None = None
    rowspan: int = 1
    colspan: int = 1
    numeric: bool | None = None
    span: str | None = None  # a CSS class: the value inside a <span> of that class
    title: str | None = None  # the full value, shown on hover where the cell shows it shortened


@dataclass(frozen=True)
class Table:
    """A table: ``headers`` (one row; cells may be :class:`Cell`), ``rows`` of values or
    :class:`Cell`, the ``numeric`` columns (right-aligned), an optional CSS class; with
    ``header_rows`` the header is those rows instead; ``head=False`` drops it."""

    headers: Sequence[Any]
    rows: Sequence[Sequence[Any]]
    numeric: frozenset[int] = field(default_factory=frozenset)
    cls: str | None = None
    head: bool = True
    header_rows: Sequence[Sequence[Any]] | None = None


def table(
    headers: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    numeric: Iterable[int] = (),
    *,
    cls: str | None = None,
    head: bool = True,
    header_rows: Sequence[Sequence[Any]] | None = None,
) -> Table:
    """A :class:`Table` (``numeric``: the indices of right-aligned columns)."""
    return Table(headers, [list(r) for r in rows], frozenset(numeric), cls, head, header_rows)


def facts(pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of (name, value) without a header: names as header cells."""
    return table(("", ""), [(Cell(name, header=True), value) for name, value in pairs], head=False)


@dataclass(frozen=True)
class Figure:
    """A PNG embedded as a data URI, shown at its intended size, with an optional caption."""

    uri: str
    alt: str
    width: int
    caption: str | None = None
    cls: str | None = None


def figure(path: Path, alt: str, caption: str | None = None) -> Figure:
    """The PNG at ``path`` as a :class:`Figure` (CSS width from its pixels and DPI)."""
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        width = image.width
        dpi = float(image.info.get("dpi", (DPI, DPI))[0]) or DPI
    return Figure(_data_uri(data), alt, round(width * 96 / dpi), caption)


def png_figure(picture: Image.Image, alt: str, caption: str | None = None) -> Figure:
    """A picture made in memory as a :class:`Figure` at its pixel size (class ``input``)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return Figure(_data_uri(buffer.getvalue()), alt, picture.width, caption, cls="input")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@cache
def environment() -> jinja2.Environment:
    """The templates of ``cnnlab/report/templates``; every ``{{ value }}`` is escaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cnnlab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(version=__version__)
    env.tests["cell"] = lambda value: isinstance(value, Cell)
    env.tests["table"] = lambda value: isinstance(value, Table)  # a table inside a cell
    return env


@cache
def css() -> str:
    """The pages' style sheet (package data), inlined by ``page.html.j2``."""
    return (resources.files("cnnlab.report") / "static" / "report.css").read_text()


def render(template: str, **context: Any) -> str:
    """A whole page (or part) from ``template`` with ``context``; the stylesheet and the time
    of generation are provided."""
    now = time.strftime("%Y-%m-%d %H:%M:%S %z")
    style = markupsafe.Markup(css())  # CSS, not text: its quotes and ">" are not escaped
    return environment().get_template(template).render(css=style, generated=now, **context)


# -- output --------------------------------------------------------------------------------------


def check_writable(path: Path, what: str, folder: bool = False) -> None:
    """Fail early, in one line, when ``path`` cannot be written (before any slow work)."""
    path = Path(path)
    if path.is_dir() and not folder:
        raise CnnlabError(f"{path}: is a folder; give a file name for the {what}")
    target = path if folder else path.parent
    existing = next(p for p in (target, *target.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise CnnlabError(f"{path}: cannot write the {what} ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CnnlabError(f"{path}: cannot write the {what} ({existing} is not writable)")


def write_text(path: Path, text: str, what: str) -> None:
    """Write a page atomically; a one-line error names the file when it cannot be written."""
    try:
        with atomic_open(path) as handle:
            handle.write(text)
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None
