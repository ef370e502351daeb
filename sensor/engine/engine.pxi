# The packet path in C (twin of PacketPathMixin in sensor/engine/reference/engine.py): link,
# L3, ARP, new flows and the transport step. The engine's timers live in timers.pxi, its
# fragment reassembly in frag.pxi, its LRU order in flowtable.pxi, 802.11 in wifi.pxi.
#
# Everything runs without the GIL over an eng_t: the flow table, timers, fragment
# store, tunnel ids and the output queues. Function names follow the reference's methods
# (_l3 -> eng_l3, _transport -> eng_transport, ...) so the two can be read side by side.

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
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
    MAX_TUNNEL_IDS = 65536
    MAX_TUNNEL_CHANGES = 5  # Zeek's Tunnel::max_changes_per_connection
    TUN_SLOTS = 131072

    TT_NONE = 0
    TT_IP = 1
    TT_GRE = 2
    TT_VXLAN = 3
    TT_GENEVE = 4
    TT_GTPV1 = 5
    TT_TEREDO = 6
    TT_AYIYA = 7

    ER_ACTIVE = 0
    ER_IDLE = 1
    ER_CLOSED = 2
    ER_EOF = 3
    ER_EVICTED = 4

    CS_S0 = 1
    CS_S1 = 2
    CS_SF = 3
    CS_REJ = 4
    CS_S2 = 5
    CS_S3 = 6
    CS_RSTO = 7
    CS_RSTR = 8
    CS_RSTOS0 = 9
    CS_RSTRH = 10
    CS_SH = 11
    CS_SHR = 12
    CS_OTH = 13

    EV_NEW_FLOW = 1
    EV_REPLY = 2
    EV_FIRST_REPLY = 4
    EV_ICMP_UNREACH = 8
    EV_DNS_QUERY = 16
    EV_DNS_RESPONSE = 32
    EV_ARP = 64
    EV_FLOW_END = 128

cdef int64_t NS = 1000000000
# Zeek TCP timer constants.
cdef int64_t TCP_ATTEMPT_DELAY = 5 * NS
cdef int64_t TCP_SYN_TIMEOUT = 5 * NS
cdef int64_t TCP_SESSION_TIMER = 6 * NS
cdef int64_t TCP_CONNECTION_LINGER = 5 * NS
cdef int64_t TCP_CLOSE_DELAY = 5 * NS
cdef int64_t TCP_RESET_DELAY = 5 * NS
# Zeek's DNS analyzer ends a UDP DNS-port connection idle for DNS_SESSION_TIMEOUT - 1 s,
# checked every DNS_SESSION_TIMEOUT.
cdef int64_t DNS_SESSION_TIMEOUT = 10 * NS


cdef inline bint is_dns_udp_port(uint32_t port) noexcept nogil:
    return port == 53 or port == 137 or port == 5353 or port == 5355


# --- small helpers -----------------------------------------------------------------------
cdef inline flow_t* F(eng_t* e, int64_t idx) noexcept nogil:
    return &e.ft.pool[idx]


#: Zeek's likely_server_ports: the server ports its default analyzers register (the same
#: sets as the reference). Kept as 64 Ki-bit maps so the per-flow test is one bit lookup.
LIKELY_TCP_PORTS = (
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 465, 502, 514, 563, 585,
    587, 614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306,
    3389, 5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
)
LIKELY_UDP_PORTS = (
    53, 67, 88, 123, 137, 161, 162, 389, 443, 514, 1812, 2123, 2152, 3389, 3544, 4011, 4754,
    4789, 5060, 5072, 5353, 5355, 6081, 20000,
)
cdef uint8_t LIKELY_TCP[8192]
cdef uint8_t LIKELY_UDP[8192]


cdef void _fill_port_map(uint8_t* m, ports):
    memset(m, 0, 8192)
    for port in ports:
        m[port >> 3] |= 1 << (port & 7)


_fill_port_map(LIKELY_TCP, LIKELY_TCP_PORTS)
_fill_port_map(LIKELY_UDP, LIKELY_UDP_PORTS)


cdef inline bint is_likely(uint32_t port, uint8_t proto) noexcept nogil:
    port &= 0xFFFF
    if proto == PROTO_TCP:
        return (LIKELY_TCP[port >> 3] >> (port & 7)) & 1
    return (LIKELY_UDP[port >> 3] >> (port & 7)) & 1


