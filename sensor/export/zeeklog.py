"""Writers for flow records: Zeek conn.log (TSV), JSON lines and CSV.

The conn.log writer follows Zeek's ASCII log format: ``#separator \\x09`` header block,
``#fields``/``#types``, ``-`` for unset values, ``(empty)`` for empty sets, and a
``#close`` line. ``uid`` is the record's identity (sensor, session, flow_id) rendered by
``netwarden.records.identity``, and ``tunnel_parents`` holds the uid of ``parent_id``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from typing import IO, Any

import numpy as np

from netwarden.records.identity import record_uids
from netwarden.records.schema import (
    DNS_QTYPE_BITS,
    DNS_QTYPE_OTHER_BIT,
    TCP_FLAG_NAMES,
    ConnState,
    EndReason,
    FlowFlags,
    TunnelType,
    addr_to_str,
)

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


def proto_name(proto: int) -> str:
    if proto == 6:
        return "tcp"
    if proto == 17:
        return "udp"
    if proto in (1, 58):
        return "icmp"
    return "unknown_transport"


def _interval(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{(ns % 1_000_000_000) // 1000:06d}"


def _with_uids(records: np.ndarray) -> zip[tuple[np.void, str, str]]:
    """Each record with its uid and its tunnel parent's uid (computed per batch)."""
    parents = record_uids(records, "parent_id")
    return zip(records, record_uids(records), parents, strict=True)


def conn_row(r: np.void, uid: str, parent_uid: str) -> list[str]:
    ver = int(r["ip_version"])
    # Zeek reads captures at microsecond precision (libpcap truncates finer stamps), so
    # durations are differences of truncated microseconds.
    dur_ns = (int(r["ts_last_ns"]) // 1000 - int(r["ts_first_ns"]) // 1000) * 1000
    has_dur = dur_ns > 0
    history = bytes(r["history"]).rstrip(b"\x00").decode("ascii", "replace")
    parent = int(r["parent_id"])
    return [
        _interval(int(r["ts_first_ns"])),
        uid,
        addr_to_str(r["orig_addr"], ver),
        str(int(r["orig_port"])),
        addr_to_str(r["resp_addr"], ver),
        str(int(r["resp_port"])),
        proto_name(int(r["proto"])),
        "-",
        _interval(dur_ns) if has_dur else "-",
        str(int(r["orig_bytes"])) if has_dur else "-",
        str(int(r["resp_bytes"])) if has_dur else "-",
        ConnState(int(r["conn_state"])).name if int(r["conn_state"]) else "-",
        "-",
        "-",
        str(int(r["missed_bytes"])),
        history or "-",
        str(int(r["orig_pkts"])),
        str(int(r["orig_ip_bytes"])),
        str(int(r["resp_pkts"])),
        str(int(r["resp_ip_bytes"])),
        parent_uid if parent else "-",
        str(int(r["proto"])),
    ]


class ConnLogWriter:
    def __init__(self, fh: IO[str], path: str = "conn") -> None:
        self.fh = fh
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")
        fh.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n")
        fh.write(f"#path\t{path}\n#open\t{now}\n")
        fh.write("#fields\t" + "\t".join(CONN_FIELDS) + "\n")
        fh.write("#types\t" + "\t".join(CONN_TYPES) + "\n")

    def write(self, records: np.ndarray) -> None:
        for r, uid, parent_uid in _with_uids(records):
            self.fh.write("\t".join(conn_row(r, uid, parent_uid)) + "\n")

    def close(self) -> None:
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")
        self.fh.write(f"#close\t{now}\n")
        self.fh.flush()


def _mac(a: Any) -> str:
    return ":".join(f"{int(x):02x}" for x in a)


def record_to_dict(r: np.void, uid: str, parent_uid: str) -> dict[str, Any]:
    """Every FLOW_DTYPE field in human form (addresses, enums, flag names, times)."""
    ver = int(r["ip_version"])
    d: dict[str, Any] = {}
    for name in r.dtype.names or ():
        v = r[name]
        if name in ("orig_addr", "resp_addr"):
            d[name] = addr_to_str(v, ver)
        elif name in ("orig_mac", "resp_mac"):
            d[name] = _mac(v)
        elif name in ("history", "dns_qname"):
            d[name] = bytes(v).rstrip(b"\x00").decode("ascii", "replace")
        elif name == "conn_state":
            d[name] = ConnState(int(v)).name if int(v) else None
        elif name == "tunnel_type":
            d[name] = TunnelType(int(v)).name
        elif name == "end_reason":
            d[name] = EndReason(int(v)).name
        elif name == "flags":
            d[name] = [f.name for f in FlowFlags if int(v) & f]
        elif name in ("orig_flag_counts", "resp_flag_counts"):
            d[name] = {TCP_FLAG_NAMES[i]: int(v[i]) for i in range(8)}
        elif name == "first_sizes":
            d[name] = [int(x) for x in v[: int(r["n_first"])]]
        elif name == "dns_qtype_mask":
            inv = {bit: q for q, bit in DNS_QTYPE_BITS.items()}
            d[name] = [
                inv.get(b, "other") if b != DNS_QTYPE_OTHER_BIT else "other"
                for b in range(32)
                if int(v) >> b & 1
            ]
        elif isinstance(v, np.ndarray):
            d[name] = v.tolist()
        elif isinstance(v, np.floating):
            d[name] = float(v)
        else:
            d[name] = int(v)
    d["uid"] = uid
    d["proto_name"] = proto_name(int(r["proto"]))
    d["duration"] = (int(r["ts_last_ns"]) - int(r["ts_first_ns"])) / 1e9
    d["tunnel_parent_uid"] = parent_uid if int(r["parent_id"]) else None
    return d


class JsonLinesWriter:
    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh

    def write(self, records: np.ndarray) -> None:
        for r, uid, parent_uid in _with_uids(records):
            d = record_to_dict(r, uid, parent_uid)
            self.fh.write(json.dumps(d, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.fh.flush()


class CsvWriter:
    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        self.w: Any = None

    def write(self, records: np.ndarray) -> None:
        for r, uid, parent_uid in _with_uids(records):
            d = record_to_dict(r, uid, parent_uid)
            row = {
                k: (json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v))
                for k, v in d.items()
            }
            if self.w is None:
                self.w = csv.DictWriter(self.fh, fieldnames=list(row))
                self.w.writeheader()
            self.w.writerow(row)

    def close(self) -> None:
        self.fh.flush()


def make_writer(fmt: str, fh: IO[str]) -> Any:
    if fmt == "zeek":
        return ConnLogWriter(fh)
    if fmt == "json":
        return JsonLinesWriter(fh)
    if fmt == "csv":
        return CsvWriter(fh)
    raise ValueError(f"unknown format {fmt!r}")
