# Flow state: the C struct of one bidirectional flow, its history letters and statistics
# (twin of Flow / Side in sensor/engine/reference/flow.py).
#
# The two directions live in fixed slots sd[0]/sd[1] and ep[0]/ep[1]; `oi` names the
# originator's slot, so flipping roles swaps one index and pointers to an endpoint stay
# valid (the reference swaps object references, which C cannot do with embedded structs).

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
    FLAG_INTERIM = 1
    FLAG_FLIPPED = 2
    FLAG_BAD_CHECKSUM = 4
    FLAG_FRAGMENTED = 8
    # Zeek's /^?S[^HAFGIQ]*R/ over the history, run as letters are appended.
    RX_START = 0
    RX_CARET = 1
    RX_IN = 2
    RX_MATCH = 3
    RX_FAIL = 4


cdef inline side_t* f_o(flow_t* f) noexcept nogil:
    return &f.sd[f.oi]


cdef inline side_t* f_r(flow_t* f) noexcept nogil:
    return &f.sd[1 - f.oi]


cdef inline tcp_ep* f_eo(flow_t* f) noexcept nogil:
    return &f.ep[f.oi]  # TCP flows only


cdef inline tcp_ep* f_er(flow_t* f) noexcept nogil:
    return &f.ep[1 - f.oi]  # TCP flows only


cdef inline void flow_release(flow_t* f) noexcept nogil:
    """Free what a flow owns outside the pool (TCP endpoints, gap blocks, DNS name set)."""
    if f.ep != NULL:
        ep_free(&f.ep[0])
        ep_free(&f.ep[1])
        free(f.ep)
        f.ep = NULL
    if f.dns_names != NULL:
        free(f.dns_names)
        f.dns_names = NULL


# --- history (Zeek's Session::AddHistory / CheckHistory / ScaledHistoryEntry) -------------
cdef inline void hist_rx_step(flow_t* f, char c) noexcept nogil:
    cdef uint8_t s = f.hist_rx
    if s == RX_MATCH or s == RX_FAIL:
        return
    if s == RX_START:
        if c == 94:  # "^"
            f.hist_rx = RX_CARET
        elif c == 83:  # "S"
            f.hist_rx = RX_IN
        else:
            f.hist_rx = RX_FAIL
    elif s == RX_CARET:
        f.hist_rx = RX_IN if c == 83 else RX_FAIL
    else:
        if c == 82:  # "R"
            f.hist_rx = RX_MATCH
        elif c == 72 or c == 65 or c == 70 or c == 71 or c == 73 or c == 81:  # HAFGIQ
            f.hist_rx = RX_FAIL


cdef inline void hist_push(flow_t* f, char c) noexcept nogil:
    if f.hist_len < HIST_CAP:
        f.hist[f.hist_len] = c
    f.hist_len += 1
    hist_rx_step(f, c)


cdef inline char hist_case(bint is_orig, char code) noexcept nogil:
    if not is_orig and 65 <= code <= 90:
        return code + 32
    return code


cdef inline void hist_add(flow_t* f, bint is_orig, char code) noexcept nogil:
    hist_push(f, hist_case(is_orig, code))


cdef inline bint hist_check(flow_t* f, bint is_orig, uint32_t mask, char code) noexcept nogil:
    if not is_orig:
        mask <<= 16
        code = hist_case(False, code)
    if f.hist_seen & mask == 0:
        f.hist_seen |= mask
        hist_push(f, code)
        return False
    return True


cdef inline void hist_conn_check(flow_t* f, uint32_t mask, char code) noexcept nogil:
    """Connection-level history letter (no direction): Zeek's Session::CheckHistory."""
    if f.hist_seen & mask == 0:
        f.hist_seen |= mask
        hist_push(f, code)


cdef inline void flow_update_length(flow_t* f, bint is_orig, int64_t n) noexcept nogil:
    if is_orig:
        f.req_len = n if f.req_len < 0 else f.req_len + n
    else:
        f.rep_len = n if f.rep_len < 0 else f.rep_len + n


cdef inline void hist_scaled(flow_t* f, bint is_orig, char code, int64_t* cnt,
                             int64_t* thresh) noexcept nogil:
    cdef int64_t nt
    cnt[0] += 1
    if cnt[0] == thresh[0]:
        hist_add(f, is_orig, code)
        nt = thresh[0] * 10
        if nt > 0xFFFFFFFFLL:
            cnt[0] = 0
        else:
            thresh[0] = nt


