# Zeek's TCP endpoint state machine, sequence accounting and gaps (twin of sensor/engine/reference/tcp.py).
#
# Sequence arithmetic mirrors the reference exactly: 32-bit sequence values held in int64,
# signed start_seq (may be -1 for a partial start), wrap counters, and the gap reassembler
# (contiguous edge + at most TCP_MAX_BLOCKS pending ranges, malloc'd on first use).

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
    EP_INACTIVE = 0
    EP_SYN_SENT = 1
    EP_SYN_ACK_SENT = 2
    EP_PARTIAL = 3
    EP_ESTABLISHED = 4
    EP_CLOSED = 5
    EP_RESET = 6

    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PUSH = 0x08
    TH_ACK = 0x10
    TH_URG = 0x20

    HIST_SYN = 0x1
    HIST_FIN = 0x2
    HIST_RST = 0x4
    HIST_FIN_RST = 0x8
    HIST_DATA = 0x10
    HIST_ACK = 0x20
    HIST_MULTI = 0x40

    TOO_LARGE_SEQ_DELTA = 1048576
    # Zeek's tcp_max_above_hole_without_any_acks / tcp_excessive_data_without_further_acks
    MAX_ABOVE_HOLE_WITHOUT_ACKS = 16384
    MAX_BUFFERED_WITHOUT_ACKS = 10 * 1024 * 1024


cdef inline int64_t seq_delta(int64_t a, int64_t b) noexcept nogil:
    cdef uint32_t d = <uint32_t>((a - b) & 0xFFFFFFFFLL)
    return <int64_t><int32_t>d


cdef void ep_init(tcp_ep* ep, bint is_orig) noexcept nogil:
    memset(ep, 0, sizeof(tcp_ep))
    ep.is_orig = is_orig
    ep.rxmt_thresh = 1
    ep.win0_thresh = 1
    ep.gap_thresh = 1
    ep.chk_thresh = 1
    ep.reassem_seq = 1
    ep.trim_seq = 1


cdef inline void ep_free(tcp_ep* ep) noexcept nogil:
    if ep.blocks != NULL:
        free(ep.blocks)
        ep.blocks = NULL
    ep.nblocks = 0


cdef inline void ep_set_state(tcp_ep* ep, int s) noexcept nogil:
    if s != ep.state:
        ep.prev_state = ep.state
        ep.state = s


cdef inline int64_t ep_start32(tcp_ep* ep) noexcept nogil:
    return ep.start_seq & 0xFFFFFFFFLL


cdef inline bint ep_no_data_acked(tcp_ep* ep) noexcept nogil:
    cdef int64_t ack = (ep.ack_wraps << 32) + ep.ack_seq
    return ack == ep.start_seq or ack == ep.start_seq + 1


cdef uint64_t ep_size(tcp_ep* ep, tcp_ep* peer) noexcept nogil:
    cdef int64_t last64, ack64
    cdef uint64_t size
    if (ep.prev_state == EP_SYN_SENT and ep.state == EP_RESET and peer.state == EP_INACTIVE
            and not ep_no_data_acked(ep)):
        return 0
    last64 = (ep.seq_wraps << 32) + ep.last_seq
    ack64 = (ep.ack_wraps << 32) + ep.ack_seq
    if last64 > ack64:
        size = <uint64_t>(last64 - ep.start_seq)
    else:
        size = <uint64_t>(ack64 - ep.start_seq)
    if size != 0:
        size -= 1
    if ep.fin_cnt > 0 and size != 0:
        size -= 1
    return size


cdef inline void ep_update_last_seq_raw(tcp_ep* ep, int64_t seq) noexcept nogil:
    if seq < ep.last_seq:
        ep.seq_wraps += 1
    ep.last_seq = seq


cdef inline void ep_update_ack_seq_raw(tcp_ep* ep, int64_t seq) noexcept nogil:
    if seq < ep.ack_seq:
        ep.ack_wraps += 1
    ep.ack_seq = seq


cdef inline int64_t ep_to_relative(tcp_ep* ep, int64_t seq, int64_t wraps) noexcept nogil:
    return (wraps << 32) + seq - ep.start_seq


cdef int64_t get_relative_seq(tcp_ep* ep, int64_t cur, int64_t last, int64_t wraps,
                              bint* underflow) noexcept nogil:
    cdef int64_t delta = seq_delta(cur, last), d
    if delta < 0:
        if wraps and cur > last:
            wraps -= 1
    elif delta > 0:
        if cur < last:
            wraps += 1
    if wraps == 0:
        d = seq_delta(cur, ep_start32(ep))
        underflow[0] = d < 0
        return d
    underflow[0] = False
    return ep_to_relative(ep, cur, wraps)


cdef void init_endpoint(tcp_ep* ep, int flags, int64_t first_seq, int64_t last_seq) noexcept nogil:
    cdef bint syn = (flags & TH_SYN) != 0
    cdef int st = ep.state
    if st == EP_INACTIVE:
        if syn:
            ep.ack_seq = first_seq
            ep.start_seq = first_seq
        else:
            ep.ack_seq = (first_seq - 1) & 0xFFFFFFFFLL
            ep.start_seq = (first_seq - 1) & 0xFFFFFFFFLL  # 32-bit arithmetic, as Zeek
            last_seq = first_seq
        ep.last_seq = last_seq
    elif st == EP_SYN_SENT or st == EP_SYN_ACK_SENT:
        if syn and first_seq != ep_start32(ep):
            ep.start_seq = first_seq
            ep.ack_seq = first_seq
            ep.last_seq = last_seq
    elif st == EP_ESTABLISHED or st == EP_PARTIAL:
        if syn:
            ep.start_seq = first_seq
            ep.ack_seq = first_seq
            ep.last_seq = last_seq
    elif st == EP_RESET:
        if syn and ep.prev_state == EP_INACTIVE:
            ep.start_seq = first_seq
            ep.ack_seq = first_seq
            ep.last_seq = last_seq


