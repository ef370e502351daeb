# The packet path and flow life cycle in C (twin of FlowEngine in sensor/_fastpath_py.py).
#
# Everything below runs without the GIL over an eng_t: the flow table, timers, fragment
# store, tunnel ids and the output queues. Function names follow the reference's methods
# (_l3 -> eng_l3, _transport -> eng_transport, ...) so the two can be read side by side.

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
    MAX_TUNNEL_DEPTH = 4
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


cdef struct tun_ent:
    uint8_t used
    uint8_t ver
    uint8_t proto  # outer IP protocol: GRE and IP-in-IP on one pair are distinct tunnels
    uint8_t lo[16]  # the address pair, ordered: either direction is the same tunnel
    uint8_t hi[16]
    uint64_t id


cdef struct eng_stats:
    uint64_t packets
    uint64_t bytes
    uint64_t decode_errors
    uint64_t unsupported_link
    uint64_t flows_created
    uint64_t flows_emitted
    uint64_t flows_evicted
    uint64_t arp
    uint64_t frag_reassembled
    uint64_t frag_dropped
    uint64_t checksum_errors
    uint64_t tunnel_packets
    uint64_t non_ip
    uint64_t no_transport


cdef struct eng_t:
    # configuration (network-time nanoseconds)
    int64_t tcp_to
    int64_t udp_to
    int64_t icmp_to
    int64_t other_to
    int64_t active_to
    int64_t frag_to
    bint validate
    bint tunnels
    bint dns
    # state
    ftable ft
    uint32_t lru_head  # pool index + 1 of the least recently active flow
    uint32_t lru_tail
    theap timers
    fragstore frags
    int64_t now
    uint64_t next_id
    tun_ent* tun
    uint32_t tun_count
    uint8_t* scratch[MAX_TUNNEL_DEPTH + 1]
    # outputs
    nw_flow_rec* outf
    size_t outf_start
    size_t outf_n
    size_t outf_cap
    nw_arp_rec* outa
    size_t outa_start
    size_t outa_n
    size_t outa_cap
    nw_pktsum_rec* ps  # row of the packet being decoded, NULL when not summarised
    dns_msg dnsm
    bint oom  # an allocation failed; reported at the Python boundary
    eng_stats st


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


cdef inline int64_t flow_timeout(eng_t* e, flow_t* f) noexcept nogil:
    if f.proto == PROTO_TCP:
        return e.tcp_to
    if f.proto == PROTO_UDP:
        return e.udp_to
    if f.proto == PROTO_ICMP or f.proto == PROTO_ICMP6:
        return e.icmp_to
    return e.other_to


cdef void compact_timers(eng_t* e) noexcept nogil:
    """Drop the timers of ended flows (normally skipped lazily when due), so timer memory
    follows the number of live flows rather than the flow rate times the longest timeout.
    Pop order is (due, seq), a total order, so compaction cannot change what fires when."""
    cdef theap* t = &e.timers
    cdef size_t i, k = 0
    cdef flow_t* f
    for i in range(t.n):
        f = &e.ft.pool[t.h[i].idx]
        if f.in_use and f.flow_id == t.h[i].flow_id:
            t.h[k] = t.h[i]
            k += 1
    t.n = k
    th_heapify(t)


cdef inline void add_timer(eng_t* e, int64_t due, uint32_t kind, int64_t idx) noexcept nogil:
    if th_push(&e.timers, due, kind, <uint32_t>idx, e.ft.pool[idx].flow_id) != 0:
        e.oom = True
    if e.timers.n > 8 * <size_t>e.ft.used + 4096:
        compact_timers(e)


# --- LRU order (the reference's OrderedDict order) ----------------------------------------
cdef inline void lru_append(eng_t* e, uint32_t idx) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    f.lru_prev = e.lru_tail
    f.lru_next = 0
    if e.lru_tail:
        e.ft.pool[e.lru_tail - 1].lru_next = idx + 1
    else:
        e.lru_head = idx + 1
    e.lru_tail = idx + 1


cdef inline void lru_unlink(eng_t* e, uint32_t idx) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    if f.lru_prev:
        e.ft.pool[f.lru_prev - 1].lru_next = f.lru_next
    else:
        e.lru_head = f.lru_next
    if f.lru_next:
        e.ft.pool[f.lru_next - 1].lru_prev = f.lru_prev
    else:
        e.lru_tail = f.lru_prev
    f.lru_prev = 0
    f.lru_next = 0


cdef inline void lru_touch(eng_t* e, uint32_t idx) noexcept nogil:
    if e.lru_tail != idx + 1:
        lru_unlink(e, idx)
        lru_append(e, idx)


# --- records ------------------------------------------------------------------------------
cdef uint8_t conn_state(flow_t* f) noexcept nogil:
    cdef tcp_ep* eo
    cdef tcp_ep* er
    cdef int os_, rs
    cdef bint o_inact, r_inact
    if f.proto == PROTO_TCP:
        eo = f_eo(f)
        er = f_er(f)
        os_ = eo.state
        rs = er.state
        o_inact = os_ == EP_INACTIVE or os_ == EP_PARTIAL
        r_inact = rs == EP_INACTIVE or rs == EP_PARTIAL
        if rs == EP_RESET:
            if os_ == EP_SYN_SENT or os_ == EP_SYN_ACK_SENT or (
                    os_ == EP_RESET and ep_size(eo, er) == 0 and ep_size(er, eo) == 0):
                return CS_REJ
            if o_inact:
                return CS_RSTRH
            return CS_RSTR
        if os_ == EP_RESET:
            if r_inact:
                if f.hist_rx == RX_MATCH:
                    return CS_RSTOS0
                return CS_OTH
            return CS_RSTO
        if rs == EP_CLOSED and os_ == EP_CLOSED:
            return CS_SF
        if os_ == EP_CLOSED:
            return CS_SH if r_inact else CS_S2
        if rs == EP_CLOSED:
            return CS_SHR if o_inact else CS_S3
        if os_ == EP_SYN_SENT and rs == EP_INACTIVE:
            return CS_S0
        if os_ == EP_ESTABLISHED and rs == EP_ESTABLISHED:
            return CS_S1
        return CS_OTH
    if f.proto == PROTO_UDP:
        if f.req_len >= 0:
            return CS_SF if f.rep_len >= 0 else CS_S0
        return CS_SHR if f.rep_len >= 0 else CS_OTH
    return CS_OTH


