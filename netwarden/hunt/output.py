"""Hunt results on a terminal (tables in the convention of ``netwarden.tables``: they fit
80 columns and never cut a value) or as JSON lines.

A ``Result`` is a titled list of rows (dicts) with the columns to show; ``--json`` prints
every row as one JSON object with ``type`` (the result's kind) and all its fields, the
query that produced it last (``type: "query"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TextIO

from netwarden.jsonout import line
from netwarden.tables import print_table

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
            out.writelines(line(res.kind, jsonable(r)) + "\n" for r in res.rows)
            if res.query:
                out.write(line("query", {"hunt": res.kind, "sql": res.query}) + "\n")
            continue
        out.write("\n".join(wrap(res.title)) + "\n")
        if show_query and res.query:
            out.write("query:\n")
            for ln in res.query.strip().splitlines():
                fits = len(ln) + 2 <= WIDTH
                out.writelines("  " + x + "\n" for x in ([ln] if fits else wrap(ln, WIDTH - 2)))
        if res.rows:
            cells = [[cell(r.get(c)) for c in res.columns] for r in res.rows]
            print_table(None, res.columns, cells, stream=out)
        else:
            out.write("  (nothing found)\n")
        out.writelines("\n".join(wrap(note)) + "\n" for note in res.notes)
        out.write("\n")
