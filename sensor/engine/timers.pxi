# Network-time timers: a binary min-heap ordered by (due, sequence), the same total order as
# the reference's heapq of (due, seq, kind, flow). A timer names its flow by pool index and
# flow_id, so a timer outliving its flow (or a recycled pool slot) is recognised and skipped.

# Constants and structs of this file: _fastpath.pxd (table of contents).


cdef inline bint tm_less(const timer_t* a, const timer_t* b) noexcept nogil:
    return a.due < b.due or (a.due == b.due and a.seq < b.seq)


cdef int th_push(theap* t, int64_t due, uint32_t kind, uint32_t idx,
                 uint64_t flow_id) noexcept nogil:
    cdef size_t i, parent
    cdef timer_t x
    cdef timer_t* nh
    if t.n == t.cap:
        nh = <timer_t*>realloc(t.h, (t.cap * 2 + 64) * sizeof(timer_t))
        if nh == NULL:
            return -1
        t.h = nh
        t.cap = t.cap * 2 + 64
    t.seq += 1
    x.due = due
    x.seq = t.seq
    x.kind = kind
    x.idx = idx
    x.flow_id = flow_id
    i = t.n
    t.n += 1
    while i > 0:
        parent = (i - 1) >> 1
        if not tm_less(&x, &t.h[parent]):
            break
        t.h[i] = t.h[parent]
        i = parent
    t.h[i] = x
    return 0


cdef void th_sift_down(theap* t, size_t i, timer_t last) noexcept nogil:
    """Place `last` at hole i and restore the heap order below it."""
    cdef size_t c
    while True:
        c = 2 * i + 1
        if c >= t.n:
            break
        if c + 1 < t.n and tm_less(&t.h[c + 1], &t.h[c]):
            c += 1
        if not tm_less(&t.h[c], &last):
            break
        t.h[i] = t.h[c]
        i = c
    t.h[i] = last


cdef void th_pop(theap* t, timer_t* out) noexcept nogil:
    out[0] = t.h[0]
    t.n -= 1
    if t.n == 0:
        return
    th_sift_down(t, 0, t.h[t.n])


cdef void th_heapify(theap* t) noexcept nogil:
    cdef size_t i
    if t.n < 2:
        return
    i = t.n // 2
    while i > 0:
        i -= 1
        th_sift_down(t, i, t.h[i])