cdef void fill_side(nw_flow_rec* r, side_t* s, bint orig) noexcept nogil:
    cdef double mean, std, imean, istd
    mean_std_i(s.pkts, s.len_sum, s.len_sq, &mean, &std)
    mean_std_f(s.iat_n, s.iat_sum, s.iat_sq, &imean, &istd)
    if orig:
        r.orig_len_mean = mean
        r.orig_len_std = std
        r.orig_len_min = s.len_min
        r.orig_len_max = s.len_max
        r.orig_iat_min = s.iat_min
        r.orig_iat_max = s.iat_max
        r.orig_iat_mean = imean
        r.orig_iat_std = istd
        memcpy(r.orig_flag_counts, s.flags, sizeof(s.flags))
        memcpy(r.orig_mac, s.mac, 6)
    else:
        r.resp_len_mean = mean
        r.resp_len_std = std
        r.resp_len_min = s.len_min
        r.resp_len_max = s.len_max
        r.resp_iat_min = s.iat_min
        r.resp_iat_max = s.iat_max
        r.resp_iat_mean = imean
        r.resp_iat_std = istd
        memcpy(r.resp_flag_counts, s.flags, sizeof(s.flags))
        memcpy(r.resp_mac, s.mac, 6)


cdef nw_flow_rec* outf_slot(eng_t* e) noexcept nogil:
    cdef nw_flow_rec* nq
    cdef size_t ncap
    if e.outf_n == e.outf_cap:
        if e.outf_start:
            memmove(e.outf, e.outf + e.outf_start, (e.outf_n - e.outf_start) * sizeof(nw_flow_rec))
            e.outf_n -= e.outf_start
            e.outf_start = 0
        if e.outf_n == e.outf_cap:
            ncap = e.outf_cap * 2 + 256
            nq = <nw_flow_rec*>realloc(e.outf, ncap * sizeof(nw_flow_rec))
            if nq == NULL:
                e.oom = True
                return NULL
            e.outf = nq
            e.outf_cap = ncap
    e.outf_n += 1
    return &e.outf[e.outf_n - 1]


cdef void emit(eng_t* e, flow_t* f, uint8_t reason, bint interim) noexcept nogil:
    cdef nw_flow_rec* r = outf_slot(e)
    cdef side_t* o
    cdef side_t* s
    cdef int64_t ob, rb
    if r == NULL:
        return
    memset(r, 0, sizeof(nw_flow_rec))
    o = f_o(f)
    s = f_r(f)
    r.flow_id = f.flow_id
    r.parent_id = f.parent_id
    r.ts_first_ns = f.start_ns
    r.ts_last_ns = f.last_ns
    if f.proto == PROTO_TCP:
        r.orig_bytes = ep_size(f_eo(f), f_er(f))
        r.resp_bytes = ep_size(f_er(f), f_eo(f))
        r.missed_bytes = <uint64_t>(f_eo(f).missed + f_er(f).missed)
    else:
        ob = f.req_len if f.req_len > 0 else 0
        rb = f.rep_len if f.rep_len > 0 else 0
        r.orig_bytes = <uint64_t>ob
        r.resp_bytes = <uint64_t>rb
    r.orig_pkts = o.pkts
    r.resp_pkts = s.pkts
    r.orig_ip_bytes = o.ip_bytes
    r.resp_ip_bytes = s.ip_bytes
    fill_side(r, o, True)
    fill_side(r, s, False)
    r.dns_queries = f.dns_queries
    r.dns_responses = f.dns_responses
    r.dns_answers = f.dns_answers
    r.dns_distinct_names = f.dns_nnames
    r.dns_nxdomain = f.dns_nxdomain
    r.dns_qtype_mask = f.dns_qtype_mask
    r.dns_label_entropy_max = <float>f.dns_entropy
    r.dns_rcode_mask = <uint16_t>f.dns_rcode_mask
    r.dns_longest_label = <uint16_t>f.dns_longest
    r.dns_max_name_len = <uint16_t>f.dns_max_name
    memcpy(r.dns_qname, f.dns_qname, f.dns_qname_len)
    r.orig_port = f.orig_port
    r.resp_port = f.resp_port
    r.vlan = f.vlan
    r.inner_vlan = f.inner_vlan
    memcpy(r.first_sizes, f.first_sizes, sizeof(f.first_sizes))
    r.first_dirs = f.first_dirs
    r.n_first = f.n_first
    r.ip_version = f.ip_version
    r.proto = f.proto
    r.conn_state = conn_state(f)
    r.tunnel_type = f.ttype
    r.end_reason = reason
    r.flags = f.flags | (FLAG_INTERIM if interim else 0)
    r.iface = f.iface
    memcpy(r.orig_addr, f.orig_addr, 16)
    memcpy(r.resp_addr, f.resp_addr, 16)
    memcpy(r.history, f.hist, f.hist_len if f.hist_len < HIST_CAP else HIST_CAP)
    if not interim:
        e.st.flows_emitted += 1


cdef void remove_flow(eng_t* e, int64_t idx, uint8_t reason) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    emit(e, f, reason, False)
    lru_unlink(e, <uint32_t>idx)
    flow_release(f)
    ft_remove(&e.ft, <uint32_t>idx)


# --- timers -------------------------------------------------------------------------------
cdef void fire(eng_t* e, uint32_t kind, int64_t idx, int64_t t) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    cdef tcp_ep* eo = f_eo(f)
    cdef tcp_ep* er = f_er(f)
    cdef int64_t to
    if kind == TM_INACTIVITY:
        to = flow_timeout(e, f)
        if f.last_ns + to <= t:
            remove_flow(e, idx, ER_IDLE)
        else:
            add_timer(e, f.last_ns + to, TM_INACTIVITY, idx)
    elif kind == TM_ATTEMPT:
        if (eo.state == EP_SYN_SENT or eo.state == EP_SYN_ACK_SENT) and er.state == EP_INACTIVE:
            remove_flow(e, idx, ER_IDLE)
    elif kind == TM_EXPIRE:
        if f.last_ns + TCP_CONNECTION_LINGER < t:
            if eo.did_close or er.did_close:
                if ((eo.did_close and er.did_close) or eo.state == EP_RESET
                        or er.state == EP_RESET or eo.state == EP_INACTIVE
                        or er.state == EP_INACTIVE):
                    remove_flow(e, idx, ER_CLOSED)
                    return
            if er.state == EP_INACTIVE and eo.state == EP_INACTIVE:
                remove_flow(e, idx, ER_IDLE)
                return
        add_timer(e, t + TCP_SESSION_TIMER, TM_EXPIRE, idx)
    elif kind == TM_DELETE or kind == TM_RESET:
        remove_flow(e, idx, ER_CLOSED)
    elif kind == TM_DNS:
        if t - f.last_ns >= DNS_SESSION_TIMEOUT - NS:
            remove_flow(e, idx, ER_IDLE)
        else:
            add_timer(e, t + DNS_SESSION_TIMEOUT, TM_DNS, idx)
    elif kind == TM_ACTIVE:
        emit(e, f, ER_ACTIVE, True)
        add_timer(e, t + e.active_to, TM_ACTIVE, idx)


