"""Flow writers by format name. Every writer takes Arrow record batches of the ``flow`` kind
(``netwarden.records.arrow``) and writes to a ``Sink``:

* ``zeek``: Zeek conn.log TSV (``zeeklog``), ``json``: JSON lines (``jsonlines``),
* ``csv``: CSV with a header (``csvout``), ``parquet``: Parquet, zstd (``parquetout``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

from sensor.export.sink import Sink

FORMATS = ("zeek", "csv", "json", "parquet")
#: Rows per batch a writer is handed: small, so little conversion is left when the engine
#: ends (``sensor.export.background``); a Parquet batch is a row group, so it is larger.
#: Kept here, not on the writer classes: importing those imports pyarrow, which the command
#: leaves to the writing thread.
BATCH_ROWS = {"zeek": 8192, "csv": 8192, "json": 8192, "parquet": 16384}


class FlowWriter(Protocol):
    #: The Arrow columns the writer reads (None: all); batches may carry only these.
    columns: tuple[str, ...] | None

    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


def make_writer(fmt: str, sink: Sink) -> FlowWriter:
    if fmt == "zeek":
        from sensor.export.zeeklog import ConnLogWriter

        return ConnLogWriter(sink)
    if fmt == "json":
        from sensor.export.jsonlines import JsonLinesWriter

        return JsonLinesWriter(sink)
    if fmt == "csv":
        from sensor.export.csvout import CsvWriter

        return CsvWriter(sink)
    if fmt == "parquet":
        from sensor.export.parquetout import ParquetFlowWriter

        return ParquetFlowWriter(sink)
    raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
