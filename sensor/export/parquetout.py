"""Parquet flow writer: the Arrow form as is (zstd; one row group per written batch)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from sensor.export.sink import Sink
from sensor.export.textcols import empty_flows

COMPRESSION = "zstd"


class ParquetFlowWriter:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._writer: pq.ParquetWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.sink.file(), batch.schema, compression=COMPRESSION)
        if batch.num_rows:
            self._writer.write_batch(batch)

    def close(self) -> None:
        if self._writer is None:
            self.write(empty_flows())
        assert self._writer is not None
        self._writer.close()
        self.sink.close()