cdef void run_timers(eng_t* e, int64_t t) noexcept nogil:
    cdef timer_t tm
    cdef flow_t* f
    while e.timers.n and e.timers.h[0].due <= t:
        th_pop(&e.timers, &tm)
        f = &e.ft.pool[tm.idx]
        if not f.in_use or f.flow_id != tm.flow_id:
            continue  # the flow ended (its slot may hold a newer flow)
        fire(e, tm.kind, tm.idx, t)


cdef void expire_frags(eng_t* e, int64_t now) noexcept nogil:
    cdef frag_t* fb
    while e.frags.head:
        fb = &e.frags.pool[e.frags.head - 1]
        if fb.first_ns + e.frag_to > now:
            break
        fs_unlink(&e.frags, e.frags.head - 1)
        e.st.frag_dropped += 1


# --- packet path --------------------------------------------------------------------------
cdef void eng_packet(eng_t* e, const uint8_t* b, ssz end, ssz wire_end, uint32_t lt,
                     int64_t ts, uint8_t iface) noexcept nogil:
    cdef dc_pkt p
    cdef ssz l3
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
        eng_wifi(e, b, l3, end, wire_end, &p, ts, iface, 0, 0, 0)
        return
    eng_l3(e, b, l3, end, wire_end, &p, ts, iface, 0, 0, 0)


cdef void eng_wifi(eng_t* e, const uint8_t* b, ssz off, ssz end, ssz wire_end, dc_pkt* p,
                   int64_t ts, uint8_t iface, uint8_t ttype, uint64_t parent,
                   int depth) noexcept nogil:
    """802.11 data frame: one LLC/SNAP packet, or each subframe of an A-MSDU (padded to
    len % 4, as Zeek's analyzer does)."""
    cdef ssz pay, l3, cur, n, sub_end, pad
    cdef dc_pkt q
    pay = decode_ieee80211(b, off, end, p)
    if pay == NOT_IP:
        e.st.non_ip += 1
        return
    if pay < 0:
        e.st.decode_errors += 1
        return
    if not p.amsdu:
        l3 = decode_80211_payload(b, pay, end, p)
        if l3 == NOT_IP:
            e.st.non_ip += 1
        elif l3 < 0:
            e.st.decode_errors += 1
        else:
            eng_l3(e, b, l3, end, wire_end, p, ts, iface, ttype, parent, depth)
        return
    cur = pay
    while cur < end:
        if end - cur < 14:
            e.st.decode_errors += 1
            return
        n = u16(b, cur + 12)
        if end - cur < n + 14:
            e.st.decode_errors += 1
            return
        dc_reset_l2(&q)
        dc_reset_l3(&q)
        memcpy(q.src_mac, b + cur + 6, 6)
        memcpy(q.dst_mac, b + cur, 6)
        sub_end = cur + 14 + n
        l3 = decode_80211_payload(b, cur + 14, sub_end, &q)
        if l3 < 0:
            e.st.decode_errors += 1
            return
        eng_l3(e, b, l3, sub_end, sub_end, &q, ts, iface, ttype, parent, depth)
        cur = sub_end
        pad = n % 4
        if end - cur >= pad:
            cur += pad


cdef void eng_l3(eng_t* e, const uint8_t* b, ssz off, ssz end, ssz wire_end, dc_pkt* p,
                 int64_t ts, uint8_t iface, uint8_t ttype, uint64_t parent,
                 int depth) noexcept nogil:
    cdef uint32_t et = p.ethertype
    cdef ssz l4, glen
    cdef bint fragmented = False
    cdef const uint8_t* g
    if et == ETH_ARP:
        eng_arp(e, b, off, end, p, ts, iface)
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
        g = eng_reassemble(e, b, p, ts, end, depth, &glen)
        if g == NULL:
            return
        b = g
        end = glen
        wire_end = glen
        fragmented = True
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
    eng_transport(e, b, end, wire_end, p, ts, iface, ttype, parent, depth, fragmented)


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


cdef const uint8_t* eng_reassemble(eng_t* e, const uint8_t* b, dc_pkt* p, int64_t ts,
                                   ssz end, int depth, ssz* out_len) noexcept nogil:
    """Add a fragment; the reassembled datagram (in a per-depth scratch buffer) or NULL."""
    cdef int64_t i
    cdef frag_t* fb
    cdef ssz start, stop, dlen, hlen, tot, plen
    cdef uint8_t* nd
    cdef uint8_t* out
    expire_frags(e, ts)
    i = fs_find(&e.frags, p)
    if i < 0:
        if e.frags.count >= e.frags.cap:
            fs_unlink(&e.frags, e.frags.head - 1)
            e.st.frag_dropped += 1
        i = fs_add(&e.frags, p, ts)
        if i < 0:
            e.oom = True
            return NULL
    fb = &e.frags.pool[i]
    start = p.frag_off
    dlen = (p.l4_off + p.l4_len if p.l4_off + p.l4_len < end else end) - p.l4_off
    if dlen < 0:
        dlen = 0
    stop = start + dlen
    if stop > MAX_FRAG_BYTES:
        fs_unlink(&e.frags, <uint32_t>i)
        e.st.frag_dropped += 1
        return NULL
    if start == 0:
        hlen = p.l4_off - p.ip_off
        free(fb.hdr)
        fb.hdr = <uint8_t*>malloc(hlen if hlen > 0 else 1)
        if fb.hdr == NULL:
            e.oom = True
            fb.hdr_len = 0
            return NULL
        memcpy(fb.hdr, b + p.ip_off, hlen)
        fb.hdr_len = hlen
    if not p.frag_more:
        fb.total = stop
    if fb.data == NULL:
        # Sized once at the cap (zero-filled, as the reference's gaps): no realloc churn.
        fb.data = <uint8_t*>calloc(MAX_FRAG_BYTES, 1)
        if fb.data == NULL:
            e.oom = True
            return NULL
    if fb.data_len < stop:
        fb.data_len = stop
    memcpy(fb.data + start, b + p.l4_off, dlen)
    if not frag_add_range(fb, start, stop):
        e.oom = True
        return NULL
    if fb.total < 0 or fb.hdr_len == 0:
        return NULL
    if not frag_complete(fb):
        return NULL
    # Complete: build header + payload in this depth's scratch buffer.
    if e.scratch[depth] == NULL:
        e.scratch[depth] = <uint8_t*>malloc(2 * MAX_FRAG_BYTES)
        if e.scratch[depth] == NULL:
            e.oom = True
            fs_unlink(&e.frags, <uint32_t>i)
            return NULL
    out = e.scratch[depth]
    e.st.frag_reassembled += 1
    hlen = fb.hdr_len
    if hlen > MAX_FRAG_BYTES:
        fs_unlink(&e.frags, <uint32_t>i)
        return NULL
    memcpy(out, fb.hdr, hlen)
    if p.ip_version == 4:
        tot = hlen + fb.total
        out[2] = (tot >> 8) & 0xFF
        out[3] = tot & 0xFF
        out[6] = 0
        out[7] = 0
    else:
        hlen = ipv6_strip_frag(out, hlen, p.proto)
        plen = hlen - 40 + fb.total
        out[4] = (plen >> 8) & 0xFF
        out[5] = plen & 0xFF
    if hlen + fb.total > MAX_FRAG_BYTES:
        fs_unlink(&e.frags, <uint32_t>i)
        return NULL
    memcpy(out + hlen, fb.data, fb.total)
    fs_unlink(&e.frags, <uint32_t>i)
    out_len[0] = hlen + fb.total
    return out


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