cdef inline int icmp_pair(uint8_t proto, uint8_t t) noexcept nogil:
    """Counterpart type of a request/reply ICMP type, -1 for one-way types."""
    if proto == PROTO_ICMP:
        if t == 8: return 0
        if t == 0: return 8
        if t == 13: return 14
        if t == 14: return 13
        if t == 15: return 16
        if t == 16: return 15
        if t == 10: return 9
        if t == 9: return 10
        if t == 17: return 18
        if t == 18: return 17
        return -1
    if t == 128: return 129
    if t == 129: return 128
    if t == 133: return 134
    if t == 134: return 133
    if t == 135: return 136
    if t == 136: return 135
    if t == 130: return 131
    if t == 131: return 130
    if t == 139: return 140
    if t == 140: return 139
    if t == 144: return 145
    if t == 145: return 144
    return -1


cdef inline int addr_cmp(const uint8_t* a, uint32_t pa, const uint8_t* b, uint32_t pb,
                         int n) noexcept nogil:
    cdef int c = memcmp(a, b, n)
    if c != 0:
        return c
    if pa != pb:
        return -1 if pa < pb else 1
    return 0


# --- packet path --------------------------------------------------------------------------
cdef void eng_packet(eng_t* e, const uint8_t* b, ssz end, ssz wire_end, uint32_t lt,
                     int64_t ts, uint8_t iface) noexcept nogil:
    cdef dc_pkt p
    cdef ssz l3
    cdef pkt_ctx at
    at.ts = ts
    at.iface = iface
    at.ttype = TT_NONE
    at.parent = 0
    at.depth = 0
    at.fragmented = False
    dc_reset_l2(&p)
    dc_reset_l3(&p)
    l3 = decode_link(b, 0, end, lt, &p)
    if l3 == NOT_IP:
        e.st.non_ip += 1
        return
    if l3 < 0:
        if not rd_linktype_ok(lt):
            e.st.unsupported_link += 1
        e.st.decode_errors += 1
        return
    if p.ethertype == ETH_80211:
        eng_wifi(e, b, l3, end, wire_end, &p, &at)
        return
    eng_l3(e, b, l3, end, wire_end, &p, &at)


cdef void eng_l3(eng_t* e, const uint8_t* b, ssz off, ssz end, ssz wire_end, dc_pkt* p,
                 const pkt_ctx* at) noexcept nogil:
    cdef uint32_t et = p.ethertype
    cdef ssz l4, glen
    cdef pkt_ctx whole
    cdef const uint8_t* g
    if et == ETH_ARP:
        eng_arp(e, b, off, end, p, at.ts, at.iface)
        return
    if et == ETH_IPV4:
        l4 = decode_ipv4(b, off, end, wire_end, p)
    elif et == ETH_IPV6:
        l4 = decode_ipv6(b, off, end, wire_end, p)
    else:
        e.st.non_ip += 1
        return
    if l4 < 0:
        e.st.decode_errors += 1
        return
    if e.validate and p.ip_version == 4 and (
            p.ip_len == 0 or not ipv4_header_checksum_ok(b, p.ip_off, p.ip_hdr_len)):
        # A zero total length (TSO) also means a bogus checksum: Zeek drops it when validating.
        e.st.checksum_errors += 1
        return
    if (p.frag_off or p.frag_more) and p.ip_off + p.ip_len > end:
        # Zeek: an incompletely captured fragment is dropped, except a first fragment,
        # which is then analysed on its own.
        if p.frag_off:
            e.st.frag_dropped += 1
            return
        p.frag_more = 0
    if p.frag_off or p.frag_more:
        g = eng_reassemble(e, b, p, at.ts, end, at.depth, &glen)
        if g == NULL:
            return
        b = g
        end = glen
        wire_end = glen
        whole = at[0]
        whole.fragmented = True
        at = &whole
        if p.ip_version == 4:
            l4 = decode_ipv4(b, 0, end, wire_end, p)
        else:
            l4 = decode_ipv6(b, 0, end, wire_end, p)
        p.frag_off = 0
        p.frag_more = 0
        if l4 < 0:
            e.st.decode_errors += 1
            return
    if p.proto == PROTO_ESP or p.proto == PROTO_MOBILITY or p.proto == PROTO_NONE:
        # As Zeek: ESP and mobility headers end analysis, and "no next header" carries
        # nothing; none of them makes a connection.
        e.st.no_transport += 1
        return
    eng_transport(e, b, end, wire_end, p, at)


