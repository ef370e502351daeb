# The Python boundary: FlowEngine, the only class callers see. Arrays are checked here, the
# work runs in eng_feed / run_timers / eng_flush without the GIL, C allocation failures
# become MemoryError.

# --- Python boundary ------------------------------------------------------------------------
cdef int flow_id_cmp(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t*>a)[0], y = (<const uint64_t*>b)[0]
    return -1 if x < y else (1 if x > y else 0)


cdef void eng_flush(eng_t* e) noexcept nogil:
    """End every live flow in flow_id order (EOF), then forget timers and fragments."""
    cdef uint64_t* order
    cdef uint32_t i, n = 0
    order = <uint64_t*>malloc((<size_t>e.ft.used + 1) * 2 * sizeof(uint64_t))
    if order == NULL:
        e.oom = True
        return
    for i in range(e.ft.high):
        if e.ft.pool[i].in_use:
            order[2 * n] = e.ft.pool[i].flow_id
            order[2 * n + 1] = i
            n += 1
    qsort(order, n, 2 * sizeof(uint64_t), flow_id_cmp)
    for i in range(n):
        remove_flow(e, <int64_t>order[2 * i + 1], ER_EOF)
    free(order)
    e.timers.n = 0
    fs_clear(&e.frags)


cdef enum:
    PKT_PREFETCH = 8  # packets ahead whose first two cache lines are prefetched


cdef void eng_feed(eng_t* e, const uint8_t* base, size_t size, Py_ssize_t count,
                   const uint64_t* offs, const uint32_t* caps, const uint32_t* wires,
                   const int64_t* tss, const uint16_t* lts, const uint8_t* ifs,
                   nw_pktsum_rec* ps) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t off
    cdef ssz cap, wire
    cdef int64_t ts
    cdef uint64_t ahead
    for i in range(count):
        # The headers of a packet a few ahead are loaded while this one is worked on: the
        # reader touched them a whole batch ago, so they are usually out of the near caches.
        if i + PKT_PREFETCH < count:
            ahead = offs[i + PKT_PREFETCH]
            if ahead + 128 <= size:
                prefetch(base + ahead)
                prefetch(base + ahead + 64)
        ts = tss[i]
        off = offs[i]
        cap = caps[i]
        wire = wires[i]
        # Never read past the buffer, whatever the batch claims.
        if off > size:
            off = size
        if cap > <ssz>(size - off):
            cap = <ssz>(size - off)
        if wire < cap:
            wire = cap
        if ts > e.now:
            e.now = ts
        run_timers(e, e.now)
        e.st.packets += 1
        e.st.bytes += <uint64_t>wire
        if ps != NULL:
            e.ps = &ps[i]
            memset(e.ps, 0, sizeof(nw_pktsum_rec))
            e.ps.ts_ns = ts
        else:
            e.ps = NULL
        eng_packet(e, base + off, cap, wire, lts[i], ts, ifs[i])
    e.ps = NULL


