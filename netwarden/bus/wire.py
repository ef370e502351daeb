"""Bus framing shared by the sensor (publisher) and the controller (collector).

One bus message is one batch of records of one type, sent as a ZeroMQ multipart message:

* frame 0: a small msgpack map, the header (``Header``);
* frame 1: the raw record bytes, exactly ``count * dtype.itemsize`` long (absent for
  heartbeats and empty batches).

Records travel in the in-memory layout of ``netwarden.records.schema.RECORD_TYPES[record_type]`` and
are decoded with ``np.frombuffer``: no per-field serialisation on either side. The header
carries the schema version and the dtype hash so a controller never misreads a sensor
built from another schema.

The decoder treats every message as hostile: header size and msgpack container limits are
set explicitly, every field is type- and range-checked, and every failure is a
``FrameRejected`` whose ``reason`` names the counter the collector increments.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from netwarden.errors import FrameRejected
from netwarden.records.schema import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    dtype_hash,
    padding_runs,
    record_bytes,
)

#: Version of this framing (header keys and frame layout), independent of the schema.
WIRE_VERSION = 1

DATA = "data"
HEARTBEAT = "heartbeat"
BYE = "bye"  # sent once on a clean shutdown, after the final flush
KINDS = (DATA, HEARTBEAT, BYE)

#: Limits applied to everything a sensor sends.
MAX_HEADER_BYTES = 4096
MAX_SENSOR_ID_LEN = 64
MAX_DROP_COUNTERS = 32
MAX_COUNTER_NAME_LEN = 48
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20

#: Every reject reason the decoder can give (the collector keeps one counter per reason).
REJECT_REASONS = (
    "malformed",
    "wire_version",
    "schema_version",
    "record_type",
    "dtype_hash",
    "size",
    "oversized",
)

_U64 = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

#: Precomputed once: hashing a dtype per message would cost more than the decode.
_HASHES: dict[str, str] = {}


def record_hash(record_type: str) -> str:
    h = _HASHES.get(record_type)
    if h is None:
        h = _HASHES[record_type] = dtype_hash(RECORD_TYPES[record_type])
    return h


@dataclass(frozen=True, slots=True)
class Header:
    """What a sensor says about one message.

    ``seq`` numbers data messages 1, 2, 3... within one ``session`` (a random id chosen when
    the publisher starts, so a restarted sensor is not mistaken for a gap). ``base`` is the
    lowest sequence number the sensor still holds for resending: everything below it was
    acknowledged or dropped from its local buffer, so a collector that never received it
    has lost it. Heartbeats and the final ``bye`` carry no records. ``acked`` is the highest sequence number a collector acknowledged, so a
    freshly started collector can still count messages evicted unacknowledged
    (``acked + 1 .. base - 1``) as lost. Heartbeats carry ``seq = 0`` and ``next_seq``, the number the next data
    message will get. ``drops`` are cumulative loss counters (kernel drops, ring overruns,
    decode errors, records dropped on the bus...).
    """

    sensor_id: str
    session: int
    seq: int
    base: int
    acked: int = 0
    kind: str = DATA
    record_type: str = ""
    dtype_hash: str = ""
    schema_version: int = SCHEMA_VERSION
    count: int = 0
    ts_first_ns: int = 0
    ts_last_ns: int = 0
    next_seq: int = 0
    heartbeat_s: float = 1.0
    sent_ns: int = 0
    drops: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded message: its header and its records (read-only view of the frame)."""

    header: Header
    records: np.ndarray

    @property
    def sensor_id(self) -> str:
        return self.header.sensor_id

    @property
    def record_type(self) -> str:
        return self.header.record_type

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def count(self) -> int:
        return self.header.count

    @property
    def ts_first_ns(self) -> int:
        return self.header.ts_first_ns

    @property
    def ts_last_ns(self) -> int:
        return self.header.ts_last_ns

    @property
    def drops(self) -> Mapping[str, int]:
        return self.header.drops