cdef void eng_arp(eng_t* e, const uint8_t* b, ssz off, ssz end, dc_pkt* p, int64_t ts,
                  uint8_t iface) noexcept nogil:
    cdef nw_arp_rec* a
    cdef nw_arp_rec* nq
    cdef size_t ncap
    if off + 28 > end:
        e.st.decode_errors += 1
        return
    if u16(b, off) != 1 or u16(b, off + 2) != 0x0800 or b[off + 4] != 6 or b[off + 5] != 4:
        e.st.decode_errors += 1
        return
    if e.outa_n == e.outa_cap:
        if e.outa_start:
            memmove(e.outa, e.outa + e.outa_start, (e.outa_n - e.outa_start) * sizeof(nw_arp_rec))
            e.outa_n -= e.outa_start
            e.outa_start = 0
        if e.outa_n == e.outa_cap:
            ncap = e.outa_cap * 2 + 256
            nq = <nw_arp_rec*>realloc(e.outa, ncap * sizeof(nw_arp_rec))
            if nq == NULL:
                e.oom = True
                return
            e.outa = nq
            e.outa_cap = ncap
    a = &e.outa[e.outa_n]
    e.outa_n += 1
    memset(a, 0, sizeof(nw_arp_rec))
    a.ts_ns = ts
    a.sensor = e.sensor
    a.session = e.session
    a.op = <uint16_t>u16(b, off + 6)
    a.vlan = p.vlan
    memcpy(a.sender_mac, b + off + 8, 6)
    memcpy(a.sender_ip, b + off + 14, 4)
    memcpy(a.target_mac, b + off + 18, 6)
    memcpy(a.target_ip, b + off + 24, 4)
    memcpy(a.eth_src, p.src_mac, 6)
    a.iface = iface
    e.st.arp += 1
    if e.ps != NULL:
        e.ps.ip_len = <uint32_t>(end - off)
        e.ps.sport = a.op
        e.ps.events = EV_ARP
        memcpy(e.ps.src, a.sender_ip, 4)
        memcpy(e.ps.dst, a.target_ip, 4)


# --- flows ------------------------------------------------------------------------------------
cdef int64_t new_flow(eng_t* e, const fkey* key, uint64_t h, dc_pkt* p, uint16_t sport,
                      uint16_t dport, uint8_t proto, int tflags, int64_t ts, uint8_t iface,
                      uint8_t ttype, uint64_t parent, bint one_way) noexcept nogil:
    cdef int64_t idx
    cdef flow_t* f
    cdef bint flip = False
    cdef uint8_t bcast[4]
    cdef tcp_ep* eps = NULL
    if proto == PROTO_TCP:
        eps = <tcp_ep*>malloc(2 * sizeof(tcp_ep))
        if eps == NULL:
            e.oom = True
            return -1
        ep_init(&eps[0], True)
        ep_init(&eps[1], False)
    if e.ft.used >= e.ft.max_flows:
        e.st.flows_evicted += 1
        remove_flow(e, e.lru_head - 1, ER_EVICTED)
    idx = ft_add(&e.ft, key, h)
    if idx < 0:
        free(eps)
        e.oom = True
        return -1
    f = &e.ft.pool[idx]
    f.ep = eps
    f.flow_id = e.next_id
    e.next_id += 1
    f.parent_id = parent
    f.parent_cur = parent
    f.ttype = ttype
    f.iface = iface
    f.ip_version = p.ip_version
    f.proto = proto
    f.vlan = p.vlan
    f.inner_vlan = p.inner_vlan
    memcpy(f.orig_addr, p.src, 16)
    f.orig_port = sport
    memcpy(f.resp_addr, p.dst, 16)
    f.resp_port = dport
    f.start_ns = ts
    f.last_ns = ts
    f.one_way = one_way
    f.oi = 0
    f.req_len = -1
    f.rep_len = -1
    f.hist_rx = RX_START
    if proto == PROTO_TCP:
        if not tflags & TH_SYN or tflags & TH_ACK:
            if is_likely(sport, proto):
                if is_likely(dport, proto):
                    flip = (not tflags & TH_SYN) and sport < dport
                else:
                    flip = True
    elif proto == PROTO_UDP:
        flip = is_likely(sport, proto) and not is_likely(dport, proto)
    memset(bcast, 0xFF, 4)
    if flip and not (p.ip_version == 4 and memcmp(p.dst, bcast, 4) == 0):
        flow_flip_roles(f)
    lru_append(e, <uint32_t>idx)
    e.st.flows_created += 1
    if proto == PROTO_TCP:
        add_timer(e, ts + TCP_SYN_TIMEOUT, TM_EXPIRE, idx)
    elif proto == PROTO_UDP and is_dns_udp_port(f.resp_port):
        add_timer(e, ts + DNS_SESSION_TIMEOUT, TM_DNS, idx)
    add_timer(e, ts + flow_timeout(e, f), TM_INACTIVITY, idx)
    if e.active_to > 0:
        add_timer(e, ts + e.active_to, TM_ACTIVE, idx)
    return idx


