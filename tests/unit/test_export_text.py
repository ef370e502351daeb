"""The CSV and JSON lines writers against Python's own parsers: every value of every row read
back equals the Arrow batch it was written from, including strings that need escaping."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pyarrow as pa

from netwarden.records.arrow import to_batch
from sensor.export.csvout import csv_header, csv_lines
from sensor.export.jsonlines import json_lines
from sensor.export.textcols import for_text
from tests.unit.test_records_arrow import random_records

NASTY = [b'say "hi"', b"back\\slash", b"tab\there", b"\x01ctl", b"comma,semi;"]


def flow_batch() -> pa.RecordBatch:
    recs = random_records("flow", 300, seed=11)
    recs["dns_qname"][: len(NASTY)] = NASTY
    recs["orig_len_mean"][5] = np.nan
    recs["resp_iat_max"][6] = np.inf
    return to_batch("flow", recs)


def expected_rows(batch: pa.RecordBatch) -> list[dict]:
    """The values a text format carries: for_text's columns, lists as Python lists."""
    rows = for_text(batch).to_pylist()
    for row, sizes in zip(rows, batch.column("first_sizes").to_pylist(), strict=True):
        row["first_sizes"] = sizes
    return rows


def float_value(text: object, typ: pa.DataType) -> float:
    """A written float read back at the precision of its column (float32 is written as the
    shortest text that reads back as the same float32)."""
    value = float(text)  # type: ignore[arg-type]
    return float(np.float32(value)) if typ == pa.float32() else value


def same(got: object, want: object, typ: pa.DataType) -> bool:
    if isinstance(want, float) and not math.isfinite(want):
        return got is None
    if isinstance(want, float):
        return float_value(got, typ) == want
    return got == want


def test_json_lines_parse_back_to_the_batch() -> None:
    batch = flow_batch()
    text = b"".join(bytes(c) for c in json_lines(batch)).decode()
    got = [json.loads(line) for line in text.splitlines()]
    want = expected_rows(batch)
    types = {f.name: f.type for f in batch.schema}
    assert len(got) == len(want) == batch.num_rows
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)
        bad = [k for k in w if not same(g[k], w[k], types[k])]
        assert not bad, (bad, [(g[k], w[k]) for k in bad])
    assert [g["dns_qname"] for g in got[: len(NASTY)]] == [n.decode() for n in NASTY]


def test_csv_parses_back_to_the_batch() -> None:
    batch = flow_batch()
    text = csv_header(batch) + b"".join(bytes(c) for c in csv_lines(batch))
    rows = list(csv.DictReader(io.StringIO(text.decode(), newline="")))
    want = expected_rows(batch)
    types = {f.name: f.type for f in batch.schema}
    assert len(rows) == len(want) == batch.num_rows
    for g, w in zip(rows, want, strict=True):
        assert list(g) == list(w)
        for k, v in w.items():
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                assert g[k] == "", k
            elif isinstance(v, bool):
                assert g[k] == str(v).lower(), k
            elif isinstance(v, list):
                assert json.loads(g[k]) == v, k
            elif isinstance(v, float):
                assert float_value(g[k], types[k]) == v, k
            else:
                assert g[k] == str(v), k
    assert [r["dns_qname"] for r in rows[: len(NASTY)]] == [n.decode() for n in NASTY]
