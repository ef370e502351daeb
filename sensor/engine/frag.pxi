# IP fragment reassembly with bounded C buffers (twin of sensor/engine/reference/frag.py).
#
# At most max_frag_datagrams datagrams are pending; they form a FIFO by arrival of their
# first fragment, which is both the eviction order when full and the timeout order. Each
# datagram's payload buffer is capped at MAX_FRAG_BYTES. Lookup is a scan of the FIFO:
# pending datagrams are few (they complete or time out within frag_timeout).

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
    MAX_FRAG_BYTES = 65535 + 40


cdef void fs_init(fragstore* s, uint32_t cap) noexcept nogil:
    memset(s, 0, sizeof(fragstore))
    s.cap = cap


cdef void fs_release(frag_t* fb) noexcept nogil:
    free(fb.data)
    free(fb.hdr)
    free(fb.ranges)
    fb.data = NULL
    fb.hdr = NULL
    fb.ranges = NULL


cdef void fs_unlink(fragstore* s, uint32_t i) noexcept nogil:
    cdef frag_t* fb = &s.pool[i]
    if fb.prev:
        s.pool[fb.prev - 1].next = fb.next
    else:
        s.head = fb.next
    if fb.next:
        s.pool[fb.next - 1].prev = fb.prev
    else:
        s.tail = fb.prev
    fs_release(fb)
    fb.next = s.free_head
    s.free_head = i + 1
    s.count -= 1


cdef void fs_clear(fragstore* s) noexcept nogil:
    while s.head:
        fs_unlink(s, s.head - 1)


cdef void fs_free(fragstore* s) noexcept nogil:
    fs_clear(s)
    free(s.pool)
    s.pool = NULL


cdef int64_t fs_find(fragstore* s, dc_pkt* p) noexcept nogil:
    cdef uint32_t i = s.head
    cdef frag_t* fb
    while i:
        fb = &s.pool[i - 1]
        if (fb.frag_id == p.frag_id and fb.proto == p.proto and fb.ver == p.ip_version
                and memcmp(fb.src, p.src, 16) == 0 and memcmp(fb.dst, p.dst, 16) == 0):
            return i - 1
        i = fb.next
    return -1


cdef int64_t fs_add(fragstore* s, dc_pkt* p, int64_t ts) noexcept nogil:
    """A new pending datagram at the FIFO tail (caller made room)."""
    cdef uint32_t i
    cdef frag_t* fb
    if s.pool == NULL:
        s.pool = <frag_t*>calloc(s.cap, sizeof(frag_t))
        if s.pool == NULL:
            return -1
        for i in range(s.cap):
            s.pool[i].next = i + 2 if i + 1 < s.cap else 0
        s.free_head = 1
    if not s.free_head:
        return -1
    i = s.free_head - 1
    fb = &s.pool[i]
    s.free_head = fb.next
    memset(fb, 0, sizeof(frag_t))
    fb.ver = p.ip_version
    fb.proto = p.proto
    memcpy(fb.src, p.src, 16)
    memcpy(fb.dst, p.dst, 16)
    fb.frag_id = p.frag_id
    fb.first_ns = ts
    fb.total = -1
    fb.prev = s.tail
    if s.tail:
        s.pool[s.tail - 1].next = i + 1
    else:
        s.head = i + 1
    s.tail = i + 1
    s.count += 1
    return i


cdef bint frag_add_range(frag_t* fb, ssz start, ssz stop) noexcept nogil:
    """Record [start, stop) as received, keeping the ranges sorted and merged.

    The reference appends every fragment's range and sorts them all on each arrival; a
    flood of duplicate fragments would make that unbounded in memory and time. Merged
    components give the same answer (see frag_complete) in at most one range per 8-byte
    fragment offset."""
    cdef int64_t (*nr)[2]
    cdef ssz ncap, i, j, k
    # First component that could touch [start, stop): the components are disjoint and
    # separated by gaps, so every earlier one ends before start.
    i = 0
    while i < fb.nranges and fb.ranges[i][1] < start:
        i += 1
    if i < fb.nranges and fb.ranges[i][0] <= stop:
        # Merge with component i and every later one that [start, stop) now reaches.
        if start < fb.ranges[i][0]:
            fb.ranges[i][0] = start
        if stop > fb.ranges[i][1]:
            fb.ranges[i][1] = stop
        j = i + 1
        while j < fb.nranges and fb.ranges[j][0] <= fb.ranges[i][1]:
            if fb.ranges[j][1] > fb.ranges[i][1]:
                fb.ranges[i][1] = fb.ranges[j][1]
            j += 1
        if j > i + 1:
            k = i + 1
            while j < fb.nranges:
                fb.ranges[k][0] = fb.ranges[j][0]
                fb.ranges[k][1] = fb.ranges[j][1]
                k += 1
                j += 1
            fb.nranges = k
        return True
    if fb.nranges == fb.ranges_cap:
        ncap = fb.ranges_cap * 2 + 8
        nr = <int64_t (*)[2]>realloc(fb.ranges, ncap * 2 * sizeof(int64_t))
        if nr == NULL:
            return False
        fb.ranges = nr
        fb.ranges_cap = ncap
    j = fb.nranges
    while j > i:
        fb.ranges[j][0] = fb.ranges[j - 1][0]
        fb.ranges[j][1] = fb.ranges[j - 1][1]
        j -= 1
    fb.ranges[i][0] = start
    fb.ranges[i][1] = stop
    fb.nranges += 1
    return True


cdef bint frag_complete(frag_t* fb) noexcept nogil:
    """The reference walks the sorted ranges and stops at the first one starting beyond
    what is covered so far: complete iff every range joins one component from offset 0
    and that component reaches the datagram's end."""
    return (fb.nranges == 1 and fb.ranges[0][0] == 0 and fb.ranges[0][1] >= fb.total)


cdef ssz ipv6_strip_frag(uint8_t* hdr, ssz n, uint8_t proto) noexcept nogil:
    """Remove the fragment header from an IPv6 header chain; returns the new length."""
    cdef ssz nxt_pos = 6, cur = 40, ln, cut
    cdef uint8_t nxt = hdr[6]
    while cur < n:
        if nxt == 44:
            hdr[nxt_pos] = proto
            cut = 8 if cur + 8 <= n else n - cur
            memmove(hdr + cur, hdr + cur + cut, n - cur - cut)
            return n - cut
        if cur + 1 >= n:
            return n  # cannot happen for a chain the decoder walked
        if nxt == 51:
            ln = (<ssz>hdr[cur + 1] + 2) * 4
        else:
            ln = (<ssz>hdr[cur + 1] + 1) * 8
        nxt_pos = cur
        nxt = hdr[cur]
        cur += ln
    return n


# --- the engine's fragment reassembly: expiry and the reassembly step ---------------------
cdef void expire_frags(eng_t* e, int64_t now) noexcept nogil:
    cdef frag_t* fb
    while e.frags.head:
        fb = &e.frags.pool[e.frags.head - 1]
        if fb.first_ns + e.frag_to > now:
            break
        fs_unlink(&e.frags, e.frags.head - 1)
        e.st.frag_dropped += 1


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
