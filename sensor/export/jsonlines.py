"""JSON lines flow writer: one object per flow, built column by column.

Keys are the Arrow column names (``netwarden.records.arrow``) without the binary address
twins; times are ISO 8601 UTC strings (``2024-05-01T12:00:00.123456Z``), unset values
``null``, ``first_sizes`` an array, non-finite floats ``null``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from sensor.export.sink import TextWriter
from sensor.export.textcols import Piece, TextStyle, for_text, join_rows, value_pieces

#: JSON strings escape quotes, backslashes and control characters.
JSON = TextStyle("null", bytes(range(32)) + b'"\\', json.dumps)


def json_lines(batch: pa.RecordBatch) -> Iterator[bytes | pa.Buffer]:
    """The JSON lines of a flow batch, as chunks of bytes."""
    lists = {f.name for f in batch.schema if pa.types.is_list(f.type)}
    text = for_text(batch)
    pieces: list[Piece] = []
    for i, (field, col) in enumerate(zip(text.schema, text.columns, strict=True)):
        pieces.append(("{" if i == 0 else ",") + json.dumps(field.name) + ":")
        pieces += [col] if field.name in lists else value_pieces(col, JSON)
    pieces.append("}\n")
    return join_rows(pieces, batch.num_rows)


class JsonLinesWriter(TextWriter):
    def lines(self, batch: pa.RecordBatch) -> Iterator[bytes | pa.Buffer]:
        return json_lines(batch)
