# 802.11 frames in the packet path: A-MSDU subframes (twin of WifiMixin in
# sensor/engine/reference/wifi.py): each subframe goes through the packet path.

cdef void eng_wifi(eng_t* e, const uint8_t* b, ssz off, ssz end, ssz wire_end, dc_pkt* p,
                   const pkt_ctx* at) noexcept nogil:
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
            eng_l3(e, b, l3, end, wire_end, p, at)
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
        eng_l3(e, b, l3, sub_end, sub_end, &q, at)
        cur = sub_end
        pad = n % 4
        if end - cur >= pad:
            cur += pad
