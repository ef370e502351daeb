"""Header decoders of the reference engine: one plain function per protocol layer.

Every decoder takes the packet buffer ``b`` (bytes-like), the offset of its header ``off``
and the end of captured bytes ``end``, and either fills fields of a ``Pkt`` and returns the
offset of the next header, or returns ``-1`` (malformed: the packet is dropped and
counted as a decode error) or ``NOT_IP`` (-2: a well-formed frame of a protocol the
engine does not follow, counted as non-IP). Nothing here keeps state between packets; the flow
engine (``sensor.engine.reference.fastpath``) drives the layers and handles fragments and tunnels.

Layer-2 handling follows Zeek's packet analyzers: 802.1Q/QinQ tags (first tag -> ``vlan``,
second -> ``inner_vlan``), MPLS label stacks (IP version guessed from the first nibble
after the bottom of stack), PPPoE session, PBB (802.1ah), Cisco FabricPath (16-byte
header, then a new Ethernet header), VN-Tag, LLC/SNAP. Link types: Ethernet 1, SLL 113,
SLL2 276, raw IP 101/12/14/228/229, NULL 0 / LOOP 108, PPP 9 / PPP_HDLC 50,
802.11 105, radiotap 127, FDDI 10.
"""

from __future__ import annotations

import struct

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_MPLS_UC = 0x8847
ETH_MPLS_MC = 0x8848
ETH_PPPOE_SESS = 0x8864
ETH_PBB = 0x88E7
ETH_FABRICPATH = 0x8903
ETH_VNTAG = 0x8926
ETH_TEB = 0x6558  # transparent Ethernet bridging (GRE, Geneve)
ETH_ERSPAN2 = 0x88BE
ETH_ERSPAN3 = 0x22EB
ETH_PPP = 0x880B  # PPP in (enhanced) GRE
ETH_NONE = 0  # no more headers understood
ETH_80211 = 0x10000  # pseudo ethertype: an 802.11 frame follows (radiotap, Aruba GRE)

NOT_IP = -2  # decoder result: a well-formed frame that carries no IP/ARP
MAX_L2_DEPTH = 8  # tags / labels followed before giving up (loops in fuzzed input)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Pkt:
    """What the decoders learnt about one packet (reset per packet and per tunnel layer)."""

    __slots__ = (
        "amsdu",
        "df",
        "dst",
        "dst_mac",
        "ethertype",
        "frag_id",
        "frag_more",
        "frag_off",
        "inner_vlan",
        "ip_hdr_len",
        "ip_len",
        "ip_off",
        "ip_version",
        "l4_len",
        "l4_off",
        "proto",
        "src",
        "src_mac",
        "ttl",
        "vlan",
    )

    def __init__(self) -> None:
        self.reset_l2()
        self.reset_l3()

    def reset_l2(self) -> None:
        self.ethertype = ETH_NONE
        self.vlan = 0
        self.inner_vlan = 0
        self.src_mac = b"\x00" * 6
        self.dst_mac = b"\x00" * 6
        self.amsdu = 0

    def reset_l3(self) -> None:
        self.ip_version = 0
        self.ip_off = 0
        self.ip_hdr_len = 0  # IPv4 header incl. options / IPv6 header incl. ext headers
        self.ip_len = 0  # IP total length (IPv6: payload length + 40)
        self.proto = 0
        self.l4_off = 0
        self.l4_len = 0  # IP-claimed transport bytes (header + payload)
        self.src = b""
        self.dst = b""
        self.frag_off = 0  # bytes
        self.frag_more = 0
        self.frag_id = 0
        self.df = 0
        self.ttl = 0


def u16(b: bytes, off: int) -> int:
    return (b[off] << 8) | b[off + 1]


def u32(b: bytes, off: int) -> int:
    return (b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]


