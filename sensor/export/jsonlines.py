"""JSON lines flow writer: one object per flow, built column by column.

Keys are the Arrow column names (``netwarden.records.arrow``) without the binary address
twins; times are ISO 8601 UTC strings (``2024-05-01T12:00:00.123456Z``), unset values
``null``, ``first_sizes`` an array, non-finite floats ``null``."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from sensor.export.sink import Sink
from sensor.export.textcols import for_text, join_rows

NULL = pa.scalar("null")
#: Characters a JSON string must escape.
_ESCAPE = r'[\x00-\x1f"\\]'


def json_pieces(col: pa.Array) -> list[str | pa.Array]:
    """Each value of a column as JSON text (``null`` for null), as ``join_rows`` pieces."""
    t = col.type
    if pa.types.is_string(t):
        if pc.any(pc.match_substring_regex(col, _ESCAPE)).as_py():
            return [pa.array(["null" if v is None else json.dumps(v) for v in col.to_pylist()])]
        if not col.null_count:
            return ['"', col, '"']
        return [pc.fill_null(pc.binary_join_element_wise('"', col, '"', ""), NULL)]
    text = pc.cast(col, pa.string())
    if pa.types.is_floating(t) and not pc.all(pc.is_finite(col)).as_py():
        text = pc.if_else(pc.is_finite(col), text, NULL)
    return [pc.fill_null(text, NULL) if col.null_count else text]


def json_lines(batch: pa.RecordBatch) -> bytes | pa.Buffer:
    """The JSON lines of a flow batch, as bytes."""
    lists = {f.name for f in batch.schema if pa.types.is_list(f.type)}
    text = for_text(batch)
    pieces: list[str | pa.Array] = []
    for i, (field, col) in enumerate(zip(text.schema, text.columns, strict=True)):
        pieces.append(("{" if i == 0 else ",") + json.dumps(field.name) + ":")
        pieces += [col] if field.name in lists else json_pieces(col)
    pieces.append("}\n")
    return join_rows(pieces, batch.num_rows)


class JsonLinesWriter:
    columns: tuple[str, ...] | None = None

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, batch: pa.RecordBatch) -> None:
        self.sink.file().write(json_lines(batch))

    def close(self) -> None:
        self.sink.file()  # an empty capture still gives an (empty) file
        self.sink.close()
