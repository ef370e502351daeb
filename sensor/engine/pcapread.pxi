# Capture file reader: classic pcap and pcapng record headers parsed in C over an mmap.
#
# The packet bytes are never copied: each batch points at the mmap and carries offsets.
# C functions return a status code; PcapReader.batches() turns it into CaptureFormatError
# after yielding every packet read before the fault.

cdef enum:
    RD_OK = 0
    RD_END = 1
    RD_ERR = 2
    FMT_PCAP = 1
    FMT_PCAPNG = 2
    # Largest record accepted (libpcap's MAXIMUM_SNAPLEN); a bigger caplen means corruption.
    MAX_CAPLEN = 262144
    # pcapng blocks larger than this are treated as corrupt rather than trusted.
    MAX_BLOCK = 16 * 1024 * 1024
    MAX_IFACES = 4096


cdef extern from "sigbus_guard.h":
    int nw_guard_add(const void* base, size_t size) nogil
    int nw_guard_hit(int slot) nogil
    void nw_guard_remove(int slot) nogil


# Consumed capture pages are unmapped in windows of this many bytes. (Mapping ahead with
# MADV_POPULATE_READ measured slower than kernel fault-around here.)
WINDOW = 1 << 24


cdef struct rd_iface:
    uint16_t linktype
    uint8_t tsresol  # pcapng if_tsresol byte: bit 7 set = power of 2
    int64_t tsoffset_s  # if_tsoffset: seconds added to every timestamp


cdef struct rd_state:
    const uint8_t* base
    size_t size
    size_t pos
    int fmt
    bint swapped
    bint nsec  # classic pcap: nanosecond timestamps
    uint16_t linktype  # classic pcap
    int n_if
    rd_iface ifaces[MAX_IFACES]
    size_t err_off
    bint err_linktype  # the fault is an unsupported link type
    char err_msg[160]


