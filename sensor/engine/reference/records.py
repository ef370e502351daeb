# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""FLOW records (twin of records.pxi): conn_state and emission."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from netwarden.records.schema import (
    FLOW_DTYPE,
    HISTORY_LEN,
    ConnState,
    FlowFlags,
)
from sensor.engine.reference import tcp as T
from sensor.engine.reference.engine import (
    PROTO_TCP,
    PROTO_UDP,
)
from sensor.engine.reference.flow import Flow

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine


def _is_multicast(a: bytes) -> bool:
    if len(a) == 4:
        return a[0] >> 4 == 0xE
    return a[0] == 0xFF


def _rstos0_history(h: str) -> bool:
    """Zeek's ``/\\^?S[^HAFGIQ]*R.*/`` match on the history."""
    i = 0
    if h.startswith("^"):
        i = 1
    if i >= len(h) or h[i] != "S":
        return False
    i += 1
    while i < len(h):
        c = h[i]
        if c == "R":
            return True
        if c in "HAFGIQ":
            return False
        i += 1
    return False


def _mean_std(n: int, s: int, sq: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    mean = s / n
    var = sq / n - mean * mean
    return mean, math.sqrt(var) if var > 0 else 0.0


def _mean_std_f(n: int, s: float, sq: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    mean = s / n
    var = sq / n - mean * mean
    return mean, math.sqrt(var) if var > 0 else 0.0


class RecordsMixin:
    # --- records ------------------------------------------------------------------------------
    def _conn_state(self: FlowEngine, f: Flow) -> int:
        if f.proto == PROTO_TCP:
            os_, rs = f.eo.state, f.er.state
            o_inact = os_ == T.INACTIVE or os_ == T.PARTIAL
            r_inact = rs == T.INACTIVE or rs == T.PARTIAL
            if rs == T.RESET:
                if os_ in (T.SYN_SENT, T.SYN_ACK_SENT) or (
                    os_ == T.RESET and f.eo.size(f.er) == 0 and f.er.size(f.eo) == 0
                ):
                    return ConnState.REJ
                if o_inact:
                    return ConnState.RSTRH
                return ConnState.RSTR
            if os_ == T.RESET:
                if r_inact:
                    if _rstos0_history(f.history):
                        return ConnState.RSTOS0
                    return ConnState.OTH
                return ConnState.RSTO
            if rs == T.CLOSED and os_ == T.CLOSED:
                return ConnState.SF
            if os_ == T.CLOSED:
                return ConnState.SH if r_inact else ConnState.S2
            if rs == T.CLOSED:
                return ConnState.SHR if o_inact else ConnState.S3
            if os_ == T.SYN_SENT and rs == T.INACTIVE:
                return ConnState.S0
            if os_ == T.ESTABLISHED and rs == T.ESTABLISHED:
                return ConnState.S1
            return ConnState.OTH
        if f.proto == PROTO_UDP:
            if f.req_len >= 0:
                return ConnState.SF if f.rep_len >= 0 else ConnState.S0
            return ConnState.SHR if f.rep_len >= 0 else ConnState.OTH
        return ConnState.OTH

    def _emit(self: FlowEngine, f: Flow, reason: int, interim: bool) -> None:
        r = np.zeros((), FLOW_DTYPE)
        r["flow_id"] = f.flow_id
        r["parent_id"] = f.parent_id
        r["sensor"] = self.cfg.sensor
        r["session"] = self.cfg.session
        r["ts_first_ns"] = f.start_ns
        r["ts_last_ns"] = f.last_ns
        if f.proto == PROTO_TCP:
            ob = f.eo.size(f.er)
            rb = f.er.size(f.eo)
            r["missed_bytes"] = f.eo.missed + f.er.missed
        else:
            ob = max(f.req_len, 0)
            rb = max(f.rep_len, 0)
        r["orig_bytes"] = ob
        r["resp_bytes"] = rb
        o, s = f.o, f.r
        r["orig_pkts"] = o.pkts
        r["resp_pkts"] = s.pkts
        r["orig_ip_bytes"] = o.ip_bytes
        r["resp_ip_bytes"] = s.ip_bytes
        for pre, side in (("orig", o), ("resp", s)):
            mean, std = _mean_std(side.pkts, side.len_sum, side.len_sq)
            r[pre + "_len_mean"] = mean
            r[pre + "_len_std"] = std
            r[pre + "_len_min"] = side.len_min
            r[pre + "_len_max"] = side.len_max
            imean, istd = _mean_std_f(side.iat_n, side.iat_sum, side.iat_sq)
            r[pre + "_iat_min"] = side.iat_min
            r[pre + "_iat_max"] = side.iat_max
            r[pre + "_iat_mean"] = imean
            r[pre + "_iat_std"] = istd
            r[pre + "_flag_counts"] = side.flags
        r["orig_mac"] = np.frombuffer(o.mac, np.uint8)
        r["resp_mac"] = np.frombuffer(s.mac, np.uint8)
        r["dns_queries"] = f.dns_queries
        r["dns_responses"] = f.dns_responses
        r["dns_answers"] = f.dns_answers
        r["dns_distinct_names"] = len(f.dns_names)
        r["dns_nxdomain"] = f.dns_nxdomain
        r["dns_qtype_mask"] = f.dns_qtype_mask
        r["dns_label_entropy_max"] = f.dns_entropy
        r["dns_rcode_mask"] = f.dns_rcode_mask
        r["dns_longest_label"] = f.dns_longest
        r["dns_max_name_len"] = f.dns_max_name
        r["dns_qname"] = f.dns_qname
        r["orig_port"] = f.orig_port
        r["resp_port"] = f.resp_port
        r["vlan"] = f.vlan
        r["inner_vlan"] = f.inner_vlan
        r["first_sizes"] = f.first_sizes
        r["first_dirs"] = f.first_dirs
        r["n_first"] = f.n_first
        r["ip_version"] = f.ip_version
        r["proto"] = f.proto
        r["conn_state"] = self._conn_state(f)
        r["tunnel_type"] = f.ttype
        r["end_reason"] = reason
        r["flags"] = f.flags | (FlowFlags.INTERIM if interim else 0)
        r["iface"] = f.iface
        oa = np.zeros(16, np.uint8)
        oa[: len(f.orig_addr)] = np.frombuffer(f.orig_addr, np.uint8)
        ra = np.zeros(16, np.uint8)
        ra[: len(f.resp_addr)] = np.frombuffer(f.resp_addr, np.uint8)
        r["orig_addr"] = oa
        r["resp_addr"] = ra
        r["history"] = f.history.encode()[:HISTORY_LEN]
        self.out_flows.append(r)
        if not interim:
            self.st["flows_emitted"] += 1