# --- link layer -------------------------------------------------------------------------
def decode_link(b: bytes, off: int, end: int, linktype: int, p: Pkt) -> int:
    """Dispatch on the capture link type; returns the offset of the L3 header."""
    if linktype == 1:
        return decode_ethernet(b, off, end, p)
    if linktype == 113:
        return decode_sll(b, off, end, p)
    if linktype == 276:
        return decode_sll2(b, off, end, p)
    if linktype in (101, 12, 14, 228, 229):
        return decode_raw(b, off, end, p)
    if linktype == 0 or linktype == 108:
        return decode_null(b, off, end, linktype, p)
    if linktype == 9 or linktype == 50:
        return decode_ppp(b, off, end, p)
    if linktype == 127:
        return decode_radiotap(b, off, end, p)
    if linktype == 105:
        p.ethertype = ETH_80211
        return off
    if linktype == 10:
        return decode_fddi(b, off, end, p)
    return -1


def decode_ethernet(b: bytes, off: int, end: int, p: Pkt) -> int:
    if off + 14 > end:
        return -1
    p.dst_mac = bytes(b[off : off + 6])
    p.src_mac = bytes(b[off + 6 : off + 12])
    etype = u16(b, off + 12)
    if etype == ETH_FABRICPATH:
        return decode_fabricpath(b, off, end, p)
    return decode_ethertype(b, off + 14, end, etype, p)


def decode_fabricpath(b: bytes, off: int, end: int, p: Pkt) -> int:
    # Outer DA/SA (12), ethertype (2), FTag/TTL (2); then a complete inner Ethernet frame.
    if off + 16 + 14 > end:
        return -1
    return decode_ethernet(b, off + 16, end, p)


def decode_ethertype(b: bytes, off: int, end: int, etype: int, p: Pkt) -> int:
    """Follow L2 shims until an IP/ARP ethertype; sets ``p.ethertype``."""
    depth = 0
    while depth < MAX_L2_DEPTH:
        depth += 1
        if etype == ETH_IPV4 or etype == ETH_IPV6 or etype == ETH_ARP:
            p.ethertype = etype
            return off
        if etype == ETH_VLAN or etype == ETH_QINQ or etype == ETH_QINQ_OLD:
            off, etype = decode_vlan(b, off, end, p)
        elif etype == ETH_MPLS_UC or etype == ETH_MPLS_MC:
            off, etype = decode_mpls(b, off, end)
        elif etype == ETH_PPPOE_SESS:
            off, etype = decode_pppoe(b, off, end)
        elif etype == ETH_PBB:
            off, etype = decode_pbb(b, off, end, p)
        elif etype == ETH_VNTAG:
            off, etype = decode_vntag(b, off, end)
        elif etype == ETH_FABRICPATH:
            # FabricPath after a tag: the 2-byte FTag/TTL then an inner Ethernet frame.
            if off + 2 + 14 > end:
                return -1
            off = decode_ethernet(b, off + 2, end, p)
            return off
        elif etype < 0x0600:  # 802.3 length field: LLC follows
            off, etype = decode_llc(b, off, end)
        else:
            return NOT_IP  # STP, LLDP, PPPoE discovery, ...: well formed, not ours
        if off < 0:
            return off
    return -1


def decode_vlan(b: bytes, off: int, end: int, p: Pkt) -> tuple[int, int]:
    if off + 4 > end:
        return -1, 0
    vid = u16(b, off) & 0x0FFF
    if p.vlan == 0:
        p.vlan = vid
    elif p.inner_vlan == 0:
        p.inner_vlan = vid
    return off + 4, u16(b, off + 2)


def decode_mpls(b: bytes, off: int, end: int) -> tuple[int, int]:
    """Skip the label stack; guess the payload from its first nibble (no control word)."""
    labels = 0
    while True:
        if off + 4 > end or labels >= 32:
            return -1, 0
        bos = b[off + 2] & 0x01
        off += 4
        labels += 1
        if bos:
            break
    if off >= end:
        return -1, 0
    ver = b[off] >> 4
    if ver == 4:
        return off, ETH_IPV4
    if ver == 6:
        return off, ETH_IPV6
    return -1, 0


