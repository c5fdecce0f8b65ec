"""Two reproduction folders (``cnnlab reproduce --quick --out A``, then ``--out B`` from other
code) compared as a refactoring must leave them: every picture byte-identical, every text file
(HTML, Markdown, CSV, JSON, YAML) identical once what changes from run to run is masked.

Masked: the folders' own paths, timestamps, durations and speeds (seconds, minutes, images/s),
git commits, process ids and host names in lock files. Not compared: checkpoints (``.pt``: they
hold the epochs' seconds), TensorBoard event files and logs. Prints one line per differing file
and a summary; exits 1 when anything compared differs.

    .venv/bin/python benchmarks/compare_reproductions.py /tmp/rep-before /tmp/rep-after
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path

TEXT = {".html", ".md", ".csv", ".json", ".yaml", ".txt", ".svg"}
SKIPPED = {".pt", ".log"}
MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?( ?[+-]\d{2}:?\d{2}|Z)?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<commit>"),
    (re.compile(r"\d[\d,]*(\.\d+)?(e[-+]?\d+)?\s*(images/s|img/s)"), "<speed>"),
    (re.compile(r"\b(\d+ h )?(\d+ min )?\d+(\.\d+)? s\b"), "<duration>"),
    (re.compile(r"\b\d+\.\d+ s over\b"), "<duration> over"),
]
TIMED = re.compile(r"second|time|^steps$|^started$|^finished$|^pid$|^host$")
"""JSON keys and CSV columns whose values are wall time (``steps``: the reproduction's step
times) or the process that wrote them."""


def masked_tables(html: str) -> str:
    """An HTML page's table cells under a time header (``train s / run``) masked."""

    def table(match: re.Match[str]) -> str:
        rows = re.findall(r"<tr>.*?</tr>", match.group(0))
        if not rows:
            return match.group(0)
        heads = re.findall(r"<th[^>]*>(.*?)</th>", rows[0])
        timed = {i for i, head in enumerate(heads) if re.search(r" s / |seconds", head)}
        out = match.group(0)
        for row in rows[1:]:
            cells = re.split(r"(?=<t[hd][ >])", row)
            new = [
                re.sub(r">[^<]*<", "><n><", cell, count=1) if i - 1 in timed else cell
                for i, cell in enumerate(cells)
            ]
            out = out.replace(row, "".join(new), 1)
        return out

    return re.sub(r"<table.*?</table>", table, html, flags=re.S)


def masked(text: str, roots: tuple[str, ...]) -> str:
    text = masked_tables(text)
    for root in sorted(roots, key=len, reverse=True):  # /a/rep-2 before its prefix /a/rep
        text = text.replace(root, "<folder>")
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return re.sub(  # the steps' times, listed in the order the parallel steps ended
        r"<ul>((<li>[^<]*<duration></li>)+)</ul>",
        lambda m: "<ul>" + "".join(sorted(re.findall(r"<li>.*?</li>", m.group(1)))) + "</ul>",
        text,
    )


def masked_csv(text: str) -> str:
    """A CSV with its time columns (``seconds``, ``train_seconds_mean``, ...) masked."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return text
    timed = [i for i, name in enumerate(rows[0]) if TIMED.search(name)]
    for row in rows[1:]:
        for column in timed:
            if column < len(row):
                row[column] = "<n>"
    return "\n".join(",".join(row) for row in rows)


def masked_json(value: object) -> object:
    """A JSON document with the values of its time keys (and everything under them) masked."""
    if isinstance(value, dict):
        return {k: "<n>" if TIMED.search(k) else masked_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_json(v) for v in value]
    return value


def compare(before: Path, after: Path) -> int:
    roots = (str(before.resolve()), str(after.resolve()), str(before), str(after))
    files_b = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    files_a = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    differ, pictures, texts = [], 0, 0
    for only in sorted(files_b ^ files_a):
        differ.append(f"only in {'before' if only in files_b else 'after'}: {only}")
    for rel in sorted(files_b & files_a):
        if rel.suffix in SKIPPED or "tensorboard" in rel.parts or rel.name.startswith(".cnnlab"):
            continue
        b, a = (before / rel).read_bytes(), (after / rel).read_bytes()
        if rel.suffix in TEXT:
            texts += 1
            tb, ta = b.decode(), a.decode()
            if rel.suffix == ".csv":
                tb, ta = masked_csv(tb), masked_csv(ta)
            if rel.suffix == ".json":
                tb, ta = (json.dumps(masked_json(json.loads(t)), indent=1) for t in (tb, ta))
            if masked(tb, roots) != masked(ta, roots):
                differ.append(f"text differs: {rel}")
        else:
            pictures += rel.suffix == ".png"
            if b != a:
                differ.append(f"bytes differ: {rel}")
    for line in differ:
        print(line)
    print(
        f"{pictures} pictures and {texts} text files compared ({len(files_b)} / {len(files_a)} "
        f"files): {len(differ)} differ"
    )
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
