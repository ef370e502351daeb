"""``--json`` output: one JSON object per line, each with a ``type`` field first, so a list
streams into ``jq``, a SIEM or a test line by line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any


def line(kind: str, obj: dict[str, Any]) -> str:
    return json.dumps({"type": kind, **{k: v for k, v in obj.items() if k != "type"}}, default=str)


def emit(kind: str, rows: Iterable[dict[str, Any]] | dict[str, Any], out: Any = None) -> None:
    """Print ``rows`` (one object or several) as JSON lines of type ``kind``."""
    out = out or sys.stdout
    for r in [rows] if isinstance(rows, dict) else rows:
        out.write(line(kind, r) + "\n")