def decode_pppoe(b: bytes, off: int, end: int) -> tuple[int, int]:
    if off + 8 > end:
        return -1, 0
    return ppp_proto_to_ethertype(b, off + 6, end)


def ppp_proto_to_ethertype(b: bytes, off: int, end: int) -> tuple[int, int]:
    if off + 2 > end:
        return -1, 0
    proto = u16(b, off)
    if proto == 0x0021:
        return off + 2, ETH_IPV4
    if proto == 0x0057:
        return off + 2, ETH_IPV6
    return NOT_IP, 0  # LCP, IPCP, ...


def decode_pbb(b: bytes, off: int, end: int, p: Pkt) -> tuple[int, int]:
    # I-TAG (4 bytes) then the customer frame's DA, SA and ethertype.
    if off + 4 + 14 > end:
        return -1, 0
    p.dst_mac = bytes(b[off + 4 : off + 10])
    p.src_mac = bytes(b[off + 10 : off + 16])
    return off + 18, u16(b, off + 16)


def decode_vntag(b: bytes, off: int, end: int) -> tuple[int, int]:
    if off + 6 > end:
        return -1, 0
    return off + 6, u16(b, off + 4)


def decode_llc(b: bytes, off: int, end: int) -> tuple[int, int]:
    """802.2 LLC; only SNAP (AA AA 03 + OUI + ethertype) carries something we decode."""
    if off + 3 > end:
        return -1, 0
    if b[off] == 0xAA and b[off + 1] == 0xAA and b[off + 2] == 0x03:
        if off + 8 > end:
            return -1, 0
        return off + 8, u16(b, off + 6)
    return NOT_IP, 0  # STP and other non-SNAP LLC


def decode_sll(b: bytes, off: int, end: int, p: Pkt) -> int:
    if off + 16 > end:
        return -1
    alen = u16(b, off + 4)
    if alen == 6:
        p.src_mac = bytes(b[off + 6 : off + 12])
    return decode_ethertype(b, off + 16, end, u16(b, off + 14), p)


def decode_sll2(b: bytes, off: int, end: int, p: Pkt) -> int:
    if off + 20 > end:
        return -1
    if b[off + 11] == 6:
        p.src_mac = bytes(b[off + 12 : off + 18])
    return decode_ethertype(b, off + 20, end, u16(b, off), p)


def decode_raw(b: bytes, off: int, end: int, p: Pkt) -> int:
    if off >= end:
        return -1
    ver = b[off] >> 4
    if ver == 4:
        p.ethertype = ETH_IPV4
    elif ver == 6:
        p.ethertype = ETH_IPV6
    else:
        return -1
    return off


def decode_null(b: bytes, off: int, end: int, linktype: int, p: Pkt) -> int:
    """BSD loopback: a 4-byte address family, host order (NULL) or network order (LOOP)."""
    if off + 4 > end:
        return -1
    fam_be = u32(b, off)
    fam_le = b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)
    fam = fam_be if linktype == 108 else (fam_le if fam_le < 0x10000 else fam_be)
    if fam == 2:
        p.ethertype = ETH_IPV4
    elif fam in (10, 24, 28, 30):
        p.ethertype = ETH_IPV6
    else:
        return -1
    return off + 4


def decode_ppp(b: bytes, off: int, end: int, p: Pkt) -> int:
    if off + 2 <= end and b[off] == 0xFF and b[off + 1] == 0x03:
        off += 2
    noff, etype = ppp_proto_to_ethertype(b, off, end)
    if noff < 0:
        return noff
    p.ethertype = etype
    return noff


