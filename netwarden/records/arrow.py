"""Records as Arrow: the one columnar form of every record kind.

``to_arrow(kind, records)`` turns a record array of ``RECORD_TYPES[kind]`` into a
``pyarrow.Table`` (``to_batch`` gives a ``RecordBatch``), and ``to_records(kind, table)`` turns
it back. Every writer (Zeek TSV, CSV, JSON lines, Parquet), ``netwarden.read_flows`` and the
archive build on these columns, with one pass of numpy / Arrow compute per batch (no Python
loop per record, except to format IPv6 addresses, one C call each).

Column conventions (the same for every kind):

* IP addresses: a string column named ``*_h`` (Zeek's dotted / RFC 5952 text) and its twin
  ``*_h_bin``, ``fixed_size_binary(16)``: IPv6 as is, IPv4 as IPv4-mapped IPv6
  (``::ffff:a.b.c.d``), so one column sorts and compares both families.
* MAC addresses: ``aa:bb:cc:dd:ee:ff`` strings.
* Times: ``timestamp[us, tz=UTC]`` (microseconds, as Zeek and libpcap; a finer stamp of a
  nanosecond capture is truncated). Durations: ``float64`` seconds (``duration``).
* Identity: ``sensor`` and ``session`` (uint64); flows add ``flow_id``/``parent_id`` and their
  Zeek-style ``uid``/``parent_uid`` strings (``parent_uid`` null when not tunnelled).
* Per-direction arrays are flattened: ``orig_syn``, ``resp_rst``...; decayed statistics get
  the half-life as suffix: ``out_rate_100ms``, ``in_size_mean_60s``...
* Enums are their names (``conn_state`` ``"SF"``, null when unset; ``proto`` ``"tcp"`` with
  the number in ``ip_proto``); flag bits are booleans (``interim``, ``evicted``...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netwarden.records import render
from netwarden.records.arrowbuf import (
    fixed_bytes,
    numpy_array,
    string_array,
    text_scalar,
)
from netwarden.records.identity import uid_bytes
from netwarden.records.schema import (
    DECAY_HALF_LIVES,
    RECORD_TYPES,
    TCP_FLAG_NAMES,
    ConnState,
    EndReason,
    FlowFlags,
    TelemetryFlags,
    TunnelType,
    struct_fields,
)

TS_TYPE = pa.timestamp("us", tz="UTC")
ADDR_BIN = pa.binary(16)
#: Record kinds that have an Arrow form (every kind sent on the bus or archived).
KINDS = ("flow", "host", "pair", "arp")

Arrays = list[tuple[str, pa.Array]]


def _texts(values: np.ndarray) -> pa.Array:
    """NUL-padded fixed-width bytes (``S<n>``) as strings (invalid UTF-8 replaced)."""
    arr = fixed_bytes(values)
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        return string_array([b.decode("utf-8", "replace") for b in values.tolist()])


def _mapped(raw: np.ndarray, is_v4: np.ndarray) -> np.ndarray:
    """16-byte addresses with IPv4 (first 4 bytes of ``raw``) as ``::ffff:a.b.c.d``."""
    v4 = np.zeros((len(raw), 16), np.uint8)
    v4[:, 10:12] = 0xFF
    v4[:, 12:] = raw[:, :4]
    if raw.shape[1] != 16:
        return v4
    return np.where(is_v4[:, None], v4, raw)


def addr_arrays(raw: np.ndarray, is_v4: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """(text, 16-byte binary) of ``(n, 4|16)`` uint8 addresses; ``is_v4`` per row."""
    binary = pa.Array.from_buffers(ADDR_BIN, len(raw), [None, pa.py_buffer(_mapped(raw, is_v4))])
    return render.ip_text(raw, is_v4), binary


def fixed_width(col: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """A string column as an ``(n, width)`` uint8 array: each value's bytes, cut at ``width``,
    NUL padded (null -> empty)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = pc.fill_null(arr, text_scalar("")).cast(pa.binary())
    n = len(arr)
    out = np.zeros((n, width), np.uint8)
    if not n or arr.buffers()[2] is None:
        return out
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=arr.offset * 4)
    data = np.frombuffer(arr.buffers()[2], np.uint8)
    lens = np.minimum(np.diff(offsets), width).astype(np.int64)
    if (lens == width).all() and offsets[n] - offsets[0] == n * width:  # MACs: one block
        return data[offsets[0] : offsets[n]].reshape(n, width).copy()
    rows = np.repeat(np.arange(n), lens)  # one entry per byte kept: work follows the text
    within = np.arange(len(rows)) - np.repeat(np.cumsum(lens) - lens, lens)
    out[rows, within] = data[offsets[:-1].astype(np.int64)[rows] + within]
    return out


