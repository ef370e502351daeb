# Header decoders, one C function per protocol layer (twin of sensor/engine/reference/decode.py).
#
# Each takes the buffer b, the offset of its header and the end of captured bytes, fills a
# dc_pkt and returns the next header's offset, or -1 for a malformed/unsupported packet.
# Two-result decoders (offset, ethertype) return the offset and write the ethertype through
# a pointer. No allocation, no GIL; every read is bounds-checked against `end` first.

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
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
    ETH_TEB = 0x6558
    ETH_ERSPAN2 = 0x88BE
    ETH_ERSPAN3 = 0x22EB
    ETH_PPP = 0x880B
    ETH_NONE = 0
    ETH_80211 = 0x10000  # pseudo ethertype: an 802.11 frame follows (radiotap, Aruba GRE)
    NOT_IP = -2  # decoder result: a well-formed frame that carries no IP/ARP
    MAX_L2_DEPTH = 8
    MAX_IPV6_EXT = 16


cdef inline void dc_reset_l2(dc_pkt* p) noexcept nogil:
    p.ethertype = ETH_NONE
    p.vlan = 0
    p.inner_vlan = 0
    memset(p.src_mac, 0, 6)
    memset(p.dst_mac, 0, 6)
    p.amsdu = 0


cdef inline void dc_reset_l3(dc_pkt* p) noexcept nogil:
    p.ip_version = 0
    p.ip_off = 0
    p.ip_hdr_len = 0
    p.ip_len = 0
    p.proto = 0
    p.l4_off = 0
    p.l4_len = 0
    memset(p.src, 0, 16)
    memset(p.dst, 0, 16)
    p.addr_len = 0
    p.frag_off = 0
    p.frag_more = 0
    p.frag_id = 0
    p.df = 0
    p.ttl = 0


cdef inline uint32_t u16(const uint8_t* b, ssz off) noexcept nogil:
    return (<uint32_t>b[off] << 8) | b[off + 1]


cdef inline uint32_t u32(const uint8_t* b, ssz off) noexcept nogil:
    return ((<uint32_t>b[off] << 24) | (<uint32_t>b[off + 1] << 16)
            | (<uint32_t>b[off + 2] << 8) | b[off + 3])


# --- link layer -------------------------------------------------------------------------
cdef ssz decode_link(const uint8_t* b, ssz off, ssz end, uint32_t lt, dc_pkt* p) noexcept nogil:
    if lt == 1:
        return decode_ethernet(b, off, end, p)
    if lt == 113:
        return decode_sll(b, off, end, p)
    if lt == 276:
        return decode_sll2(b, off, end, p)
    if lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:
        return decode_raw(b, off, end, p)
    if lt == 0 or lt == 108:
        return decode_null(b, off, end, lt, p)
    if lt == 9 or lt == 50:
        return decode_ppp(b, off, end, p)
    if lt == 127:
        return decode_radiotap(b, off, end, p)
    if lt == 105:
        p.ethertype = ETH_80211
        return off
    if lt == 10:
        return decode_fddi(b, off, end, p)
    return -1


