# Tunnel decapsulation: IP-in-IP / GRE tunnel ids and Zeek's UDP tunnel dispatch (twin of
# sensor/engine/reference/tunnels.py).

# --- tunnels --------------------------------------------------------------------------------
cdef uint64_t tunnel_id(eng_t* e, dc_pkt* p) noexcept nogil:
    """Parent id of a GRE / IP-in-IP tunnel: Zeek names it by its unordered outer address
    pair and the outer protocol."""
    cdef uint64_t h = 0xCBF29CE484222325ULL, j
    cdef int k
    cdef tun_ent* t
    cdef const uint8_t* lo = p.src
    cdef const uint8_t* hi = p.dst
    if e.tun == NULL:
        e.tun = <tun_ent*>calloc(TUN_SLOTS, sizeof(tun_ent))
        if e.tun == NULL:
            e.oom = True
            return 0
    if memcmp(p.src, p.dst, 16) > 0:
        lo = p.dst
        hi = p.src
    for k in range(16):
        h = (h ^ lo[k]) * 0x100000001B3ULL
        h = (h ^ hi[k]) * 0x100000001B3ULL
    h = (h ^ p.ip_version) * 0x100000001B3ULL
    h = (h ^ p.proto) * 0x100000001B3ULL
    j = h & (TUN_SLOTS - 1)
    while e.tun[j].used:
        t = &e.tun[j]
        if (t.ver == p.ip_version and t.proto == p.proto and memcmp(t.lo, lo, 16) == 0
                and memcmp(t.hi, hi, 16) == 0):
            return t.id
        j = (j + 1) & (TUN_SLOTS - 1)
    if e.tun_count >= MAX_TUNNEL_IDS:
        memset(e.tun, 0, TUN_SLOTS * sizeof(tun_ent))
        e.tun_count = 0
        j = h & (TUN_SLOTS - 1)
    t = &e.tun[j]
    t.used = 1
    t.ver = p.ip_version
    t.proto = p.proto
    memcpy(t.lo, lo, 16)
    memcpy(t.hi, hi, 16)
    t.id = e.next_id
    e.next_id += 1
    e.tun_count += 1
    return t.id


cdef inline pkt_ctx ctx_inner(const pkt_ctx* at, uint8_t ttype, uint64_t parent) noexcept nogil:
    """The context of a packet inside a tunnel of type ``ttype`` (flow or tunnel id
    ``parent``) found in the packet at ``at``."""
    cdef pkt_ctx inner = at[0]
    inner.ttype = ttype
    inner.parent = parent
    inner.depth = at.depth + 1
    inner.fragmented = False
    return inner


cdef void eng_inner(eng_t* e, const uint8_t* b, ssz off, ssz end, ssz wire_end, uint32_t etype,
                    const pkt_ctx* at) noexcept nogil:
    cdef dc_pkt q
    dc_reset_l2(&q)
    dc_reset_l3(&q)
    if etype == ETH_80211:
        eng_wifi(e, b, off, end, wire_end, &q, at)
        return
    if etype == ETH_TEB:
        off = decode_ethernet(b, off, end, &q)
    else:
        off = decode_ethertype(b, off, end, etype, &q)
    if off < 0:
        e.st.decode_errors += 1
        return
    # Inner packets keep the outer wire length (Zeek: a snaplen-truncated tunnel packet
    # still carries its inner datagram's claimed length).
    eng_l3(e, b, off, end, wire_end, &q, at)


cdef void eng_udp_tunnel(eng_t* e, const uint8_t* b, ssz end, ssz wire_end, dc_pkt* p,
                         int64_t idx, const pkt_ctx* at) noexcept nogil:
    """Zeek's UDP dispatch: the tunnel analyzer of the flow's responder port, else AYIYA
    then Teredo detection. A header that fails to parse marks the flow as violating that
    tunnel type (no further decapsulation of it)."""
    cdef flow_t* f = &e.ft.pool[idx]
    cdef ssz start = p.l4_off + 8
    cdef ssz stop = end if end < p.l4_off + p.l4_len else p.l4_off + p.l4_len
    cdef ssz ioff
    cdef uint32_t et = 0
    cdef uint8_t ttype
    cdef uint32_t rp = f.resp_port
    cdef uint64_t flow_id = f.flow_id
    cdef nw_pktsum_rec* saved
    cdef pkt_ctx inner
    if start >= stop:
        return
    if rp == UDP_VXLAN:
        ttype = TT_VXLAN
    elif rp == UDP_GENEVE:
        ttype = TT_GENEVE
    elif rp == UDP_GTPU or rp == UDP_GTPC:
        ttype = TT_GTPV1
    elif rp == UDP_TEREDO:
        ttype = TT_TEREDO
    elif rp == UDP_AYIYA:
        ttype = TT_AYIYA
    elif rp == UDP_GRE:
        ttype = TT_GRE
    elif detect_ayiya(b, start, stop):
        ttype = TT_AYIYA
    elif detect_teredo(b, start, stop):
        ttype = TT_TEREDO
    else:
        return
    if f.tun_violated & (1u << ttype):
        return
    if ttype == TT_VXLAN:
        ioff = decode_vxlan(b, start, stop, &et)
    elif ttype == TT_GENEVE:
        ioff = decode_geneve(b, start, stop, &et)
    elif ttype == TT_GTPV1:
        ioff = decode_gtpu(b, start, stop, &et)
    elif ttype == TT_TEREDO:
        ioff = decode_teredo(b, start, stop, &et)
    elif ttype == TT_GRE:
        ioff = decode_gre(b, start, stop, &et)
    else:
        ioff = decode_ayiya(b, start, stop, &et)
    if ioff == NOT_IP:
        return  # a valid message that carries no packet (AYIYA control, GTP signalling)
    if ioff < 0:
        f.tun_violated |= 1u << ttype
        return
    e.st.tunnel_packets += 1
    saved = e.ps
    e.ps = NULL  # the per-packet summary describes the outer packet
    inner = ctx_inner(at, ttype, flow_id)
    eng_inner(e, b, ioff, stop, wire_end, et, &inner)
    e.ps = saved