def _parse_macs(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    raw = fixed_width(col, 17)
    nib = np.where(raw >= ord("a"), raw - ord("a") + 10, raw - ord("0")).astype(np.uint8)
    return (nib[:, 0::3] << 4) | nib[:, 1::3]


def _ts(ns: np.ndarray) -> pa.Array:
    """Microsecond timestamps over the int64 buffer (``pa.array(..., timestamp)`` would import
    pandas, a fifth of a second at every start, for a conversion that is only a view)."""
    us = np.ascontiguousarray(ns, np.int64) // 1000
    return pa.Array.from_buffers(TS_TYPE, len(us), [None, pa.py_buffer(us)])


def _names(values: np.ndarray, names: Sequence[str | None]) -> pa.Array:
    """Enum codes as their names (null for a code with no name)."""
    table = string_array([*names, None])
    idx = np.minimum(np.asarray(values, np.int64), len(names))
    return pc.take(table, numpy_array(idx))


def _codes(col: pa.ChunkedArray, names: Sequence[str | None]) -> np.ndarray:
    """Inverse of ``_names`` (an unknown or null name -> 0)."""
    known = [nm for nm in names if nm is not None]
    code = [names.index(nm) for nm in known]
    idx = pc.index_in(col, value_set=pa.array(known, pa.string())).to_numpy(zero_copy_only=False)
    idx = np.nan_to_num(np.asarray(idx, np.float64), nan=-1).astype(np.int64)
    lut = np.array(code + [0], np.int64)
    return lut[idx]


def _enum_names(enum: Any, null_zero: bool) -> list[str | None]:
    top = max(int(m) for m in enum)
    by_value = {int(m): m.name for m in enum}
    names: list[str | None] = [by_value.get(i) for i in range(top + 1)]
    if null_zero:
        names[0] = None
    return names


def _suffix(half_life: float) -> str:
    return f"{half_life * 1000:g}ms" if half_life < 1 else f"{half_life:g}s"


DECAY_SUFFIXES = tuple(_suffix(h) for h in DECAY_HALF_LIVES)
PROTO_NAMES: list[str | None] = ["unknown_transport"] * 256
PROTO_NAMES[6], PROTO_NAMES[17], PROTO_NAMES[1], PROTO_NAMES[58] = "tcp", "udp", "icmp", "icmp"


# --- columns: each maps record fields to Arrow columns and back -----------------------------


@dataclass(frozen=True)
class Column:
    """One or more Arrow columns made from record fields. ``encode`` gives ``(name, array)``
    pairs; ``decode`` writes the fields back into a zeroed record array (derived columns,
    such as ``uid``, have nothing to write)."""

    names: tuple[str, ...]
    encode: Callable[[np.ndarray], Arrays]
    decode: Callable[[pa.Table, np.ndarray], None]


def _no_decode(_table: pa.Table, _out: np.ndarray) -> None:
    return None


def plain(field: str, name: str | None = None) -> Column:
    col = name or field

    def dec(t: pa.Table, out: np.ndarray) -> None:
        out[field] = t.column(col).to_numpy()

    return Column((col,), lambda r: [(col, numpy_array(r[field]))], dec)


def time(field: str, name: str) -> Column:
    def dec(t: pa.Table, out: np.ndarray) -> None:
        out[field] = t.column(name).cast(pa.int64()).to_numpy() * 1000

    return Column((name,), lambda r: [(name, _ts(r[field]))], dec)


def address(field: str, name: str, version: str | None) -> Column:
    """``version``: the record's ip_version field (None: the field is always IPv4)."""

    def is_v4(r: np.ndarray) -> np.ndarray:
        return np.ones(len(r), bool) if version is None else r[version] != 6

    def enc(r: np.ndarray) -> Arrays:
        text, binary = addr_arrays(r[field], is_v4(r))
        return [(name, text), (name + "_bin", binary)]

    def dec(t: pa.Table, out: np.ndarray) -> None:
        raw = np.frombuffer(t.column(name + "_bin").combine_chunks().buffers()[1], np.uint8)
        raw = raw[: len(out) * 16].reshape(len(out), 16)
        width = out.dtype[field].shape[0]
        v4 = is_v4(out)
        rows = np.zeros((len(out), width), np.uint8)
        rows[v4, :4] = raw[v4, 12:]
        if width == 16:
            rows[~v4] = raw[~v4]
        out[field] = rows

    return Column((name, name + "_bin"), enc, dec)


def mac(field: str, name: str | None = None) -> Column:
    col = name or field

    def dec(t: pa.Table, out: np.ndarray) -> None:
        out[field] = _parse_macs(t.column(col))

    return Column((col,), lambda r: [(col, render.mac_text(r[field]))], dec)


def text(field: str) -> Column:
    def dec(t: pa.Table, out: np.ndarray) -> None:
        width = out.dtype[field].itemsize
        out[field] = fixed_width(t.column(field), width).view(f"S{width}").reshape(len(out))

    return Column((field,), lambda r: [(field, _texts(r[field]))], dec)


def enum(field: str, names: Sequence[str | None], name: str | None = None) -> Column:
    col = name or field

    def dec(t: pa.Table, out: np.ndarray) -> None:
        out[field] = _codes(t.column(col), names)

    return Column((col,), lambda r: [(col, _names(r[field], names))], dec)


def bits(field: str, flags: Any) -> Column:
    """An IntFlag field as one boolean column per flag (lower-case flag names)."""
    members = [(m.name.lower(), int(m)) for m in flags]

    def enc(r: np.ndarray) -> Arrays:
        v = r[field]
        return [(nm, numpy_array((v & bit) != 0)) for nm, bit in members]

    def dec(t: pa.Table, out: np.ndarray) -> None:
        acc = np.zeros(len(out), np.int64)
        for nm, bit in members:
            acc |= np.where(t.column(nm).to_numpy(zero_copy_only=False), bit, 0)
        out[field] = acc

    return Column(tuple(nm for nm, _ in members), enc, dec)


def split(field: str, names: Sequence[str]) -> Column:
    """A fixed-length array field as one column per element."""

    def enc(r: np.ndarray) -> Arrays:
        v = r[field]
        return [(nm, numpy_array(v[:, i])) for i, nm in enumerate(names)]

    def dec(t: pa.Table, out: np.ndarray) -> None:
        out[field] = np.stack([t.column(nm).to_numpy() for nm in names], axis=1)

    return Column(tuple(names), enc, dec)


def decayed(field: str) -> Column:
    return split(field, [f"{field}_{s}" for s in DECAY_SUFFIXES])


def prefix_list(field: str, length: str) -> Column:
    """The first ``record[length]`` elements of an array field as a list column (the length
    field is not kept: it is the list's length)."""

    def enc(r: np.ndarray) -> Arrays:
        v = r[field]
        n = np.minimum(r[length].astype(np.int64), v.shape[1])
        keep = np.arange(v.shape[1]) < n[:, None]
        offsets = np.zeros(len(r) + 1, np.int32)
        np.cumsum(n, out=offsets[1:])
        return [(field, pa.ListArray.from_arrays(numpy_array(offsets), numpy_array(v[keep])))]

    def dec(t: pa.Table, out: np.ndarray) -> None:
        col = t.column(field).combine_chunks()
        n = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
        out[length] = n
        rows = np.zeros((len(out), out.dtype[field].shape[0]), out.dtype[field].base)
        keep = np.arange(rows.shape[1]) < n[:, None]
        rows[keep] = col.flatten().to_numpy()
        out[field] = rows

    return Column((field,), enc, dec)


def derived(name: str, make: Callable[[np.ndarray], pa.Array]) -> Column:
    return Column((name,), lambda r: [(name, make(r))], _no_decode)


def _uid(r: np.ndarray) -> pa.Array:
    return fixed_bytes(uid_bytes(r["sensor"], r["session"], r["flow_id"])).cast(pa.string())


def _parent_uid(r: np.ndarray) -> pa.Array:
    """The tunnel parent's uid, null for a flow that was not tunnelled."""
    parent = r["parent_id"]
    rows = np.flatnonzero(parent != 0)
    out = np.zeros(len(parent), "S18")
    out[rows] = uid_bytes(r["sensor"][rows], r["session"][rows], parent[rows])
    return fixed_bytes(out, mask=parent == 0).cast(pa.string())


def _duration(r: np.ndarray) -> pa.Array:
    """Seconds between first and last packet, at microsecond precision (as Zeek)."""
    return numpy_array((r["ts_last_ns"] // 1000 - r["ts_first_ns"] // 1000) / 1e6)


def _identity() -> list[Column]:
    return [plain("sensor"), plain("session")]


def _window() -> list[Column]:
    """The times of a telemetry window record (host, pair)."""
    return [time(f"ts_{t}_ns", f"ts_{t}") for t in ("start", "end", "last")]


def _telemetry_tail() -> list[Column]:
    return [bits("flags", TelemetryFlags), plain("iface"), *_identity()]


def _flow_columns() -> list[Column]:
    flag = [n.lower() for n in TCP_FLAG_NAMES]
    return [
        time("ts_first_ns", "ts"),
        derived("uid", _uid),
        address("orig_addr", "orig_h", "ip_version"),
        plain("orig_port", "orig_p"),
        address("resp_addr", "resp_h", "ip_version"),
        plain("resp_port", "resp_p"),
        derived("proto", lambda r: _names(r["proto"], PROTO_NAMES)),  # ip_proto decodes
        plain("proto", "ip_proto"),
        derived("duration", _duration),
        time("ts_last_ns", "ts_last"),
        *[plain(f) for f in ("orig_bytes", "resp_bytes")],
        enum("conn_state", _enum_names(ConnState, null_zero=True)),
        plain("missed_bytes"),
        text("history"),
        *[plain(f) for f in ("orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")],
        derived("parent_uid", _parent_uid),
        plain("ip_version"),
        enum("tunnel_type", _enum_names(TunnelType, null_zero=True)),
        enum("end_reason", _enum_names(EndReason, null_zero=False)),
        bits("flags", FlowFlags),
        *[plain(f) for f in ("vlan", "inner_vlan", "iface")],
        mac("orig_mac", "orig_l2_addr"),
        mac("resp_mac", "resp_l2_addr"),
        *[plain(f"{d}_len_{s}") for d in ("orig", "resp") for s in ("min", "max", "mean", "std")],
        *[plain(f"{d}_iat_{s}") for d in ("orig", "resp") for s in ("min", "max", "mean", "std")],
        split("orig_flag_counts", [f"orig_{f}" for f in flag]),
        split("resp_flag_counts", [f"resp_{f}" for f in flag]),
        prefix_list("first_sizes", "n_first"),
        plain("first_dirs"),
        text("dns_qname"),
        *[
            plain(f"dns_{f}")
            for f in ("queries", "responses", "answers", "distinct_names", "nxdomain")
        ],
        *[plain(f"dns_{f}") for f in ("qtype_mask", "rcode_mask", "label_entropy_max")],
        *[plain(f"dns_{f}") for f in ("longest_label", "max_name_len")],
        *_identity(),
        plain("flow_id"),
        plain("parent_id"),
    ]


def _host_columns() -> list[Column]:
    counts = [
        name
        for name, (dt, _) in struct_fields(RECORD_TYPES["host"]).items()
        if name.startswith(("out_", "in_", "arp_")) and dt.shape == ()
    ]
    return [
        *_window(),
        time("ts_long_start_ns", "ts_long_start"),
        address("addr", "host_h", "ip_version"),
        plain("ip_version"),
        *[plain(f) for f in counts],
        *[decayed(f"{d}_{s}") for d in ("out", "in") for s in ("rate", "size_mean", "size_std")],
        *_telemetry_tail(),
    ]


def _pair_columns() -> list[Column]:
    return [
        *_window(),
        address("src", "src_h", "ip_version"),
        address("dst", "dst_h", "ip_version"),
        plain("ip_version"),
        *[plain(f) for f in ("bytes", "payload", "pkts", "flows")],
        *[decayed(f) for f in ("rate", "size_mean", "size_std")],
        plain("flow_interval_mean"),
        plain("flow_interval_std"),
        *_telemetry_tail(),
    ]


def _arp_columns() -> list[Column]:
    return [
        time("ts_ns", "ts"),
        enum("op", [None, "request", "reply"]),
        address("sender_ip", "sender_h", None),
        mac("sender_mac"),
        address("target_ip", "target_h", None),
        mac("target_mac"),
        mac("eth_src"),
        plain("vlan"),
        plain("iface"),
        *_identity(),
    ]


_BUILDERS: dict[str, Callable[[], list[Column]]] = {
    "flow": _flow_columns,
    "host": _host_columns,
    "pair": _pair_columns,
    "arp": _arp_columns,
}


@functools.cache
def _columns(kind: str) -> tuple[Column, ...]:
    if kind not in _BUILDERS:
        raise ValueError(f"no Arrow form for record kind {kind!r} (kinds: {', '.join(KINDS)})")
    return tuple(_BUILDERS[kind]())


@functools.cache
def schema(kind: str) -> pa.Schema:
    """The Arrow schema of ``kind`` (the schema of ``to_arrow(kind, ...)``)."""
    return to_batch(kind, np.zeros(0, RECORD_TYPES[kind])).schema


class Fields:
    """The fields of a record array, each copied once into a contiguous array when first
    used (numpy and Arrow work on contiguous columns; a projection copies only its fields)."""

    def __init__(self, records: np.ndarray) -> None:
        self.records = records
        self._cols: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        col = self._cols.get(name)
        if col is None:
            col = self._cols[name] = np.ascontiguousarray(self.records[name])
        return col

    def __len__(self) -> int:
        return len(self.records)


def to_batch(
    kind: str, records: np.ndarray, columns: Collection[str] | None = None
) -> pa.RecordBatch:
    """Records of ``RECORD_TYPES[kind]`` as one Arrow record batch; ``columns``: only these
    columns of the schema (in schema order), for a writer that needs a few."""
    if records.dtype != RECORD_TYPES[kind]:
        raise ValueError(f"{kind}: records have dtype {records.dtype}, not the {kind} dtype")
    fields = Fields(records)
    cols = _columns(kind)
    want = set(columns) if columns is not None else None
    if want is not None:
        cols = tuple(c for c in cols if want.intersection(c.names))
    pairs = [p for col in cols for p in col.encode(fields)]  # type: ignore[arg-type]
    if want is not None:
        pairs = [(n, a) for n, a in pairs if n in want]
    return pa.RecordBatch.from_arrays([a for _, a in pairs], names=[n for n, _ in pairs])


def to_arrow(kind: str, records: np.ndarray) -> pa.Table:
    """Records of ``RECORD_TYPES[kind]`` as an Arrow table (see the module's conventions)."""
    return pa.Table.from_batches([to_batch(kind, records)])


def to_records(kind: str, data: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Inverse of ``to_arrow``: a table or batch of ``kind`` back to its record dtype.

    Exact for every field, except times finer than a microsecond (dropped) and text that
    was not valid UTF-8 (replaced)."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    out = np.zeros(table.num_rows, RECORD_TYPES[kind])
    if "ip_version" in table.column_names:  # addresses are decoded by it
        out["ip_version"] = table.column("ip_version").to_numpy()
    for col in _columns(kind):
        col.decode(table, out)
    return out
