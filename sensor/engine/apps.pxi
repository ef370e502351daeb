# UDP / ICMP accounting and application analyzers: the per-flow DNS summary and the side
# effects of Zeek's DNS and NTP analyzers (twin of sensor/engine/reference/apps.py:
# _dns, _dns_analyzer, _ntp_analyzer).

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
