# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""The packet path (twin of engine.pxi): constants, link -> L3 -> transport, ARP, new flows and counting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from netwarden.records.schema import (
    FIRST_PKTS,
    EndReason,
    FlowFlags,
    PktEvent,
    TunnelType,
)
from sensor.engine.reference import decode as D
from sensor.engine.reference import tcp as T
from sensor.engine.reference.flow import Flow, Side

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine

NS = 1_000_000_000


class PktCtx(NamedTuple):
    """Where a packet is being decoded (twin of ``pkt_ctx`` in _fastpath.pxd): what each step
    of the packet path hands the next, beside the bytes (which change with reassembly and
    802.11 subframes)."""

    ts: int  # capture time, ns
    iface: int
    ttype: int = 0  # type of the enclosing tunnel (TunnelType), 0 for the outer packet
    parent: int = 0  # flow_id (or tunnel id) of the enclosing tunnel, 0 for the outer packet
    depth: int = 0  # tunnel nesting, 0 for the outer packet
    fragmented: bool = False  # the bytes are a reassembled IP datagram

    def inner(self, ttype: int, parent: int) -> PktCtx:
        """The context of a packet inside a tunnel of type ``ttype`` (id ``parent``)."""
        return PktCtx(self.ts, self.iface, ttype, parent, self.depth + 1, False)


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


def _is_likely(port: int, proto: int) -> bool:
    return port in (LIKELY_TCP_PORTS if proto == PROTO_TCP else LIKELY_UDP_PORTS)


class PacketPathMixin:
    # --- packet path --------------------------------------------------------------------
    def _packet(
        self: FlowEngine,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        linktype: int,
        ts: int,
        iface: int,
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
            self._wifi(b, l3, end, wire_end, p, PktCtx(ts, iface))
            return
        self._l3(b, l3, end, wire_end, p, PktCtx(ts, iface))

    def _l3(
        self: FlowEngine,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        p: Any,
        at: PktCtx,
    ) -> None:
        et = p.ethertype
        if et == D.ETH_ARP:
            self._arp(b, off, end, p, at)
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
        if (p.frag_off or p.frag_more) and p.ip_off + p.ip_len > end:
            # Zeek: an incompletely captured fragment is dropped, except a first fragment,
            # which is then analysed on its own.
            if p.frag_off:
                self.st["frag_dropped"] += 1
                return
            p.frag_more = 0
        if p.frag_off or p.frag_more:
            got = self._reassemble(b, p, at.ts, end)
            if got is None:
                return
            b, end, wire_end = got, len(got), len(got)
            at = at._replace(fragmented=True)
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
        self._transport(b, end, wire_end, p, at)

    def _arp(self: FlowEngine, b: bytes, off: int, end: int, p: Any, at: PktCtx) -> None:
        ts, iface = at.ts, at.iface
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

    def _ps_row(self: FlowEngine) -> Any:
        if self._pktsum is None:
            return None
        return self._pktsum[self._ps_index]

    # --- transport ----------------------------------------------------------------------
    def _transport(
        self: FlowEngine,
        b: bytes,
        end: int,
        wire_end: int,
        p: Any,
        at: PktCtx,
    ) -> None:
        ts, ttype, parent = at.ts, at.ttype, at.parent
        proto = p.proto
        l4 = p.l4_off
        avail = end - l4  # captured transport bytes
        if at.depth < MAX_TUNNEL_DEPTH and self.cfg.decode_tunnels:
            if proto == 4 or proto == 41:  # IP-in-IP, 6in4, 4in6
                self._ip_tunnel(
                    b,
                    l4,
                    min(end, l4 + p.l4_len),
                    wire_end,
                    p,
                    at.inner(TunnelType.IP, self._tunnel_id(p, TunnelType.IP)),
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
                    at.inner(TunnelType.GRE, self._tunnel_id(p, TunnelType.GRE)),
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
            f = self._new_flow(key, p, sport, dport, proto, tflags, at, one_way)
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
        if at.fragmented:
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
        if proto == PROTO_UDP and self.cfg.decode_tunnels and at.depth < MAX_TUNNEL_DEPTH:
            self._udp_tunnel(b, end, wire_end, p, f, at)

    def _new_flow(
        self: FlowEngine,
        key: tuple,
        p: Any,
        sport: int,
        dport: int,
        proto: int,
        tflags: int,
        at: PktCtx,
        one_way: bool,
    ) -> Flow:
        ts, iface, ttype, parent = at.ts, at.iface, at.ttype, at.parent
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
        self: FlowEngine,
        f: Flow,
        side: Side,
        is_orig: bool,
        ip_len: int,
        ts: int,
        tflags: int,
        mac: bytes,
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
