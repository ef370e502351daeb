"""Zeek conn.log (ASCII TSV) from Arrow flow batches, built column by column.

Follows Zeek's ASCII log format: ``#separator \\x09`` header block, ``#fields``/``#types``,
``-`` for unset values, and a ``#close`` line. ``uid`` is the record's identity (sensor,
session, flow_id) rendered by ``netwarden.records.identity``, and ``tunnel_parents`` holds
the uid of the enclosing tunnel flow.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netwarden.records.arrowbuf import int64_values, numpy_array, text_scalar
from sensor.export.sink import Sink, TextWriter
from sensor.export.textcols import Piece, join_rows, uints

CONN_FIELDS = (
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
    "ip_proto",
)
CONN_TYPES = (
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
    "count",
)
UNSET = "-"
#: The Arrow columns conn.log is made of.
CONN_COLUMNS = (
    *("ts", "ts_last", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "ip_proto"),
    *("orig_bytes", "resp_bytes", "conn_state", "missed_bytes", "history", "orig_pkts"),
    *("orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "parent_uid"),
)


def _str(col: pa.Array | np.ndarray) -> pa.Array:
    return pc.cast(numpy_array(col) if isinstance(col, np.ndarray) else col, pa.string())


def interval(us: np.ndarray) -> pa.Array:
    """Microseconds as Zeek's ``seconds.micros`` text."""
    frac = pc.utf8_lpad(_str(us % 1_000_000), width=6, padding="0")
    return pc.binary_join_element_wise(_str(us // 1_000_000), frac, text_scalar("."))


def conn_columns(batch: pa.RecordBatch) -> list[Piece]:
    """The conn.log fields of each flow, as text columns (or one text for every row) in
    ``CONN_FIELDS`` order."""
    ts = int64_values(batch.column("ts"))
    # Zeek reads captures at microsecond precision, so durations are differences of
    # microsecond stamps; a flow of one instant has no duration and no byte counts.
    dur = int64_values(batch.column("ts_last")) - ts
    has_dur = numpy_array(dur > 0)

    def timed(col: pa.Array) -> pa.Array:
        return pc.if_else(has_dur, col, text_scalar(UNSET))

    history = batch.column("history")
    return [
        interval(ts),
        batch.column("uid"),
        batch.column("orig_h"),
        uints(batch.column("orig_p")),
        batch.column("resp_h"),
        uints(batch.column("resp_p")),
        batch.column("proto"),
        UNSET,
        timed(interval(dur)),
        timed(_str(batch.column("orig_bytes"))),
        timed(_str(batch.column("resp_bytes"))),
        pc.fill_null(batch.column("conn_state"), text_scalar(UNSET)),
        UNSET,
        UNSET,
        uints(batch.column("missed_bytes")),
        pc.if_else(pc.equal(history, text_scalar("")), text_scalar(UNSET), history),
        *[uints(batch.column(f)) for f in ("orig_pkts", "orig_ip_bytes", "resp_pkts")],
        uints(batch.column("resp_ip_bytes")),
        pc.fill_null(batch.column("parent_uid"), text_scalar(UNSET)),
        uints(batch.column("ip_proto")),
    ]


def conn_lines(batch: pa.RecordBatch) -> Iterator[bytes | pa.Buffer]:
    """The conn.log lines of a flow batch, as chunks of bytes."""
    pieces: list[Piece] = []
    for col in conn_columns(batch):
        pieces += [col, "\t"]
    pieces[-1] = "\n"
    return join_rows(pieces, batch.num_rows)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")


class ConnLogWriter(TextWriter):
    columns: tuple[str, ...] | None = CONN_COLUMNS

    def __init__(self, sink: Sink, path: str = "conn") -> None:
        super().__init__(sink)
        self.path = path

    def header(self, batch: pa.RecordBatch) -> bytes:
        return (
            "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            f"#path\t{self.path}\n#open\t{_now()}\n"
            "#fields\t" + "\t".join(CONN_FIELDS) + "\n"
            "#types\t" + "\t".join(CONN_TYPES) + "\n"
        ).encode()

    def lines(self, batch: pa.RecordBatch) -> Iterator[bytes | pa.Buffer]:
        return conn_lines(batch)

    def footer(self) -> bytes:
        return f"#close\t{_now()}\n".encode()
