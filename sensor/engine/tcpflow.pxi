# TCP per flow: reuse, history letters, the endpoint state machine, close and EOF handling
# (twin of TcpFlowMixin in sensor/engine/reference/tcpflow.py; endpoint arithmetic in tcp.pxi).

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
