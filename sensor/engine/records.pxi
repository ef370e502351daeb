# Flow records: conn_state from Zeek's conn/main.zeek and the FLOW_DTYPE record built when
# a flow ends or reports (twin of sensor/engine/reference/records.py).

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
    r.sensor = e.sensor
    r.session = e.session
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