cdef int64_t tcp_update_last_seq(tcp_ep* ep, int64_t last_seq, int flags,
                                 int64_t length) noexcept nogil:
    cdef int64_t delta = seq_delta(last_seq, ep.last_seq)
    if (flags & (TH_SYN | TH_RST)) and (delta > TOO_LARGE_SEQ_DELTA
                                        or delta < -TOO_LARGE_SEQ_DELTA):
        pass
    elif (flags & TH_FIN) and ep.last_seq == ((ep.start_seq + 1) & 0xFFFFFFFFLL):
        ep_update_last_seq_raw(ep, last_seq)
    elif ep.state == EP_RESET:
        pass
    elif delta > 0:
        ep_update_last_seq_raw(ep, last_seq)
    return delta


cdef void tcp_update_ack_seq(tcp_ep* ep, int64_t ack) noexcept nogil:
    cdef int64_t delta = seq_delta(ack, ep.ack_seq)
    if ack == 0 and delta > TOO_LARGE_SEQ_DELTA:
        return
    if delta > 0:
        ep_update_ack_seq_raw(ep, ack)


# --- simplified reassembly: contiguous edge + pending blocks ------------------------------
cdef void merge_blocks(tcp_ep* ep) noexcept nogil:
    cdef int k = 0, i
    while k < ep.nblocks and ep.blocks[k][0] <= ep.reassem_seq:
        if ep.blocks[k][1] > ep.reassem_seq:
            ep.reassem_seq = ep.blocks[k][1]
        k += 1
    if k:
        for i in range(ep.nblocks - k):
            ep.blocks[i][0] = ep.blocks[i + k][0]
            ep.blocks[i][1] = ep.blocks[i + k][1]
        ep.nblocks -= k


cdef void insert_block(tcp_ep* ep, int64_t start, int64_t end) noexcept nogil:
    cdef int i = 0, j, m
    if ep.blocks == NULL:
        ep.blocks = <int64_t (*)[2]>malloc((TCP_MAX_BLOCKS + 1) * 2 * sizeof(int64_t))
        if ep.blocks == NULL:
            return  # out of memory: the range is forgotten (reported later as a gap)
        ep.nblocks = 0
    while i < ep.nblocks and ep.blocks[i][0] < start:
        i += 1
    j = ep.nblocks
    while j > i:
        ep.blocks[j][0] = ep.blocks[j - 1][0]
        ep.blocks[j][1] = ep.blocks[j - 1][1]
        j -= 1
    ep.blocks[i][0] = start
    ep.blocks[i][1] = end
    ep.nblocks += 1
    j = 0
    while j + 1 < ep.nblocks:
        if ep.blocks[j + 1][0] <= ep.blocks[j][1]:
            if ep.blocks[j + 1][1] > ep.blocks[j][1]:
                ep.blocks[j][1] = ep.blocks[j + 1][1]
            for m in range(j + 1, ep.nblocks - 1):
                ep.blocks[m][0] = ep.blocks[m + 1][0]
                ep.blocks[m][1] = ep.blocks[m + 1][1]
            ep.nblocks -= 1
        else:
            j += 1
    if ep.nblocks > TCP_MAX_BLOCKS:
        ep.nblocks -= 1  # bounded memory: forget the highest block


cdef bint data_pending(tcp_ep* ep, tcp_ep* peer) noexcept nogil:
    """Zeek's TCP_Reassembler::DataPending: ep's data is not all delivered (a hole below
    its highest sequence), or the peer still buffers data above a hole."""
    cdef int64_t delivered, last
    if ep.skip:
        return False
    delivered = ep.start_seq + ep.reassem_seq
    last = (ep.seq_wraps << 32) + ep.last_seq
    if last < delivered:
        return False
    if delivered != last - 1 and delivered != last:
        return True
    return ep.state != EP_RESET and peer.nblocks > 0


cdef int64_t buffered_bytes(tcp_ep* ep) noexcept nogil:
    cdef int64_t n = 0
    cdef int k
    for k in range(ep.nblocks):
        n += ep.blocks[k][1] - ep.blocks[k][0]
    return n


cdef void data_sent(tcp_ep* ep, int64_t seq, int64_t length) noexcept nogil:
    cdef int64_t ack, upper
    if ep.skip:
        return
    ack = ep_to_relative(ep, ep.ack_seq, ep.ack_wraps)
    upper = seq + length
    if seq < ack:
        if upper <= ack:
            return
        seq = ack
    if upper <= ep.reassem_seq:
        return
    if seq <= ep.reassem_seq:
        ep.reassem_seq = upper
        merge_blocks(ep)
        return
    insert_block(ep, seq, upper)
    # Zeek gives up reassembly on data far above a hole that nobody acks, or on too much
    # buffered data.
    if ep.nblocks and ((ep_no_data_acked(ep) and ep.blocks[ep.nblocks - 1][1] - ep.reassem_seq
                        > MAX_ABOVE_HOLE_WITHOUT_ACKS)
                       or buffered_bytes(ep) > MAX_BUFFERED_WITHOUT_ACKS):
        ep.nblocks = 0
        ep.skip = True
