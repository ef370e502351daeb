"""CSV flow writer: a header line, then one line per flow, built column by column.

Columns are those of the Arrow form without the binary address twins, names and strings in
double quotes (a quote inside doubled), numbers bare; times are ISO 8601 UTC text, unset
values and non-finite floats empty, ``first_sizes`` is ``"[a,b,c]"``."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from sensor.export.sink import Sink
from sensor.export.textcols import (
    Piece,
    TextStyle,
    empty_flows,
    for_text,
    join_rows,
    value_pieces,
)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


CSV = TextStyle("", '"', _quote)


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


class CsvWriter:
    columns: tuple[str, ...] | None = None

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, batch: pa.RecordBatch) -> None:
        if not self.sink.opened:
            self.sink.file().write(csv_header(batch))
        fh = self.sink.file()
        for chunk in csv_lines(batch):
            fh.write(chunk)

    def close(self) -> None:
        if not self.sink.opened:
            self.sink.file().write(csv_header(empty_flows()))
        self.sink.close()