cdef void flow_flip_roles(flow_t* f) noexcept nogil:
    cdef uint8_t tmp[16]
    cdef uint16_t tp
    cdef uint8_t fps = f.first_packet_seen
    memcpy(tmp, f.orig_addr, 16)
    memcpy(f.orig_addr, f.resp_addr, 16)
    memcpy(f.resp_addr, tmp, 16)
    tp = f.orig_port
    f.orig_port = f.resp_port
    f.resp_port = tp
    f.oi = 1 - f.oi
    if f.ep != NULL:
        f_eo(f).is_orig = True
        f_er(f).is_orig = False
    f.first_packet_seen = (2 if fps & 1 else 0) | (1 if fps & 2 else 0)
    f.is_partial = False
    f.first_dirs = (~f.first_dirs) & ((1 << f.n_first) - 1)
    f.flags |= FLAG_FLIPPED
    hist_push(f, 94)


cdef inline bint flow_tcp_check(flow_t* f, tcp_ep* ep, uint32_t mask, char code) noexcept nogil:
    # A connection that began with a SYN-ACK (history exactly "H") flips on its first A/D.
    if (code == 65 or code == 68) and f.hist_len == 1 and f.hist[0] == 72:
        flow_flip_roles(f)
        f.hist_len = 0
        f.hist_rx = RX_START
        hist_push(f, 94)
        hist_push(f, 104)
        f.first_packet_seen |= 1
    return hist_check(f, ep.is_orig, mask, code)


# --- gap accounting (needs the history, so it lives here rather than in tcp.pxi) ----------
cdef void tcp_gap(tcp_ep* ep, int64_t length, flow_t* f) noexcept nogil:
    ep.missed += length
    hist_scaled(f, ep.is_orig, 71, &ep.gap_cnt, &ep.gap_thresh)  # "G"


cdef void tcp_undelivered(tcp_ep* ep, int64_t up_to, bint is_partial, flow_t* f) noexcept nogil:
    cdef int k = 0, i
    if up_to <= 2 and is_partial:
        return
    if ep.skip:
        if up_to > ep.reassem_seq:
            ep.reassem_seq = up_to
        return
    while k < ep.nblocks and ep.blocks[k][0] < up_to:
        if ep.blocks[k][0] > ep.reassem_seq:
            tcp_gap(ep, ep.blocks[k][0] - ep.reassem_seq, f)
        if ep.blocks[k][1] > ep.reassem_seq:
            ep.reassem_seq = ep.blocks[k][1]
        k += 1
    if k:
        for i in range(ep.nblocks - k):
            ep.blocks[i][0] = ep.blocks[i + k][0]
            ep.blocks[i][1] = ep.blocks[i + k][1]
        ep.nblocks -= k
    if up_to > ep.reassem_seq:
        tcp_gap(ep, up_to - ep.reassem_seq, f)
        ep.reassem_seq = up_to


cdef bint tcp_ack_received(tcp_ep* ep, int64_t seq, bint is_partial, flow_t* f) noexcept nogil:
    """The peer acked `seq` of ep's data; whether the ack advanced (the caller then checks
    ep for end of data, as Zeek's reassembler does)."""
    if ep.fin_cnt > 0 and seq >= ep.fin_seq:
        seq = ep.fin_seq - 1
    if seq <= ep.trim_seq:
        return False
    if seq > ep.reassem_seq:
        tcp_undelivered(ep, seq, is_partial, f)
    ep.trim_seq = seq
    return True


# --- statistics -----------------------------------------------------------------------------
cdef inline void mean_std_i(uint64_t n, uint64_t s, uint64_t sq, double* mean,
                            double* std) noexcept nogil:
    cdef double var
    if n == 0:
        mean[0] = 0.0
        std[0] = 0.0
        return
    mean[0] = <double>s / <double>n
    var = <double>sq / <double>n - mean[0] * mean[0]
    std[0] = sqrt(var) if var > 0 else 0.0


cdef inline void mean_std_f(uint64_t n, double s, double sq, double* mean,
                            double* std) noexcept nogil:
    cdef double var
    if n == 0:
        mean[0] = 0.0
        std[0] = 0.0
        return
    mean[0] = s / <double>n
    var = sq / <double>n - mean[0] * mean[0]
    std[0] = sqrt(var) if var > 0 else 0.0


cdef void flow_count(flow_t* f, side_t* side, bint is_orig, uint32_t ip_len, int64_t ts,
                     int tflags, const uint8_t* mac) noexcept nogil:
    cdef double iat
    cdef int bit
    if side.pkts == 0:
        side.len_min = ip_len
        side.len_max = ip_len
        memcpy(side.mac, mac, 6)
    else:
        if ip_len < side.len_min:
            side.len_min = ip_len
        if ip_len > side.len_max:
            side.len_max = ip_len
        iat = <double>(ts - side.last_ts) / 1e9
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
    side.len_sq += <uint64_t>ip_len * ip_len
    side.last_ts = ts
    if tflags >= 0:
        for bit in range(8):
            if tflags & (1 << bit):
                side.flags[bit] += 1
    if f.n_first < 16:
        f.first_sizes[f.n_first] = ip_len if ip_len < 0xFFFF else 0xFFFF
        if not is_orig:
            f.first_dirs |= 1 << f.n_first
        f.n_first += 1
