# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Per-host telemetry, compiled: C tables updated with the GIL released.

The twin of ``sensor/telemetry/reference.py`` (read it first: it states the rules this file
follows operation for operation, so both give byte-identical records). State lives in C
arrays of structs; HyperLogLog registers in one byte array per table; records are written
into numpy buffers at the offsets the record dtypes declare, read once at construction.
"""

from libc.math cimport exp2, log, pow, sqrt, ldexp
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memset

import numpy as np

from netwarden.records.schema import (
    copy_records,
    check_layout,
    DECAY_HALF_LIVES, FLOW_INTERVAL_HALF_LIFE, HOST_DTYPE, PAIR_DTYPE, PKTSUM_DTYPE,
    PktEvent, TelemetryFlags,
)
from sensor.telemetry.reference import EPOCH_NS, HOST_COUNTERS, SALT_HOST, SALT_PORT, GOLDEN

cdef enum:
    PROBE = 16
    HLL_P = 8
    HLL_M = 256
    NDECAY = 4
    NSKETCH = 7  # dst_hosts, dst_ports, src_hosts, in_ports, then the long-window
                 # dst_hosts, dst_ports, src_hosts
    NCOUNT = 32
    SK_SPARSE = 12  # registers a sketch keeps inline (Sketch.idx/rank)
    SK_DENSE = 255
    PREFETCH = 6  # packets ahead whose table entries are prefetched
    NCOUNT_OUT = 30  # the last two (tcp replies) are not record fields

cdef enum:  # parts _profile_skip switches off
    SKIP_PAIR = 1
    SKIP_SKETCH = 2
    SKIP_DECAY = 4
    SKIP_EMIT = 8

cdef enum:
    C_OUT_BYTES = 0
    C_IN_BYTES = 1
    C_OUT_PAYLOAD = 2
    C_IN_PAYLOAD = 3
    C_IN_UDP_BYTES = 4
    C_IN_DNS_BYTES = 5
    C_OUT_PKTS = 6
    C_IN_PKTS = 7
    C_OUT_FLOWS = 8
    C_IN_FLOWS = 9
    C_OUT_SYN = 10
    C_IN_SYN = 11
    C_OUT_SYNACK = 12
    C_IN_SYNACK = 13
    C_OUT_RST = 14
    C_IN_RST = 15
    C_OUT_UNREACH = 16
    C_IN_UNREACH = 17
    C_OUT_UDP_PKTS = 18
    C_IN_UDP_PKTS = 19
    C_OUT_ICMP_PKTS = 20
    C_IN_ICMP_PKTS = 21
    C_OUT_DNS_QUERIES = 22
    C_IN_DNS_QUERIES = 23
    C_OUT_DNS_RESPONSES = 24
    C_IN_DNS_RESPONSES = 25
    C_ARP_REQ_OUT = 26
    C_ARP_REP_OUT = 27
    C_ARP_REQ_IN = 28
    C_ARP_REP_IN = 29
    C_OUT_TCP_REPLIES = 30
    C_IN_TCP_REPLIES = 31

cdef uint64_t SALT_H = SALT_HOST
cdef uint64_t SALT_P = SALT_PORT
cdef uint64_t GOLD = GOLDEN
cdef double LN2 = log(2.0)
cdef double HALF[4]
for _i in range(4):
    HALF[_i] = DECAY_HALF_LIVES[_i]
cdef double FI_HALF = FLOW_INTERVAL_HALF_LIFE
cdef int64_t EPOCH = EPOCH_NS
cdef int64_t SLOT_EMPTY = -1  # Slot.last of an empty slot (a used one's is >= 0)
cdef int64_t NO_X = -(1 << 62)  # no cached gains / factors

cdef int EV_NEW = PktEvent.NEW_FLOW
cdef int EV_FIRST_REPLY = PktEvent.FIRST_REPLY
cdef int EV_UNREACH = PktEvent.ICMP_UNREACH
cdef int EV_DNS_Q = PktEvent.DNS_QUERY
cdef int EV_DNS_R = PktEvent.DNS_RESPONSE
cdef int EV_ARP = PktEvent.ARP
cdef int FLAG_EVICTED = TelemetryFlags.EVICTED

assert list(HOST_COUNTERS[:NCOUNT_OUT + 2]) == list(HOST_COUNTERS) and len(HOST_COUNTERS) == NCOUNT
assert len(DECAY_HALF_LIVES) == NDECAY


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline uint64_t addr_hash(const uint8_t *addr, uint8_t version) noexcept nogil:
    cdef uint64_t a, b
    memcpy(&a, addr, 8)  # little-endian load, as int.from_bytes(..., "little")
    memcpy(&b, addr + 8, 8)
    return mix64(a ^ mix64(b ^ (<uint64_t>version * GOLD)))


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil
    void __builtin_prefetch(const void *) nogil


cdef inline void hll_set(Sketch *sk, uint8_t old, uint8_t rank) noexcept nogil:
    """A register goes from ``old`` to ``rank``: keep ``z`` and ``zeros`` current (the same
    operations, in the same order, as ``Hll.add`` of reference.py)."""
    sk.z = sk.z - ldexp(1.0, -old) + ldexp(1.0, -rank)
    if old == 0:
        sk.zeros -= 1


cdef inline void hll_add(Sketch *sk, uint8_t *regs, uint64_t x) noexcept nogil:
    """Add ``x``; ``regs`` is the sketch's 256 registers once it is dense."""
    x = mix64(x)
    cdef uint8_t idx = <uint8_t>(x & (HLL_M - 1))
    cdef uint64_t w = x >> HLL_P
    cdef uint8_t rank = <uint8_t>(64 - HLL_P + 1)
    cdef uint8_t old
    cdef int i
    if w:
        rank = <uint8_t>(__builtin_ctzll(w) + 1)
    if sk.n != SK_DENSE:
        for i in range(sk.n):
            if sk.idx[i] == idx:
                if rank > sk.rank[i]:
                    hll_set(sk, sk.rank[i], rank)
                    sk.rank[i] = rank
                return
        if sk.n < SK_SPARSE:
            sk.idx[sk.n] = idx
            sk.rank[sk.n] = rank
            sk.n += 1
            hll_set(sk, 0, rank)
            return
        memset(regs, 0, HLL_M)  # full: spill the inline registers to the array
        for i in range(sk.n):
            regs[sk.idx[i]] = sk.rank[i]
        sk.n = SK_DENSE
    old = regs[idx]
    if rank > old:
        hll_set(sk, old, rank)
        regs[idx] = rank


