# cython: language_level=3
# Table of contents of sensor/telemetry/_telemetry.pyx: the C state of the per-host telemetry and the
# methods that work on it with the GIL released. Rules and record semantics:
# sensor/telemetry/reference.py (the reference twin) and netwarden/records/schema.py (HOST_DTYPE, PAIR_DTYPE).

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


ctypedef struct Decay:  # decayed count / sum / squared sum of sizes, one per half-life,
    double w[4]        # scaled to the start of epoch ``epoch`` (see reference.py)
    double ls[4]
    double ss[4]
    int64_t t  # latest packet time added (0: none)
    int64_t epoch

ctypedef struct Slot:  # the probe array, one per table slot: what probing reads
    uint64_t key
    int64_t last  # time of the entry's last packet (>= 0); SLOT_EMPTY when empty

ctypedef struct Sketch:  # one HyperLogLog: its register sum and empty count, and its
    double z               # registers: up to 12 set ones inline (most windows of most
    uint16_t zeros         # hosts), else all 256 in the table's register array
    uint8_t n  # inline registers in use; SK_DENSE once in the register array
    uint8_t idx[12]
    uint8_t rank[12]

ctypedef struct Host:
    uint64_t c[32]  # window counters, HOST_COUNTERS order
    Decay dout
    Decay din
    uint8_t addr[16]
    uint32_t gen  # creation number: tells a reused slot from the entry a pair last fed
    uint8_t version
    uint8_t active  # seen in the current window

ctypedef struct Pair:
    uint64_t pkts, nbytes, payload, flows
    Decay dec
    double fi_w, fi_ls, fi_ss  # decayed interval between new flows
    int64_t fi_t
    int64_t last_flow
    uint8_t src[16]
    uint8_t dst[16]
    uint32_t dgen  # gen of the destination host whose source sketches have this source
    uint8_t version
    uint8_t active

ctypedef struct PktSum:  # mirrors PKTSUM_DTYPE (checked at construction)
    int64_t ts_ns
    uint64_t flow_id
    uint32_t ip_len
    uint32_t payload_len
    uint16_t sport
    uint16_t dport
    uint8_t ip_version
    uint8_t proto
    uint8_t tcp_flags
    uint8_t events
    uint8_t src[16]
    uint8_t dst[16]


@cython.final
cdef class HostTelemetry:
    # tables: probe arrays, entries, bitmaps of the slots active in the current window
    cdef Slot *hslots
    cdef Slot *pslots
    cdef Host *hosts
    cdef Pair *pairs
    cdef uint64_t *hact
    cdef uint64_t *pact
    cdef uint8_t *hregs  # host_cap * NSKETCH * 256 registers (of dense sketches only)
    cdef Sketch *hsk  # host_cap * NSKETCH sketches
    cdef uint32_t host_cap, pair_cap, gen
    cdef int64_t window_ns, idle_ns, cur, long_ns, cur_long
    cdef int64_t dead_before  # entries whose last packet is older are expired
    cdef Py_ssize_t hused, pused  # slots holding an entry (expired ones until reused)
    cdef Py_ssize_t hactn, pactn  # activations in the current window (bounds a close)
    cdef uint8_t iface
    cdef uint8_t skip  # benchmarks: parts switched off (_profile_skip)
    cdef Pair scratch  # the pair a packet updates when the pair side is switched off
    cdef readonly uint64_t evictions, pair_evictions, host_partial, pair_partial
    cdef readonly uint64_t expired, packets
    # per-packet decay gains (for one timestamp) and emission decay factors (one offset)
    cdef int64_t g_ts, f_x
    cdef double g[4]
    cdef double f[4]
    # stats(): expired entries counted at the last scan
    cdef int64_t scan_db
    cdef uint64_t hexpired, scan_hexp, scan_pexp  # expired hosts reused; at the scan
    cdef Py_ssize_t scan_dead_h, scan_dead_p
    # output buffers (numpy arrays) and cursors
    cdef object _hbuf, _pbuf
    cdef uint8_t *hout
    cdef uint8_t *pout
    cdef Py_ssize_t hn, pn, hcap, pcap, hsize, psize
    # record field offsets, read from the dtypes
    cdef Py_ssize_t h_off_cnt[30]
    cdef uint8_t h_cnt_wide[30]
    cdef Py_ssize_t h_ts_start, h_ts_end, h_ts_last, h_syn_nr_out, h_syn_nr_in
    cdef Py_ssize_t h_sk[7]
    cdef Py_ssize_t h_ts_long
    cdef Py_ssize_t h_dec[6]
    cdef Py_ssize_t h_addr, h_ver, h_flags, h_iface
    cdef Py_ssize_t p_ts_start, p_ts_end, p_ts_last, p_bytes, p_payload, p_pkts, p_flows
    cdef Py_ssize_t p_rate, p_mean, p_std, p_fim, p_fis, p_src, p_dst, p_ver, p_flags, p_iface

    cdef _grow(self, Py_ssize_t hneed, Py_ssize_t pneed)
    cdef _use(self, int which, buf)
    cdef object _take(self, int which)
    # decayed statistics
    cdef void _decay_add(self, Decay *d, int64_t ts, double size) noexcept nogil
    cdef void _decay_write(self, const Decay *d, int64_t now, float *rate, float *mean,
                           float *std) noexcept nogil
    # sketches
    cdef void _sk_reset(self, Py_ssize_t slot, int first, int last) noexcept nogil
    cdef void _sk_add(self, Py_ssize_t slot, int k, uint64_t x) noexcept nogil
    # tables
    cdef Py_ssize_t _find_host(self, uint64_t key, const uint8_t *addr, uint8_t ver,
                               Py_ssize_t protect, bint *found) noexcept nogil
    cdef Py_ssize_t _host(self, const uint8_t *addr, uint8_t ver, int64_t ts,
                          Py_ssize_t protect) noexcept nogil
    cdef Py_ssize_t _pair(self, uint64_t hs, uint64_t hd, const uint8_t *src,
                          const uint8_t *dst, uint8_t ver, int64_t ts) noexcept nogil
    cdef void _pair_new_flow(self, Pair *p, int64_t ts) noexcept nogil
    cdef void _prefetch(self, const PktSum *r) noexcept nogil
    cdef bint _touch_host(self, Py_ssize_t s, int64_t ts) noexcept nogil
    cdef bint _touch_pair(self, Py_ssize_t s, int64_t ts) noexcept nogil
    # records and windows
    cdef void _emit_host(self, Py_ssize_t s, int flags, int64_t now) noexcept nogil
    cdef void _emit_pair(self, Pair *p, int flags, int64_t now) noexcept nogil
    cdef void _emit_active(self, bint pairs, int64_t end) noexcept nogil
    cdef void _close_window(self) noexcept nogil
    cdef void _set_window(self, int64_t w) noexcept nogil
    cdef bint _room(self) noexcept nogil
    # the per-packet loop
    cdef Py_ssize_t _update(self, const PktSum *rows, Py_ssize_t i, Py_ssize_t n) noexcept nogil
