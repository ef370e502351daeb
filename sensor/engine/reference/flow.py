"""Flows and their per-direction sides (twin of flow.pxi)."""

from __future__ import annotations

from netwarden.records.schema import (
    FIRST_PKTS,
    FlowFlags,
)
from sensor.engine.reference import tcp as T


class Side:
    """Per-direction counters and statistics (swapped when roles flip)."""

    __slots__ = (
        "flags",
        "iat_max",
        "iat_min",
        "iat_n",
        "iat_sq",
        "iat_sum",
        "ip_bytes",
        "last_ts",
        "len_max",
        "len_min",
        "len_sq",
        "len_sum",
        "mac",
        "pkts",
    )

    def __init__(self) -> None:
        self.pkts = 0
        self.ip_bytes = 0
        self.len_min = 0
        self.len_max = 0
        self.len_sum = 0
        self.len_sq = 0
        self.last_ts = 0
        self.iat_n = 0
        self.iat_min = 0.0
        self.iat_max = 0.0
        self.iat_sum = 0.0
        self.iat_sq = 0.0
        self.flags = [0] * 8
        self.mac = b"\x00" * 6


class Flow(T.HistorySink):
    __slots__ = (
        "close_deferred",
        "dns_answers",
        "dns_entropy",
        "dns_first_done",
        "dns_longest",
        "dns_max_name",
        "dns_names",
        "dns_nxdomain",
        "dns_qname",
        "dns_qtype_mask",
        "dns_queries",
        "dns_rcode_mask",
        "dns_responses",
        "eo",
        "er",
        "first_dirs",
        "first_packet_seen",
        "first_sizes",
        "flags",
        "flow_id",
        "hist_seen",
        "history",
        "iface",
        "inner_vlan",
        "ip_version",
        "is_partial",
        "key",
        "last_ns",
        "n_first",
        "next_active",
        "ntp_flipped",
        "o",
        "one_way",
        "orig_addr",
        "orig_port",
        "parent_cur",
        "parent_id",
        "proto",
        "r",
        "removed",
        "rep_len",
        "req_len",
        "resp_addr",
        "resp_port",
        "start_ns",
        "ttype",
        "tun_changes",
        "tun_violated",
        "vlan",
    )

    def __init__(self) -> None:
        self.flow_id = 0
        self.parent_id = 0
        self.key: tuple = ()
        self.ip_version = 4
        self.proto = 0
        self.ttype = 0
        self.iface = 0
        self.orig_addr = b""
        self.orig_port = 0
        self.resp_addr = b""
        self.resp_port = 0
        self.vlan = 0
        self.inner_vlan = 0
        self.start_ns = 0
        self.last_ns = 0
        self.history = ""
        self.hist_seen = 0
        self.o = Side()
        self.r = Side()
        self.eo = T.Endpoint(True)  # TCP endpoints (unused for other protocols)
        self.er = T.Endpoint(False)
        self.is_partial = False
        self.first_packet_seen = 0
        self.flags = 0
        self.n_first = 0
        self.first_sizes = [0] * FIRST_PKTS
        self.first_dirs = 0
        self.removed = False
        self.next_active = 0
        self.one_way = False
        self.tun_violated = 0  # bit per TunnelType whose header failed on this flow
        self.dns_first_done = False  # Zeek's DNS analyzer has seen its first message
        self.ntp_flipped = False
        self.close_deferred = False  # a FIN/RST close waits for pending data (Zeek)
        self.parent_cur = 0  # encapsulation of the latest packet (tunnel id / outer flow)
        self.tun_changes = 0
        # UDP/ICMP payload bytes per role slot; -1 = never sent (Zeek's INACTIVE). Like
        # Zeek's request_len/reply_len these slots do NOT follow a role flip.
        self.req_len = -1
        self.rep_len = -1
        self.dns_queries = 0
        self.dns_responses = 0
        self.dns_answers = 0
        self.dns_names: list[bytes] = []
        self.dns_nxdomain = 0
        self.dns_qtype_mask = 0
        self.dns_entropy = 0.0
        self.dns_rcode_mask = 0
        self.dns_longest = 0
        self.dns_max_name = 0
        self.dns_qname = b""

    # history (Zeek's Session::AddHistory / CheckHistory / ScaledHistoryEntry)
    def add(self, is_orig: bool, code: str) -> None:
        self.history += code if is_orig else code.lower()

    def check(self, is_orig: bool, mask: int, code: str) -> bool:
        if not is_orig:
            mask <<= 16
            code = code.lower()
        if self.hist_seen & mask == 0:
            self.hist_seen |= mask
            self.history += code
            return False
        return True

    def update_length(self, is_orig: bool, n: int) -> None:
        if is_orig:
            self.req_len = n if self.req_len < 0 else self.req_len + n
        else:
            self.rep_len = n if self.rep_len < 0 else self.rep_len + n

    def conn_check(self, mask: int, code: str) -> None:
        """Connection-level history letter (no direction): Zeek's Session::CheckHistory."""
        if self.hist_seen & mask == 0:
            self.hist_seen |= mask
            self.history += code

    def scaled(self, is_orig: bool, code: str, cnt: int, thresh: int) -> tuple[int, int]:
        cnt += 1
        if cnt == thresh:
            self.add(is_orig, code)
            nt = thresh * 10
            if nt > 0xFFFFFFFF:
                cnt = 0
            else:
                thresh = nt
        return cnt, thresh

    def flip_roles(self) -> None:
        self.orig_addr, self.resp_addr = self.resp_addr, self.orig_addr
        self.orig_port, self.resp_port = self.resp_port, self.orig_port
        self.o, self.r = self.r, self.o
        self.eo, self.er = self.er, self.eo
        self.eo.is_orig = True
        self.er.is_orig = False
        fps = self.first_packet_seen
        self.first_packet_seen = (2 if fps & 1 else 0) | (1 if fps & 2 else 0)
        self.is_partial = False
        self.first_dirs = (~self.first_dirs) & ((1 << self.n_first) - 1)
        self.flags |= FlowFlags.FLIPPED
        self.history += "^"

    # TCP history hook: a connection that began with a SYN-ACK flips on A/D.
    def tcp_check(self, ep: T.Endpoint, mask: int, code: str) -> bool:
        if (code == "A" or code == "D") and self.history == "H":
            self.flip_roles()
            self.history = "^h"
            self.first_packet_seen |= 1
        return self.check(ep.is_orig, mask, code)