def decode_radiotap(b: bytes, off: int, end: int, p: Pkt) -> int:
    """Radiotap: skip its header; the 802.11 frame is decoded by ``decode_ieee80211``."""
    if off + 8 > end:
        return -1
    hlen = b[off + 2] | (b[off + 3] << 8)
    if hlen < 8 or off + hlen > end:
        return -1
    p.ethertype = ETH_80211
    return off + hlen


def decode_ieee80211(b: bytes, off: int, end: int, p: Pkt) -> int:
    """802.11 data-frame header, as Zeek reads it: returns the payload offset (LLC/SNAP, or
    A-MSDU subframes when ``p.amsdu`` is set), -1 when truncated, NOT_IP for frames that
    carry no packet (management/control, null function, protected QoS data)."""
    if off + 24 >= end:
        return -1
    fc0 = b[off]
    fc1 = b[off + 1]
    if not (fc0 >> 2) & 0x02:  # not a data frame
        return NOT_IP
    if (fc0 >> 4) & 0x04:  # null function: no payload
        return NOT_IP
    hlen = 24
    if fc1 & 0x03 == 0x03:  # WDS: a fourth address
        hlen += 6
    if off + hlen >= end:
        return -1
    p.amsdu = 0
    if (fc0 >> 4) & 0x08:  # QoS data: 2-byte QoS control, A-MSDU bit
        p.amsdu = 1 if b[off + hlen] & 0x80 else 0
        if fc1 & 0x40:
            return NOT_IP  # protected
        hlen += 2
    if off + hlen >= end:
        return -1
    ds = fc1 & 0x03
    if ds == 0:
        p.src_mac = bytes(b[off + 10 : off + 16])
        p.dst_mac = bytes(b[off + 4 : off + 10])
    elif ds == 1:
        p.src_mac = bytes(b[off + 10 : off + 16])
        p.dst_mac = bytes(b[off + 16 : off + 22])
    elif ds == 2:
        p.src_mac = bytes(b[off + 16 : off + 22])
        p.dst_mac = bytes(b[off + 4 : off + 10])
    else:
        p.src_mac = bytes(b[off + 24 : off + 30])
        p.dst_mac = bytes(b[off + 16 : off + 22])
    return off + hlen


def decode_80211_payload(b: bytes, off: int, end: int, p: Pkt) -> int:
    """LLC/SNAP after an 802.11 header (or inside one A-MSDU subframe)."""
    noff, etype = decode_llc(b, off, end)
    if noff < 0:
        return noff
    return decode_ethertype(b, noff, end, etype, p)


def decode_fddi(b: bytes, off: int, end: int, p: Pkt) -> int:
    if off + 13 > end:
        return -1
    p.dst_mac = bytes(b[off + 1 : off + 7])
    p.src_mac = bytes(b[off + 7 : off + 13])
    noff, etype = decode_llc(b, off + 13, end)
    if noff < 0:
        return noff
    return decode_ethertype(b, noff, end, etype, p)


# --- network layer ---------------------------------------------------------------------
def decode_ipv4(b: bytes, off: int, end: int, wire_end: int, p: Pkt) -> int:
    """IPv4 header (with options). Returns the L4 offset. ``wire_end`` is where the packet
    ended on the wire: a total length beyond it is a truncated datagram (dropped); a
    total length beyond ``end`` only (snaplen) is fine, as in Zeek."""
    if off + 20 > end:
        return -1
    vihl = b[off]
    if vihl >> 4 != 4:
        return -1
    hlen = (vihl & 0xF) * 4
    if hlen < 20 or off + hlen > end:
        return -1
    total = u16(b, off + 2)
    p.ip_len = total  # counted as the header says, as Zeek does (0 under TSO)
    if total == 0:  # TSO: the NIC fills the length in later; parse what was captured
        total = end - off
    if total < hlen or off + total > wire_end:
        return -1
    fl = u16(b, off + 6)
    p.ip_version = 4
    p.ip_off = off
    p.ip_hdr_len = hlen
    p.proto = b[off + 9]
    p.ttl = b[off + 8]
    p.src = bytes(b[off + 12 : off + 16])
    p.dst = bytes(b[off + 16 : off + 20])
    p.frag_id = u16(b, off + 4)
    p.frag_off = (fl & 0x1FFF) * 8
    p.frag_more = 1 if fl & 0x2000 else 0
    p.df = 1 if fl & 0x4000 else 0
    p.l4_off = off + hlen
    p.l4_len = total - hlen
    return off + hlen