# Short keys keep the header small; the mapping is the wire format, so never reuse a key.
_KEYS = {
    "w": "wire_version",
    "v": "schema_version",
    "k": "kind",
    "s": "sensor_id",
    "ss": "session",
    "q": "seq",
    "b": "base",
    "a": "acked",
    "t": "record_type",
    "h": "dtype_hash",
    "n": "count",
    "t0": "ts_first_ns",
    "t1": "ts_last_ns",
    "nq": "next_seq",
    "hb": "heartbeat_s",
    "st": "sent_ns",
    "d": "drops",
}


def check_endpoint(endpoint: str) -> str:
    """Reject endpoint typos ZeroMQ would silently accept (it wraps a TCP port > 65535)."""
    from netwarden.errors import ConfigError

    transport, sep, rest = endpoint.partition("://")
    if not sep or transport not in ("tcp", "ipc", "inproc"):
        raise ConfigError(f"endpoint {endpoint!r} must look like tcp://HOST:PORT or ipc://PATH")
    if transport == "tcp":
        port = rest.rpartition(":")[2]
        if port != "*" and not (port.isdigit() and 0 < int(port) <= 65535):
            raise ConfigError(f"endpoint {endpoint!r}: port must be 1..65535 (or * to bind)")
    return endpoint


def is_ipv6_endpoint(endpoint: str) -> bool:
    """tcp://[v6 address]:PORT (ZeroMQ needs its IPV6 option for those)."""
    transport, _, rest = endpoint.partition("://")
    return transport == "tcp" and rest.startswith("[")


def encode_header(h: Header) -> bytes:
    return msgpack.packb(
        {
            "w": WIRE_VERSION,
            "v": h.schema_version,
            "k": h.kind,
            "s": h.sensor_id,
            "ss": h.session,
            "q": h.seq,
            "b": h.base,
            "a": h.acked,
            "t": h.record_type,
            "h": h.dtype_hash,
            "n": h.count,
            "t0": h.ts_first_ns,
            "t1": h.ts_last_ns,
            "nq": h.next_seq,
            "hb": h.heartbeat_s,
            "st": h.sent_ns or time.time_ns(),
            "d": dict(h.drops),
        },
        use_bin_type=True,
    )


#: Timestamp fields that bound a record, by preference (flows, telemetry windows, ARP).
_FIRST_TS = ("ts_first_ns", "ts_start_ns", "ts_ns")
_LAST_TS = ("ts_last_ns", "ts_end_ns", "ts_ns")


def time_span(records: np.ndarray) -> tuple[int, int]:
    """First and last timestamp (ns) the records cover; (0, 0) when empty or untimed."""
    names = records.dtype.names or ()
    first = next((n for n in _FIRST_TS if n in names), None)
    last = next((n for n in _LAST_TS if n in names), None)
    if first is None or last is None or not len(records):
        return 0, 0
    return int(records[first].min()), int(records[last].max())


def records_header(
    records: np.ndarray,
    record_type: str,
    *,
    sensor_id: str,
    session: int,
    seq: int,
    base: int,
    drops: Mapping[str, int] | None = None,
    heartbeat_s: float = 1.0,
) -> Header:
    """Build the header of a data message, deriving count and time span from the records."""
    dt = RECORD_TYPES.get(record_type)
    if dt is None:
        raise ValueError(f"unknown record type {record_type!r}")
    if records.dtype != dt:
        raise ValueError(f"records are {records.dtype}, {record_type!r} needs its schema dtype")
    t0, t1 = time_span(records)
    return Header(
        sensor_id=sensor_id,
        session=session,
        seq=seq,
        base=base,
        kind=DATA,
        record_type=record_type,
        dtype_hash=record_hash(record_type),
        count=len(records),
        ts_first_ns=t0,
        ts_last_ns=t1,
        heartbeat_s=heartbeat_s,
        drops=dict(drops or {}),
    )


def encode(header: Header, records: np.ndarray | None = None) -> list[Any]:
    """Frames of one message. The record frame is a zero-copy view of a contiguous array
    when the dtype has no padding, else ``record_bytes`` (padding zeroed)."""
    frames: list[Any] = [encode_header(header)]
    if records is not None and len(records):
        if padding_runs(records.dtype):
            frames.append(memoryview(record_bytes(records)))
        else:
            frames.append(memoryview(np.ascontiguousarray(records).data).cast("B"))
    return frames


