# DNS message parsing for per-flow summaries (twin of sensor/engine/reference/dns.py).
#
# Header and first question only. Compression pointers are followed at most
# DNS_MAX_POINTERS times and names are capped at DNS_MAX_NAME bytes, so a pointer loop in
# hostile input ends the parse instead of hanging.

from libc.math cimport log2

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
    DNS_MAX_POINTERS = 16
    DNS_MAX_NAME = 255


cdef inline uint8_t dns_lower(uint8_t c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef double shannon_entropy(const uint8_t* s, int n) noexcept nogil:
    """Bits per byte; summed over byte values in ascending order, as the reference."""
    cdef uint32_t counts[256]
    cdef int i
    cdef double h = 0.0, q
    if n == 0:
        return 0.0
    memset(counts, 0, sizeof(counts))
    for i in range(n):
        counts[dns_lower(s[i])] += 1
    for i in range(256):
        if counts[i]:
            q = <double>counts[i] / n
            h -= q * log2(q)
    return h


cdef bint parse_dns(const uint8_t* b, ssz off, ssz end, dns_msg* m) noexcept nogil:
    cdef uint32_t flags, qd
    cdef ssz cur, after = -1, longest_at = -1
    cdef int jumps = 0, ln, longest = 0, i
    if off + 12 > end:
        return False
    flags = u16(b, off + 2)
    qd = u16(b, off + 4)
    m.is_response = 1 if flags & 0x8000 else 0
    m.rcode = flags & 0xF
    m.ancount = u16(b, off + 6)
    m.qname_len = 0
    m.qtype = 0
    m.longest_label = 0
    m.label_entropy = 0.0
    if qd == 0:
        return True
    cur = off + 12
    while True:
        if cur >= end:
            return False
        ln = b[cur]
        if ln == 0:
            cur += 1
            break
        if ln & 0xC0 == 0xC0:
            if cur + 1 >= end:
                return False
            jumps += 1
            if jumps > DNS_MAX_POINTERS:
                return False
            if after < 0:
                after = cur + 2
            cur = off + (((ln & 0x3F) << 8) | b[cur + 1])
            continue
        if ln & 0xC0:
            return False
        if cur + 1 + ln > end:
            return False
        if m.qname_len + ln + 1 > DNS_MAX_NAME:
            return False
        if m.qname_len:
            m.qname[m.qname_len] = 46  # "."
            m.qname_len += 1
        for i in range(ln):
            m.qname[m.qname_len + i] = dns_lower(b[cur + 1 + i])
        m.qname_len += ln
        if ln > longest:
            longest = ln
            longest_at = cur + 1
        cur += 1 + ln
    if after >= 0:
        cur = after
    if cur + 4 > end:
        return False
    m.qtype = u16(b, cur)
    m.longest_label = longest
    m.label_entropy = shannon_entropy(b + longest_at, longest) if longest else 0.0
    return True
