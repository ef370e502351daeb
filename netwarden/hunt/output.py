"""Hunt results on a terminal (tables that fit 80 columns) or as JSON lines.

A ``Result`` is a titled list of rows (dicts) with the columns to show; ``--json`` prints
every row as one JSON object with ``type`` (the result's kind) and all its fields, the
query that produced it last (``type: "query"``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TextIO

WIDTH = 80


@dataclass
class Result:
    kind: str  # the JSON ``type`` of each row
    title: str
    columns: list[str]  # shown in tables (JSON has every field)
    rows: list[dict[str, Any]]
    query: str = ""  # the SQL that ran (shown by ``ask`` and in JSON)
    notes: list[str] = field(default_factory=list)  # lines under the table (reasons)


def reasons(*checks: tuple[bool, str]) -> list[str]:
    """The texts of the checks that hold: why a row ranks where it does."""
    return [text for holds, text in checks if holds]


def jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat() if v.tzinfo else v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return v


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%m-%d %H:%M:%S")
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, list | tuple):
        return ",".join(cell(x) for x in v)
    return str(v)


def table_lines(columns: list[str], rows: list[dict[str, Any]], width: int = WIDTH) -> list[str]:
    """Plain text table no wider than ``width``: the widest columns are cut (with "~")."""
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    values = [max([0] + [len(row[i]) for row in cells]) for i in range(len(columns))]
    widths = [max(len(c), v) for c, v in zip(columns, values, strict=True)]
    # too wide: first cut headers down to their values (at least 5), then the widest values
    for i in sorted(range(len(widths)), key=lambda j: values[j] - len(columns[j])):
        if sum(widths) + 2 * (len(widths) - 1) <= width:
            break
        widths[i] = max(values[i], min(len(columns[i]), 5))
    while sum(widths) + 2 * (len(widths) - 1) > width:
        i = max(range(len(widths)), key=lambda j: widths[j])
        if widths[i] <= 4:
            break
        widths[i] -= 1

    def fit(s: str, w: int) -> str:
        return s if len(s) <= w else s[: max(w - 1, 0)] + "~"

    def line(values: list[str]) -> str:
        return "  ".join(fit(v, w).ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return out


def wrap(text: str, width: int = WIDTH, indent: str = "    ") -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = indent + w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return [ln[:width] for ln in lines]


def emit(results: list[Result], as_json: bool, out: TextIO, show_query: bool = False) -> None:
    for res in results:
        if as_json:
            out.writelines(json.dumps({"type": res.kind, **jsonable(r)}) + "\n" for r in res.rows)
            if res.query:
                out.write(json.dumps({"type": "query", "hunt": res.kind, "sql": res.query}) + "\n")
            continue
        out.write("\n".join(wrap(res.title)) + "\n")
        if show_query and res.query:
            out.write("query:\n")
            for ln in res.query.strip().splitlines():
                fits = len(ln) + 2 <= WIDTH
                out.writelines("  " + x + "\n" for x in ([ln] if fits else wrap(ln, WIDTH - 2)))
        if res.rows:
            out.write("\n".join(table_lines(res.columns, res.rows)) + "\n")
        else:
            out.write("  (nothing found)\n")
        out.writelines("\n".join(wrap(note)) + "\n" for note in res.notes)
        out.write("\n")
