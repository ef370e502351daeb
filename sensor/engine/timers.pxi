# Network-time timers: a 4-ary min-heap ordered by (due, sequence), the same total order as
# the reference's heapq of (due, seq, kind, flow): pops come out identical, whatever the
# heap's shape. Four children per node halve the depth of a sift (the heap holds a few
# timers per live flow, far more than the caches) and sit in 128 contiguous bytes. A timer
# names its flow by pool index and flow_id, so a timer outliving its flow (or a recycled
# pool slot) is recognised and skipped.

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
    TM_INACTIVITY = 0
    TM_ATTEMPT = 1
    TM_EXPIRE = 2
    TM_DELETE = 3
    TM_RESET = 4
    TM_ACTIVE = 5
    TM_DNS = 6  # Zeek's DNS analyzer session timer on UDP DNS ports


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
        parent = (i - 1) >> 2
        if not tm_less(&x, &t.h[parent]):
            break
        t.h[i] = t.h[parent]
        i = parent
    t.h[i] = x
    return 0


cdef void th_sift_down(theap* t, size_t i, timer_t last) noexcept nogil:
    """Place `last` at hole i and restore the heap order below it."""
    cdef size_t c, k, end
    while True:
        c = 4 * i + 1
        if c >= t.n:
            break
        end = c + 4 if c + 4 < t.n else t.n
        k = c + 1
        while k < end:
            if tm_less(&t.h[k], &t.h[c]):
                c = k
            k += 1
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
    i = (t.n - 2) // 4 + 1  # one past the last node with a child
    while i > 0:
        i -= 1
        th_sift_down(t, i, t.h[i])


# --- the engine's timers: idle timeouts, compaction, firing in network time ---------------
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


cdef void fire(eng_t* e, uint32_t kind, int64_t idx, int64_t t) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    cdef tcp_ep* eo = NULL
    cdef tcp_ep* er = NULL
    cdef int64_t to
    if f.ep != NULL:
        eo = f_eo(f)
        er = f_er(f)
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