IPV6_EXT_HOPOPTS = 0
IPV6_EXT_ROUTING = 43
IPV6_EXT_FRAGMENT = 44
IPV6_EXT_AH = 51
IPV6_EXT_DSTOPTS = 60
IPV6_EXT_MOBILITY = 135
MAX_IPV6_EXT = 16


def decode_ipv6(b: bytes, off: int, end: int, wire_end: int, p: Pkt) -> int:
    """IPv6 header and extension headers (hop-by-hop, routing, dest opts, fragment, AH).
    ESP and unknown next headers end the walk (the flow's protocol is that header)."""
    if off + 40 > end:
        return -1
    if b[off] >> 4 != 6:
        return -1
    plen = u16(b, off + 4)
    p.ip_len = plen + 40  # counted as Zeek does, even when the header says 0
    if plen == 0:  # jumbogram / TSO: the payload runs to the end of the capture
        plen = end - off - 40
    total = plen + 40
    if off + total > wire_end:
        return -1
    p.ip_version = 6
    p.ip_off = off
    p.ttl = b[off + 7]
    p.src = bytes(b[off + 8 : off + 24])
    p.dst = bytes(b[off + 24 : off + 40])
    nxt = b[off + 6]
    cur = off + 40
    limit = off + total
    n = 0
    while n < MAX_IPV6_EXT:
        n += 1
        if nxt in (IPV6_EXT_HOPOPTS, IPV6_EXT_ROUTING, IPV6_EXT_DSTOPTS, IPV6_EXT_MOBILITY):
            if cur + 8 > end or cur + 8 > limit:
                return -1
            nxt2 = b[cur]
            cur += (b[cur + 1] + 1) * 8
            nxt = nxt2
        elif nxt == IPV6_EXT_AH:
            if cur + 8 > end or cur + 8 > limit:
                return -1
            nxt2 = b[cur]
            cur += (b[cur + 1] + 2) * 4
            nxt = nxt2
        elif nxt == IPV6_EXT_FRAGMENT:
            if cur + 8 > end or cur + 8 > limit:
                return -1
            fo = u16(b, cur + 2)
            p.frag_off = fo & 0xFFF8
            p.frag_more = fo & 1
            p.frag_id = u32(b, cur + 4)
            nxt = b[cur]
            cur += 8
            if p.frag_off or p.frag_more:
                break  # the rest belongs to the reassembled datagram
        else:
            break
        if cur > limit or cur > end:
            return -1
    else:
        return -1
    p.proto = nxt
    p.ip_hdr_len = cur - off
    p.l4_off = cur
    p.l4_len = total - (cur - off)
    return cur


def ipv4_header_checksum_ok(b: bytes, off: int, hlen: int) -> bool:
    return ones_sum(b, off, hlen, 0) == 0xFFFF


def ones_sum(b: bytes, off: int, n: int, acc: int) -> int:
    """16-bit one's-complement sum of ``n`` bytes at ``off`` added to ``acc``."""
    i = 0
    while i + 1 < n:
        acc += (b[off + i] << 8) | b[off + i + 1]
        i += 2
    if i < n:
        acc += b[off + i] << 8
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def l4_checksum_ok(b: bytes, p: Pkt, l4_off: int, l4_len: int) -> bool:
    """Pseudo-header checksum of TCP/UDP/ICMPv6 (ICMPv4 has no pseudo header)."""
    if p.ip_version == 4 and p.proto == 1:
        return ones_sum(b, l4_off, l4_len, 0) == 0xFFFF
    acc = ones_sum(p.src, 0, len(p.src), 0)
    acc = ones_sum(p.dst, 0, len(p.dst), acc)
    acc += p.proto + l4_len
    return ones_sum(b, l4_off, l4_len, acc) == 0xFFFF