cdef double LINEAR[HLL_M]  # m * log(m / zeros) for zeros in 1..m-1, as computed below
for _i in range(1, HLL_M):
    LINEAR[_i] = <double>HLL_M * log(<double>HLL_M / <double>_i)


cdef inline uint32_t hll_estimate(double z, uint16_t zeros) noexcept nogil:
    cdef double m = HLL_M
    cdef double est
    if zeros == HLL_M:
        return 0
    est = (0.7213 / (1.0 + 1.079 / m)) * m * m / z
    if est <= 2.5 * m and zeros > 0:
        est = LINEAR[zeros]  # linear counting: a log per estimate otherwise
    if est > 4e9:
        est = 4e9
    return <uint32_t>(est + 0.5)


cdef inline void gains(int64_t x_ns, double *out) noexcept nogil:
    """``2^(x/h)`` per half-life (``gains`` of reference.py)."""
    cdef double x = <double>x_ns * 1e-9
    cdef int i
    for i in range(NDECAY):
        out[i] = exp2(x / HALF[i])


cdef inline void decays(int64_t x_ns, double *out) noexcept nogil:
    """``2^(-x/h)`` per half-life (``decays`` of reference.py)."""
    cdef double x = <double>x_ns * 1e-9
    cdef int i
    for i in range(NDECAY):
        out[i] = exp2(-x / HALF[i])


cdef enum:
    NSTEP = 16
cdef double STEPS[16][4]  # decays(k epochs) for k = 1..NSTEP
for _k in range(NSTEP):
    decays((_k + 1) * EPOCH, STEPS[_k])


cdef inline bint touch(Slot *slot, uint8_t *active, uint64_t *bitmap, Py_ssize_t *actn,
                       Py_ssize_t s, int64_t ts) noexcept nogil:
    """An entry saw a packet at ``ts``: mark it active (and its slot in the window's
    bitmap), move its last time; True if it was active already."""
    cdef bint was = active[0]
    if not was:
        active[0] = 1
        bitmap[s >> 6] |= (<uint64_t>1) << (s & 63)
        actn[0] += 1
    if ts > slot.last:
        slot.last = ts
    return was


cdef inline int64_t floordiv(int64_t a, int64_t b) noexcept nogil:
    """Python's // for a positive divisor (C division truncates towards zero)."""
    cdef int64_t q = a // b
    if a < 0 and q * b != a:
        q -= 1
    return q


cdef inline void put_u32(uint8_t *rec, Py_ssize_t off, uint64_t v) noexcept nogil:
    cdef uint32_t x = <uint32_t>0xFFFFFFFF
    if v < x:
        x = <uint32_t>v
    memcpy(rec + off, &x, 4)


cdef inline void put_u64(uint8_t *rec, Py_ssize_t off, uint64_t v) noexcept nogil:
    memcpy(rec + off, &v, 8)


cdef inline void put_i64(uint8_t *rec, Py_ssize_t off, int64_t v) noexcept nogil:
    memcpy(rec + off, &v, 8)


cdef inline void put_f32(uint8_t *rec, Py_ssize_t off, double v) noexcept nogil:
    cdef float x = <float>v
    memcpy(rec + off, &x, 4)


def _check_pktsum_layout():
    """Refuse to run if the engine's per-packet summary dtype and our struct disagree."""
    cdef PktSum *z = NULL
    c_offsets = {
        "ts_ns": <Py_ssize_t>&z.ts_ns, "flow_id": <Py_ssize_t>&z.flow_id,
        "ip_len": <Py_ssize_t>&z.ip_len, "payload_len": <Py_ssize_t>&z.payload_len,
        "sport": <Py_ssize_t>&z.sport, "dport": <Py_ssize_t>&z.dport,
        "ip_version": <Py_ssize_t>&z.ip_version, "proto": <Py_ssize_t>&z.proto,
        "tcp_flags": <Py_ssize_t>&z.tcp_flags, "events": <Py_ssize_t>&z.events,
        "src": <Py_ssize_t>&z.src, "dst": <Py_ssize_t>&z.dst,
    }
    if set(c_offsets) != set(PKTSUM_DTYPE.names):
        from netwarden.errors import SchemaError
        raise SchemaError("PKTSUM_DTYPE fields differ from the telemetry's C struct")
    check_layout("pktsum", sizeof(PktSum), c_offsets)


