"""CSV flow writer: one header line, then one line per flow (``pyarrow.csv``).

Columns are those of the Arrow form without the binary address twins; times are ISO 8601
UTC text, unset values are empty, ``first_sizes`` is ``[a,b,c]`` text."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from sensor.export.sink import BatchFileWriter
from sensor.export.textcols import for_text


class CsvWriter(BatchFileWriter):
    def _open(self, schema: pa.Schema) -> Any:
        return pacsv.CSVWriter(self.sink.file(), schema)

    def _prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return for_text(batch)