cdef void eng_inner(eng_t* e, const uint8_t* b, ssz off, ssz end, ssz wire_end, uint32_t etype,
                    int64_t ts, uint8_t iface, uint8_t ttype, uint64_t parent,
                    int depth) noexcept nogil:
    cdef dc_pkt q
    dc_reset_l2(&q)
    dc_reset_l3(&q)
    if etype == ETH_80211:
        eng_wifi(e, b, off, end, wire_end, &q, ts, iface, ttype, parent, depth)
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
    eng_l3(e, b, off, end, wire_end, &q, ts, iface, ttype, parent, depth)


cdef void eng_udp_tunnel(eng_t* e, const uint8_t* b, ssz end, ssz wire_end, dc_pkt* p,
                         int64_t idx, int64_t ts, uint8_t iface, int depth) noexcept nogil:
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
    eng_inner(e, b, ioff, stop, wire_end, et, ts, iface, ttype, flow_id, depth + 1)
    e.ps = saved


# --- DNS --------------------------------------------------------------------------------------
cdef inline uint64_t name_hash(const uint8_t* s, int n) noexcept nogil:
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef int i
    for i in range(n):
        h = (h ^ s[i]) * 0x100000001B3ULL
    return (h ^ <uint64_t>n) * 0x9E3779B97F4A7C15ULL


cdef inline int qtype_bit(uint32_t q) noexcept nogil:
    if q == 1: return 0
    if q == 2: return 1
    if q == 5: return 2
    if q == 6: return 3
    if q == 10: return 4
    if q == 12: return 5
    if q == 15: return 6
    if q == 16: return 7
    if q == 28: return 8
    if q == 33: return 9
    if q == 35: return 10
    if q == 43: return 11
    if q == 46: return 12
    if q == 47: return 13
    if q == 48: return 14
    if q == 255: return 15
    if q == 64: return 16
    if q == 65: return 17
    if q == 99: return 18
    if q == 252: return 19
    return 31


cdef int eng_dns(eng_t* e, flow_t* f, const uint8_t* b, ssz end, dc_pkt* p,
                 uint8_t proto) noexcept nogil:
    cdef ssz l4 = p.l4_off, start, stop
    cdef dns_msg* m = &e.dnsm
    cdef int ev
    cdef uint64_t h
    cdef uint32_t k
    cdef bint known
    if proto == PROTO_UDP:
        start = l4 + 8
    else:
        start = l4 + (b[l4 + 12] >> 4) * 4 + 2
    stop = end if end < p.l4_off + p.l4_len else p.l4_off + p.l4_len
    if start >= stop or not parse_dns(b, start, stop, m):
        return 0
    if m.is_response:
        f.dns_responses += 1
        f.dns_answers += m.ancount
        f.dns_rcode_mask |= 1u << m.rcode
        if m.rcode == 3:
            f.dns_nxdomain += 1
        ev = EV_DNS_RESPONSE
    else:
        f.dns_queries += 1
        ev = EV_DNS_QUERY
    if m.qname_len or m.qtype:
        f.dns_qtype_mask |= 1u << qtype_bit(m.qtype)
        if m.qname_len:
            if not f.dns_qname_len:
                f.dns_qname_len = m.qname_len if m.qname_len < 64 else 64
                memcpy(f.dns_qname, m.qname, f.dns_qname_len)
            h = name_hash(m.qname, m.qname_len)
            known = False
            for k in range(f.dns_nnames):
                if f.dns_names[k] == h:
                    known = True
                    break
            if not known and f.dns_nnames < DNS_MAX_TRACKED_NAMES:
                if f.dns_names == NULL:
                    f.dns_names = <uint64_t*>malloc(DNS_MAX_TRACKED_NAMES * sizeof(uint64_t))
                if f.dns_names != NULL:
                    f.dns_names[f.dns_nnames] = h
                    f.dns_nnames += 1
                else:
                    e.oom = True
            if <uint32_t>m.qname_len > f.dns_max_name:
                f.dns_max_name = m.qname_len
            if <uint32_t>m.longest_label > f.dns_longest:
                f.dns_longest = m.longest_label
                f.dns_entropy = m.label_entropy
    return ev


# --- flows ------------------------------------------------------------------------------------
cdef int64_t new_flow(eng_t* e, const fkey* key, uint64_t h, dc_pkt* p, uint16_t sport,
                      uint16_t dport, uint8_t proto, int tflags, int64_t ts, uint8_t iface,
                      uint8_t ttype, uint64_t parent, bint one_way) noexcept nogil:
    cdef int64_t idx
    cdef flow_t* f
    cdef bint flip = False
    cdef uint8_t bcast[4]
    if e.ft.used >= e.ft.max_flows:
        e.st.flows_evicted += 1
        remove_flow(e, e.lru_head - 1, ER_EVICTED)
    idx = ft_add(&e.ft, key, h)
    if idx < 0:
        e.oom = True
        return -1
    f = &e.ft.pool[idx]
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
    ep_init(&f.ep[0], True)
    ep_init(&f.ep[1], False)
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


