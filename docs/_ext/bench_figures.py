"""Every benchmark figure of the docs, from ``_static/benchmark-results.json``.

- ``:bench:`ROW | FIELD``` renders one value of the results file: ``ROW`` is
  a piece of a row's name that matches exactly one row, ``FIELD`` one of
  ``baseline``, ``ours``, ``ratio``, ``unit``, ``target`` or ``note``.
  ``:bench:`meta | KEY``` renders the run's ``date``, ``machine``,
  ``python``, ``numpy``, ``torch`` or ``seconds``.
- ``.. benchmark-table::`` renders every row as a table.
- ``.. benchmark-missed::`` says which rows miss their target, if any.

Each takes another results file by its name in :data:`FILES`:
``:bench:`ROW | FIELD | frames``` and ``.. benchmark-table:: frames``.

A piece of a name that matches no row or several rows is a build error, so
a renamed row breaks ``sphinx-build -W`` instead of leaving a stale figure;
text and table are rendered by the same functions, so they cannot disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

RESULTS = Path("_static") / "benchmark-results.json"
#: Results files by name: the full run, and ``run.py --only loops --only fanout``.
FILES = {"": RESULTS, "frames": Path("_static") / "frames-results.json"}
ROW_FIELDS = ("baseline", "ours", "ratio", "unit", "target", "note")
META_KEYS = ("date", "machine", "python", "numpy", "torch", "seconds")


def _path(name: str) -> Path:
    if name not in FILES:
        raise ValueError(f"results file must be one of {sorted(FILES)}, not {name!r}")
    return FILES[name]


def _load(srcdir: str, name: str = "") -> dict[str, Any]:
    return json.loads((Path(srcdir) / _path(name)).read_text(encoding="utf-8"))


def number(value: float | None) -> str:
    """Three significant digits, whole numbers from 100 up, thousands separated.

    >>> [number(v) for v in (117961.57, 462.97, 28.998, 5.35, 0.10512, None)]
    ['117,962', '463', '29.0', '5.35', '0.105', '-']
    """
    if value is None:  # a row without a baseline
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    decimals = 2 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


def ratio(value: float | None) -> str:
    """A ratio to two significant digits, at least the whole number.

    >>> ratio(34.34), ratio(7.707), ratio(None)
    ('34x', '7.7x', '-')
    """
    if value is None:
        return "-"
    return f"{value:.0f}x" if value >= 10 else f"{value:.1f}x"


def find_row(results: dict[str, Any], piece: str) -> dict[str, Any]:
    rows = [r for r in results["rows"] if piece in r["name"]]
    exact = [r for r in rows if r["name"].endswith(piece)]
    if len(rows) > 1 and len(exact) == 1:  # "float64, sampled" beside "..., Generator"
        rows = exact
    if len(rows) != 1:
        names = [r["name"] for r in rows] or "none"
        raise ValueError(f"{piece!r} must match one benchmark row, matches {names}")
    return rows[0]


def value(results: dict[str, Any], piece: str, field: str) -> str:
    if piece == "meta":
        if field not in META_KEYS:
            raise ValueError(f"meta key must be one of {META_KEYS}, not {field!r}")
        text = str(results["meta"][field])
        return text[:10] if field == "date" else text
    if field not in ROW_FIELDS:
        raise ValueError(f"field must be one of {ROW_FIELDS}, not {field!r}")
    row = find_row(results, piece)
    if field == "ratio":
        return ratio(row["ratio"])
    if field in ("baseline", "ours"):
        return number(row[field])
    return str(row[field])


def bench_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    env = inliner.document.settings.env
    parts = [part.strip() for part in text.split("|")]
    piece, field, name = (*parts, "")[:3] if len(parts) in (2, 3) else ("", "", "?")
    try:
        env.note_dependency(str(Path(env.srcdir) / _path(name)))
        rendered = value(_load(env.srcdir, name), piece, field)
    except (ValueError, KeyError, OSError) as exc:
        msg = inliner.reporter.error(f":bench:`{text}`: {exc}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    return [nodes.Text(rendered)], []


def _row(*cells: str) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=cell)
        row += entry
    return row


class BenchmarkTable(Directive):
    has_content = False
    optional_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        name = self.arguments[0] if self.arguments else ""
        env.note_dependency(str(Path(env.srcdir) / _path(name)))
        results = _load(env.srcdir, name)
        columns = ("figure", "unit", "baseline", "ours", "ratio", "target", "met")
        widths = (40, 10, 9, 9, 6, 18, 5)
        table = nodes.table(classes=["benchmark-results"])
        group = nodes.tgroup(cols=len(columns))
        table += group
        for width in widths:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(*columns)
        group += head
        body = nodes.tbody()
        for r in results["rows"]:
            body += _row(
                r["name"],
                r["unit"],
                number(r["baseline"]),
                number(r["ours"]),
                ratio(r["ratio"]),
                r["target"],
                "yes" if r["met"] else "no",
            )
        group += body
        return [table]


class BenchmarkMissed(Directive):
    has_content = False
    optional_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        name = self.arguments[0] if self.arguments else ""
        env.note_dependency(str(Path(env.srcdir) / _path(name)))
        missed = [r for r in _load(env.srcdir, name)["rows"] if not r["met"]]
        if not missed:
            return [nodes.paragraph(text="Every figure meets its target.")]
        parts = [
            f"{r['name']}: {number(r['ours'])} {r['unit']} against {r['target']}"
            for r in missed
        ]
        lead = (
            "One figure misses its target"
            if len(missed) == 1
            else f"{len(missed)} figures miss their targets"
        )
        return [nodes.paragraph(text=f"{lead}: " + "; ".join(parts) + ".")]


def setup(app):
    app.add_role("bench", bench_role)
    app.add_directive("benchmark-table", BenchmarkTable)
    app.add_directive("benchmark-missed", BenchmarkMissed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
