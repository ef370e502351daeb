"""Crafted telemetry and flow records for detector unit tests (numpy, schema dtypes)."""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np

from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE, HOST_DTYPE, PAIR_DTYPE

T0 = 1_700_000_000 * 10**9  # a fixed capture time
S = 10**9


def _addr(ip: str) -> tuple[np.ndarray, int]:
    a = ipaddress.ip_address(ip)
    raw = np.zeros(16, np.uint8)
    raw[: len(a.packed)] = np.frombuffer(a.packed, np.uint8)
    return raw, a.version


def host(ip: str, t_s: float, window_s: float = 1.0, **fields: Any) -> np.ndarray:
    """One host-window record starting ``t_s`` seconds after ``T0``."""
    r = np.zeros(1, HOST_DTYPE)
    r["addr"][0], r["ip_version"] = _addr(ip)
    r["ts_start_ns"] = T0 + int(t_s * S)
    r["ts_end_ns"] = r["ts_start_ns"] + int(window_s * S)
    r["ts_last_ns"] = r["ts_end_ns"] - 1
    r["ts_long_start_ns"] = T0 + int(t_s // 60 * 60 * S)
    for k, v in fields.items():
        r[k] = v
    return r


def pairs(src: str, dsts: list[str], t_s: float, flows: int = 1, pkts: int = 1) -> np.ndarray:
    r = np.zeros(len(dsts), PAIR_DTYPE)
    s, v = _addr(src)
    r["src"] = s
    r["ip_version"] = v
    for i, d in enumerate(dsts):
        r["dst"][i] = _addr(d)[0]
    r["ts_start_ns"] = T0 + int(t_s * S)
    r["ts_end_ns"] = r["ts_start_ns"] + S
    r["ts_last_ns"] = r["ts_end_ns"] - 1
    r["flows"] = flows
    r["pkts"] = pkts
    return r


def flows(orig: str, resp: str, resp_port: int, starts_s: list[float], **fields: Any) -> np.ndarray:
    """One TCP flow record per start time (``duration_s``, ``history`` and any FLOW field
    may be given; arrays are accepted for per-flow values)."""
    n = len(starts_s)
    f = np.zeros(n, FLOW_DTYPE)
    o, v = _addr(orig)
    f["orig_addr"], f["ip_version"] = o, v
    f["resp_addr"] = _addr(resp)[0]
    f["proto"] = fields.pop("proto", 6)
    f["orig_port"] = 40000 + np.arange(n)
    f["resp_port"] = resp_port
    dur = np.asarray(fields.pop("duration_s", 1.0), float)
    f["ts_first_ns"] = T0 + (np.asarray(starts_s) * S).astype(np.int64)
    f["ts_last_ns"] = f["ts_first_ns"] + (dur * S).astype(np.int64)
    f["flow_id"] = np.arange(1, n + 1)
    f["orig_pkts"], f["resp_pkts"] = 10, 10
    f["conn_state"] = 3
    f["history"] = fields.pop("history", b"ShAdDaFf")
    for k, val in fields.items():
        f[k] = val
    return f


def arp_requests(sender: str, targets: list[str], t_s: float) -> np.ndarray:
    a = np.zeros(len(targets), ARP_DTYPE)
    a["op"] = 1
    a["sender_ip"] = _addr(sender)[0][:4]
    for i, t in enumerate(targets):
        a["target_ip"][i] = _addr(t)[0][:4]
    a["ts_ns"] = T0 + int(t_s * S) + np.arange(len(targets)) * 1000
    return a