cdef class FlowEngine:
    """Decode batches of packets and assemble Zeek-style bidirectional flows (compiled)."""

    # Attributes: _fastpath.pxd.

    def __cinit__(self, *args, **kwargs):
        self.e = <eng_t*>calloc(1, sizeof(eng_t))
        if self.e == NULL:
            raise MemoryError()

    def __init__(self, config=None):
        from sensor.engine.config import EngineConfig
        c = config if config is not None else EngineConfig()
        self.config = c
        ns = 1_000_000_000
        # Same float arithmetic as the reference: int(seconds * NS).
        self.e.tcp_to = int(c.tcp_timeout * ns)
        self.e.udp_to = int(c.udp_timeout * ns)
        self.e.icmp_to = int(c.icmp_timeout * ns)
        self.e.other_to = int(c.other_timeout * ns)
        self.e.active_to = int(c.active_timeout * ns)
        self.e.frag_to = int(c.frag_timeout * ns)
        self.e.validate = bool(c.validate_checksums)
        self.e.tunnels = bool(c.decode_tunnels)
        self.e.dns = bool(c.dns)
        self.e.next_id = 1
        self.e.sensor = <uint64_t>c.sensor
        self.e.session = <uint64_t>c.session
        if self.e.ft.pool == NULL:
            if ft_init(&self.e.ft, <uint32_t>c.max_flows) != 0:
                raise MemoryError("flow table")
            fs_init(&self.e.frags, <uint32_t>c.max_frag_datagrams)

    def __dealloc__(self):
        cdef eng_t* e = self.e
        cdef uint32_t i
        cdef int d
        if e == NULL:
            return
        if e.ft.pool != NULL:
            for i in range(e.ft.high):
                if e.ft.pool[i].in_use:
                    flow_release(&e.ft.pool[i])
        ft_free(&e.ft)
        free(e.timers.h)
        fs_free(&e.frags)
        free(e.tun)
        for d in range(MAX_TUNNEL_DEPTH + 1):
            free(e.scratch[d])
        free(e.outf)
        free(e.outa)
        free(e)
        self.e = NULL

    @property
    def cfg(self):
        """The EngineConfig (the reference's attribute name)."""
        return self.config

    cdef _enter(self):
        # The GIL is released inside; one engine serves one thread at a time.
        if self.busy:
            raise RuntimeError("FlowEngine is in use by another thread")
        self.busy = True

    cdef _check_oom(self):
        if self.e.oom:
            self.e.oom = False
            raise MemoryError("flow engine allocation failed; some state was dropped")

    def feed(self, batch, pktsum=None):
        """Decode and assemble ``batch.count`` packets; fill ``pktsum[:count]`` if given."""
        cdef Py_ssize_t n = batch.count
        cdef const uint8_t[::1] buf
        cdef const uint64_t[::1] offs
        cdef const uint32_t[::1] caps, wires
        cdef const int64_t[::1] tss
        cdef const uint16_t[::1] lts
        cdef const uint8_t[::1] ifs
        cdef uint8_t[::1] psraw
        cdef nw_pktsum_rec* ps = NULL
        cdef const uint8_t* base = NULL
        cdef size_t size = 0
        if n <= 0:
            return
        offs = np.ascontiguousarray(batch.offset[:n], np.uint64)
        caps = np.ascontiguousarray(batch.caplen[:n], np.uint32)
        wires = np.ascontiguousarray(batch.wirelen[:n], np.uint32)
        tss = np.ascontiguousarray(batch.ts_ns[:n], np.int64)
        lts = np.ascontiguousarray(batch.linktype[:n], np.uint16)
        ifs = np.ascontiguousarray(batch.iface[:n], np.uint8)
        if min(offs.shape[0], caps.shape[0], wires.shape[0], tss.shape[0], lts.shape[0],
               ifs.shape[0]) < n:
            raise ValueError(f"batch.count is {n} but its arrays are shorter")
        mv = memoryview(batch.buffer)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        if mv.nbytes:
            buf = mv
            base = &buf[0]
            size = buf.shape[0]
        if pktsum is not None:
            if pktsum.dtype != PKTSUM_DTYPE or not pktsum.flags.c_contiguous:
                raise ValueError("pktsum must be a C-contiguous PKTSUM_DTYPE array")
            if pktsum.shape[0] < n:
                raise ValueError(f"pktsum holds {pktsum.shape[0]} rows, batch has {n}")
            psraw = pktsum.reshape(-1).view(np.uint8)
            ps = <nw_pktsum_rec*>&psraw[0]
        self._enter()
        try:
            with nogil:
                eng_feed(self.e, base, size, n, &offs[0], &caps[0], &wires[0], &tss[0],
                         &lts[0], &ifs[0], ps)
        finally:
            self.busy = False
        self._check_oom()

    def advance(self, int64_t now_ns):
        """Expire flows and fragments up to network time ``now_ns``."""
        self._enter()
        try:
            with nogil:
                if now_ns > self.e.now:
                    self.e.now = now_ns
                run_timers(self.e, self.e.now)
                expire_frags(self.e, self.e.now)
        finally:
            self.busy = False
        self._check_oom()

    def flush(self):
        """End every live flow (end of input)."""
        self._enter()
        try:
            with nogil:
                eng_flush(self.e)
        finally:
            self.busy = False
        self._check_oom()

    def drain_flows(self, out):
        """Move up to ``len(out)`` finished FLOW_DTYPE records into ``out``; returns how many."""
        cdef uint8_t[::1] raw
        cdef size_t n
        if out.dtype != FLOW_DTYPE or not out.flags.c_contiguous or out.ndim != 1:
            raise ValueError("out must be a 1-d C-contiguous FLOW_DTYPE array")
        if self.busy:
            raise RuntimeError("FlowEngine is in use by another thread")
        n = min(<size_t>out.shape[0], self.e.outf_n - self.e.outf_start)
        if n == 0:
            return 0
        raw = out.view(np.uint8)
        memcpy(&raw[0], &self.e.outf[self.e.outf_start], n * sizeof(nw_flow_rec))
        self.e.outf_start += n
        if self.e.outf_start == self.e.outf_n:
            self.e.outf_start = 0
            self.e.outf_n = 0
        return n

    def drain_arp(self, out):
        """Move up to ``len(out)`` ARP_DTYPE records into ``out``; returns how many."""
        cdef uint8_t[::1] raw
        cdef size_t n
        if out.dtype != ARP_DTYPE or not out.flags.c_contiguous or out.ndim != 1:
            raise ValueError("out must be a 1-d C-contiguous ARP_DTYPE array")
        if self.busy:
            raise RuntimeError("FlowEngine is in use by another thread")
        n = min(<size_t>out.shape[0], self.e.outa_n - self.e.outa_start)
        if n == 0:
            return 0
        raw = out.view(np.uint8)
        memcpy(&raw[0], &self.e.outa[self.e.outa_start], n * sizeof(nw_arp_rec))
        self.e.outa_start += n
        if self.e.outa_start == self.e.outa_n:
            self.e.outa_start = 0
            self.e.outa_n = 0
        return n

    def stats(self):
        cdef eng_stats* s = &self.e.st
        return {
            "packets": s.packets, "bytes": s.bytes, "decode_errors": s.decode_errors,
            "unsupported_link": s.unsupported_link, "flows_created": s.flows_created,
            "flows_emitted": s.flows_emitted, "flows_evicted": s.flows_evicted,
            "flows_live": self.e.ft.used, "arp": s.arp,
            "frag_reassembled": s.frag_reassembled, "frag_dropped": s.frag_dropped,
            "frags_pending": self.e.frags.count, "checksum_errors": s.checksum_errors,
            "tunnel_packets": s.tunnel_packets, "non_ip": s.non_ip,
            "no_transport": s.no_transport,
            "flows_pending_output": self.e.outf_n - self.e.outf_start,
        }