# --- tunnels -----------------------------------------------------------------------------
def decode_gre(b: bytes, off: int, end: int) -> tuple[int, int]:
    """GRE v0 (incl. ERSPAN I/II/III, TEB) and v1 (PPTP enhanced GRE carrying PPP).
    Returns (inner offset, inner ethertype) with ETH_TEB meaning an Ethernet frame."""
    if off + 4 > end:
        return -1, 0
    flags = u16(b, off)
    proto = u16(b, off + 2)
    ver = flags & 0x7
    hlen = 4
    if flags & 0x0078:  # reserved flag bits set (Zeek rejects these)
        return -1, 0
    if ver == 0:
        if flags & 0x4000:  # routing present: not supported (as Zeek)
            return -1, 0
        if flags & 0x8000:
            hlen += 4
        if flags & 0x2000:
            hlen += 4
        if flags & 0x1000:
            hlen += 4
        off += hlen
        if off > end:
            return -1, 0
        if proto == ETH_ERSPAN2:
            if flags & 0x1000:  # ERSPAN type II: sequence number present, 8-byte header
                if off + 8 > end:
                    return -1, 0
                return off + 8, ETH_TEB
            return off, ETH_TEB  # ERSPAN type I: no ERSPAN header
        if (
            ((proto & 0x8200) == 0x8200 and proto & 0x0F == 0)
            or ((proto & 0x8300) == 0x8300 and proto & 0x0F == 0 and proto <= 0x8370)
            or proto == 0x9000
        ):
            return off, ETH_80211  # Aruba access points tunnel raw 802.11 frames
        if proto == ETH_ERSPAN3:
            if off + 12 > end:
                return -1, 0
            o_bit = b[off + 11] & 0x1
            return off + 12 + (8 if o_bit else 0), ETH_TEB
        return off, proto
    if ver == 1:
        # Enhanced GRE: key (payload length + call id) mandatory, optional seq and ack.
        if proto != ETH_PPP or not flags & 0x2000:
            return -1, 0
        hlen = 8
        if flags & 0x1000:
            hlen += 4
        if flags & 0x0080:
            hlen += 4
        off += hlen
        if off + 2 > end:
            return -1, 0
        if b[off] == 0xFF and off + 4 <= end and b[off + 1] == 0x03:
            off += 2
        return ppp_proto_to_ethertype(b, off, end)
    return -1, 0


def decode_vxlan(b: bytes, off: int, end: int) -> tuple[int, int]:
    if off + 8 > end or not b[off] & 0x08:
        return -1, 0
    return off + 8, ETH_TEB


def decode_geneve(b: bytes, off: int, end: int) -> tuple[int, int]:
    if off + 8 > end:
        return -1, 0
    if b[off] >> 6 != 0:
        return -1, 0
    hlen = 8 + (b[off] & 0x3F) * 4
    if off + hlen > end:
        return -1, 0
    return off + hlen, u16(b, off + 2)