cdef inline uint16_t rd_u16(const rd_state* s, const uint8_t* p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return bswap16(v) if s.swapped else v


cdef inline uint32_t rd_u32(const rd_state* s, const uint8_t* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return bswap32(v) if s.swapped else v


cdef bint rd_linktype_ok(uint32_t lt) noexcept nogil:
    """Link types the decoders understand (see decode_link in decode.pxi)."""
    return (lt == 0 or lt == 1 or lt == 9 or lt == 10 or lt == 12 or lt == 14 or lt == 50
            or lt == 101 or lt == 105 or lt == 108 or lt == 113 or lt == 127 or lt == 228
            or lt == 229 or lt == 276)


cdef int rd_fail_link(rd_state* s, size_t off, uint32_t lt) noexcept nogil:
    s.err_off = off
    s.err_linktype = True
    snprintf(s.err_msg, 160, "unsupported link type %u", lt)
    return RD_ERR


cdef int rd_fail(rd_state* s, size_t off, const char* msg) noexcept nogil:
    s.err_off = off
    s.err_linktype = False
    strncpy(s.err_msg, msg, 159)
    s.err_msg[159] = 0
    return RD_ERR


cdef bint rd_ng_ts(const rd_iface* ifc, uint64_t ticks, int64_t* out) noexcept nogil:
    """Timestamp ticks at the interface's resolution plus if_tsoffset -> ns since the epoch
    (floor); False when the result does not fit the int64 nanosecond field."""
    cdef uint8_t e = ifc.tsresol & 0x7F
    cdef __int128 p = 1, ns
    cdef int i
    if e > 60:
        e = 60  # as the reference: absurd resolutions are clamped
    if ifc.tsresol & 0x80:
        ns = (<__int128>ticks * 1000000000) >> e
    elif e <= 9:
        for i in range(9 - e):
            p *= 10
        ns = <__int128>ticks * p
    elif e - 9 >= 20:
        ns = 0  # 10**20 > 2**64 > ticks
    else:
        for i in range(e - 9):
            p *= 10
        ns = <__int128>ticks / p
    ns += <__int128>ifc.tsoffset_s * 1000000000
    if ns > <__int128>INT64_MAX or ns < <__int128>INT64_MIN:
        return False
    out[0] = <int64_t>ns
    return True


cdef int rd_open(rd_state* s) noexcept nogil:
    """Parse the file header (pcap) or first section header (pcapng)."""
    cdef uint32_t magic, lt
    s.pos = 0
    s.n_if = 0
    if s.size < 4:
        return rd_fail(s, 0, "file too short for a capture header")
    memcpy(&magic, s.base, 4)
    if magic == 0x0A0D0D0AU:
        s.fmt = FMT_PCAPNG
        return RD_OK  # the SHB is parsed as the first block
    s.fmt = FMT_PCAP
    if s.size < 24:
        return rd_fail(s, 0, "truncated pcap file header")
    if magic == 0xA1B2C3D4U:
        s.swapped = False; s.nsec = False
    elif magic == 0xA1B23C4DU:
        s.swapped = False; s.nsec = True
    elif magic == 0xD4C3B2A1U:
        s.swapped = True; s.nsec = False
    elif magic == 0x4D3CB2A1U:
        s.swapped = True; s.nsec = True
    else:
        return rd_fail(s, 0, "not a pcap or pcapng file (bad magic)")
    # Upper bits carry FCS information (libpcap's LT_LINKTYPE mask).
    lt = rd_u32(s, s.base + 20) & 0x03FFFFFF
    if not rd_linktype_ok(lt):
        return rd_fail_link(s, 20, lt)
    s.linktype = <uint16_t>lt
    s.pos = 24
    return RD_OK


cdef int rd_ng_shb(rd_state* s, size_t off, uint32_t blen) noexcept nogil:
    cdef uint32_t bom
    memcpy(&bom, s.base + off + 8, 4)
    if bom == 0x1A2B3C4DU:
        s.swapped = False
    elif bom == 0x4D3C2B1AU:
        s.swapped = True
    else:
        return rd_fail(s, off, "pcapng section header with a bad byte-order magic")
    s.n_if = 0  # interface ids are per section
    return RD_OK


cdef int rd_ng_idb(rd_state* s, size_t off, uint32_t blen) noexcept nogil:
    cdef rd_iface* ifc
    cdef size_t p, end
    cdef uint16_t code, olen
    cdef uint64_t off64
    if blen < 20:
        return rd_fail(s, off, "pcapng interface description block too short")
    if s.n_if >= MAX_IFACES:
        return rd_fail(s, off, "too many pcapng interfaces")
    ifc = &s.ifaces[s.n_if]
    ifc.linktype = rd_u16(s, s.base + off + 8)
    if not rd_linktype_ok(ifc.linktype):
        return rd_fail_link(s, off, ifc.linktype)
    ifc.tsresol = 6
    ifc.tsoffset_s = 0
    p = off + 16
    end = off + blen - 4
    while p + 4 <= end:
        code = rd_u16(s, s.base + p)
        olen = rd_u16(s, s.base + p + 2)
        if code == 0:
            break
        if code == 9 and olen >= 1 and p + 5 <= end:
            ifc.tsresol = s.base[p + 4]
        elif code == 14 and olen == 8 and p + 12 <= end:
            memcpy(&off64, s.base + p + 4, 8)
            if s.swapped:
                off64 = bswap64(off64)
            ifc.tsoffset_s = <int64_t>off64
        p += 4 + ((olen + 3) & ~(<size_t>3))
    s.n_if += 1
    return RD_OK


cdef int rd_next_pcap(rd_state* s, uint64_t* off, uint32_t* caplen, uint32_t* wirelen,
                      int64_t* ts, uint16_t* lt, uint8_t* iface) noexcept nogil:
    cdef size_t p = s.pos
    cdef uint32_t sec, frac, incl, orig
    if p == s.size:
        return RD_END
    if s.size - p < 16:
        return rd_fail(s, p, "truncated pcap record header")
    sec = rd_u32(s, s.base + p)
    frac = rd_u32(s, s.base + p + 4)
    incl = rd_u32(s, s.base + p + 8)
    orig = rd_u32(s, s.base + p + 12)
    if incl > MAX_CAPLEN:
        return rd_fail(s, p, "pcap record length exceeds the maximum snapshot length")
    if s.size - p - 16 < incl:
        return rd_fail(s, p, "truncated pcap record")
    off[0] = p + 16
    caplen[0] = incl
    wirelen[0] = orig
    ts[0] = <int64_t>sec * 1000000000 + (<int64_t>frac if s.nsec else <int64_t>frac * 1000)
    lt[0] = s.linktype
    iface[0] = 0
    s.pos = p + 16 + incl
    return RD_OK


cdef int rd_next_pcapng(rd_state* s, uint64_t* off, uint32_t* caplen, uint32_t* wirelen,
                        int64_t* ts, uint16_t* lt, uint8_t* iface) noexcept nogil:
    cdef size_t p
    cdef uint32_t btype, blen, ifid, incl, orig
    cdef uint64_t ticks
    cdef int rc
    while True:
        p = s.pos
        if p == s.size:
            return RD_END
        if s.size - p < 12:
            return rd_fail(s, p, "truncated pcapng block header")
        memcpy(&btype, s.base + p, 4)
        if btype == 0x0A0D0D0AU:
            # The byte order of a section is only known from its own header.
            rc = rd_ng_shb(s, p, 0)
            if rc != RD_OK:
                return rc
        else:
            btype = rd_u32(s, s.base + p)
        blen = rd_u32(s, s.base + p + 4)
        if blen < 12 or (blen & 3) or blen > MAX_BLOCK:
            return rd_fail(s, p, "pcapng block with an invalid length")
        if s.size - p < blen:
            return rd_fail(s, p, "truncated pcapng block")
        # The trailing length copy is not checked (as the reference, and as libpcap is
        # lenient with it): the leading length alone delimits the block.
        s.pos = p + blen
        if btype == 1:
            rc = rd_ng_idb(s, p, blen)
            if rc != RD_OK:
                return rc
        elif btype == 6:
            if blen < 32:
                return rd_fail(s, p, "pcapng enhanced packet block too short")
            ifid = rd_u32(s, s.base + p + 8)
            if ifid >= <uint32_t>s.n_if:
                return rd_fail(s, p, "pcapng packet names an undeclared interface")
            ticks = (<uint64_t>rd_u32(s, s.base + p + 12) << 32) | rd_u32(s, s.base + p + 16)
            incl = rd_u32(s, s.base + p + 20)
            orig = rd_u32(s, s.base + p + 24)
            if incl > MAX_CAPLEN or incl > blen - 32:
                return rd_fail(s, p, "pcapng packet data exceeds its block")
            off[0] = p + 28
            caplen[0] = incl
            wirelen[0] = orig
            if not rd_ng_ts(&s.ifaces[ifid], ticks, ts):
                # The reference raises OverflowError here (an uncaught crash); a clean
                # format error names the block instead.
                return rd_fail(s, p, "pcapng timestamp out of range")
            lt[0] = s.ifaces[ifid].linktype
            iface[0] = <uint8_t>ifid
            return RD_OK
        elif btype == 3:
            if s.n_if < 1:
                return rd_fail(s, p, "pcapng simple packet block before any interface")
            orig = rd_u32(s, s.base + p + 8)
            incl = min(orig, blen - 16) if blen >= 16 else 0
            if incl > MAX_CAPLEN:
                return rd_fail(s, p, "pcapng simple packet block too large")
            off[0] = p + 12
            caplen[0] = incl
            wirelen[0] = orig
            ts[0] = 0  # simple packet blocks carry no timestamp
            lt[0] = s.ifaces[0].linktype
            iface[0] = 0
            return RD_OK
        elif btype == 2:
            if blen < 32:
                return rd_fail(s, p, "pcapng packet block too short")
            ifid = rd_u16(s, s.base + p + 8)
            if ifid >= <uint32_t>s.n_if:
                return rd_fail(s, p, "pcapng packet names an undeclared interface")
            ticks = (<uint64_t>rd_u32(s, s.base + p + 12) << 32) | rd_u32(s, s.base + p + 16)
            incl = rd_u32(s, s.base + p + 20)
            orig = rd_u32(s, s.base + p + 24)
            if incl > MAX_CAPLEN or incl > blen - 32:
                return rd_fail(s, p, "pcapng packet data exceeds its block")
            off[0] = p + 28
            caplen[0] = incl
            wirelen[0] = orig
            if not rd_ng_ts(&s.ifaces[ifid], ticks, ts):
                # The reference raises OverflowError here (an uncaught crash); a clean
                # format error names the block instead.
                return rd_fail(s, p, "pcapng timestamp out of range")
            lt[0] = s.ifaces[ifid].linktype
            iface[0] = <uint8_t>ifid
            return RD_OK
        # every other block type (name resolution, statistics, custom) is skipped


cdef enum:
    # Bytes ahead of the read cursor whose cache lines are prefetched. At 2 KiB the engine
    # took 4% longer. Fault-around maps 64 KiB at a time, so lines this far ahead are
    # usually mapped (a prefetch of an unmapped page is dropped).
    RD_PREFETCH = 8192


cdef Py_ssize_t rd_fill(rd_state* s, Py_ssize_t n, uint64_t* off, uint32_t* caplen,
                        uint32_t* wirelen, int64_t* ts, uint16_t* lt, uint8_t* iface,
                        int* status) noexcept nogil:
    """Read up to n records into the arrays; status gets RD_OK, RD_END or RD_ERR."""
    cdef Py_ssize_t i = 0
    cdef int rc = RD_OK
    cdef size_t pf = s.pos + RD_PREFETCH
    while i < n:
        # Each record's length says where the next one starts, so reading the headers is a
        # chain of dependent loads: one memory latency per packet unless the lines ahead
        # are already on their way. Every line a little ahead of the cursor is asked for.
        while pf < s.pos + RD_PREFETCH and pf < s.size:
            prefetch(s.base + pf)
            pf += 64
        if s.fmt == FMT_PCAP:
            rc = rd_next_pcap(s, off + i, caplen + i, wirelen + i, ts + i, lt + i, iface + i)
        else:
            rc = rd_next_pcapng(s, off + i, caplen + i, wirelen + i, ts + i, lt + i, iface + i)
        if rc != RD_OK:
            break
        i += 1
    status[0] = rc
    return i


cdef class PcapReader:
    """Zero-copy reader of a pcap or pcapng file; see sensor/engine/__init__.py for the contract."""

    cdef readonly str path
    cdef readonly Py_ssize_t packets  # records read so far (as the reference's counter)
    cdef object _mm
    cdef object _fh  # kept open: its size is re-checked while reading (truncation)
    cdef const uint8_t[::1] _view
    cdef rd_state* _st
    cdef int _slot  # sigbus_guard.h slot of the mapping, -1 when none
    cdef size_t _size0  # size when mapped

    def __cinit__(self, path):
        self._slot = -1
        self._st = <rd_state*>calloc(1, sizeof(rd_state))
        if self._st == NULL:
            raise MemoryError()

    def __init__(self, path):
        # As the reference: a missing file fails here, any other open error when reading.
        self.path = str(path)
        if not os.path.exists(self.path):
            raise CaptureError(f"{self.path}: no such file")

    cdef _map(self):
        if self._mm is not None:
            return
        try:
            fh = open(self.path, "rb")
            try:
                size = os.fstat(fh.fileno()).st_size
                if size == 0:  # also /dev/zero and pipes: fstat says 0, as the reference
                    self._mm = b""
                else:
                    self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except BaseException:
                fh.close()
                raise
        except (OSError, ValueError) as exc:
            raise CaptureError(f"{self.path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self._fh = fh
        self._view = self._mm
        self._st.base = &self._view[0] if self._view.shape[0] else NULL
        self._st.size = self._view.shape[0]
        self._size0 = self._st.size
        if self._st.size:
            # a truncation while mapped reads zeros instead of killing us (SIGBUS)
            self._slot = nw_guard_add(self._st.base, self._st.size)

    def __dealloc__(self):
        nw_guard_remove(self._slot)
        free(self._st)

    cdef Py_ssize_t _new_end(self) except -2:
        """-1 while the mapped file is intact; else where reading must stop: its new size
        (or the read position when a fault was repaired but the size does not tell)."""
        if self._fh is None or not self._size0:
            return -1
        try:
            cur = os.fstat(self._fh.fileno()).st_size
        except OSError:
            cur = 0
        if cur < <Py_ssize_t>self._size0:
            return cur
        if nw_guard_hit(self._slot):
            return <Py_ssize_t>self._st.pos
        return -1

    cdef _raise(self):
        cls = UnsupportedLinkType if self._st.err_linktype else CaptureFormatError
        raise cls(self._st.err_msg.decode("ascii", "replace"), self.path,
                  <Py_ssize_t>self._st.err_off)

    @property
    def offset(self):
        """Byte offset of the next record header."""
        return self._st.pos

    def batches(self, Py_ssize_t max_packets=4096):
        cdef int status = RD_OK
        cdef Py_ssize_t n, k, end
        cdef uint64_t[::1] off
        cdef uint32_t[::1] cap, wire
        cdef int64_t[::1] ts
        cdef uint16_t[::1] lt
        cdef uint8_t[::1] ifc
        if max_packets < 1:
            raise ConfigError(f"max_packets must be >= 1, got {max_packets}")
        # Open and header faults surface when reading starts, as in the reference reader.
        self._map()
        if rd_open(self._st) != RD_OK:
            self._raise()
        dropped = 0
        shrunk = False
        page = mmap.PAGESIZE
        mapped = isinstance(self._mm, mmap.mmap)
        if mapped:
            self._mm.madvise(mmap.MADV_SEQUENTIAL)
        while status == RD_OK:
            if mapped:
                # Batches before this one have been consumed: unmap their pages so resident
                # memory stays bounded by a window, not the file (they re-fault if touched).
                upto = (self._st.pos // page) * page
                if upto - dropped >= WINDOW:
                    self._mm.madvise(mmap.MADV_DONTNEED, dropped, upto - dropped)
                    dropped = upto
            end = self._new_end()
            if end >= 0:  # the file shrank: stop at its new end
                self._st.size = min(self._st.size, <size_t>end)
                shrunk = True
            b = PacketBatch.empty(max_packets)
            off = b.offset; cap = b.caplen; wire = b.wirelen
            ts = b.ts_ns; lt = b.linktype; ifc = b.iface
            with nogil:
                n = rd_fill(self._st, max_packets, &off[0], &cap[0], &wire[0], &ts[0],
                            &lt[0], &ifc[0], &status)
            end = self._new_end()
            if end >= 0:
                # shrank during the fill: keep only records wholly inside the new end
                shrunk = True
                self._st.size = min(self._st.size, <size_t>end)
                k = 0
                while k < n and off[k] + cap[k] <= self._st.size:
                    k += 1
                n = k
                status = RD_ERR
            if n:
                self.packets += n
                b.buffer = self._mm
                b.count = n
                yield b
        if shrunk:
            raise CaptureFormatError(
                f"the file shrank to {self._st.size} bytes (from {self._size0}) while being read; "
                f"stopped there", self.path, <Py_ssize_t>min(self._st.pos, self._st.size))
        if status == RD_ERR:
            self._raise()