cdef ssz decode_ethernet(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    cdef uint32_t etype
    # FabricPath nests a whole Ethernet frame; bound the recursion by the frame length.
    while True:
        if off + 14 > end:
            return -1
        memcpy(p.dst_mac, b + off, 6)
        memcpy(p.src_mac, b + off + 6, 6)
        etype = u16(b, off + 12)
        if etype == ETH_FABRICPATH:
            if off + 16 + 14 > end:
                return -1
            off += 16
            continue
        return decode_ethertype(b, off + 14, end, etype, p)


cdef ssz decode_ethertype(const uint8_t* b, ssz off, ssz end, uint32_t etype,
                          dc_pkt* p) noexcept nogil:
    cdef int depth = 0
    while depth < MAX_L2_DEPTH:
        depth += 1
        if etype == ETH_IPV4 or etype == ETH_IPV6 or etype == ETH_ARP:
            p.ethertype = etype
            return off
        if etype == ETH_VLAN or etype == ETH_QINQ or etype == ETH_QINQ_OLD:
            off = decode_vlan(b, off, end, p, &etype)
        elif etype == ETH_MPLS_UC or etype == ETH_MPLS_MC:
            off = decode_mpls(b, off, end, &etype)
        elif etype == ETH_PPPOE_SESS:
            off = decode_pppoe(b, off, end, &etype)
        elif etype == ETH_PBB:
            off = decode_pbb(b, off, end, p, &etype)
        elif etype == ETH_VNTAG:
            off = decode_vntag(b, off, end, &etype)
        elif etype == ETH_FABRICPATH:
            if off + 2 + 14 > end:
                return -1
            return decode_ethernet(b, off + 2, end, p)
        elif etype < 0x0600:
            off = decode_llc(b, off, end, &etype)
        else:
            return NOT_IP  # STP, LLDP, PPPoE discovery, ...: well formed, not ours
        if off < 0:
            return off
    return -1


cdef ssz decode_vlan(const uint8_t* b, ssz off, ssz end, dc_pkt* p,
                     uint32_t* et) noexcept nogil:
    cdef uint16_t vid
    if off + 4 > end:
        return -1
    vid = u16(b, off) & 0x0FFF
    if p.vlan == 0:
        p.vlan = vid
    elif p.inner_vlan == 0:
        p.inner_vlan = vid
    et[0] = u16(b, off + 2)
    return off + 4


cdef ssz decode_mpls(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    cdef int labels = 0
    cdef uint8_t bos, ver
    while True:
        if off + 4 > end or labels >= 32:
            return -1
        bos = b[off + 2] & 0x01
        off += 4
        labels += 1
        if bos:
            break
    if off >= end:
        return -1
    ver = b[off] >> 4
    if ver == 4:
        et[0] = ETH_IPV4
        return off
    if ver == 6:
        et[0] = ETH_IPV6
        return off
    return -1


cdef ssz decode_pppoe(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    if off + 8 > end:
        return -1
    return ppp_proto_to_ethertype(b, off + 6, end, et)


cdef ssz ppp_proto_to_ethertype(const uint8_t* b, ssz off, ssz end,
                                uint32_t* et) noexcept nogil:
    cdef uint32_t proto
    if off + 2 > end:
        return -1
    proto = u16(b, off)
    if proto == 0x0021:
        et[0] = ETH_IPV4
        return off + 2
    if proto == 0x0057:
        et[0] = ETH_IPV6
        return off + 2
    return NOT_IP  # LCP, IPCP, ...


cdef ssz decode_pbb(const uint8_t* b, ssz off, ssz end, dc_pkt* p,
                    uint32_t* et) noexcept nogil:
    if off + 4 + 14 > end:
        return -1
    memcpy(p.dst_mac, b + off + 4, 6)
    memcpy(p.src_mac, b + off + 10, 6)
    et[0] = u16(b, off + 16)
    return off + 18


cdef ssz decode_vntag(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    if off + 6 > end:
        return -1
    et[0] = u16(b, off + 4)
    return off + 6


cdef ssz decode_llc(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    if off + 3 > end:
        return -1
    if b[off] == 0xAA and b[off + 1] == 0xAA and b[off + 2] == 0x03:
        if off + 8 > end:
            return -1
        et[0] = u16(b, off + 6)
        return off + 8
    return NOT_IP  # STP and other non-SNAP LLC


cdef ssz decode_sll(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    if off + 16 > end:
        return -1
    if u16(b, off + 4) == 6:
        memcpy(p.src_mac, b + off + 6, 6)
    return decode_ethertype(b, off + 16, end, u16(b, off + 14), p)


cdef ssz decode_sll2(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    if off + 20 > end:
        return -1
    if b[off + 11] == 6:
        memcpy(p.src_mac, b + off + 12, 6)
    return decode_ethertype(b, off + 20, end, u16(b, off), p)


cdef ssz decode_raw(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    cdef uint8_t ver
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


cdef ssz decode_null(const uint8_t* b, ssz off, ssz end, uint32_t lt,
                     dc_pkt* p) noexcept nogil:
    cdef uint32_t fam_be, fam_le, fam
    if off + 4 > end:
        return -1
    fam_be = u32(b, off)
    fam_le = (<uint32_t>b[off] | (<uint32_t>b[off + 1] << 8) | (<uint32_t>b[off + 2] << 16)
              | (<uint32_t>b[off + 3] << 24))
    if lt == 108:
        fam = fam_be
    else:
        fam = fam_le if fam_le < 0x10000 else fam_be
    if fam == 2:
        p.ethertype = ETH_IPV4
    elif fam == 10 or fam == 24 or fam == 28 or fam == 30:
        p.ethertype = ETH_IPV6
    else:
        return -1
    return off + 4


cdef ssz decode_ppp(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    cdef uint32_t et = 0
    cdef ssz noff
    if off + 2 <= end and b[off] == 0xFF and b[off + 1] == 0x03:
        off += 2
    noff = ppp_proto_to_ethertype(b, off, end, &et)
    if noff < 0:
        return noff
    p.ethertype = et
    return noff


cdef ssz decode_radiotap(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    """Radiotap: skip its header; the 802.11 frame is decoded by decode_ieee80211."""
    cdef ssz hlen
    if off + 8 > end:
        return -1
    hlen = b[off + 2] | (<ssz>b[off + 3] << 8)
    if hlen < 8 or off + hlen > end:
        return -1
    p.ethertype = ETH_80211
    return off + hlen


cdef ssz decode_ieee80211(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    """802.11 data-frame header as Zeek reads it: the payload offset (LLC/SNAP, or A-MSDU
    subframes when p.amsdu is set), -1 when truncated, NOT_IP for frames that carry no
    packet (management/control, null function, protected QoS data)."""
    cdef uint8_t fc0, fc1, ds
    cdef ssz hlen
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
        memcpy(p.src_mac, b + off + 10, 6)
        memcpy(p.dst_mac, b + off + 4, 6)
    elif ds == 1:
        memcpy(p.src_mac, b + off + 10, 6)
        memcpy(p.dst_mac, b + off + 16, 6)
    elif ds == 2:
        memcpy(p.src_mac, b + off + 16, 6)
        memcpy(p.dst_mac, b + off + 4, 6)
    else:
        memcpy(p.src_mac, b + off + 24, 6)
        memcpy(p.dst_mac, b + off + 16, 6)
    return off + hlen


cdef ssz decode_80211_payload(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    """LLC/SNAP after an 802.11 header (or inside one A-MSDU subframe)."""
    cdef uint32_t et = 0
    cdef ssz noff = decode_llc(b, off, end, &et)
    if noff < 0:
        return noff
    return decode_ethertype(b, noff, end, et, p)


cdef ssz decode_fddi(const uint8_t* b, ssz off, ssz end, dc_pkt* p) noexcept nogil:
    cdef ssz noff
    cdef uint32_t et = 0
    if off + 13 > end:
        return -1
    memcpy(p.dst_mac, b + off + 1, 6)
    memcpy(p.src_mac, b + off + 7, 6)
    noff = decode_llc(b, off + 13, end, &et)
    if noff < 0:
        return noff
    return decode_ethertype(b, noff, end, et, p)


# --- network layer ---------------------------------------------------------------------
cdef ssz decode_ipv4(const uint8_t* b, ssz off, ssz end, ssz wire_end,
                     dc_pkt* p) noexcept nogil:
    cdef uint8_t vihl
    cdef ssz hlen, total
    cdef uint32_t fl
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
    memset(p.src, 0, 16)
    memset(p.dst, 0, 16)
    memcpy(p.src, b + off + 12, 4)
    memcpy(p.dst, b + off + 16, 4)
    p.addr_len = 4
    p.frag_id = u16(b, off + 4)
    p.frag_off = (fl & 0x1FFF) * 8
    p.frag_more = 1 if fl & 0x2000 else 0
    p.df = 1 if fl & 0x4000 else 0
    p.l4_off = off + hlen
    p.l4_len = total - hlen
    return off + hlen


cdef ssz decode_ipv6(const uint8_t* b, ssz off, ssz end, ssz wire_end,
                     dc_pkt* p) noexcept nogil:
    cdef ssz plen, total, cur, limit
    cdef uint8_t nxt, nxt2
    cdef uint32_t fo
    cdef int n = 0
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
    memcpy(p.src, b + off + 8, 16)
    memcpy(p.dst, b + off + 24, 16)
    p.addr_len = 16
    nxt = b[off + 6]
    cur = off + 40
    limit = off + total
    while True:
        if n >= MAX_IPV6_EXT:
            return -1
        n += 1
        if nxt == 0 or nxt == 43 or nxt == 60 or nxt == 135:
            if cur + 8 > end or cur + 8 > limit:
                return -1
            nxt2 = b[cur]
            cur += (<ssz>b[cur + 1] + 1) * 8
            nxt = nxt2
        elif nxt == 51:
            if cur + 8 > end or cur + 8 > limit:
                return -1
            nxt2 = b[cur]
            cur += (<ssz>b[cur + 1] + 2) * 4
            nxt = nxt2
        elif nxt == 44:
            if cur + 8 > end or cur + 8 > limit:
                return -1
            fo = u16(b, cur + 2)
            p.frag_off = fo & 0xFFF8
            p.frag_more = fo & 1
            p.frag_id = u32(b, cur + 4)
            nxt = b[cur]
            cur += 8
            if p.frag_off or p.frag_more:
                break
        else:
            break
        if cur > limit or cur > end:
            return -1
    p.proto = nxt
    p.ip_hdr_len = cur - off
    p.l4_off = cur
    p.l4_len = total - (cur - off)
    return cur


cdef uint32_t ones_sum(const uint8_t* b, ssz off, ssz n, uint64_t acc) noexcept nogil:
    cdef ssz i = 0
    while i + 1 < n:
        acc += (<uint32_t>b[off + i] << 8) | b[off + i + 1]
        i += 2
    if i < n:
        acc += <uint32_t>b[off + i] << 8
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return <uint32_t>acc


cdef inline bint ipv4_header_checksum_ok(const uint8_t* b, ssz off, ssz hlen) noexcept nogil:
    return ones_sum(b, off, hlen, 0) == 0xFFFF


cdef bint l4_checksum_ok(const uint8_t* b, dc_pkt* p, ssz l4_off, ssz l4_len) noexcept nogil:
    cdef uint64_t acc
    if p.ip_version == 4 and p.proto == 1:
        return ones_sum(b, l4_off, l4_len, 0) == 0xFFFF
    acc = ones_sum(p.src, 0, p.addr_len, 0)
    acc = ones_sum(p.dst, 0, p.addr_len, acc)
    acc += p.proto + l4_len
    return ones_sum(b, l4_off, l4_len, acc) == 0xFFFF


# --- tunnels -----------------------------------------------------------------------------
cdef ssz decode_gre(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    cdef uint32_t flags, proto, ver
    cdef ssz hlen
    cdef uint8_t o_bit
    if off + 4 > end:
        return -1
    flags = u16(b, off)
    proto = u16(b, off + 2)
    ver = flags & 0x7
    hlen = 4
    if flags & 0x0078:  # reserved flag bits set (Zeek rejects these)
        return -1
    if ver == 0:
        if flags & 0x4000:
            return -1
        if flags & 0x8000:
            hlen += 4
        if flags & 0x2000:
            hlen += 4
        if flags & 0x1000:
            hlen += 4
        off += hlen
        if off > end:
            return -1
        if proto == ETH_ERSPAN2:
            et[0] = ETH_TEB
            if flags & 0x1000:
                if off + 8 > end:
                    return -1
                return off + 8
            return off
        if (((proto & 0x8200) == 0x8200 and (proto & 0x0F) == 0)
                or ((proto & 0x8300) == 0x8300 and (proto & 0x0F) == 0 and proto <= 0x8370)
                or proto == 0x9000):
            et[0] = ETH_80211  # Aruba access points tunnel raw 802.11 frames
            return off
        if proto == ETH_ERSPAN3:
            if off + 12 > end:
                return -1
            o_bit = b[off + 11] & 0x1
            et[0] = ETH_TEB
            return off + 12 + (8 if o_bit else 0)
        et[0] = proto
        return off
    if ver == 1:
        if proto != ETH_PPP or not flags & 0x2000:
            return -1
        hlen = 8
        if flags & 0x1000:
            hlen += 4
        if flags & 0x0080:
            hlen += 4
        off += hlen
        if off + 2 > end:
            return -1
        if b[off] == 0xFF and off + 4 <= end and b[off + 1] == 0x03:
            off += 2
        return ppp_proto_to_ethertype(b, off, end, et)
    return -1


cdef ssz decode_vxlan(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    if off + 8 > end or not b[off] & 0x08:
        return -1
    et[0] = ETH_TEB
    return off + 8


cdef ssz decode_geneve(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    cdef ssz hlen
    if off + 8 > end:
        return -1
    if b[off] >> 6 != 0:
        return -1
    hlen = 8 + (b[off] & 0x3F) * 4
    if off + hlen > end:
        return -1
    et[0] = u16(b, off + 2)
    return off + hlen


cdef ssz decode_gtpu(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    cdef uint8_t flags, nxt, ver
    cdef ssz cur, elen
    cdef int n = 0
    if off + 8 > end:
        return -1
    flags = b[off]
    if flags >> 5 != 1 or not flags & 0x10:
        return -1
    if b[off + 1] != 0xFF:
        return NOT_IP  # echo, GTP-C signalling: valid, but no packet inside
    cur = off + 8
    if flags & 0x07:
        if cur + 4 > end:
            return -1
        nxt = b[cur + 3] if flags & 0x04 else 0
        cur += 4
        while nxt != 0:
            n += 1
            if cur + 1 > end or n > 16:
                return -1
            elen = <ssz>b[cur] * 4
            if elen == 0 or cur + elen > end:
                return -1
            nxt = b[cur + elen - 1]
            cur += elen
    if cur >= end:
        return -1
    ver = b[cur] >> 4
    if ver == 4:
        et[0] = ETH_IPV4
        return cur
    if ver == 6:
        et[0] = ETH_IPV6
        return cur
    return -1


cdef ssz decode_teredo(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    """Optional authentication (first) and origin indication, then IPv6 whose payload
    length matches the rest of the datagram (a bubble may carry trailing bytes)."""
    cdef ssz cur = off, tot, plen
    cdef bint seen_auth = False, seen_origin = False
    cdef uint32_t tag
    while True:
        if cur + 2 > end:
            return -1
        tag = u16(b, cur)
        if tag == 0:
            if seen_origin or cur + 8 > end:
                return -1
            seen_origin = True
            cur += 8
        elif tag == 1:
            if seen_origin or seen_auth or cur + 4 > end:
                return -1
            tot = 4 + <ssz>b[cur + 2] + <ssz>b[cur + 3] + 8 + 1
            if cur + tot > end:
                return -1
            seen_auth = True
            cur += tot
        elif tag >> 12 == 6:
            break
        else:
            return -1
    if cur + 40 > end:
        return -1
    plen = u16(b, cur + 4)
    if cur + 40 + plen > end:
        return -1
    if cur + 40 + plen < end and not (b[cur + 6] == 59 and plen == 0):
        return -1
    et[0] = ETH_IPV6
    return cur


cdef bint detect_teredo(const uint8_t* b, ssz off, ssz end) noexcept nogil:
    """Zeek's Teredo protocol detection for UDP on other ports."""
    cdef ssz n = end - off, cur, skip
    cdef uint32_t val
    if n < 40:
        return False
    if n > 8 and b[off] >> 4 != 6 and (b[off] != 0 or (b[off + 1] != 0 and b[off + 1] != 1)):
        return False
    if b[off] >> 4 == 6:
        # An IPv6 header whose source or destination is in the Teredo prefix 2001:0::/32.
        if b[off + 8] == 0x20 and b[off + 9] == 0x01 and b[off + 10] == 0 and b[off + 11] == 0:
            return True
        if (b[off + 24] == 0x20 and b[off + 25] == 0x01 and b[off + 26] == 0
                and b[off + 27] == 0):
            return True
    cur = off
    val = b[off + 1]
    if val == 1:
        skip = 13 + <ssz>b[off + 2] + <ssz>b[off + 3]
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


cdef inline bint detect_ayiya(const uint8_t* b, ssz off, ssz end) noexcept nogil:
    """Zeek's AYIYA protocol detection for UDP on other ports."""
    return end - off >= 3 and b[off + 1] == 0x52 and b[off + 2] == 0x11


cdef ssz decode_ayiya(const uint8_t* b, ssz off, ssz end, uint32_t* et) noexcept nogil:
    cdef ssz idlen, siglen, cur
    cdef uint8_t opcode, nxt
    if off + 8 > end:
        return -1
    idlen = (<ssz>1) << (b[off] >> 4)
    siglen = (b[off + 1] >> 4) * 4
    opcode = b[off + 2] & 0x0F
    nxt = b[off + 3]
    cur = off + 8 + idlen + siglen
    if cur > end:
        return -1
    if opcode != 1:
        return NOT_IP  # only "forward" carries a packet
    if cur >= end:
        return NOT_IP
    if nxt == 4:
        et[0] = ETH_IPV4
        return cur
    if nxt == 41:
        et[0] = ETH_IPV6
        return cur
    return NOT_IP