cdef void eng_transport(eng_t* e, const uint8_t* b, ssz end, ssz wire_end, dc_pkt* p,
                        const pkt_ctx* at) noexcept nogil:
    cdef int64_t ts = at.ts
    cdef uint8_t iface = at.iface
    cdef uint8_t ttype = at.ttype
    cdef uint64_t parent = at.parent
    cdef int depth = at.depth
    cdef bint fragmented = at.fragmented
    cdef pkt_ctx inner
    cdef uint8_t proto = p.proto
    cdef ssz l4 = p.l4_off
    cdef ssz avail = end - l4
    cdef ssz lim, ioff
    cdef uint32_t iet = 0
    cdef uint16_t sport = 0, dport = 0
    cdef int tflags = 0, pair
    cdef bint one_way = False, counted = True, is_orig, first_reply
    cdef uint32_t payload_len = 0
    cdef fkey key
    cdef uint64_t h
    cdef int64_t idx
    cdef flow_t* f
    cdef side_t* side
    cdef int ev = 0
    cdef uint8_t itype
    cdef bint was_done = False
    lim = end if end < l4 + p.l4_len else l4 + p.l4_len
    if depth < MAX_TUNNEL_DEPTH and e.tunnels:
        if proto == 4 or proto == 41:  # IP-in-IP, 6in4, 4in6
            e.st.tunnel_packets += 1
            inner = ctx_inner(at, TT_IP, tunnel_id(e, p))
            eng_inner(e, b, l4, lim, wire_end, ETH_IPV4 if proto == 4 else ETH_IPV6, &inner)
            return
        if proto == 47:
            ioff = decode_gre(b, l4, lim, &iet)
            if ioff < 0:
                e.st.decode_errors += 1
                return
            e.st.tunnel_packets += 1
            inner = ctx_inner(at, TT_GRE, tunnel_id(e, p))
            eng_inner(e, b, ioff, lim, wire_end, iet, &inner)
            return
    if proto == PROTO_TCP:
        if p.l4_len < 20 or avail < 20:
            e.st.decode_errors += 1
            return
        sport = u16(b, l4)
        dport = u16(b, l4 + 2)
        tflags = b[l4 + 13]
    elif proto == PROTO_UDP:
        if p.l4_len < 8 or avail < 8:
            e.st.decode_errors += 1
            return
        sport = u16(b, l4)
        dport = u16(b, l4 + 2)
    elif proto == PROTO_ICMP or proto == PROTO_ICMP6:
        if p.l4_len < 8 or avail < 8:
            e.st.decode_errors += 1
            return
        itype = b[l4]
        sport = itype
        pair = icmp_pair(proto, itype)
        if pair >= 0:
            dport = <uint16_t>pair
        else:
            dport = b[l4 + 1]
            one_way = True
    # Key: direction-normalised unless one-way ICMP.
    memset(&key, 0, sizeof(fkey))
    if one_way or addr_cmp(p.src, sport, p.dst, dport, 16) <= 0:
        memcpy(key.a_addr, p.src, 16)
        memcpy(key.b_addr, p.dst, 16)
        key.a_port = sport
        key.b_port = dport
    else:
        memcpy(key.a_addr, p.dst, 16)
        memcpy(key.b_addr, p.src, 16)
        key.a_port = dport
        key.b_port = sport
    key.ip_version = p.ip_version
    key.proto = proto
    key.ttype = ttype
    key.one_way = one_way
    key.vlan = p.vlan
    key.inner_vlan = p.inner_vlan
    h = fk_hash(&key)
    idx = ft_find(&e.ft, &key, h)
    if idx >= 0 and proto == PROTO_TCP and tcp_is_reuse(&e.ft.pool[idx], b, l4, tflags):
        remove_flow(e, idx, ER_CLOSED)
        idx = -1
    if idx < 0:
        idx = new_flow(e, &key, h, p, sport, dport, proto, tflags, ts, iface, ttype, parent,
                       one_way)
        if idx < 0:
            return
        ev |= EV_NEW_FLOW
    else:
        lru_touch(e, <uint32_t>idx)
        f = &e.ft.pool[idx]
        if parent != f.parent_cur:
            # Zeek's CheckEncapsulation: a packet via another tunnel is a change; after
            # MAX_TUNNEL_CHANGES changes the connection gets X once.
            if f.tun_changes >= MAX_TUNNEL_CHANGES:
                hist_conn_check(f, 0x400, 88)  # "X"
            else:
                f.tun_changes += 1
            f.parent_cur = parent
    f = &e.ft.pool[idx]
    if fragmented:
        f.flags |= FLAG_FRAGMENTED
    is_orig = memcmp(p.src, f.orig_addr, 16) == 0 and sport == f.orig_port
    if proto == PROTO_TCP:
        was_done = tcp_is_done(f)
    if proto == PROTO_TCP:
        counted = tcp_packet(e, idx, b, end, p, &is_orig, ts, &payload_len)
    elif proto == PROTO_UDP:
        counted = udp_packet(e, f, b, end, p, is_orig, ts, &payload_len)
        # Application analyzers see the packet after the UDP bookkeeping and may flip the
        # roles; the packet is then counted with its stale direction, as in Zeek.
        if counted and is_dns_udp_port(f.resp_port) and e.dns:
            dns_analyzer(f, b, end, p, is_orig)
        elif counted and f.resp_port == UDP_NTP:
            ntp_analyzer(f, b, end, p, is_orig)
    elif proto == PROTO_ICMP or proto == PROTO_ICMP6:
        counted = icmp_packet(e, f, b, end, p, is_orig, ts, &payload_len)
    else:
        f.last_ns = ts
    if not counted:
        e.st.checksum_errors += 1
        return
    side = f_o(f) if is_orig else f_r(f)
    first_reply = (not is_orig) and side.pkts == 0
    flow_count(f, side, is_orig, <uint32_t>p.ip_len, ts, tflags if proto == PROTO_TCP else -1,
               p.src_mac)
    if e.dns and (proto == PROTO_UDP or proto == PROTO_TCP) and (sport == 53 or dport == 53):
        ev |= eng_dns(e, f, b, end, p, proto)
    if e.ps != NULL:
        if not is_orig:
            ev |= EV_REPLY
        if first_reply:
            ev |= EV_FIRST_REPLY
        if (proto == PROTO_ICMP and sport == 3) or (proto == PROTO_ICMP6 and sport == 1):
            ev |= EV_ICMP_UNREACH
        if proto == PROTO_TCP and not was_done and tcp_is_done(f):
            ev |= EV_FLOW_END
        e.ps.flow_id = f.flow_id
        e.ps.ip_len = <uint32_t>p.ip_len
        e.ps.payload_len = payload_len
        e.ps.sport = sport
        e.ps.dport = dport
        e.ps.ip_version = p.ip_version
        e.ps.proto = proto
        e.ps.tcp_flags = <uint8_t>tflags
        e.ps.events = <uint8_t>ev
        memcpy(e.ps.src, p.src, 16)
        memcpy(e.ps.dst, p.dst, 16)
    # UDP tunnels: the outer flow is counted first, then the inner packet.
    if proto == PROTO_UDP and e.tunnels and depth < MAX_TUNNEL_DEPTH:
        eng_udp_tunnel(e, b, end, wire_end, p, idx, at)
