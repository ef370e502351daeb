"""CSV flow writer: a header line, then one line per flow, built column by column.

Columns are those of the Arrow form without the binary address twins, names and strings in
double quotes (a quote inside doubled), numbers bare; times are ISO 8601 UTC text, unset
values and non-finite floats empty, ``first_sizes`` is ``"[a,b,c]"``."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from sensor.export.sink import TextWriter
from sensor.export.textcols import (
    Piece,
    TextStyle,
    for_text,
    join_rows,
    value_pieces,
)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


CSV = TextStyle("", b'"', _quote)


def csv_header(batch: pa.RecordBatch) -> bytes:
    return (",".join(_quote(name) for name in for_text(batch).schema.names) + "\n").encode()


def csv_lines(batch: pa.RecordBatch) -> Iterator[bytes | pa.Buffer]:
    """The CSV lines of a flow batch (no header), as chunks of bytes."""
    text = for_text(batch)
    pieces: list[Piece] = []
    for col in text.columns:
        pieces += value_pieces(col, CSV)
        pieces.append(",")
    pieces[-1] = "\n"
    return join_rows(pieces, batch.num_rows)


class CsvWriter(TextWriter):
    def header(self, batch: pa.RecordBatch) -> bytes:
        return csv_header(batch)

    def lines(self, batch: pa.RecordBatch) -> Iterator[bytes | pa.Buffer]:
        return csv_lines(batch)