def _reject(reason: str, detail: str) -> FrameRejected:
    return FrameRejected(reason, detail)


def _int(m: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    v = m.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise _reject("malformed", f"header field {_KEYS[key]!r} must be an int in [{lo}, {hi}]")
    return v


def _str(m: Mapping[str, Any], key: str, max_len: int) -> str:
    v = m.get(key)
    if type(v) is not str or len(v) > max_len:
        raise _reject("malformed", f"header field {_KEYS[key]!r} must be a string of <= {max_len}")
    return v


def _unpack_header(raw: bytes | memoryview) -> dict[str, Any]:
    if len(raw) > MAX_HEADER_BYTES:
        raise _reject("oversized", f"header is {len(raw)} bytes, limit {MAX_HEADER_BYTES}")
    try:
        obj = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            use_list=False,
            max_str_len=256,
            max_bin_len=0,
            max_array_len=0,
            max_map_len=max(len(_KEYS), MAX_DROP_COUNTERS),
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:  # every msgpack fault
        raise _reject("malformed", f"header is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise _reject("malformed", f"header is a msgpack {type(obj).__name__}, not a map")
    return obj


def decode_header(raw: bytes | memoryview) -> Header:
    m = _unpack_header(raw)
    w = m.get("w")
    if w != WIRE_VERSION or type(w) is not int:
        raise _reject("wire_version", f"wire version {w!r}, this collector speaks {WIRE_VERSION}")
    v = m.get("v")
    if v != SCHEMA_VERSION or type(v) is not int:
        raise _reject("schema_version", f"schema version {v!r}, expected {SCHEMA_VERSION}")
    kind = m.get("k")
    if kind not in KINDS:
        raise _reject("malformed", f"kind {kind!r} is not one of {KINDS}")
    drops_raw = m.get("d", {})
    if not isinstance(drops_raw, dict) or len(drops_raw) > MAX_DROP_COUNTERS:
        raise _reject("malformed", "drop counters must be a small map")
    drops: dict[str, int] = {}
    for name, val in drops_raw.items():
        if (
            type(name) is not str
            or len(name) > MAX_COUNTER_NAME_LEN
            or type(val) is not int
            or not 0 <= val <= _U64
        ):
            raise _reject("malformed", "drop counters must map short names to counts")
        drops[name] = val
    hb = m.get("hb", 1.0)
    if type(hb) not in (int, float) or not 0.0 < hb <= 3600.0:
        raise _reject("malformed", "heartbeat interval must be in (0, 3600] seconds")
    sensor_id = _str(m, "s", MAX_SENSOR_ID_LEN)
    if not sensor_id:
        raise _reject("malformed", "empty sensor id")
    return Header(
        sensor_id=sensor_id,
        session=_int(m, "ss", 0, _U64),
        seq=_int(m, "q", 0, _U64),
        base=_int(m, "b", 0, _U64),
        acked=_int(m, "a", 0, _U64),
        kind=kind,
        record_type=_str(m, "t", 64),
        dtype_hash=_str(m, "h", 64),
        schema_version=v,
        count=_int(m, "n", 0, _U64),
        ts_first_ns=_int(m, "t0", _I64_MIN, _I64_MAX),
        ts_last_ns=_int(m, "t1", _I64_MIN, _I64_MAX),
        next_seq=_int(m, "nq", 0, _U64),
        heartbeat_s=float(hb),
        sent_ns=_int(m, "st", 0, _I64_MAX),
        drops=drops,
    )


_EMPTY: dict[str, np.ndarray] = {}


def _empty(record_type: str) -> np.ndarray:
    arr = _EMPTY.get(record_type)
    if arr is None:
        arr = _EMPTY[record_type] = np.zeros(0, RECORD_TYPES[record_type])
        arr.flags.writeable = False
    return arr


def _nbytes(frame: Any) -> int:
    return len(frame.buffer) if hasattr(frame, "buffer") else len(frame)


def _view(frame: Any) -> Any:
    # zmq.Frame (copy=False receive) exposes .buffer; bytes/memoryview are used as they are.
    return frame.buffer if hasattr(frame, "buffer") else frame


def decode(
    frames: Sequence[Any],
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Batch:
    """Decode one message (its frames, without any routing envelope).

    Raises ``FrameRejected`` for anything that is not a well-formed message of this schema.
    The records array is a read-only view of the received frame (no copy).
    """
    if not 1 <= len(frames) <= 2:
        raise _reject("malformed", f"{len(frames)} frames, expected 1 (header) or 2")
    total = sum(_nbytes(f) for f in frames)
    if total > max_message_bytes:
        raise _reject("oversized", f"message is {total} bytes, limit {max_message_bytes}")
    header = decode_header(_view(frames[0]))
    if header.kind != DATA:
        if len(frames) != 1 or header.count:
            raise _reject("malformed", f"{header.kind} with records")
        return Batch(header, np.zeros(0, np.uint8))
    if header.seq == 0:
        raise _reject("malformed", "data message with sequence number 0")
    dt = RECORD_TYPES.get(header.record_type)
    if dt is None:
        raise _reject("record_type", f"unknown record type {header.record_type!r}")
    if header.dtype_hash != record_hash(header.record_type):
        raise _reject(
            "dtype_hash",
            f"{header.record_type} dtype hash {header.dtype_hash!r}, "
            f"expected {record_hash(header.record_type)!r}",
        )
    body = _view(frames[1]) if len(frames) == 2 else b""
    nbytes = len(body)
    if nbytes % dt.itemsize:
        raise _reject("size", f"{nbytes} record bytes is not a multiple of {dt.itemsize}")
    if nbytes // dt.itemsize != header.count:
        raise _reject(
            "size", f"header says {header.count} records, frame holds {nbytes // dt.itemsize}"
        )
    if not nbytes:
        return Batch(header, _empty(header.record_type))
    records = np.frombuffer(body, dtype=dt)
    return Batch(header, records)


# ---- acknowledgements (collector -> sensor) ---------------------------------------------


def encode_ack(session: int, ack: int, resend: bool = False) -> bytes:
    """Every data sequence number <= ``ack`` of ``session`` is settled; ``resend`` asks the
    sensor to go back to ``ack + 1`` now (the collector discarded an out-of-order message)."""
    m: dict[str, int] = {"ack": ack, "ss": session}
    if resend:
        m["rs"] = ack + 1
    return msgpack.packb(m)


def decode_ack(raw: bytes) -> tuple[int, int, int | None]:
    """``(session, ack, resend_from)``; raises ``FrameRejected`` on anything else."""
    try:
        m = msgpack.unpackb(raw, raw=False, max_map_len=4, max_str_len=8, max_bin_len=0,
                            max_array_len=0, max_ext_len=0)  # fmt: skip
    except (ValueError, TypeError, msgpack.UnpackException):
        raise _reject("malformed", "ack is not valid msgpack") from None
    if not isinstance(m, dict):
        raise _reject("malformed", "ack is not a map")
    ack, session, rs = m.get("ack"), m.get("ss"), m.get("rs")
    if type(ack) is not int or type(session) is not int or not (rs is None or type(rs) is int):
        raise _reject("malformed", "ack fields must be integers")
    return session, ack, rs


# ---- socket monitor events (ZeroMQ, in process) -----------------------------------------


@dataclass(frozen=True)
class MonitorEvent:
    event: int  # a zmq.EVENT_* number
    value: int  # the event's value (a file descriptor, an errno, a ZAP status...)
    endpoint: bytes


def monitor_event(frames: Sequence[bytes]) -> MonitorEvent:
    """One event from a ZeroMQ socket monitor: a 6-byte frame (event number as uint16,
    value as uint32, native byte order) and the endpoint. Read here rather than with pyzmq's
    helper, whose module imports asyncio: about 25 ms of every sensor's start-up."""
    if len(frames) != 2 or len(frames[0]) != 6:
        raise ValueError(f"not a socket monitor event: {[len(f) for f in frames]} bytes")
    event, value = _MONITOR.unpack(frames[0])
    return MonitorEvent(event, value, bytes(frames[1]))


_MONITOR = struct.Struct("=HI")