def _holding(dtype, buf, Py_ssize_t n, Py_ssize_t cap):
    """A buffer of ``cap`` records of ``dtype`` starting with the first ``n`` of ``buf``,
    copied byte for byte; every later record is cleared when written."""
    new = np.empty(cap, dtype)
    if n:
        new.view(np.uint8)[:n * dtype.itemsize] = buf[:n].view(np.uint8)
    return new


cdef class HostTelemetry:
    """Compiled twin of ``sensor.telemetry.reference.HostTelemetry`` (same API, same records);
    fields and cdef methods are declared in ``_telemetry.pxd``.

    Beyond the reference's rules, for speed only (records are the same): probing reads a
    compact array of (key, last) per slot; a window's end visits the slots set in a bitmap
    of active entries (slot order) instead of every slot; expiry is checked when a slot is
    probed; a destination's source sketches are fed once per (pair, window) and not on
    every packet (adding the same value to a HyperLogLog again changes nothing)."""

    def __cinit__(self, config):
        self.host_cap = int(config.host_capacity)
        self.pair_cap = int(config.pair_capacity)
        if self.host_cap & (self.host_cap - 1) or self.pair_cap & (self.pair_cap - 1) \
                or self.host_cap < 64 or self.pair_cap < 64:
            raise ValueError("table capacities must be powers of two >= 64")
        self.window_ns = int(round(config.window * 1e9))
        self.long_ns = int(round(config.long_window * 1e9))
        self.cur_long = -1
        self.idle_ns = int(round(config.idle_timeout * 1e9))
        self.iface = int(config.iface) & 0xFF
        self.cur = -1
        self.dead_before = -(1 << 62)
        self.g_ts = self.f_x = self.scan_db = NO_X
        self.hslots = <Slot *>calloc(self.host_cap, sizeof(Slot))
        self.pslots = <Slot *>calloc(self.pair_cap, sizeof(Slot))
        self.hosts = <Host *>calloc(self.host_cap, sizeof(Host))
        self.pairs = <Pair *>calloc(self.pair_cap, sizeof(Pair))
        self.hact = <uint64_t *>calloc(self.host_cap // 64, 8)
        self.pact = <uint64_t *>calloc(self.pair_cap // 64, 8)
        self.hregs = <uint8_t *>calloc(<size_t>self.host_cap * NSKETCH * HLL_M, 1)
        self.hsk = <Sketch *>calloc(<size_t>self.host_cap * NSKETCH, sizeof(Sketch))
        if self.hosts == NULL or self.pairs == NULL or self.hregs == NULL or self.hsk == NULL \
                or self.hslots == NULL or self.pslots == NULL \
                or self.hact == NULL or self.pact == NULL:
            raise MemoryError("telemetry tables")
        cdef Py_ssize_t s
        for s in range(self.host_cap):
            self.hslots[s].last = SLOT_EMPTY
        for s in range(self.pair_cap):
            self.pslots[s].last = SLOT_EMPTY
        _check_pktsum_layout()
        hf = HOST_DTYPE.fields
        for k in range(NCOUNT_OUT):
            name = HOST_COUNTERS[k]
            self.h_off_cnt[k] = hf[name][1]
            self.h_cnt_wide[k] = hf[name][0].itemsize == 8
        self.h_ts_start = hf["ts_start_ns"][1]
        self.h_ts_end = hf["ts_end_ns"][1]
        self.h_ts_last = hf["ts_last_ns"][1]
        self.h_syn_nr_out = hf["out_syn_noreply"][1]
        self.h_syn_nr_in = hf["in_syn_noreply"][1]
        for k, name in enumerate(("out_dst_hosts", "out_dst_ports", "in_src_hosts",
                                  "in_dst_ports", "out_dst_hosts_long", "out_dst_ports_long",
                                  "in_src_hosts_long")):
            self.h_sk[k] = hf[name][1]
        self.h_ts_long = hf["ts_long_start_ns"][1]
        for k, name in enumerate(("out_rate", "out_size_mean", "out_size_std", "in_rate",
                                  "in_size_mean", "in_size_std")):
            self.h_dec[k] = hf[name][1]
        self.h_addr = hf["addr"][1]
        self.h_ver = hf["ip_version"][1]
        self.h_flags = hf["flags"][1]
        self.h_iface = hf["iface"][1]
        pf = PAIR_DTYPE.fields
        self.p_ts_start = pf["ts_start_ns"][1]
        self.p_ts_end = pf["ts_end_ns"][1]
        self.p_ts_last = pf["ts_last_ns"][1]
        self.p_bytes = pf["bytes"][1]
        self.p_payload = pf["payload"][1]
        self.p_pkts = pf["pkts"][1]
        self.p_flows = pf["flows"][1]
        self.p_rate = pf["rate"][1]
        self.p_mean = pf["size_mean"][1]
        self.p_std = pf["size_std"][1]
        self.p_fim = pf["flow_interval_mean"][1]
        self.p_fis = pf["flow_interval_std"][1]
        self.p_src = pf["src"][1]
        self.p_dst = pf["dst"][1]
        self.p_ver = pf["ip_version"][1]
        self.p_flags = pf["flags"][1]
        self.p_iface = pf["iface"][1]
        self.hsize = HOST_DTYPE.itemsize
        self.psize = PAIR_DTYPE.itemsize
        self.hn = self.pn = 0
        self._grow(1024, 1024)

    def __dealloc__(self):
        free(self.hslots)
        free(self.pslots)
        free(self.hosts)
        free(self.pairs)
        free(self.hact)
        free(self.pact)
        free(self.hregs)
        free(self.hsk)

    cdef _grow(self, Py_ssize_t hneed, Py_ssize_t pneed):
        """Make room for ``hneed`` more host and ``pneed`` more pair records."""
        cdef Py_ssize_t cap
        if self._hbuf is None or self.hn + hneed > self.hcap:
            cap = max(2 * (self.hn + hneed), 1024)
            self._use(0, _holding(HOST_DTYPE, self._hbuf, self.hn, cap))
        if self._pbuf is None or self.pn + pneed > self.pcap:
            cap = max(2 * (self.pn + pneed), 1024)
            self._use(1, _holding(PAIR_DTYPE, self._pbuf, self.pn, cap))

    cdef _use(self, int which, buf):
        """Write the records of table ``which`` (0 hosts, 1 pairs) into ``buf`` from now on."""
        if which:
            self._pbuf = buf
            self.pcap = len(buf)
            self.pout = <uint8_t *><size_t>buf.ctypes.data
        else:
            self._hbuf = buf
            self.hcap = len(buf)
            self.hout = <uint8_t *><size_t>buf.ctypes.data

    cdef object _take(self, int which):
        """The records written so far, handed out: the buffer itself (a new one takes its
        place) unless they are few, then a copy."""
        buf = self._pbuf if which else self._hbuf
        cdef Py_ssize_t n = self.pn if which else self.hn
        if n * 8 < len(buf):
            return copy_records(buf[:n])
        self._use(which, np.empty(len(buf), buf.dtype))
        return buf[:n]

    # -- decayed statistics -------------------------------------------------------------
    cdef void _decay_add(self, Decay *d, int64_t ts, double size) noexcept nogil:
        """``Decay.add`` of reference.py; ``self.g`` caches the gains of one timestamp."""
        cdef double gl[4]
        cdef double f[4]
        cdef const double *g = self.g
        cdef const double *fp
        cdef int64_t e
        cdef int i
        if d.t != 0 and ts < d.t:  # late: counted at the latest time seen
            ts = d.t
            gains(ts - floordiv(ts, EPOCH) * EPOCH, gl)
            g = gl
        elif ts != self.g_ts:
            gains(ts - floordiv(ts, EPOCH) * EPOCH, self.g)
            self.g_ts = ts
        e = floordiv(ts, EPOCH)
        if d.t == 0:
            d.epoch = e
        elif e > d.epoch:
            if e - d.epoch <= NSTEP:  # the same values decays() gives, computed once
                fp = STEPS[e - d.epoch - 1]
            else:
                decays((e - d.epoch) * EPOCH, f)
                fp = f
            for i in range(NDECAY):
                d.w[i] *= fp[i]
                d.ls[i] *= fp[i]
                d.ss[i] *= fp[i]
            d.epoch = e
        for i in range(NDECAY):
            d.w[i] += g[i]
            d.ls[i] += g[i] * size
            d.ss[i] += g[i] * size * size
        d.t = ts

    cdef void _decay_write(self, const Decay *d, int64_t now, float *rate, float *mean,
                           float *std) noexcept nogil:
        """``Decay.write``; ``self.f`` caches the factors of one offset from an epoch start
        (at a window's end most entries share it)."""
        cdef int64_t at = now if now > d.t else d.t
        cdef int64_t x = at - d.epoch * EPOCH
        cdef double h, w, mu, var
        cdef int i
        if x != self.f_x:
            decays(x, self.f)
            self.f_x = x
        for i in range(NDECAY):
            h = HALF[i]
            w = d.w[i]
            rate[i] = <float>(w * self.f[i] * LN2 / h)
            if w > 0.0:
                mu = d.ls[i] / w
                var = d.ss[i] / w - mu * mu
                mean[i] = <float>mu
                std[i] = <float>(sqrt(var) if var > 0.0 else 0.0)
            else:
                mean[i] = 0.0
                std[i] = 0.0

    # -- sketches -----------------------------------------------------------------------
    cdef void _sk_reset(self, Py_ssize_t slot, int first, int last) noexcept nogil:
        """Empty sketches ``first..last-1`` of a host (registers are cleared when a sketch
        next spills to the register array)."""
        cdef int k
        cdef Sketch *sk
        for k in range(first, last):
            sk = &self.hsk[slot * NSKETCH + k]
            sk.z = <double>HLL_M
            sk.zeros = HLL_M
            sk.n = 0

    cdef void _sk_add(self, Py_ssize_t slot, int k, uint64_t x) noexcept nogil:
        cdef size_t j = <size_t>slot * NSKETCH + k
        hll_add(&self.hsk[j], self.hregs + j * HLL_M, x)

    # -- tables -------------------------------------------------------------------------
    cdef Py_ssize_t _find_host(self, uint64_t key, const uint8_t *addr, uint8_t ver,
                               Py_ssize_t protect, bint *found) noexcept nogil:
        cdef uint32_t mask = self.host_cap - 1
        cdef Py_ssize_t freeslot = -1, oldest = -1, s
        cdef int j
        cdef const Slot *e
        found[0] = False
        for j in range(PROBE):
            s = <Py_ssize_t>((key + <uint64_t>j) & mask)
            e = &self.hslots[s]
            if e.last == SLOT_EMPTY:
                return freeslot if freeslot >= 0 else s
            if e.last < self.dead_before:
                if freeslot < 0:
                    freeslot = s
                continue
            if e.key == key and self.hosts[s].version == ver \
                    and memcmp(self.hosts[s].addr, addr, 16) == 0:
                found[0] = True
                return s
            if s != protect and (oldest < 0 or e.last < self.hslots[oldest].last):
                oldest = s
        return freeslot if freeslot >= 0 else oldest

    cdef Py_ssize_t _host(self, const uint8_t *addr, uint8_t ver, int64_t ts,
                          Py_ssize_t protect) noexcept nogil:
        cdef uint64_t key = addr_hash(addr, ver)
        cdef bint found
        cdef Py_ssize_t s = self._find_host(key, addr, ver, protect, &found)
        cdef Host *h = &self.hosts[s]
        if found:
            return s
        if self.hslots[s].last == SLOT_EMPTY:
            self.hused += 1
        elif self.hslots[s].last < self.dead_before:
            self.expired += 1
            self.hexpired += 1
        else:
            if h.active:
                self._emit_host(s, FLAG_EVICTED, ts)
                self.host_partial += 1
            self.evictions += 1
        memset(h, 0, sizeof(Host))
        self._sk_reset(s, 0, NSKETCH)
        self.gen += 1
        if self.gen == 0:
            self.gen = 1
        h.gen = self.gen
        memcpy(h.addr, addr, 16)
        h.version = ver
        self.hslots[s].key = key
        self.hslots[s].last = ts if ts > 0 else 0  # not expired before it is counted
        return s

    cdef Py_ssize_t _pair(self, uint64_t hs, uint64_t hd, const uint8_t *src,
                          const uint8_t *dst, uint8_t ver, int64_t ts) noexcept nogil:
        cdef uint64_t key = mix64(hs ^ (hd * GOLD + 1))
        cdef uint32_t mask = self.pair_cap - 1
        cdef Py_ssize_t freeslot = -1, oldest = -1, s, slot = -1
        cdef int j
        cdef const Slot *e
        cdef Pair *p
        for j in range(PROBE):
            s = <Py_ssize_t>((key + <uint64_t>j) & mask)
            e = &self.pslots[s]
            if e.last == SLOT_EMPTY:
                slot = freeslot if freeslot >= 0 else s
                break
            if e.last < self.dead_before:
                if freeslot < 0:
                    freeslot = s
                continue
            if e.key == key:
                p = &self.pairs[s]
                if p.version == ver and memcmp(p.src, src, 16) == 0 \
                        and memcmp(p.dst, dst, 16) == 0:
                    return s
            if oldest < 0 or e.last < self.pslots[oldest].last:
                oldest = s
        if slot < 0:
            slot = freeslot if freeslot >= 0 else oldest
        p = &self.pairs[slot]
        if self.pslots[slot].last == SLOT_EMPTY:
            self.pused += 1
        elif self.pslots[slot].last < self.dead_before:
            self.expired += 1
        else:
            if p.active:
                self._emit_pair(p, FLAG_EVICTED, ts)
                self.pair_partial += 1
            self.pair_evictions += 1
        memset(p, 0, sizeof(Pair))
        memcpy(p.src, src, 16)
        memcpy(p.dst, dst, 16)
        p.version = ver
        self.pslots[slot].key = key
        self.pslots[slot].last = ts if ts > 0 else 0
        return slot

    cdef void _prefetch(self, const PktSum *r) noexcept nogil:
        """Ask for the probe slots and entries a later packet will read (the tables are
        larger than the caches: a batch's lookups then overlap their memory latency)."""
        cdef uint8_t ver = r.ip_version
        cdef uint64_t hs, hd, s, d, p
        if ver != 4 and ver != 6:
            return
        hs = addr_hash(r.src, ver)
        hd = addr_hash(r.dst, ver)
        s = hs & (self.host_cap - 1)
        d = hd & (self.host_cap - 1)
        p = mix64(hs ^ (hd * GOLD + 1)) & (self.pair_cap - 1)
        __builtin_prefetch(&self.hslots[s])
        __builtin_prefetch(&self.hslots[d])
        __builtin_prefetch(&self.pslots[p])
        __builtin_prefetch(&self.hosts[s])
        __builtin_prefetch(&self.hosts[d])
        __builtin_prefetch(&self.pairs[p])

    cdef bint _touch_host(self, Py_ssize_t s, int64_t ts) noexcept nogil:
        """Host ``s`` saw a packet at ``ts``; True if it was already active this window."""
        return touch(&self.hslots[s], &self.hosts[s].active, self.hact, &self.hactn, s, ts)

    cdef bint _touch_pair(self, Py_ssize_t s, int64_t ts) noexcept nogil:
        return touch(&self.pslots[s], &self.pairs[s].active, self.pact, &self.pactn, s, ts)

    # -- records ------------------------------------------------------------------------
    cdef void _emit_host(self, Py_ssize_t s, int flags, int64_t now) noexcept nogil:
        cdef Host *h = &self.hosts[s]
        cdef uint8_t *rec = self.hout + self.hn * self.hsize
        cdef int64_t start = self.cur * self.window_ns
        cdef int64_t end = start + self.window_ns
        cdef int64_t at = now if now < end else end
        cdef int k
        cdef float dec[6][4]
        if self.skip & SKIP_EMIT:  # profiling: only what a new window needs
            memset(h.c, 0, sizeof(h.c))
            self._sk_reset(s, 0, 4)
            h.active = 0
            return
        memset(rec, 0, self.hsize)
        put_i64(rec, self.h_ts_start, start)
        put_i64(rec, self.h_ts_end, end)
        put_i64(rec, self.h_ts_last, self.hslots[s].last)
        put_i64(rec, self.h_ts_long, self.cur_long * self.long_ns)
        for k in range(NCOUNT_OUT):
            if self.h_cnt_wide[k]:
                put_u64(rec, self.h_off_cnt[k], h.c[k])
            else:
                put_u32(rec, self.h_off_cnt[k], h.c[k])
        put_u32(rec, self.h_syn_nr_out, h.c[C_OUT_SYN] - h.c[C_IN_TCP_REPLIES]
                if h.c[C_OUT_SYN] > h.c[C_IN_TCP_REPLIES] else 0)
        put_u32(rec, self.h_syn_nr_in, h.c[C_IN_SYN] - h.c[C_OUT_TCP_REPLIES]
                if h.c[C_IN_SYN] > h.c[C_OUT_TCP_REPLIES] else 0)
        for k in range(NSKETCH):
            put_u32(rec, self.h_sk[k], hll_estimate(self.hsk[s * NSKETCH + k].z,
                                                    self.hsk[s * NSKETCH + k].zeros))
        self._decay_write(&h.dout, at, dec[0], dec[1], dec[2])
        self._decay_write(&h.din, at, dec[3], dec[4], dec[5])
        for k in range(6):
            memcpy(rec + self.h_dec[k], dec[k], 16)
        memcpy(rec + self.h_addr, h.addr, 16)
        rec[self.h_ver] = h.version
        rec[self.h_flags] = <uint8_t>flags
        rec[self.h_iface] = self.iface
        self.hn += 1
        memset(h.c, 0, sizeof(h.c))
        self._sk_reset(s, 0, 4)  # the long-window sketches live on
        h.active = 0

    cdef void _emit_pair(self, Pair *p, int flags, int64_t now) noexcept nogil:
        cdef uint8_t *rec = self.pout + self.pn * self.psize
        cdef int64_t start = self.cur * self.window_ns
        cdef int64_t end = start + self.window_ns
        cdef float rate[4]
        cdef float mean[4]
        cdef float std[4]
        cdef double mu, var
        if self.skip & SKIP_EMIT:
            p.pkts = p.nbytes = p.payload = p.flows = 0
            p.active = 0
            return
        memset(rec, 0, self.psize)
        put_i64(rec, self.p_ts_start, start)
        put_i64(rec, self.p_ts_end, end)
        put_i64(rec, self.p_ts_last, self.pslots[p - self.pairs].last)
        put_u64(rec, self.p_bytes, p.nbytes)
        put_u64(rec, self.p_payload, p.payload)
        put_u32(rec, self.p_pkts, p.pkts)
        put_u32(rec, self.p_flows, p.flows)
        self._decay_write(&p.dec, now if now < end else end, rate, mean, std)
        memcpy(rec + self.p_rate, rate, 16)
        memcpy(rec + self.p_mean, mean, 16)
        memcpy(rec + self.p_std, std, 16)
        if p.fi_w > 0.0:
            mu = p.fi_ls / p.fi_w
            var = p.fi_ss / p.fi_w - mu * mu
            put_f32(rec, self.p_fim, mu)
            put_f32(rec, self.p_fis, sqrt(var) if var > 0.0 else 0.0)
        memcpy(rec + self.p_src, p.src, 16)
        memcpy(rec + self.p_dst, p.dst, 16)
        rec[self.p_ver] = p.version
        rec[self.p_flags] = <uint8_t>flags
        rec[self.p_iface] = self.iface
        self.pn += 1
        p.pkts = p.nbytes = p.payload = p.flows = 0
        p.active = 0

    cdef void _emit_active(self, bint pairs, int64_t end) noexcept nogil:
        """Emit the entries of one table set in its bitmap, in slot order; clear it."""
        cdef uint64_t *bitmap = self.pact if pairs else self.hact
        cdef Py_ssize_t w, s
        cdef uint64_t bits
        for w in range((self.pair_cap if pairs else self.host_cap) >> 6):
            bits = bitmap[w]
            while bits:
                s = (w << 6) + __builtin_ctzll(bits)
                bits &= bits - 1
                if pairs:
                    if self.pairs[s].active:
                        self._emit_pair(&self.pairs[s], 0, end)
                elif self.hosts[s].active:
                    self._emit_host(s, 0, end)
            bitmap[w] = 0

    cdef void _close_window(self) noexcept nogil:
        """Emit the active entries in slot order (bitmap), then move the expiry line."""
        cdef int64_t start = self.cur * self.window_ns
        cdef int64_t end = start + self.window_ns
        self._emit_active(False, end)
        self._emit_active(True, end)
        self.hactn = self.pactn = 0
        if start - self.idle_ns > self.dead_before:
            self.dead_before = start - self.idle_ns

    cdef void _set_window(self, int64_t w) noexcept nogil:
        """Make ``w`` current; a new long window starts the long sketches over."""
        cdef int64_t lw = floordiv(w * self.window_ns, self.long_ns)
        cdef Py_ssize_t s
        self.cur = w
        if lw != self.cur_long:
            if self.cur_long >= 0:
                for s in range(self.host_cap):
                    if self.hslots[s].last != SLOT_EMPTY:
                        self._sk_reset(s, 4, NSKETCH)
            self.cur_long = lw

    cdef bint _room(self) noexcept nogil:
        """Enough output space for one window close plus this packet's evictions."""
        return self.hn + self.hactn + 4 <= self.hcap and self.pn + self.pactn + 4 <= self.pcap

    cdef Py_ssize_t _update(self, const PktSum *rows, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
        cdef const PktSum *r
        cdef int64_t ts, w
        cdef int ev
        cdef uint8_t ver
        cdef Py_ssize_t si, di, pi
        cdef bint dnew, pnew
        cdef Host *s
        cdef Host *d
        cdef Pair *p
        cdef uint64_t hs, hd
        cdef uint16_t op
        cdef uint32_t ip_len, payload
        cdef uint8_t fl
        cdef uint8_t zero4[4]
        memset(zero4, 0, 4)
        while i < n:
            if not self._room():
                return i
            if i + PREFETCH < n:
                self._prefetch(&rows[i + PREFETCH])
            r = &rows[i]
            i += 1
            ev = r.events
            ver = r.ip_version
            ts = r.ts_ns
            if not (ev & EV_ARP) and ver != 4 and ver != 6:
                continue
            # roll the window (floor division, as Python's //)
            w = floordiv(ts, self.window_ns)
            if self.cur < 0:
                self._set_window(w)
            elif w > self.cur:
                self._close_window()
                self._set_window(w)
            self.packets += 1
            if ev & EV_ARP:
                op = r.sport
                si = -1
                if memcmp(r.src, zero4, 4) != 0:
                    si = self._host(r.src, 4, ts, -1)
                    s = &self.hosts[si]
                    self._touch_host(si, ts)
                    if op == 1:
                        s.c[C_ARP_REQ_OUT] += 1
                        self._sk_add(si, 0, addr_hash(r.dst, 4) ^ SALT_H)
                        self._sk_add(si, 4, addr_hash(r.dst, 4) ^ SALT_H)
                    elif op == 2:
                        s.c[C_ARP_REP_OUT] += 1
                if memcmp(r.dst, zero4, 4) != 0:
                    di = self._host(r.dst, 4, ts, si)
                    d = &self.hosts[di]
                    self._touch_host(di, ts)
                    if op == 1:
                        d.c[C_ARP_REQ_IN] += 1
                    elif op == 2:
                        d.c[C_ARP_REP_IN] += 1
                continue
            ip_len = r.ip_len
            payload = r.payload_len
            fl = r.tcp_flags
            hs = addr_hash(r.src, ver)
            hd = addr_hash(r.dst, ver)
            si = self._host(r.src, ver, ts, -1)
            di = self._host(r.dst, ver, ts, si)
            s = &self.hosts[si]
            d = &self.hosts[di]
            self._touch_host(si, ts)
            dnew = not self._touch_host(di, ts)
            if self.skip & SKIP_PAIR:
                p = &self.scratch
                pnew = True
            else:
                pi = self._pair(hs, hd, r.src, r.dst, ver, ts)
                p = &self.pairs[pi]
                pnew = not self._touch_pair(pi, ts)
            s.c[C_OUT_PKTS] += 1
            d.c[C_IN_PKTS] += 1
            s.c[C_OUT_BYTES] += ip_len
            d.c[C_IN_BYTES] += ip_len
            s.c[C_OUT_PAYLOAD] += payload
            d.c[C_IN_PAYLOAD] += payload
            p.pkts += 1
            p.nbytes += ip_len
            p.payload += payload
            if r.proto == 6:
                if fl & 0x02:
                    if fl & 0x10:
                        s.c[C_OUT_SYNACK] += 1
                        d.c[C_IN_SYNACK] += 1
                    else:
                        s.c[C_OUT_SYN] += 1
                        d.c[C_IN_SYN] += 1
                if fl & 0x04:
                    s.c[C_OUT_RST] += 1
                    d.c[C_IN_RST] += 1
                if ev & EV_FIRST_REPLY:
                    s.c[C_OUT_TCP_REPLIES] += 1
                    d.c[C_IN_TCP_REPLIES] += 1
            elif r.proto == 17:
                s.c[C_OUT_UDP_PKTS] += 1
                d.c[C_IN_UDP_PKTS] += 1
                d.c[C_IN_UDP_BYTES] += ip_len
            elif r.proto == 1 or r.proto == 58:
                s.c[C_OUT_ICMP_PKTS] += 1
                d.c[C_IN_ICMP_PKTS] += 1
            if ev & EV_UNREACH:
                s.c[C_OUT_UNREACH] += 1
                d.c[C_IN_UNREACH] += 1
            if ev & EV_NEW:
                s.c[C_OUT_FLOWS] += 1
                d.c[C_IN_FLOWS] += 1
                if not self.skip & SKIP_SKETCH:
                    self._sk_add(si, 0, hd ^ SALT_H)
                    self._sk_add(si, 1, <uint64_t>r.dport + SALT_P)
                    self._sk_add(di, 3, <uint64_t>r.dport + SALT_P)
                    self._sk_add(si, 4, hd ^ SALT_H)
                    self._sk_add(si, 5, <uint64_t>r.dport + SALT_P)
                p.flows += 1
                if not self.skip & SKIP_DECAY:
                    self._pair_new_flow(p, ts)
            # d's source sketches: once per pair and window (and per incarnation of d)
            if (pnew or p.dgen != d.gen or dnew) and not self.skip & SKIP_SKETCH:
                self._sk_add(di, 2, hs ^ SALT_H)
                self._sk_add(di, 6, hs ^ SALT_H)
                p.dgen = d.gen
            if ev & EV_DNS_Q:
                s.c[C_OUT_DNS_QUERIES] += 1
                d.c[C_IN_DNS_QUERIES] += 1
            if ev & EV_DNS_R:
                s.c[C_OUT_DNS_RESPONSES] += 1
                d.c[C_IN_DNS_RESPONSES] += 1
                d.c[C_IN_DNS_BYTES] += ip_len
            if not self.skip & SKIP_DECAY:
                self._decay_add(&s.dout, ts, <double>ip_len)
                self._decay_add(&d.din, ts, <double>ip_len)
                self._decay_add(&p.dec, ts, <double>ip_len)
        return i

    cdef void _pair_new_flow(self, Pair *p, int64_t ts) noexcept nogil:
        cdef double iv, dt = 0.0, f
        if p.last_flow != 0 and ts > p.last_flow:
            iv = <double>(ts - p.last_flow) * 1e-9
            if p.fi_t != 0 and ts > p.fi_t:
                dt = <double>(ts - p.fi_t) * 1e-9
            f = pow(2.0, -dt / FI_HALF)
            p.fi_w = p.fi_w * f + 1.0
            p.fi_ls = p.fi_ls * f + iv
            p.fi_ss = p.fi_ss * f + iv * iv
            p.fi_t = ts
        if ts > p.last_flow:
            p.last_flow = ts

    # -- public API ---------------------------------------------------------------------
    def _profile_skip(self, int mask):
        """Benchmarks only (``benchmarks/bench_sensor.py``): switch parts off to time each
        one: 1 pair side, 2 sketches, 4 decayed statistics, 8 record writing. Records are
        then incomplete."""
        self.skip = <uint8_t>(mask & 15)

    def update(self, pktsum, Py_ssize_t n):
        """Account ``pktsum[:n]`` (PKTSUM_DTYPE rows from ``engine.feed``)."""
        if pktsum.dtype != PKTSUM_DTYPE:
            raise TypeError("update() needs a PKTSUM_DTYPE array")
        if n > pktsum.shape[0] or n < 0:
            raise ValueError("n is out of range for pktsum")
        arr = np.ascontiguousarray(pktsum[:n])
        cdef const PktSum *rows = <const PktSum *><size_t>arr.ctypes.data
        cdef Py_ssize_t i = 0
        while i < n:
            with nogil:
                i = self._update(rows, i, n)
            if i < n:
                self._grow(self.hactn + 4, self.pactn + 4)

    def advance(self, int64_t now_ns):
        """Close the current window if ``now_ns`` (network time) is past its end."""
        cdef int64_t w = floordiv(now_ns, self.window_ns)
        if self.cur >= 0 and w > self.cur:
            self._grow(self.hactn + 4, self.pactn + 4)
            with nogil:
                self._close_window()
                self._set_window(w)

    def flush(self):
        """End of input: emit the current (partial) window."""
        if self.cur >= 0:
            self._grow(self.hactn + 4, self.pactn + 4)
            with nogil:
                self._close_window()

    def drain(self):
        """Records emitted since the last call, as ``[("host", a), ("pair", b)]``."""
        h = self._take(0)
        p = self._take(1)
        self.hn = self.pn = 0
        return [("host", h), ("pair", p)]

    def stats(self):
        """As the reference's; expired entries are counted by a scan of the probe arrays,
        redone only when the expiry line moved."""
        cdef Py_ssize_t s, dh = 0, dp = 0
        cdef int64_t db = self.dead_before
        if db != self.scan_db:
            for s in range(self.host_cap):
                dh += 0 <= self.hslots[s].last < db
            for s in range(self.pair_cap):
                dp += 0 <= self.pslots[s].last < db
            self.scan_db = db
            self.scan_hexp = self.hexpired
            self.scan_pexp = self.expired - self.hexpired
            self.scan_dead_h = dh
            self.scan_dead_p = dp
        # reused expired slots were expired at the scan: the line has not moved since
        dh = self.scan_dead_h - <Py_ssize_t>(self.hexpired - self.scan_hexp)
        dp = self.scan_dead_p - <Py_ssize_t>(self.expired - self.hexpired - self.scan_pexp)
        return {
            "packets": self.packets,
            "hosts": self.hused - dh,
            "pairs": self.pused - dp,
            "host_capacity": self.host_cap,
            "pair_capacity": self.pair_cap,
            "host_evictions": self.evictions,
            "pair_evictions": self.pair_evictions,
            "host_partial": self.host_partial,
            "pair_partial": self.pair_partial,
            "expired": self.expired + dh + dp,
        }