cdef bint udp_packet(eng_t* e, flow_t* f, const uint8_t* b, ssz end, dc_pkt* p, bint is_orig,
                     int64_t ts, uint32_t* payload_len) noexcept nogil:
    cdef ssz l4 = p.l4_off
    cdef int64_t ulen
    if e.validate and end - l4 >= p.l4_len:
        if (p.ip_version == 6 or u16(b, l4 + 6) != 0) and not l4_checksum_ok(b, p, l4, p.l4_len):
            hist_check(f, is_orig, 0x80, 67)  # "C"
            payload_len[0] = 0
            return False
    ulen = <int64_t>u16(b, l4 + 4) - 8
    f.last_ns = ts
    hist_check(f, is_orig, 0x1, 68)  # "D"
    flow_update_length(f, is_orig, ulen)
    payload_len[0] = <uint32_t>(ulen if ulen > 0 else 0)
    return True


cdef bint icmp_packet(eng_t* e, flow_t* f, const uint8_t* b, ssz end, dc_pkt* p, bint is_orig,
                      int64_t ts, uint32_t* payload_len) noexcept nogil:
    cdef ssz l4 = p.l4_off
    cdef int64_t ln
    if e.validate and end - l4 >= p.l4_len and not l4_checksum_ok(b, p, l4, p.l4_len):
        payload_len[0] = 0
        return False
    f.last_ns = ts
    ln = p.l4_len - 8
    flow_update_length(f, is_orig, ln)
    payload_len[0] = <uint32_t>ln
    return True


cdef inline bint is_multicast(flow_t* f, const uint8_t* a) noexcept nogil:
    if f.ip_version == 4:
        return a[0] >> 4 == 0xE
    return a[0] == 0xFF


cdef void dns_analyzer(flow_t* f, const uint8_t* b, ssz end, dc_pkt* p,
                       bint is_orig) noexcept nogil:
    """Zeek's DNS analyzer side effects: a first message that is a response sent by the
    originator flips the roles (not towards a multicast responder); an opcode other than
    query/notify/update (NetBIOS port excepted) adds "X"."""
    cdef ssz start = p.l4_off + 8
    cdef ssz stop = end if end < p.l4_off + p.l4_len else p.l4_off + p.l4_len
    cdef uint32_t flags, opcode
    if stop - start < 12:
        return
    flags = u16(b, start + 2)
    opcode = (flags >> 11) & 0xF
    if not (opcode == 0 or opcode == 4 or opcode == 5) and f.resp_port != 137:
        hist_conn_check(f, 0x400, 88)  # "X"
        return
    if f.dns_first_done:
        return
    f.dns_first_done = True
    if flags & 0x8000 and is_orig and not is_multicast(f, f.resp_addr):
        flow_flip_roles(f)


cdef void ntp_analyzer(flow_t* f, const uint8_t* b, ssz end, dc_pkt* p,
                       bint is_orig) noexcept nogil:
    """Zeek's NTP analyzer flips once: server mode from the originator or client mode from
    the responder."""
    cdef ssz start = p.l4_off + 8
    cdef ssz stop = end if end < p.l4_off + p.l4_len else p.l4_off + p.l4_len
    cdef uint8_t mode
    if f.ntp_flipped or stop - start < 48:
        return
    mode = b[start] & 0x7
    if (mode == 4 and is_orig) or (mode == 3 and not is_orig):
        flow_flip_roles(f)
        f.ntp_flipped = True


cdef void eng_transport(eng_t* e, const uint8_t* b, ssz end, ssz wire_end, dc_pkt* p,
                        int64_t ts, uint8_t iface, uint8_t ttype, uint64_t parent, int depth,
                        bint fragmented) noexcept nogil:
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
            eng_inner(e, b, l4, lim, wire_end, ETH_IPV4 if proto == 4 else ETH_IPV6, ts, iface,
                      TT_IP, tunnel_id(e, p), depth + 1)
            return
        if proto == 47:
            ioff = decode_gre(b, l4, lim, &iet)
            if ioff < 0:
                e.st.decode_errors += 1
                return
            e.st.tunnel_packets += 1
            eng_inner(e, b, ioff, lim, wire_end, iet, ts, iface, TT_GRE, tunnel_id(e, p),
                      depth + 1)
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
        eng_udp_tunnel(e, b, end, wire_end, p, idx, ts, iface, depth)


# --- TCP ----------------------------------------------------------------------------------------
cdef inline bint tcp_is_done(flow_t* f) noexcept nogil:
    """Both sides closed, or a reset: the packet that makes this true ends the flow."""
    cdef tcp_ep* eo = f_eo(f)
    cdef tcp_ep* er = f_er(f)
    return (eo.did_close and er.did_close) or eo.state == EP_RESET or er.state == EP_RESET


cdef bint tcp_is_reuse(flow_t* f, const uint8_t* b, ssz l4, int tflags) noexcept nogil:
    cdef tcp_ep* conn_orig
    cdef int64_t seq
    if b[l4 + 12] >> 4 < 5:
        return False
    if not tflags & TH_SYN:
        return False
    conn_orig = f_eo(f)
    if tflags & TH_ACK:
        if f_eo(f).state != EP_INACTIVE:
            return False
        conn_orig = f_er(f)
    # Zeek's IsClosed(): either endpoint has closed (FIN or RST reported).
    if not (f_eo(f).did_close or f_er(f).did_close):
        seq = u32(b, l4 + 4)
        if seq == ep_start32(conn_orig):
            return False
        if (not tflags & TH_ACK and conn_orig.state == EP_SYN_ACK_SENT
                and f_er(f).state == EP_INACTIVE and seq == ep_start32(f_er(f))):
            return False
    return True


cdef bint tcp_packet(eng_t* e, int64_t idx, const uint8_t* b, ssz end, dc_pkt* p,
                     bint* is_orig, int64_t ts, uint32_t* payload_len) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    cdef ssz l4 = p.l4_off
    cdef ssz hlen = (b[l4 + 12] >> 4) * 4
    cdef ssz length
    cdef tcp_ep* ep
    cdef int flags
    if hlen < 20 or hlen > p.l4_len or l4 + hlen > end:
        payload_len[0] = 0
        return False
    length = p.l4_len - hlen
    ep = f_eo(f) if is_orig[0] else f_er(f)
    if e.validate and end - l4 >= p.l4_len and not l4_checksum_ok(b, p, l4, p.l4_len):
        hist_scaled(f, ep.is_orig, 67, &ep.chk_cnt, &ep.chk_thresh)  # "C"
        f.flags |= FLAG_BAD_CHECKSUM
        payload_len[0] = 0
        return False
    flags = b[l4 + 13]
    tcp_process(e, idx, ep, flags, u32(b, l4 + 4), u32(b, l4 + 8), u16(b, l4 + 14), length,
                end - l4 - hlen, ts)
    # The connection may have flipped under us (SYN-ACK start): recompute direction.
    is_orig[0] = ep == f_eo(f)
    payload_len[0] = <uint32_t>length
    return True


