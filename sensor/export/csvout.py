"""CSV flow writer: one header line, then one line per flow (``pyarrow.csv``).

Columns are those of the Arrow form without the binary address twins; times are ISO 8601
UTC, unset values are empty, ``first_sizes`` is ``[a,b,c]`` text."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv

from sensor.export.sink import Sink
from sensor.export.textcols import empty_flows, for_text


class CsvWriter:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._writer: pacsv.CSVWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        text = for_text(batch)
        if self._writer is None:
            self._writer = pacsv.CSVWriter(self.sink.file(), text.schema)
        self._writer.write_batch(text)

    def close(self) -> None:
        if self._writer is None:
            self.write(empty_flows())
        assert self._writer is not None
        self._writer.close()
        self.sink.close()
