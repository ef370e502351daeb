# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""Tunnels (twin of tunnels.pxi): IP/GRE tunnel ids, inner packets, UDP tunnel dispatch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netwarden.records.schema import (
    TunnelType,
)
from sensor.engine.reference import decode as D
from sensor.engine.reference.engine import (
    MAX_TUNNEL_IDS,
    UDP_AYIYA,
    UDP_GENEVE,
    UDP_GRE,
    UDP_GTPC,
    UDP_GTPU,
    UDP_TEREDO,
    UDP_VXLAN,
    PktCtx,
)
from sensor.engine.reference.flow import Flow

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine


class TunnelsMixin:
    # --- tunnels ----------------------------------------------------------------------------
    def _tunnel_id(self: FlowEngine, p: Any, ttype: int) -> int:
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
        self: FlowEngine,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        p: Any,
        at: PktCtx,
        etype: int,
    ) -> None:
        """An IP-in-IP or GRE packet: ``at`` is already the inner packet's context (its parent
        is the tunnel id of the outer address pair)."""
        self.st["tunnel_packets"] += 1
        self._inner(b, off, end, wire_end, etype, at)

    def _inner(
        self: FlowEngine,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        etype: int,
        at: PktCtx,
    ) -> None:
        q = D.Pkt()
        if etype == D.ETH_80211:
            self._wifi(b, off, end, wire_end, q, at)
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
        self._l3(b, off, end, wire_end, q, at)

    def _udp_tunnel(
        self: FlowEngine,
        b: bytes,
        end: int,
        wire_end: int,
        p: Any,
        f: Flow,
        at: PktCtx,
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
        self._inner(b, ioff, stop, wire_end, et, at.inner(ttype, f.flow_id))
        self._pktsum = saved