cdef void tcp_update_history(flow_t* f, tcp_ep* ep, int flags, int64_t rel_seq,
                             int64_t length) noexcept nogil:
    cdef int syn = flags & TH_SYN, fin = flags & TH_FIN, rst = flags & TH_RST
    cdef int bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    cdef char code
    if bits > 1:
        if fin and rst:
            flow_tcp_check(f, ep, HIST_FIN_RST, 73)  # "I"
        else:
            flow_tcp_check(f, ep, HIST_MULTI, 81)  # "Q"
    elif bits == 1:
        if syn:
            code = 72 if flags & TH_ACK else 83  # "H" / "S"
            if flow_tcp_check(f, ep, HIST_SYN, code) and rel_seq != ep.hist_last_syn:
                hist_add(f, ep.is_orig, code)
            ep.hist_last_syn = rel_seq
        if fin:
            if flow_tcp_check(f, ep, HIST_FIN, 70) and rel_seq + length != ep.hist_last_fin:
                hist_add(f, ep.is_orig, 70)
            ep.hist_last_fin = rel_seq + length
        if rst:
            if flow_tcp_check(f, ep, HIST_RST, 82) and rel_seq != ep.hist_last_rst:
                hist_add(f, ep.is_orig, 82)
            ep.hist_last_rst = rel_seq
    else:
        if length:
            flow_tcp_check(f, ep, HIST_DATA, 68)  # "D"
        elif flags & TH_ACK:
            flow_tcp_check(f, ep, HIST_ACK, 65)  # "A"


cdef bint tcp_state_machine(eng_t* e, int64_t idx, tcp_ep* ep, tcp_ep* peer, int flags,
                            int64_t base_seq, int64_t length, int64_t ts) noexcept nogil:
    """Endpoint transitions for one segment; returns do_close."""
    cdef flow_t* f = &e.ft.pool[idx]
    cdef int syn = flags & TH_SYN, fin = flags & TH_FIN, rst = flags & TH_RST
    cdef int ack = flags & TH_ACK
    cdef bint do_close = False
    cdef int st = ep.state
    cdef bint is_orig = ep.is_orig
    if st == EP_INACTIVE:
        if syn:
            if is_orig:
                ep_set_state(ep, EP_SYN_ACK_SENT if ack else EP_SYN_SENT)
                add_timer(e, ts + TCP_ATTEMPT_DELAY, TM_ATTEMPT, idx)
            else:
                if not ack and peer.state == EP_SYN_ACK_SENT and base_seq == ep_start32(ep):
                    # SYN/SYN-ACK reversal: flip and establish.
                    flow_flip_roles(f)
                    f.is_partial = False
                    ep_set_state(peer, EP_ESTABLISHED)
                    f.first_packet_seen |= 1
                if peer.state == EP_SYN_SENT:
                    ep_set_state(peer, EP_ESTABLISHED)
                ep_set_state(ep, EP_ESTABLISHED)
        if fin:
            ep_set_state(ep, EP_CLOSED)
            do_close = True
        if rst:
            ep_set_state(ep, EP_RESET)
            do_close = True
        if ep.state == EP_INACTIVE:
            if not is_orig and length == 0 and f_eo(f).state == EP_SYN_SENT:
                pass
            elif ack and peer.state == EP_ESTABLISHED:
                ep_set_state(ep, EP_ESTABLISHED)
                f.is_partial = False
                f.first_packet_seen |= 1 if ep.is_orig else 2
            else:
                ep_set_state(ep, EP_PARTIAL)
    elif st == EP_SYN_SENT or st == EP_SYN_ACK_SENT:
        if fin:
            ep_set_state(ep, EP_CLOSED)
            do_close = True
        if rst:
            ep_set_state(ep, EP_RESET)
            do_close = True
    elif st == EP_ESTABLISHED or st == EP_PARTIAL:
        if syn and st == EP_PARTIAL and peer.state == EP_INACTIVE and not ack:
            ep_set_state(ep, EP_SYN_SENT)
        if fin and not rst:
            ep_set_state(ep, EP_CLOSED)
            if peer.state == EP_RESET and peer.prev_state == EP_CLOSED:
                ep_set_state(peer, EP_CLOSED)
            do_close = True
        if rst:
            ep_set_state(ep, EP_RESET)
            do_close = True
    elif st == EP_CLOSED:
        if rst and peer.state != EP_CLOSED:
            ep_set_state(ep, EP_RESET)
            if not ep.did_close:
                do_close = True
            add_timer(e, ts + TCP_RESET_DELAY, TM_RESET, idx)
    return do_close


cdef void tcp_connection_closed(eng_t* e, int64_t idx, tcp_ep* ep, tcp_ep* peer) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    cdef bint complete
    if data_pending(ep, peer):
        # Zeek defers the close until the data is delivered (or given up as a gap).
        f.close_deferred = True
        return
    f.close_deferred = False
    if ep.did_close:
        return
    ep.did_close = True
    complete = ep.state == EP_RESET or peer.did_close or peer.state == EP_INACTIVE
    if complete:
        add_timer(e, f.last_ns + TCP_CLOSE_DELAY, TM_DELETE, idx)
    elif ep.prev_state != EP_INACTIVE:
        add_timer(e, f.last_ns + TCP_SESSION_TIMER, TM_EXPIRE, idx)


cdef void tcp_check_eof(eng_t* e, int64_t idx, tcp_ep* ep) noexcept nogil:
    """Zeek's CheckEOF/EndpointEOF: once a closed or reset side has no data pending, a close
    that was deferred because of pending data is carried out (for this side)."""
    cdef flow_t* f = &e.ft.pool[idx]
    cdef tcp_ep* peer
    if ep.did_eof or not (ep.fin_cnt > 0 or ep.state == EP_CLOSED or ep.state == EP_RESET):
        return
    peer = &f.ep[1] if ep == &f.ep[0] else &f.ep[0]
    if data_pending(ep, peer):
        return
    ep.did_eof = True
    if f.close_deferred:
        tcp_connection_closed(e, idx, ep, peer)
        f.close_deferred = False


