"""Pure-Python reference flow engine: the slow, obvious specification of the semantics.

Same API as the compiled ``sensor._fastpath`` (see ``sensor/engine/__init__.py``). This
module is the Python boundary (twin of api.pxi): ``FlowEngine`` is assembled from one mixin per
job, each in the module named like the compiled engine's .pxi file it mirrors: ``engine``
(packet path, constants), ``timers``, ``flowtable``, ``frag``, ``wifi``, ``tunnels``,
``tcpflow`` (with ``tcp``, Zeek's endpoint machine), ``apps`` (UDP/ICMP, DNS/NTP analyzers),
``records`` (conn_state, emission), ``flow`` (Flow/Side); ``decode`` (one function per header),
``dns`` (DNS summaries) and ``pcapread`` (the reader) are plain functions.

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
* TCP: Zeek's endpoint states and transitions (``tcp``); payload bytes from sequence
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

from collections import OrderedDict
from typing import Any

import numpy as np

from netwarden.records.schema import (
    PKTSUM_DTYPE,
    EndReason,
)
from sensor.engine.config import EngineConfig
from sensor.engine.reference.apps import AppsMixin
from sensor.engine.reference.dns import DnsMsg
from sensor.engine.reference.engine import (
    PacketPathMixin,
)
from sensor.engine.reference.flow import Flow
from sensor.engine.reference.flowtable import FlowTableMixin
from sensor.engine.reference.frag import FragBuf, FragMixin
from sensor.engine.reference.pcapread import PcapReader
from sensor.engine.reference.records import RecordsMixin
from sensor.engine.reference.tcpflow import TcpFlowMixin
from sensor.engine.reference.timers import TimersMixin
from sensor.engine.reference.tunnels import TunnelsMixin
from sensor.engine.reference.wifi import WifiMixin

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


class FlowEngine(
    PacketPathMixin,
    TimersMixin,
    FlowTableMixin,
    WifiMixin,
    FragMixin,
    AppsMixin,
    TcpFlowMixin,
    TunnelsMixin,
    RecordsMixin,
):
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
