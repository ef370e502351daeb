"""Pure-Python reference flow engine: the slow, obvious specification of the semantics.

Same API as the compiled ``sensor.engine._fastpath`` (see ``sensor/engine/__init__.py``). Helpers:
``_ref_pcap`` (reader), ``_ref_decode`` (one function per header), ``_ref_tcp`` (Zeek's TCP
endpoint machine), ``_ref_dns`` (DNS summaries).

Semantics (Zeek's, from its TCP/UDP/ICMP analyzers and conn/main.zeek):

* Packet path: link type -> L2 shims -> IPv4/IPv6 (+ext headers) -> fragment reassembly ->
  transport. ESP, IPv6 mobility and "no next header" packets make no flow (as in Zeek);
  an incompletely captured fragment is dropped unless it is the first one. A reassembled
  datagram is ONE packet with the reassembled IP length. 802.11 data frames (radiotap,
  Aruba GRE) follow Zeek's header rules; an A-MSDU frame yields one packet per subframe.
  An IP total length beyond the packet's wire length drops the packet. With
  ``validate_checksums`` an IPv4 header with a bad checksum is dropped, and a TCP/UDP/ICMP
  packet with a bad checksum creates/keeps the connection but is not counted (history C/c).
* Key: (ip version, proto, both (addr, port) ends sorted, vlan, inner_vlan, tunnel type).
  ICMP: ports are (type, counterpart type) for request/reply pairs (echo, timestamp,
  info, router/neighbour solicitation, MLD, ...), which pairs both directions into one
  flow; other ICMP types are one-way with (type, code) and are not direction-normalised.
  Unknown transports use ports 0.
* Originator: the sender of the first packet, flipped (history ``^``) when: TCP starting
  without a pure SYN and the source port is a likely server port (both likely: flip only
  for non-SYN packets when sport < dport); UDP when sport is a likely server port and dport
  is not; never towards 255.255.255.255. A TCP connection whose history is exactly ``H``
  (began with a SYN-ACK) flips on its first pure ACK or data packet, history becoming
  ``^h``. A SYN answering a SYN-ACK with the same ISN flips too.
* TCP: Zeek's endpoint states and transitions (``_ref_tcp``); payload bytes from sequence
  numbers (wraps counted); history letters S H A D F R (once per direction via a seen
  mask; S/H/F/R again when the sequence number differs), I (FIN+RST), Q (multi-flag),
  C T W G scaled (1st, 10th, 100th... occurrence), upper case = originator.
  Gaps: an ACK beyond the contiguous data of the other side reports the missing ranges
  (G/g, missed_bytes), except at ack <= 2 of a partial connection; reassembly gives up
  (no more gaps) with > 16 KiB above a hole before any ACK or > 10 MiB buffered.
  UDP: D/d once per direction; ICMP: no letters; X once when Zeek's DNS analyzer sees an
  unknown opcode. conn_state from conn/main.zeek.
* Close: a FIN/RST marks its side closed only once its data is delivered (no hole below
  its highest sequence, and no data buffered by the peer); until then the close is
  deferred and carried out when an ACK turns the hole into a gap (Zeek's close_deferred
  and EndpointEOF). Last-packet time stops advancing once both sides closed.
* Reuse: a SYN (or SYN-ACK on a half-open connection) with a new ISN on an existing TCP
  tuple ends the old flow (end_reason CLOSED) and starts a new one.
* Timers run on network time (packet timestamps), fired before the packet that moves time
  past them, in (due time, creation order) order: TCP attempt (5 s after the first SYN: a
  SYN without any answer ends), TCP expire check every 6 s from start+5 s (an idle-5-s
  connection where one side closed and the other closed/reset/never spoke ends), TCP
  delete 5 s after a complete close (both FINs, or a RST), reset timer 5 s after a RST on
  a closed endpoint, and the inactivity timeout per protocol from ``EngineConfig`` (tcp
  300 s, udp 60 s, icmp 60 s, other 60 s). UDP flows to a DNS port (53, 137, 5353, 5355)
  also get Zeek's DNS session timer: every 10 s from the start, a flow idle for >= 9 s
  ends. Active timeout: every ``active_timeout`` s of a flow's life an interim record
  (FlowFlags.INTERIM, end_reason ACTIVE, cumulative counts, same flow_id).
* Application flips (Zeek's DNS and NTP analyzers, by responder port): a first DNS
  message that is a response from the originator, or an NTP server-mode message from the
  originator / client-mode from the responder, flips the roles after the UDP history and
  byte slots were updated; UDP/ICMP byte slots (orig/resp) do not follow a flip, packet
  counters and statistics do (Zeek's request_len vs ConnSize).
* Counting: pkts and IP bytes (IPv4 total length / IPv6 payload length + 40) per direction
  for every accepted packet, retransmissions included. Duration = last - first packet time
  (TCP stops advancing last time once both sides closed). UDP bytes = UDP length - 8;
  ICMP bytes = ICMP payload.
* Tunnels: GRE/ERSPAN and IP-in-IP outer packets make no flow; their inner flows get a
  parent id allocated per (outer src, dst, tunnel type). UDP tunnels (VXLAN 4789, Geneve
  6081, GTPv1 2152/2123, Teredo 3544, AYIYA 5072, GRE-in-UDP 4754, chosen by the flow's
  responder port; on other ports AYIYA then Teredo are recognised by Zeek's detection
  heuristics) are flows themselves and the inner flows' parent_id is the outer flow's id. A tunnel header
  that fails to parse stops decapsulation of that tunnel type for the flow (Zeek's
  analyzer violation). At most MAX_TUNNEL_DEPTH nested layers. An inner flow whose packets
  switch between tunnels (outer flows) more than 5 times gets history X once (Zeek's
  max_changes_per_connection); IP/GRE tunnel ids are per unordered address pair.
* Emission order: records are emitted when flows end (timer order above; reuse/eviction
  immediately); ``flush()`` ends the remaining flows in flow_id order. The table holds
  at most ``max_flows``; when full the least recently active flow is evicted (EVICTED).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from typing import Any

import numpy as np

from netwarden.records.schema import (
    DNS_QTYPE_BITS,
    DNS_QTYPE_OTHER_BIT,
    FIRST_PKTS,
    FLOW_DTYPE,
    HISTORY_LEN,
    PKTSUM_DTYPE,
    QNAME_LEN,
    ConnState,
    EndReason,
    FlowFlags,
    PktEvent,
    TunnelType,
)
from sensor.engine.config import EngineConfig
from sensor.engine.reference import decode as D
from sensor.engine.reference import tcp as T
from sensor.engine.reference.dns import MAX_TRACKED_NAMES, DnsMsg, parse_dns
from sensor.engine.reference.pcapread import PcapReader

__all__ = ["BACKEND", "FlowEngine", "PcapReader"]

BACKEND = "py"

#: Revision of the semantics below; the compiled twin declares the revision it mirrors
#: (tests of newer rules skip it until then). 1: initial; 2: Zeek application flips
#: (DNS/NTP), UDP byte slots, DNS session timer, UDP tunnel detection; 3: 802.11 per Zeek
#: (A-MSDU subframes, no HTC), Aruba GRE, GRE-in-UDP, inner packets keep the outer wire
#: length; 4: TCP reassembly gives up above an unacked hole (no more gaps reported);
#: 5: a FIN/RST close waits while data is pending (Zeek's close_deferred / EndpointEOF);
#: 6: tunnel changes per inner flow (X after 5), IP/GRE tunnel id per unordered pair;
#: 7: likely_server_ports exactly as Zeek's default analyzers register them (no 23/tcp,
#: 110/tcp; adds 443/udp, 2123/udp, 4754/udp).
SEMANTICS_REVISION = 7
NS = 1_000_000_000

#: Zeek's likely_server_ports: the server ports its default analyzers register
#: (base/protocols/*/main.zeek and base/packet-protocols: DNS, DHCP server, HTTP, SSL/DTLS,
#: QUIC, SSH, FTP, SMTP, ... and the UDP tunnel ports). A ``zeek -b`` run that loads fewer
#: analyzers has fewer of them.
LIKELY_TCP_PORTS = frozenset(
    (
        21,
        22,
        25,
        53,
        79,
        80,
        81,
        88,
        135,
        139,
        143,
        389,
        443,
        445,
        465,
        502,
        514,
        563,
        585,
        587,
        614,
        631,
        636,
        989,
        990,
        992,
        993,
        995,
        1080,
        1434,
        1883,
        2811,
        3128,
        3268,
        3306,
        3389,
        5222,
        5223,
        5269,
        5432,
        6379,
        6666,
        6667,
        6668,
        6669,
        8000,
        8080,
        8888,
        20000,
    )
)
LIKELY_UDP_PORTS = frozenset(
    (
        53,
        67,
        88,
        123,
        137,
        161,
        162,
        389,
        443,
        514,
        1812,
        2123,
        2152,
        3389,
        3544,
        4011,
        4754,
        4789,
        5060,
        5072,
        5353,
        5355,
        6081,
        20000,
    )
)

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58
PROTO_ESP = 50
PROTO_NONE = 59  # IPv6 no next header
PROTO_MOBILITY = 135

UDP_VXLAN = 4789
UDP_GENEVE = 6081
UDP_GTPU = 2152
UDP_GTPC = 2123
UDP_NTP = 123
UDP_GRE = 4754  # GRE-in-UDP (RFC 8086)
UDP_TEREDO = 3544
UDP_AYIYA = 5072
MAX_TUNNEL_DEPTH = 4
MAX_TUNNEL_IDS = 65536
MAX_TUNNEL_CHANGES = 5  # Zeek's Tunnel::max_changes_per_connection

# Zeek TCP timer constants (seconds).
TCP_ATTEMPT_DELAY = 5 * NS
TCP_SYN_TIMEOUT = 5 * NS
TCP_SESSION_TIMER = 6 * NS
TCP_CONNECTION_LINGER = 5 * NS
TCP_CLOSE_DELAY = 5 * NS
TCP_RESET_DELAY = 5 * NS

# Timer kinds.
TM_INACTIVITY = 0
TM_ATTEMPT = 1
TM_EXPIRE = 2
TM_DELETE = 3
TM_RESET = 4
TM_ACTIVE = 5
TM_DNS = 6

#: UDP responder ports where Zeek attaches its DNS analyzer, whose session timer ends the
#: connection once it has been idle for DNS_SESSION_TIMEOUT - 1 s (checked every 10 s).
DNS_UDP_PORTS = frozenset((53, 137, 5353, 5355))
DNS_SESSION_TIMEOUT = 10 * NS

ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}

MAX_FRAG_BYTES = 65535 + 40


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


class FragBuf:
    __slots__ = ("data", "first_ns", "have", "hdr", "ranges", "total")

    def __init__(self, first_ns: int) -> None:
        self.first_ns = first_ns
        self.total = -1  # payload length once the last fragment is seen
        self.have = 0
        self.data = bytearray()
        self.hdr = b""
        self.ranges: list[tuple[int, int]] = []


def _is_likely(port: int, proto: int) -> bool:
    return port in (LIKELY_TCP_PORTS if proto == PROTO_TCP else LIKELY_UDP_PORTS)


class FlowEngine:
    """Decode batches of packets and assemble Zeek-style bidirectional flows."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.cfg = config or EngineConfig()
        self.table: OrderedDict[tuple, Flow] = OrderedDict()  # LRU order: oldest first
        self.timers: list[tuple[int, int, int, Flow]] = []
        self.timer_seq = 0
        self.now = 0
        self.next_id = 1
        self.tunnels: dict[tuple, int] = {}
        self.frags: OrderedDict[tuple, FragBuf] = OrderedDict()
        self.out_flows: list[np.ndarray] = []  # 0-d FLOW_DTYPE records
        self.out_arp: list[tuple] = []
        self.dns = DnsMsg()
        self.st = {
            "packets": 0,
            "bytes": 0,
            "decode_errors": 0,
            "unsupported_link": 0,
            "flows_created": 0,
            "flows_emitted": 0,
            "flows_evicted": 0,
            "flows_live": 0,
            "arp": 0,
            "frag_reassembled": 0,
            "frag_dropped": 0,
            "frags_pending": 0,
            "checksum_errors": 0,
            "tunnel_packets": 0,
            "non_ip": 0,
            "no_transport": 0,
        }
        self._pktsum: np.ndarray | None = None
        self._ps_index = 0

    # --- public API -------------------------------------------------------------------
    def feed(self, batch: Any, pktsum: np.ndarray | None = None) -> None:
        buf = batch.buffer
        mv = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else buf
        for i in range(batch.count):
            ts = int(batch.ts_ns[i])
            off = int(batch.offset[i])
            cap = int(batch.caplen[i])
            wire = int(batch.wirelen[i])
            wire = max(wire, cap)
            self.now = max(self.now, ts)
            self._run_timers(self.now)
            self.st["packets"] += 1
            self.st["bytes"] += wire
            b = bytes(mv[off : off + cap])
            self._pktsum = pktsum
            self._ps_index = i
            if pktsum is not None:
                pktsum[i] = np.zeros((), PKTSUM_DTYPE)
                pktsum["ts_ns"][i] = ts
            self._packet(
                b, 0, cap, cap + (wire - cap), int(batch.linktype[i]), ts, int(batch.iface[i])
            )

    def advance(self, now_ns: int) -> None:
        self.now = max(self.now, now_ns)
        self._run_timers(self.now)
        self._expire_frags(self.now)

    def flush(self) -> None:
        flows = sorted(self.table.values(), key=lambda f: f.flow_id)
        for f in flows:
            self._remove(f, EndReason.EOF)
        self.table.clear()
        self.timers = []
        self.frags.clear()

    def drain_flows(self, out: np.ndarray) -> int:
        n = min(len(out), len(self.out_flows))
        for i in range(n):
            out[i] = self.out_flows[i]
        del self.out_flows[:n]
        return n

    def drain_arp(self, out: np.ndarray) -> int:
        n = min(len(out), len(self.out_arp))
        for i in range(n):
            ts, op, vlan, smac, tmac, esrc, sip, tip, iface = self.out_arp[i]
            r = out[i]
            r["ts_ns"] = ts
            r["sensor"] = self.cfg.sensor
            r["session"] = self.cfg.session
            r["op"] = op
            r["vlan"] = vlan
            r["sender_mac"] = np.frombuffer(smac, np.uint8)
            r["target_mac"] = np.frombuffer(tmac, np.uint8)
            r["eth_src"] = np.frombuffer(esrc, np.uint8)
            r["sender_ip"] = np.frombuffer(sip, np.uint8)
            r["target_ip"] = np.frombuffer(tip, np.uint8)
            r["iface"] = iface
        del self.out_arp[:n]
        return n

    def stats(self) -> dict[str, int]:
        s = dict(self.st)
        s["flows_live"] = len(self.table)
        s["frags_pending"] = len(self.frags)
        s["flows_pending_output"] = len(self.out_flows)
        return s

    # --- timers -------------------------------------------------------------------------
    def _add_timer(self, due: int, kind: int, f: Flow) -> None:
        self.timer_seq += 1
        heapq.heappush(self.timers, (due, self.timer_seq, kind, f))
        if len(self.timers) > 8 * len(self.table) + 4096:
            # Timers of ended flows are dropped lazily; compact so memory follows the
            # number of live flows, not the flow rate times the longest timeout.
            self.timers = [e for e in self.timers if not e[3].removed]
            heapq.heapify(self.timers)

    def _run_timers(self, t: int) -> None:
        timers = self.timers
        while timers and timers[0][0] <= t:
            _due, _seq, kind, f = heapq.heappop(timers)
            if f.removed:
                continue
            self._fire(kind, f, t)

    def _fire(self, kind: int, f: Flow, t: int) -> None:
        eo, er = f.eo, f.er
        if kind == TM_INACTIVITY:
            to = self._timeout(f)
            if f.last_ns + to <= t:
                self._remove(f, EndReason.IDLE)
            else:
                self._add_timer(f.last_ns + to, TM_INACTIVITY, f)
        elif kind == TM_ATTEMPT:
            if eo.state in (T.SYN_SENT, T.SYN_ACK_SENT) and er.state == T.INACTIVE:
                self._remove(f, EndReason.IDLE)
        elif kind == TM_EXPIRE:
            if f.last_ns + TCP_CONNECTION_LINGER < t:
                if eo.did_close or er.did_close:  # noqa: SIM102 -- Zeek's branch structure
                    if (
                        (eo.did_close and er.did_close)
                        or eo.state == T.RESET
                        or er.state == T.RESET
                        or eo.state == T.INACTIVE
                        or er.state == T.INACTIVE
                    ):
                        self._remove(f, EndReason.CLOSED)
                        return
                if er.state == T.INACTIVE and eo.state == T.INACTIVE:
                    self._remove(f, EndReason.IDLE)
                    return
            self._add_timer(t + TCP_SESSION_TIMER, TM_EXPIRE, f)
        elif kind == TM_DELETE or kind == TM_RESET:
            self._remove(f, EndReason.CLOSED)
        elif kind == TM_DNS:
            if t - f.last_ns >= DNS_SESSION_TIMEOUT - NS:
                self._remove(f, EndReason.IDLE)
            else:
                self._add_timer(t + DNS_SESSION_TIMEOUT, TM_DNS, f)
        elif kind == TM_ACTIVE:
            self._emit(f, EndReason.ACTIVE, True)
            self._add_timer(t + int(self.cfg.active_timeout * NS), TM_ACTIVE, f)

    def _timeout(self, f: Flow) -> int:
        c = self.cfg
        if f.proto == PROTO_TCP:
            return int(c.tcp_timeout * NS)
        if f.proto == PROTO_UDP:
            return int(c.udp_timeout * NS)
        if f.proto == PROTO_ICMP or f.proto == PROTO_ICMP6:
            return int(c.icmp_timeout * NS)
        return int(c.other_timeout * NS)

    def _remove(self, f: Flow, reason: int) -> None:
        if f.removed:
            return
        f.removed = True
        if self.table.get(f.key) is f:
            del self.table[f.key]
        self._emit(f, reason, False)

    # --- packet path --------------------------------------------------------------------
    def _packet(
        self, b: bytes, off: int, end: int, wire_end: int, linktype: int, ts: int, iface: int
    ) -> None:
        p = D.Pkt()
        l3 = D.decode_link(b, off, end, linktype, p)
        if l3 == D.NOT_IP:
            self.st["non_ip"] += 1
            return
        if l3 < 0:
            if linktype not in (0, 1, 9, 10, 12, 14, 50, 101, 105, 108, 113, 127, 228, 229, 276):
                self.st["unsupported_link"] += 1
            self.st["decode_errors"] += 1
            return
        if p.ethertype == D.ETH_80211:
            self._wifi(b, l3, end, wire_end, p, ts, iface, 0, 0, 0)
            return
        self._l3(b, l3, end, wire_end, p, ts, iface, 0, 0, 0)

    def _wifi(
        self,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        p: Any,
        ts: int,
        iface: int,
        ttype: int,
        parent: int,
        depth: int,
    ) -> None:
        """802.11 data frame: one LLC/SNAP packet, or each subframe of an A-MSDU (Zeek
        pads subframes to len % 4, as its analyzer does)."""
        pay = D.decode_ieee80211(b, off, end, p)
        if pay == D.NOT_IP:
            self.st["non_ip"] += 1
            return
        if pay < 0:
            self.st["decode_errors"] += 1
            return
        if not p.amsdu:
            l3 = D.decode_80211_payload(b, pay, end, p)
            if l3 == D.NOT_IP:
                self.st["non_ip"] += 1
            elif l3 < 0:
                self.st["decode_errors"] += 1
            else:
                self._l3(b, l3, end, wire_end, p, ts, iface, ttype, parent, depth)
            return
        cur = pay
        while cur < end:
            if end - cur < 14:
                self.st["decode_errors"] += 1
                return
            n = D.u16(b, cur + 12)
            if end - cur < n + 14:
                self.st["decode_errors"] += 1
                return
            q = D.Pkt()
            q.src_mac = bytes(b[cur + 6 : cur + 12])
            q.dst_mac = bytes(b[cur : cur + 6])
            sub_end = cur + 14 + n
            l3 = D.decode_80211_payload(b, cur + 14, sub_end, q)
            if l3 < 0:
                self.st["decode_errors"] += 1
                return
            self._l3(b, l3, sub_end, sub_end, q, ts, iface, ttype, parent, depth)
            cur = sub_end
            pad = n % 4
            if end - cur >= pad:
                cur += pad

    def _l3(
        self,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        p: Any,
        ts: int,
        iface: int,
        ttype: int,
        parent: int,
        depth: int,
    ) -> None:
        et = p.ethertype
        if et == D.ETH_ARP:
            self._arp(b, off, end, p, ts, iface)
            return
        if et == D.ETH_IPV4:
            l4 = D.decode_ipv4(b, off, end, wire_end, p)
        elif et == D.ETH_IPV6:
            l4 = D.decode_ipv6(b, off, end, wire_end, p)
        else:
            self.st["non_ip"] += 1
            return
        if l4 < 0:
            self.st["decode_errors"] += 1
            return
        if (
            self.cfg.validate_checksums
            and p.ip_version == 4
            and (p.ip_len == 0 or not D.ipv4_header_checksum_ok(b, p.ip_off, p.ip_hdr_len))
        ):
            # A zero total length (TSO) also means a bogus checksum: Zeek drops it when validating.
            self.st["checksum_errors"] += 1
            return
        fragmented = False
        if (p.frag_off or p.frag_more) and p.ip_off + p.ip_len > end:
            # Zeek: an incompletely captured fragment is dropped, except a first fragment,
            # which is then analysed on its own.
            if p.frag_off:
                self.st["frag_dropped"] += 1
                return
            p.frag_more = 0
        if p.frag_off or p.frag_more:
            got = self._reassemble(b, p, ts, end)
            if got is None:
                return
            b, end, wire_end = got, len(got), len(got)
            fragmented = True
            if p.ip_version == 4:
                l4 = D.decode_ipv4(b, 0, end, wire_end, p)
            else:
                l4 = D.decode_ipv6(b, 0, end, wire_end, p)
            p.frag_off = 0
            p.frag_more = 0
            if l4 < 0:
                self.st["decode_errors"] += 1
                return
        if p.proto == PROTO_ESP or p.proto == PROTO_MOBILITY or p.proto == PROTO_NONE:
            # As Zeek: ESP and mobility headers end analysis, and "no next header" carries
            # nothing; none of them makes a connection.
            self.st["no_transport"] += 1
            return
        self._transport(b, end, wire_end, p, ts, iface, ttype, parent, depth, fragmented)

    def _arp(self, b: bytes, off: int, end: int, p: Any, ts: int, iface: int) -> None:
        if off + 28 > end:
            self.st["decode_errors"] += 1
            return
        htype = D.u16(b, off)
        ptype = D.u16(b, off + 2)
        if htype != 1 or ptype != 0x0800 or b[off + 4] != 6 or b[off + 5] != 4:
            self.st["decode_errors"] += 1
            return
        op = D.u16(b, off + 6)
        smac = bytes(b[off + 8 : off + 14])
        sip = bytes(b[off + 14 : off + 18])
        tmac = bytes(b[off + 18 : off + 24])
        tip = bytes(b[off + 24 : off + 28])
        self.out_arp.append((ts, op, p.vlan, smac, tmac, p.src_mac, sip, tip, iface))
        self.st["arp"] += 1
        ps = self._ps_row()
        if ps is not None:
            ps["ip_len"] = end - off
            ps["sport"] = op
            ps["events"] = PktEvent.ARP
            ps["src"][:4] = np.frombuffer(sip, np.uint8)
            ps["dst"][:4] = np.frombuffer(tip, np.uint8)

    def _ps_row(self) -> Any:
        if self._pktsum is None:
            return None
        return self._pktsum[self._ps_index]

    def _reassemble(self, b: bytes, p: Any, ts: int, end: int) -> bytes | None:
        """Collect fragments; returns the reassembled datagram (header + payload) or None."""
        self._expire_frags(ts)
        key = (p.ip_version, p.src, p.dst, p.frag_id, p.proto)
        fb = self.frags.get(key)
        if fb is None:
            if len(self.frags) >= self.cfg.max_frag_datagrams:
                self.frags.popitem(last=False)
                self.st["frag_dropped"] += 1
            fb = FragBuf(ts)
            self.frags[key] = fb
        start = p.frag_off
        data = b[p.l4_off : min(p.l4_off + p.l4_len, end)]
        stop = start + len(data)
        if stop > MAX_FRAG_BYTES:
            del self.frags[key]
            self.st["frag_dropped"] += 1
            return None
        if start == 0:
            fb.hdr = bytes(b[p.ip_off : p.l4_off])
        if not p.frag_more:
            fb.total = stop
        if len(fb.data) < stop:
            fb.data.extend(b"\x00" * (stop - len(fb.data)))
        fb.data[start:stop] = data
        fb.ranges.append((start, stop))
        if fb.total < 0 or not fb.hdr:
            return None
        # Complete when the ranges cover [0, total).
        rs = sorted(fb.ranges)
        covered = 0
        for s, e in rs:
            if s > covered:
                return None
            covered = max(covered, e)
        if covered < fb.total:
            return None
        del self.frags[key]
        self.st["frag_reassembled"] += 1
        payload = bytes(fb.data[: fb.total])
        hdr = bytearray(fb.hdr)
        if p.ip_version == 4:
            tot = len(hdr) + len(payload)
            hdr[2] = (tot >> 8) & 0xFF
            hdr[3] = tot & 0xFF
            hdr[6] = 0
            hdr[7] = 0
        else:
            # Drop the fragment header: rewrite the previous next-header to the fragment's.
            hdr = self._ipv6_strip_frag(hdr, p.proto)
            plen = len(hdr) - 40 + len(payload)
            hdr[4] = (plen >> 8) & 0xFF
            hdr[5] = plen & 0xFF
        if len(hdr) + len(payload) > MAX_FRAG_BYTES:
            return None
        return bytes(hdr) + payload

    @staticmethod
    def _ipv6_strip_frag(hdr: bytearray, proto: int) -> bytearray:
        nxt_pos = 6
        cur = 40
        nxt = hdr[6]
        while cur < len(hdr):
            if nxt == D.IPV6_EXT_FRAGMENT:
                hdr[nxt_pos] = proto
                del hdr[cur : cur + 8]
                return hdr
            if nxt == D.IPV6_EXT_AH:
                ln = (hdr[cur + 1] + 2) * 4
            else:
                ln = (hdr[cur + 1] + 1) * 8
            nxt_pos = cur
            nxt = hdr[cur]
            cur += ln
        return hdr

    def _expire_frags(self, now: int) -> None:
        lim = int(self.cfg.frag_timeout * NS)
        while self.frags:
            k, fb = next(iter(self.frags.items()))
            if fb.first_ns + lim > now:
                break
            del self.frags[k]
            self.st["frag_dropped"] += 1

    # --- transport ----------------------------------------------------------------------
    def _transport(
        self,
        b: bytes,
        end: int,
        wire_end: int,
        p: Any,
        ts: int,
        iface: int,
        ttype: int,
        parent: int,
        depth: int,
        fragmented: bool,
    ) -> None:
        proto = p.proto
        l4 = p.l4_off
        avail = end - l4  # captured transport bytes
        if depth < MAX_TUNNEL_DEPTH and self.cfg.decode_tunnels:
            if proto == 4 or proto == 41:  # IP-in-IP, 6in4, 4in6
                self._ip_tunnel(
                    b,
                    l4,
                    min(end, l4 + p.l4_len),
                    wire_end,
                    p,
                    ts,
                    iface,
                    TunnelType.IP,
                    depth,
                    D.ETH_IPV4 if proto == 4 else D.ETH_IPV6,
                )
                return
            if proto == 47:
                ioff, iet = D.decode_gre(b, l4, min(end, l4 + p.l4_len))
                if ioff < 0:
                    self.st["decode_errors"] += 1
                    return
                self._ip_tunnel(
                    b,
                    ioff,
                    min(end, l4 + p.l4_len),
                    wire_end,
                    p,
                    ts,
                    iface,
                    TunnelType.GRE,
                    depth,
                    iet,
                )
                return
        sport = 0
        dport = 0
        tflags = 0
        one_way = False
        if proto == PROTO_TCP:
            if p.l4_len < 20 or avail < 20:
                self.st["decode_errors"] += 1
                return
            sport = D.u16(b, l4)
            dport = D.u16(b, l4 + 2)
            tflags = b[l4 + 13]
        elif proto == PROTO_UDP:
            if p.l4_len < 8 or avail < 8:
                self.st["decode_errors"] += 1
                return
            sport = D.u16(b, l4)
            dport = D.u16(b, l4 + 2)
        elif proto == PROTO_ICMP or proto == PROTO_ICMP6:
            if p.l4_len < 8 or avail < 8:
                self.st["decode_errors"] += 1
                return
            itype = b[l4]
            icode = b[l4 + 1]
            pairs = ICMP4_PAIRS if proto == PROTO_ICMP else ICMP6_PAIRS
            sport = itype
            if itype in pairs:
                dport = pairs[itype]
            else:
                dport = icode
                one_way = True
        # Key: direction-normalised unless one-way ICMP.
        a = (p.src, sport)
        c = (p.dst, dport)
        if one_way or a <= c:
            key = (p.ip_version, proto, a, c, p.vlan, p.inner_vlan, ttype, one_way)
        else:
            key = (p.ip_version, proto, c, a, p.vlan, p.inner_vlan, ttype, one_way)
        f = self.table.get(key)
        if f is not None and proto == PROTO_TCP and self._tcp_is_reuse(f, b, l4, tflags):
            self._remove(f, EndReason.CLOSED)
            f = None
        ev = 0
        if f is None:
            f = self._new_flow(
                key, p, sport, dport, proto, tflags, ts, iface, ttype, parent, one_way
            )
            ev |= PktEvent.NEW_FLOW
        else:
            self.table.move_to_end(key)
            if parent != f.parent_cur:
                # Zeek's CheckEncapsulation: a packet via another tunnel is a change; after
                # MAX_TUNNEL_CHANGES changes the connection gets X once.
                if f.tun_changes >= MAX_TUNNEL_CHANGES:
                    f.conn_check(0x400, "X")
                else:
                    f.tun_changes += 1
                f.parent_cur = parent
        if fragmented:
            f.flags |= FlowFlags.FRAGMENTED
        is_orig = p.src == f.orig_addr and sport == f.orig_port
        counted = True
        payload_len = 0
        was_done = proto == PROTO_TCP and self._tcp_is_done(f)
        if proto == PROTO_TCP:
            counted, is_orig, payload_len = self._tcp_packet(f, b, end, p, is_orig, ts)
        elif proto == PROTO_UDP:
            counted, payload_len = self._udp_packet(f, b, end, p, is_orig, ts)
            # Application analyzers see the packet after the UDP bookkeeping and may flip
            # the roles; the packet is then counted with its stale direction, as in Zeek.
            if counted and f.resp_port in DNS_UDP_PORTS and self.cfg.dns:
                self._dns_analyzer(f, b, end, p, is_orig)
            elif counted and f.resp_port == UDP_NTP:
                self._ntp_analyzer(f, b, end, p, is_orig)
        elif proto == PROTO_ICMP or proto == PROTO_ICMP6:
            counted, payload_len = self._icmp_packet(f, b, end, p, is_orig, ts)
        else:
            f.last_ns = ts
        if not counted:
            self.st["checksum_errors"] += 1
            return
        side = f.o if is_orig else f.r
        first_reply = (not is_orig) and side.pkts == 0
        self._count(f, side, is_orig, p.ip_len, ts, tflags if proto == PROTO_TCP else -1, p.src_mac)
        if (
            self.cfg.dns
            and (proto == PROTO_UDP or proto == PROTO_TCP)
            and (sport == 53 or dport == 53)
        ):
            ev |= self._dns(f, b, end, p, proto)
        # Per-packet summary.
        ps = self._ps_row()
        if ps is not None:
            if not is_orig:
                ev |= PktEvent.REPLY
            if first_reply:
                ev |= PktEvent.FIRST_REPLY
            if (proto == PROTO_ICMP and sport == 3) or (proto == PROTO_ICMP6 and sport == 1):
                ev |= PktEvent.ICMP_UNREACH
            if proto == PROTO_TCP and not was_done and self._tcp_is_done(f):
                ev |= PktEvent.FLOW_END
            ps["flow_id"] = f.flow_id
            ps["ip_len"] = p.ip_len
            ps["payload_len"] = payload_len
            ps["sport"] = sport
            ps["dport"] = dport
            ps["ip_version"] = p.ip_version
            ps["proto"] = proto
            ps["tcp_flags"] = tflags
            ps["events"] = ev
            ps["src"][: len(p.src)] = np.frombuffer(p.src, np.uint8)
            ps["dst"][: len(p.dst)] = np.frombuffer(p.dst, np.uint8)
        # UDP tunnels: the outer flow is counted first, then the inner packet.
        if proto == PROTO_UDP and self.cfg.decode_tunnels and depth < MAX_TUNNEL_DEPTH:
            self._udp_tunnel(b, end, wire_end, p, f, ts, iface, depth)

    def _new_flow(
        self,
        key: tuple,
        p: Any,
        sport: int,
        dport: int,
        proto: int,
        tflags: int,
        ts: int,
        iface: int,
        ttype: int,
        parent: int,
        one_way: bool,
    ) -> Flow:
        if len(self.table) >= self.cfg.max_flows:
            _k, old = self.table.popitem(last=False)
            self.st["flows_evicted"] += 1
            self._remove(old, EndReason.EVICTED)
        f = Flow()
        f.flow_id = self.next_id
        self.next_id += 1
        f.key = key
        f.parent_id = parent
        f.parent_cur = parent
        f.ttype = ttype
        f.iface = iface
        f.ip_version = p.ip_version
        f.proto = proto
        f.vlan = p.vlan
        f.inner_vlan = p.inner_vlan
        f.orig_addr = p.src
        f.orig_port = sport
        f.resp_addr = p.dst
        f.resp_port = dport
        f.start_ns = ts
        f.last_ns = ts
        f.one_way = one_way
        flip = False
        if proto == PROTO_TCP:
            if not tflags & T.TH_SYN or tflags & T.TH_ACK:  # noqa: SIM102 -- Zeek's branch structure
                if _is_likely(sport, proto):
                    if _is_likely(dport, proto):
                        flip = (not tflags & T.TH_SYN) and sport < dport
                    else:
                        flip = True
        elif proto == PROTO_UDP:
            flip = _is_likely(sport, proto) and not _is_likely(dport, proto)
        if flip and not (p.ip_version == 4 and p.dst == b"\xff\xff\xff\xff"):
            f.flip_roles()
        self.table[key] = f
        self.st["flows_created"] += 1
        if proto == PROTO_TCP:
            self._add_timer(ts + TCP_SYN_TIMEOUT, TM_EXPIRE, f)
        elif proto == PROTO_UDP and f.resp_port in DNS_UDP_PORTS:
            self._add_timer(ts + DNS_SESSION_TIMEOUT, TM_DNS, f)
        self._add_timer(ts + self._timeout(f), TM_INACTIVITY, f)
        if self.cfg.active_timeout > 0:
            self._add_timer(ts + int(self.cfg.active_timeout * NS), TM_ACTIVE, f)
        return f

    def _count(
        self, f: Flow, side: Side, is_orig: bool, ip_len: int, ts: int, tflags: int, mac: bytes
    ) -> None:
        if side.pkts == 0:
            side.len_min = ip_len
            side.len_max = ip_len
            side.mac = mac
        else:
            side.len_min = min(side.len_min, ip_len)
            side.len_max = max(side.len_max, ip_len)
            iat = (ts - side.last_ts) / NS
            if side.iat_n == 0 or iat < side.iat_min:
                side.iat_min = iat
            if side.iat_n == 0 or iat > side.iat_max:
                side.iat_max = iat
            side.iat_n += 1
            side.iat_sum += iat
            side.iat_sq += iat * iat
        side.pkts += 1
        side.ip_bytes += ip_len
        side.len_sum += ip_len
        side.len_sq += ip_len * ip_len
        side.last_ts = ts
        if tflags >= 0:
            for bit in range(8):
                if tflags & (1 << bit):
                    side.flags[bit] += 1
        if f.n_first < FIRST_PKTS:
            f.first_sizes[f.n_first] = min(65535, ip_len)
            if not is_orig:
                f.first_dirs |= 1 << f.n_first
            f.n_first += 1

    # --- UDP / ICMP ------------------------------------------------------------------------
    def _udp_packet(
        self, f: Flow, b: bytes, end: int, p: Any, is_orig: bool, ts: int
    ) -> tuple[bool, int]:
        l4 = p.l4_off
        if self.cfg.validate_checksums and end - l4 >= p.l4_len:
            csum = D.u16(b, l4 + 6)
            if (p.ip_version == 6 or csum != 0) and not D.l4_checksum_ok(b, p, l4, p.l4_len):
                f.check(is_orig, 0x80, "C")
                return False, 0
        ulen = D.u16(b, l4 + 4) - 8
        f.last_ns = ts
        f.check(is_orig, 0x1, "D")
        f.update_length(is_orig, ulen)
        return True, max(ulen, 0)

    def _icmp_packet(
        self, f: Flow, b: bytes, end: int, p: Any, is_orig: bool, ts: int
    ) -> tuple[bool, int]:
        l4 = p.l4_off
        if (
            self.cfg.validate_checksums
            and end - l4 >= p.l4_len
            and not D.l4_checksum_ok(b, p, l4, p.l4_len)
        ):
            return False, 0
        f.last_ns = ts
        ln = p.l4_len - 8
        f.update_length(is_orig, ln)
        return True, ln

    # --- TCP --------------------------------------------------------------------------------
    def _tcp_is_reuse(self, f: Flow, b: bytes, l4: int, tflags: int) -> bool:
        if b[l4 + 12] >> 4 < 5:
            return False
        if not tflags & T.TH_SYN:
            return False
        conn_orig = f.eo
        if tflags & T.TH_ACK:
            if f.eo.state != T.INACTIVE:
                return False
            conn_orig = f.er
        closed = self._tcp_is_closed(f)
        if not closed:
            seq = D.u32(b, l4 + 4)
            if seq == conn_orig.start32():
                return False
            if (
                not tflags & T.TH_ACK
                and conn_orig.state == T.SYN_ACK_SENT
                and f.er.state == T.INACTIVE
                and seq == f.er.start32()
            ):
                return False
        return True

    @staticmethod
    def _tcp_is_closed(f: Flow) -> bool:
        # Zeek's IsClosed(): either endpoint has closed (FIN or RST reported).
        return f.eo.did_close or f.er.did_close

    @staticmethod
    def _tcp_is_done(f: Flow) -> bool:
        """Both sides closed, or a reset: the packet that makes this true ends the flow."""
        eo, er = f.eo, f.er
        return (eo.did_close and er.did_close) or eo.state == T.RESET or er.state == T.RESET

    def _tcp_packet(
        self, f: Flow, b: bytes, end: int, p: Any, is_orig: bool, ts: int
    ) -> tuple[bool, bool, int]:
        l4 = p.l4_off
        hlen = (b[l4 + 12] >> 4) * 4
        if hlen < 20 or hlen > p.l4_len or l4 + hlen > end:
            return False, is_orig, 0
        length = p.l4_len - hlen
        ep = f.eo if is_orig else f.er
        if (
            self.cfg.validate_checksums
            and end - l4 >= p.l4_len
            and not D.l4_checksum_ok(b, p, l4, p.l4_len)
        ):
            ep.chk_cnt, ep.chk_thresh = f.scaled(ep.is_orig, "C", ep.chk_cnt, ep.chk_thresh)
            f.flags |= FlowFlags.BAD_CHECKSUM
            return False, is_orig, 0
        flags = b[l4 + 13]
        base_seq = D.u32(b, l4 + 4)
        ack_seq = D.u32(b, l4 + 8)
        window = D.u16(b, l4 + 14)
        captured = end - l4 - hlen
        self._tcp_process(f, ep, is_orig, flags, base_seq, ack_seq, window, length, captured, ts)
        # The connection may have flipped under us (SYN-ACK start): recompute direction.
        is_orig = ep is f.eo
        return True, is_orig, length

    def _tcp_process(
        self,
        f: Flow,
        ep: T.Endpoint,
        is_orig: bool,
        flags: int,
        base_seq: int,
        ack_seq: int,
        window: int,
        length: int,
        captured: int,
        ts: int,
    ) -> None:
        peer = f.er if ep is f.eo else f.eo
        syn = flags & T.TH_SYN
        fin = flags & T.TH_FIN
        rst = flags & T.TH_RST
        ack = flags & T.TH_ACK
        # SetPartialStatus
        if ep.is_orig:
            if not f.first_packet_seen & 1:
                f.is_partial = (not syn) or bool(ack)
        else:
            if not f.first_packet_seen & 2 and not f.is_partial:
                f.is_partial = not syn
        seg_len = length + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= length
        seq_end = (base_seq + seg_len) & T.MASK32
        T.init_endpoint(ep, flags, base_seq, seq_end)
        rel_seq, underflow = T.get_relative_seq(ep, base_seq, ep.last_seq, ep.seq_wraps)
        self._tcp_update_history(f, ep, flags, rel_seq, length)
        # Zero-window accounting (W/w): not on RST, not after the peer's FIN, not when reset.
        if window == 0 and not rst and peer.state != T.CLOSED and ep.state != T.RESET:
            ep.win0_cnt, ep.win0_thresh = f.scaled(ep.is_orig, "W", ep.win0_cnt, ep.win0_thresh)
        if not f.eo.did_close or not f.er.did_close:
            f.last_ns = ts
        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        if rst:
            ep.rst_cnt += 1
        rel_ack = 0
        if ack:
            if peer.state == T.INACTIVE:
                rel_ack = 1
                # init_peer: number the peer as if we had seen its SYN.
                peer.start_seq = (ack_seq - 1) & T.MASK32
                peer.ack_seq = (ack_seq - 1) & T.MASK32
                peer.last_seq = (ack_seq - 1) & T.MASK32
            else:
                rel_ack, ack_under = T.get_relative_seq(peer, ack_seq, peer.ack_seq, peer.ack_wraps)
                if ack_under:
                    rel_ack = 0
                elif not rst:
                    T.update_ack_seq(peer, ack_seq)
        delta_last = T.update_last_seq(ep, seq_end, flags, length)
        if not (  # noqa: SIM102 -- Zeek's branch structure
            (flags & (T.TH_SYN | T.TH_RST))
            and (delta_last > T.TOO_LARGE_SEQ_DELTA or delta_last < -T.TOO_LARGE_SEQ_DELTA)
        ):
            if not (fin and ep.last_seq == ((ep.start_seq + 1) & T.MASK32)) and ep.state != T.RESET:  # noqa: SIM102 -- Zeek's branch structure
                if delta_last <= 0 and length > 0:
                    ep.rxmt_cnt, ep.rxmt_thresh = f.scaled(
                        ep.is_orig, "T", ep.rxmt_cnt, ep.rxmt_thresh
                    )
        do_close, _gen_event = self._tcp_state_machine(
            f, ep, peer, flags, base_seq, ack_seq, length, delta_last, ts
        )
        if ack and T.ack_received(peer, rel_ack, f.is_partial, f):
            self._tcp_check_eof(f, peer)
        rel_data_seq = rel_seq + 1 if syn else rel_seq
        if length > 0 and not rst and not underflow and captured >= length:
            # Snaplen-truncated payload never reaches the reassembler (acks then show gaps).
            T.data_sent(ep, rel_data_seq, length)
        self._tcp_check_eof(f, ep)
        if do_close:
            self._tcp_connection_closed(f, ep, peer)

    def _tcp_check_eof(self, f: Flow, ep: T.Endpoint) -> None:
        """Zeek's CheckEOF/EndpointEOF: once a closed or reset side has no data pending, a
        close that was deferred because of pending data is carried out (for this side)."""
        if ep.did_eof or not (ep.fin_cnt > 0 or ep.state == T.CLOSED or ep.state == T.RESET):
            return
        peer = f.er if ep is f.eo else f.eo
        if T.data_pending(ep, peer):
            return
        ep.did_eof = True
        if f.close_deferred:
            self._tcp_connection_closed(f, ep, peer)
            f.close_deferred = False

    def _tcp_update_history(
        self, f: Flow, ep: T.Endpoint, flags: int, rel_seq: int, length: int
    ) -> None:
        syn = flags & T.TH_SYN
        fin = flags & T.TH_FIN
        rst = flags & T.TH_RST
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            if fin and rst:
                f.tcp_check(ep, T.HIST_FIN_RST, "I")
            else:
                f.tcp_check(ep, T.HIST_MULTI, "Q")
        elif bits == 1:
            if syn:
                code = "H" if flags & T.TH_ACK else "S"
                if f.tcp_check(ep, T.HIST_SYN, code) and rel_seq != ep.hist_last_syn:
                    f.add(ep.is_orig, code)
                ep.hist_last_syn = rel_seq
            if fin:
                if f.tcp_check(ep, T.HIST_FIN, "F") and rel_seq + length != ep.hist_last_fin:
                    f.add(ep.is_orig, "F")
                ep.hist_last_fin = rel_seq + length
            if rst:
                if f.tcp_check(ep, T.HIST_RST, "R") and rel_seq != ep.hist_last_rst:
                    f.add(ep.is_orig, "R")
                ep.hist_last_rst = rel_seq
        else:
            if length:
                f.tcp_check(ep, T.HIST_DATA, "D")
            elif flags & T.TH_ACK:
                f.tcp_check(ep, T.HIST_ACK, "A")

    def _tcp_state_machine(
        self,
        f: Flow,
        ep: T.Endpoint,
        peer: T.Endpoint,
        flags: int,
        base_seq: int,
        ack_seq: int,
        length: int,
        delta_last: int,
        ts: int,
    ) -> tuple[bool, bool]:
        syn = flags & T.TH_SYN
        fin = flags & T.TH_FIN
        rst = flags & T.TH_RST
        ack = flags & T.TH_ACK
        do_close = False
        gen_event = False
        st = ep.state
        is_orig = ep.is_orig
        if st == T.INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(T.SYN_ACK_SENT if ack else T.SYN_SENT)
                    self._add_timer(ts + TCP_ATTEMPT_DELAY, TM_ATTEMPT, f)
                else:
                    if not ack and peer.state == T.SYN_ACK_SENT and base_seq == ep.start32():
                        # SYN/SYN-ACK reversal: flip and establish.
                        f.flip_roles()
                        f.is_partial = False
                        peer.set_state(T.ESTABLISHED)
                        f.first_packet_seen |= 1
                    if peer.state == T.SYN_SENT:
                        peer.set_state(T.ESTABLISHED)
                    ep.set_state(T.ESTABLISHED)
            if fin:
                ep.set_state(T.CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(T.RESET)
                do_close = True
            if ep.state == T.INACTIVE:
                if not is_orig and length == 0 and f.eo.state == T.SYN_SENT:
                    pass
                elif ack and peer.state == T.ESTABLISHED:
                    ep.set_state(T.ESTABLISHED)
                    f.is_partial = False
                    f.first_packet_seen |= 1 if ep.is_orig else 2
                else:
                    ep.set_state(T.PARTIAL)
        elif st == T.SYN_SENT or st == T.SYN_ACK_SENT:
            if fin:
                ep.set_state(T.CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(T.RESET)
                do_close = True
        elif st == T.ESTABLISHED or st == T.PARTIAL:
            if syn and st == T.PARTIAL and peer.state == T.INACTIVE and not ack:
                ep.set_state(T.SYN_SENT)
            if fin and not rst:
                ep.set_state(T.CLOSED)
                if peer.state == T.RESET and peer.prev_state == T.CLOSED:
                    peer.set_state(T.CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(T.RESET)
                do_close = True
        elif st == T.CLOSED:  # noqa: SIM102 -- Zeek's branch structure
            if rst and peer.state != T.CLOSED:
                ep.set_state(T.RESET)
                if not ep.did_close:
                    do_close = True
                self._add_timer(ts + TCP_RESET_DELAY, TM_RESET, f)
        return do_close, gen_event

    def _tcp_connection_closed(self, f: Flow, ep: T.Endpoint, peer: T.Endpoint) -> None:
        if T.data_pending(ep, peer):
            # Zeek defers the close until the data is delivered (or given up as a gap).
            f.close_deferred = True
            return
        f.close_deferred = False
        if ep.did_close:
            return
        ep.did_close = True
        complete = ep.state == T.RESET or peer.did_close or peer.state == T.INACTIVE
        if complete:
            self._add_timer(f.last_ns + TCP_CLOSE_DELAY, TM_DELETE, f)
        elif ep.prev_state != T.INACTIVE:
            self._add_timer(f.last_ns + TCP_SESSION_TIMER, TM_EXPIRE, f)

    # --- tunnels ----------------------------------------------------------------------------
    def _tunnel_id(self, p: Any, ttype: int) -> int:
        # Zeek names an IP/GRE tunnel by its unordered address pair (either direction is
        # the same tunnel); the outer protocol separates GRE from IP-in-IP on one pair.
        lo, hi = (p.src, p.dst) if p.src <= p.dst else (p.dst, p.src)
        key = (p.ip_version, lo, hi, p.proto)
        tid = self.tunnels.get(key)
        if tid is None:
            if len(self.tunnels) >= MAX_TUNNEL_IDS:
                self.tunnels.clear()
            tid = self.next_id
            self.next_id += 1
            self.tunnels[key] = tid
        return tid

    def _ip_tunnel(
        self,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        p: Any,
        ts: int,
        iface: int,
        ttype: int,
        depth: int,
        etype: int,
    ) -> None:
        parent = self._tunnel_id(p, ttype)
        self.st["tunnel_packets"] += 1
        self._inner(b, off, end, wire_end, etype, ts, iface, ttype, parent, depth + 1)

    def _inner(
        self,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        etype: int,
        ts: int,
        iface: int,
        ttype: int,
        parent: int,
        depth: int,
    ) -> None:
        q = D.Pkt()
        if etype == D.ETH_80211:
            self._wifi(b, off, end, wire_end, q, ts, iface, ttype, parent, depth)
            return
        if etype == D.ETH_TEB:
            off = D.decode_ethernet(b, off, end, q)
        else:
            off = D.decode_ethertype(b, off, end, etype, q)
        if off < 0:
            self.st["decode_errors"] += 1
            return
        # Inner packets keep the outer wire length (Zeek: a snaplen-truncated tunnel
        # packet still carries its inner datagram's claimed length).
        self._l3(b, off, end, wire_end, q, ts, iface, ttype, parent, depth)

    def _udp_tunnel(
        self, b: bytes, end: int, wire_end: int, p: Any, f: Flow, ts: int, iface: int, depth: int
    ) -> None:
        """Zeek's UDP dispatch: the tunnel analyzer registered for the flow's responder port
        (VXLAN 4789, Geneve 6081, GTPv1 2152/2123, Teredo 3544, AYIYA 5072, GRE 4754); on any other
        port, AYIYA then Teredo protocol detection. A header that fails to parse marks the
        flow as violating that tunnel type, and later packets are not decapsulated."""
        start = p.l4_off + 8
        stop = min(end, p.l4_off + p.l4_len)
        if start >= stop:
            return
        rp = f.resp_port
        if rp == UDP_VXLAN:
            ttype = TunnelType.VXLAN
        elif rp == UDP_GENEVE:
            ttype = TunnelType.GENEVE
        elif rp == UDP_GTPU or rp == UDP_GTPC:
            ttype = TunnelType.GTPV1
        elif rp == UDP_TEREDO:
            ttype = TunnelType.TEREDO
        elif rp == UDP_AYIYA:
            ttype = TunnelType.AYIYA
        elif rp == UDP_GRE:
            ttype = TunnelType.GRE
        elif D.detect_ayiya(b, start, stop):
            ttype = TunnelType.AYIYA
        elif D.detect_teredo(b, start, stop):
            ttype = TunnelType.TEREDO
        else:
            return
        if f.tun_violated & (1 << ttype):
            return
        if ttype == TunnelType.VXLAN:
            ioff, et = D.decode_vxlan(b, start, stop)
        elif ttype == TunnelType.GENEVE:
            ioff, et = D.decode_geneve(b, start, stop)
        elif ttype == TunnelType.GTPV1:
            ioff, et = D.decode_gtpu(b, start, stop)
        elif ttype == TunnelType.TEREDO:
            ioff, et = D.decode_teredo(b, start, stop)
        elif ttype == TunnelType.GRE:
            ioff, et = D.decode_gre(b, start, stop)
        else:
            ioff, et = D.decode_ayiya(b, start, stop)
        if ioff == D.NOT_IP:
            return  # a valid message that carries no packet (AYIYA control, GTP signalling)
        if ioff < 0:
            f.tun_violated |= 1 << ttype
            return
        self.st["tunnel_packets"] += 1
        saved = self._pktsum
        self._pktsum = None  # the per-packet summary describes the outer packet
        self._inner(b, ioff, stop, wire_end, et, ts, iface, ttype, f.flow_id, depth + 1)
        self._pktsum = saved

    def _dns_analyzer(self, f: Flow, b: bytes, end: int, p: Any, is_orig: bool) -> None:
        """Zeek's DNS analyzer side effects on the connection (it runs after the UDP
        history/length bookkeeping and before the packet counters): a first message that
        is a response sent by the originator flips the roles (not towards a multicast
        responder), and the packet is then counted for the new originator, as Zeek's stale
        direction does; a message with an opcode other than query/notify/update (NetBIOS
        port excepted) adds ``X``."""
        start = p.l4_off + 8
        stop = min(end, p.l4_off + p.l4_len)
        if stop - start < 12:
            return
        flags = D.u16(b, start + 2)
        opcode = (flags >> 11) & 0xF
        netbios = f.resp_port == 137
        if opcode not in (0, 4, 5) and not netbios:
            f.conn_check(0x400, "X")
            return
        if f.dns_first_done:
            return
        f.dns_first_done = True
        if flags & 0x8000 and is_orig and not _is_multicast(f.resp_addr):
            f.flip_roles()

    def _ntp_analyzer(self, f: Flow, b: bytes, end: int, p: Any, is_orig: bool) -> None:
        """Zeek's NTP analyzer flips once: a server-mode message from the originator or a
        client-mode message from the responder."""
        start = p.l4_off + 8
        if f.ntp_flipped or min(end, p.l4_off + p.l4_len) - start < 48:
            return
        mode = b[start] & 0x7
        if (mode == 4 and is_orig) or (mode == 3 and not is_orig):
            f.flip_roles()
            f.ntp_flipped = True

    # --- DNS --------------------------------------------------------------------------------
    def _dns(self, f: Flow, b: bytes, end: int, p: Any, proto: int) -> int:
        l4 = p.l4_off
        if proto == PROTO_UDP:
            start = l4 + 8
        else:
            start = l4 + (b[l4 + 12] >> 4) * 4 + 2
        stop = min(end, p.l4_off + p.l4_len)
        m = self.dns
        if start >= stop or not parse_dns(b, start, stop, m):
            return 0
        if m.is_response:
            f.dns_responses += 1
            f.dns_answers += m.ancount
            f.dns_rcode_mask |= 1 << m.rcode
            if m.rcode == 3:
                f.dns_nxdomain += 1
            ev = PktEvent.DNS_RESPONSE
        else:
            f.dns_queries += 1
            ev = PktEvent.DNS_QUERY
        if m.qname or m.qtype:
            bit = DNS_QTYPE_BITS.get(m.qtype, DNS_QTYPE_OTHER_BIT)
            f.dns_qtype_mask |= 1 << bit
            if m.qname:
                if not f.dns_qname:
                    f.dns_qname = m.qname[:QNAME_LEN]
                if m.qname not in f.dns_names and len(f.dns_names) < MAX_TRACKED_NAMES:
                    f.dns_names.append(m.qname)
                f.dns_max_name = max(f.dns_max_name, len(m.qname))
                if m.longest_label > f.dns_longest:
                    f.dns_longest = m.longest_label
                    f.dns_entropy = m.label_entropy
        return ev

    # --- records ------------------------------------------------------------------------------
    def _conn_state(self, f: Flow) -> int:
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

    def _emit(self, f: Flow, reason: int, interim: bool) -> None:
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