cdef void tcp_process(eng_t* e, int64_t idx, tcp_ep* ep, int flags, int64_t base_seq,
                      int64_t ack_seq, uint32_t window, int64_t length, int64_t captured,
                      int64_t ts) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    cdef tcp_ep* peer = &f.ep[1] if ep == &f.ep[0] else &f.ep[0]
    cdef int syn = flags & TH_SYN, fin = flags & TH_FIN, rst = flags & TH_RST
    cdef int ack = flags & TH_ACK
    cdef int64_t seg_len, seq_end, rel_seq, rel_ack, delta_last, rel_data_seq
    cdef bint underflow, ack_under, do_close
    # SetPartialStatus
    if ep.is_orig:
        if not f.first_packet_seen & 1:
            f.is_partial = (not syn) or ack != 0
    else:
        if not f.first_packet_seen & 2 and not f.is_partial:
            f.is_partial = not syn
    seg_len = length + (1 if syn else 0) + (1 if fin else 0)
    if rst:
        seg_len -= length
    seq_end = (base_seq + seg_len) & 0xFFFFFFFFLL
    init_endpoint(ep, flags, base_seq, seq_end)
    rel_seq = get_relative_seq(ep, base_seq, ep.last_seq, ep.seq_wraps, &underflow)
    tcp_update_history(f, ep, flags, rel_seq, length)
    # Zero-window accounting (W/w): not on RST, not after the peer's FIN, not when reset.
    if window == 0 and not rst and peer.state != EP_CLOSED and ep.state != EP_RESET:
        hist_scaled(f, ep.is_orig, 87, &ep.win0_cnt, &ep.win0_thresh)  # "W"
    if not f_eo(f).did_close or not f_er(f).did_close:
        f.last_ns = ts
    if fin:
        ep.fin_cnt += 1
        ep.fin_seq = rel_seq + seg_len
    if rst:
        ep.rst_cnt += 1
    rel_ack = 0
    if ack:
        if peer.state == EP_INACTIVE:
            rel_ack = 1
            # init_peer: number the peer as if we had seen its SYN.
            peer.start_seq = (ack_seq - 1) & 0xFFFFFFFFLL
            peer.ack_seq = (ack_seq - 1) & 0xFFFFFFFFLL
            peer.last_seq = (ack_seq - 1) & 0xFFFFFFFFLL
        else:
            rel_ack = get_relative_seq(peer, ack_seq, peer.ack_seq, peer.ack_wraps, &ack_under)
            if ack_under:
                rel_ack = 0
            elif not rst:
                tcp_update_ack_seq(peer, ack_seq)
    delta_last = tcp_update_last_seq(ep, seq_end, flags, length)
    if not ((flags & (TH_SYN | TH_RST)) and (delta_last > TOO_LARGE_SEQ_DELTA
                                             or delta_last < -TOO_LARGE_SEQ_DELTA)):
        if (not (fin and ep.last_seq == ((ep.start_seq + 1) & 0xFFFFFFFFLL))
                and ep.state != EP_RESET):
            if delta_last <= 0 and length > 0:
                hist_scaled(f, ep.is_orig, 84, &ep.rxmt_cnt, &ep.rxmt_thresh)  # "T"
    do_close = tcp_state_machine(e, idx, ep, peer, flags, base_seq, length, ts)
    if ack:
        if tcp_ack_received(peer, rel_ack, f.is_partial, f):
            tcp_check_eof(e, idx, peer)
    rel_data_seq = rel_seq + 1 if syn else rel_seq
    if length > 0 and not rst and not underflow and captured >= length:
        # Snaplen-truncated payload never reaches the reassembler (acks then show gaps).
        data_sent(ep, rel_data_seq, length)
    tcp_check_eof(e, idx, ep)
    if do_close:
        tcp_connection_closed(e, idx, ep, peer)


# --- Python boundary ------------------------------------------------------------------------
cdef int flow_id_cmp(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t*>a)[0], y = (<const uint64_t*>b)[0]
    return -1 if x < y else (1 if x > y else 0)


cdef void eng_flush(eng_t* e) noexcept nogil:
    """End every live flow in flow_id order (EOF), then forget timers and fragments."""
    cdef uint64_t* order
    cdef uint32_t i, n = 0
    order = <uint64_t*>malloc((<size_t>e.ft.used + 1) * 2 * sizeof(uint64_t))
    if order == NULL:
        e.oom = True
        return
    for i in range(e.ft.high):
        if e.ft.pool[i].in_use:
            order[2 * n] = e.ft.pool[i].flow_id
            order[2 * n + 1] = i
            n += 1
    qsort(order, n, 2 * sizeof(uint64_t), flow_id_cmp)
    for i in range(n):
        remove_flow(e, <int64_t>order[2 * i + 1], ER_EOF)
    free(order)
    e.timers.n = 0
    fs_clear(&e.frags)


cdef void eng_feed(eng_t* e, const uint8_t* base, size_t size, Py_ssize_t count,
                   const uint64_t* offs, const uint32_t* caps, const uint32_t* wires,
                   const int64_t* tss, const uint16_t* lts, const uint8_t* ifs,
                   nw_pktsum_rec* ps) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t off
    cdef ssz cap, wire
    cdef int64_t ts
    for i in range(count):
        ts = tss[i]
        off = offs[i]
        cap = caps[i]
        wire = wires[i]
        # Never read past the buffer, whatever the batch claims.
        if off > size:
            off = size
        if cap > <ssz>(size - off):
            cap = <ssz>(size - off)
        if wire < cap:
            wire = cap
        if ts > e.now:
            e.now = ts
        run_timers(e, e.now)
        e.st.packets += 1
        e.st.bytes += <uint64_t>wire
        if ps != NULL:
            e.ps = &ps[i]
            memset(e.ps, 0, sizeof(nw_pktsum_rec))
            e.ps.ts_ns = ts
        else:
            e.ps = NULL
        eng_packet(e, base + off, cap, wire, lts[i], ts, ifs[i])
    e.ps = NULL


