"""Hunt tables follow the project's table convention: 80 columns, no value cut."""

from __future__ import annotations

import io

from netwarden.hunt.output import Result, emit

V6 = "2001:db8:4a5b:6c7d:8e9f:a0b1:c2d3:e4f5"


def test_a_long_address_is_never_cut() -> None:
    cols = ["src", "dst", "targets", "hosts", "ports", "failed_share", "span_h", "score"]
    row = dict(zip(cols, [V6, V6.replace("2001", "2002"), 1278, 254, 1025, 1.0, 0.0, 1.0]))
    out = io.StringIO()
    emit([Result("scan", "Scans", cols, [row])], as_json=False, out=out)
    text = out.getvalue()
    assert V6 in text and V6.replace("2001", "2002") in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
