"""``--json`` output of the CLI: one JSON object per line, each with a ``type``."""

from __future__ import annotations

import json
from typing import Any


def jsonl(text: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The objects of ``text``; each must carry a ``type`` (``kind`` when given)."""
    rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    assert all(isinstance(r, dict) and "type" in r for r in rows), text[:200]
    assert kind is None or all(r["type"] == kind for r in rows), text[:200]
    return rows


def one(text: str, kind: str | None = None) -> dict[str, Any]:
    """The single object of ``text``."""
    (row,) = jsonl(text, kind)
    return row
