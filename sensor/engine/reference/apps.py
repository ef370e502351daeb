# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""Application analyzers that change a connection (twin of apps.pxi): UDP/ICMP counting, Zeek's DNS and NTP role flips, DNS summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netwarden.records.schema import (
    DNS_QTYPE_BITS,
    DNS_QTYPE_OTHER_BIT,
    QNAME_LEN,
    PktEvent,
)
from sensor.engine.reference import decode as D
from sensor.engine.reference.dns import MAX_TRACKED_NAMES, parse_dns
from sensor.engine.reference.engine import (
    PROTO_UDP,
)
from sensor.engine.reference.flow import Flow
from sensor.engine.reference.records import _is_multicast

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine


class AppsMixin:
    # --- UDP / ICMP ------------------------------------------------------------------------
    def _udp_packet(
        self: FlowEngine, f: Flow, b: bytes, end: int, p: Any, is_orig: bool, ts: int
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
        self: FlowEngine, f: Flow, b: bytes, end: int, p: Any, is_orig: bool, ts: int
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

    def _dns_analyzer(self: FlowEngine, f: Flow, b: bytes, end: int, p: Any, is_orig: bool) -> None:
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

    def _ntp_analyzer(self: FlowEngine, f: Flow, b: bytes, end: int, p: Any, is_orig: bool) -> None:
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
    def _dns(self: FlowEngine, f: Flow, b: bytes, end: int, p: Any, proto: int) -> int:
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