cdef class FlowEngine:
    """Decode batches of packets and assemble Zeek-style bidirectional flows (compiled)."""

    cdef eng_t* e
    cdef readonly object config
    cdef bint busy  # a call is running without the GIL: a second caller must not enter

    def __cinit__(self, *args, **kwargs):
        self.e = <eng_t*>calloc(1, sizeof(eng_t))
        if self.e == NULL:
            raise MemoryError()

    def __init__(self, config=None):
        from sensor.config import EngineConfig
        c = config if config is not None else EngineConfig()
        self.config = c
        ns = 1_000_000_000
        # Same float arithmetic as the reference: int(seconds * NS).
        self.e.tcp_to = int(c.tcp_timeout * ns)
        self.e.udp_to = int(c.udp_timeout * ns)
        self.e.icmp_to = int(c.icmp_timeout * ns)
        self.e.other_to = int(c.other_timeout * ns)
        self.e.active_to = int(c.active_timeout * ns)
        self.e.frag_to = int(c.frag_timeout * ns)
        self.e.validate = bool(c.validate_checksums)
        self.e.tunnels = bool(c.decode_tunnels)
        self.e.dns = bool(c.dns)
        self.e.next_id = 1
        if self.e.ft.pool == NULL:
            if ft_init(&self.e.ft, <uint32_t>c.max_flows) != 0:
                raise MemoryError("flow table")
            fs_init(&self.e.frags, <uint32_t>c.max_frag_datagrams)

    def __dealloc__(self):
        cdef eng_t* e = self.e
        cdef uint32_t i
        cdef int d
        if e == NULL:
            return
        if e.ft.pool != NULL:
            for i in range(e.ft.high):
                if e.ft.pool[i].in_use:
                    flow_release(&e.ft.pool[i])
        ft_free(&e.ft)
        free(e.timers.h)
        fs_free(&e.frags)
        free(e.tun)
        for d in range(MAX_TUNNEL_DEPTH + 1):
            free(e.scratch[d])
        free(e.outf)
        free(e.outa)
        free(e)
        self.e = NULL

    cdef _enter(self):
        # The GIL is released inside; one engine serves one thread at a time.
        if self.busy:
            raise RuntimeError("FlowEngine is in use by another thread")
        self.busy = True

    cdef _check_oom(self):
        if self.e.oom:
            self.e.oom = False
            raise MemoryError("flow engine allocation failed; some state was dropped")

    def feed(self, batch, pktsum=None):
        """Decode and assemble ``batch.count`` packets; fill ``pktsum[:count]`` if given."""
        cdef Py_ssize_t n = batch.count
        cdef const uint8_t[::1] buf
        cdef const uint64_t[::1] offs
        cdef const uint32_t[::1] caps, wires
        cdef const int64_t[::1] tss
        cdef const uint16_t[::1] lts
        cdef const uint8_t[::1] ifs
        cdef uint8_t[::1] psraw
        cdef nw_pktsum_rec* ps = NULL
        cdef const uint8_t* base = NULL
        cdef size_t size = 0
        if n <= 0:
            return
        offs = np.ascontiguousarray(batch.offset[:n], np.uint64)
        caps = np.ascontiguousarray(batch.caplen[:n], np.uint32)
        wires = np.ascontiguousarray(batch.wirelen[:n], np.uint32)
        tss = np.ascontiguousarray(batch.ts_ns[:n], np.int64)
        lts = np.ascontiguousarray(batch.linktype[:n], np.uint16)
        ifs = np.ascontiguousarray(batch.iface[:n], np.uint8)
        mv = memoryview(batch.buffer)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        if mv.nbytes:
            buf = mv
            base = &buf[0]
            size = buf.shape[0]
        if pktsum is not None:
            if pktsum.dtype != PKTSUM_DTYPE or not pktsum.flags.c_contiguous:
                raise ValueError("pktsum must be a C-contiguous PKTSUM_DTYPE array")
            if pktsum.shape[0] < n:
                raise ValueError(f"pktsum holds {pktsum.shape[0]} rows, batch has {n}")
            psraw = pktsum.reshape(-1).view(np.uint8)
            ps = <nw_pktsum_rec*>&psraw[0]
        self._enter()
        try:
            with nogil:
                eng_feed(self.e, base, size, n, &offs[0], &caps[0], &wires[0], &tss[0],
                         &lts[0], &ifs[0], ps)
        finally:
            self.busy = False
        self._check_oom()

    def advance(self, int64_t now_ns):
        """Expire flows and fragments up to network time ``now_ns``."""
        self._enter()
        try:
            with nogil:
                if now_ns > self.e.now:
                    self.e.now = now_ns
                run_timers(self.e, self.e.now)
                expire_frags(self.e, self.e.now)
        finally:
            self.busy = False
        self._check_oom()

    def flush(self):
        """End every live flow (end of input)."""
        self._enter()
        try:
            with nogil:
                eng_flush(self.e)
        finally:
            self.busy = False
        self._check_oom()

    def drain_flows(self, out):
        """Move up to ``len(out)`` finished FLOW_DTYPE records into ``out``; returns how many."""
        cdef uint8_t[::1] raw
        cdef size_t n
        if out.dtype != FLOW_DTYPE or not out.flags.c_contiguous or out.ndim != 1:
            raise ValueError("out must be a 1-d C-contiguous FLOW_DTYPE array")
        if self.busy:
            raise RuntimeError("FlowEngine is in use by another thread")
        n = min(<size_t>out.shape[0], self.e.outf_n - self.e.outf_start)
        if n == 0:
            return 0
        raw = out.view(np.uint8)
        memcpy(&raw[0], &self.e.outf[self.e.outf_start], n * sizeof(nw_flow_rec))
        self.e.outf_start += n
        if self.e.outf_start == self.e.outf_n:
            self.e.outf_start = 0
            self.e.outf_n = 0
        return n

    def drain_arp(self, out):
        """Move up to ``len(out)`` ARP_DTYPE records into ``out``; returns how many."""
        cdef uint8_t[::1] raw
        cdef size_t n
        if out.dtype != ARP_DTYPE or not out.flags.c_contiguous or out.ndim != 1:
            raise ValueError("out must be a 1-d C-contiguous ARP_DTYPE array")
        if self.busy:
            raise RuntimeError("FlowEngine is in use by another thread")
        n = min(<size_t>out.shape[0], self.e.outa_n - self.e.outa_start)
        if n == 0:
            return 0
        raw = out.view(np.uint8)
        memcpy(&raw[0], &self.e.outa[self.e.outa_start], n * sizeof(nw_arp_rec))
        self.e.outa_start += n
        if self.e.outa_start == self.e.outa_n:
            self.e.outa_start = 0
            self.e.outa_n = 0
        return n

    def stats(self):
        cdef eng_stats* s = &self.e.st
        return {
            "packets": s.packets, "bytes": s.bytes, "decode_errors": s.decode_errors,
            "unsupported_link": s.unsupported_link, "flows_created": s.flows_created,
            "flows_emitted": s.flows_emitted, "flows_evicted": s.flows_evicted,
            "flows_live": self.e.ft.used, "arp": s.arp,
            "frag_reassembled": s.frag_reassembled, "frag_dropped": s.frag_dropped,
            "frags_pending": self.e.frags.count, "checksum_errors": s.checksum_errors,
            "tunnel_packets": s.tunnel_packets, "non_ip": s.non_ip,
            "no_transport": s.no_transport,
            "flows_pending_output": self.e.outf_n - self.e.outf_start,
        }