def decode_gtpu(b: bytes, off: int, end: int) -> tuple[int, int]:
    """GTPv1: a G-PDU returns the inner IP offset and its ethertype; other message types
    (echo, GTP-C signalling) are valid but carry no packet (NOT_IP)."""
    if off + 8 > end:
        return -1, 0
    flags = b[off]
    if flags >> 5 != 1 or not flags & 0x10:
        return -1, 0
    if b[off + 1] != 0xFF:
        return NOT_IP, 0
    cur = off + 8
    if flags & 0x07:
        if cur + 4 > end:
            return -1, 0
        nxt = b[cur + 3] if flags & 0x04 else 0
        cur += 4
        n = 0
        while nxt != 0:
            n += 1
            if cur + 1 > end or n > 16:
                return -1, 0
            elen = b[cur] * 4
            if elen == 0 or cur + elen > end:
                return -1, 0
            nxt = b[cur + elen - 1]
            cur += elen
    if cur >= end:
        return -1, 0
    ver = b[cur] >> 4
    if ver == 4:
        return cur, ETH_IPV4
    if ver == 6:
        return cur, ETH_IPV6
    return -1, 0


def decode_teredo(b: bytes, off: int, end: int) -> tuple[int, int]:
    """Teredo: optional authentication (before) and origin indication, then IPv6 whose
    payload length must match the rest of the datagram (a bubble, next header 59 with
    payload length 0, may carry trailing bytes)."""
    cur = off
    seen_auth = False
    seen_origin = False
    while True:
        if cur + 2 > end:
            return -1, 0
        tag = u16(b, cur)
        if tag == 0:
            if seen_origin or cur + 8 > end:
                return -1, 0
            seen_origin = True
            cur += 8
        elif tag == 1:
            if seen_origin or seen_auth or cur + 4 > end:
                return -1, 0
            tot = 4 + b[cur + 2] + b[cur + 3] + 8 + 1
            if cur + tot > end:
                return -1, 0
            seen_auth = True
            cur += tot
        elif tag >> 12 == 6:
            break
        else:
            return -1, 0
    if cur + 40 > end:
        return -1, 0
    plen = u16(b, cur + 4)
    if cur + 40 + plen > end:
        return -1, 0
    if cur + 40 + plen < end and not (b[cur + 6] == 59 and plen == 0):
        return -1, 0
    return cur, ETH_IPV6


def detect_teredo(b: bytes, off: int, end: int) -> bool:
    """Zeek's Teredo protocol detection for UDP on other ports."""
    n = end - off
    if n < 40:
        return False
    if n > 8 and b[off] >> 4 != 6 and (b[off] != 0 or (b[off + 1] != 0 and b[off + 1] != 1)):
        return False
    if b[off] >> 4 == 6:
        # An IPv6 header whose source (offset 8) or destination (offset 24) is in the
        # Teredo prefix 2001:0::/32 (a prefix match, at least 40 bytes).
        if b[off + 8 : off + 12] == b"\x20\x01\x00\x00":
            return True
        if b[off + 24 : off + 28] == b"\x20\x01\x00\x00":
            return True
    cur = off
    val = b[off + 1]
    if val == 1:
        skip = 13 + b[off + 2] + b[off + 3]
        if n < skip:
            return False
        cur += skip
        n -= skip
        if n < 40:
            return False
        val = u16(b, cur)
    if val == 0:
        if n < 8:
            return False
        cur += 8
        n -= 8
        if n < 40:
            return False
        return b[cur] >> 4 == 6
    return False


def detect_ayiya(b: bytes, off: int, end: int) -> bool:
    """Zeek's AYIYA protocol detection for UDP on other ports."""
    return end - off >= 3 and b[off + 1] == 0x52 and b[off + 2] == 0x11


def decode_ayiya(b: bytes, off: int, end: int) -> tuple[int, int]:
    if off + 8 > end:
        return -1, 0
    idlen = 1 << (b[off] >> 4)
    siglen = (b[off + 1] >> 4) * 4
    opcode = b[off + 2] & 0x0F
    nxt = b[off + 3]
    cur = off + 8 + idlen + siglen
    if cur > end:
        return -1, 0
    if opcode != 1:
        return NOT_IP, 0  # only "forward" carries a packet
    if cur >= end:
        return NOT_IP, 0
    if nxt == 4:
        return cur, ETH_IPV4
    if nxt == 41:
        return cur, ETH_IPV6
    return NOT_IP, 0
