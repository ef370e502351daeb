# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""TPACKET_V3 RX ring reader: drains kernel blocks into a reusable PacketBatch buffer.

The socket is created and configured in Python (``sensor/live.py``); this module only
walks the mmap'd ring with the GIL released. Packets are *copied* out of each block into
the batch buffer, then the block is handed straight back to the kernel: a block is never
held while the flow engine works, so the kernel always has the whole ring minus the one
block being copied. Copying also lets us put back the 802.1Q tag the kernel strips into
``tp_vlan_tci`` (as libpcap does), so live frames decode like the same frames in a file.

Ring layout (linux/if_packet.h): each block starts with ``tpacket_block_desc``
(block_status at +8, num_pkts at +12, offset_to_first_pkt at +16); each packet with
``tpacket3_hdr`` (next_offset +0, sec +4, nsec +8, snaplen +12, len +16, status +20,
mac +24, vlan_tci +32, vlan_tpid +36), followed by a ``sockaddr_ll`` at
TPACKET_ALIGN(sizeof(tpacket3_hdr)) = +48 whose ``sll_pkttype`` (+10, so +58) says
PACKET_HOST / PACKET_OUTGOING / ...

On a loopback interface every packet passes the tap twice, once leaving (PACKET_OUTGOING)
and once arriving (PACKET_HOST), so with ``skip_outgoing`` the leaving copy is left out and
each packet is seen once, as on a real link.
"""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN
    short POLLERR
    short POLLHUP
    short POLLNVAL

cdef extern from *:
    """
    #include <stdint.h>
    /* The block status word is shared with the kernel: acquire on read so the packet
       bytes are visible, release on the hand-back so our reads finish first. */
    static inline uint32_t nw_ring_load_acquire(const uint8_t *p) {
        return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
    }
    static inline void nw_ring_store_release(uint8_t *p, uint32_t v) {
        __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
    }
    static inline uint32_t nw_rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
    static inline uint16_t nw_rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
    """
    uint32_t nw_ring_load_acquire(const uint8_t *p) nogil
    void nw_ring_store_release(uint8_t *p, uint32_t v) nogil
    uint32_t nw_rd32(const uint8_t *p) nogil
    uint16_t nw_rd16(const uint8_t *p) nogil

cdef enum:  # linux/if_packet.h
    TP_STATUS_KERNEL = 0
    TP_STATUS_USER = 1
    TP_STATUS_COPY = 2
    TP_STATUS_LOSING = 4
    TP_STATUS_VLAN_VALID = 0x10
    TP_STATUS_VLAN_TPID_VALID = 0x40
    LINKTYPE_ETHERNET = 1
    TPACKET3_PKTTYPE = 58  # sockaddr_ll.sll_pkttype after the tpacket3_hdr
    PACKET_OUTGOING = 4


cdef class RxRing:
    """Reader over an mmap'd TPACKET_V3 ring of ``block_count`` blocks of ``block_size``.

    ``fill(batch, iface_id, timeout_ms)`` copies up to the batch capacity into a
    ``PacketBatch`` (``sensor/capture/batch.py``), returns how many packets it wrote, and blocks in
    ``poll`` (GIL released) for at most ``timeout_ms`` only when nothing is ready. It returns
    -1 when the socket reports an error (interface down or removed). Fields are declared in
    ``_ring.pxd``.
    """

    def __cinit__(
        self,
        int fd,
        object mapped,
        uint32_t block_size,
        uint32_t block_count,
        bint skip_outgoing=False,
    ):
        self._view = memoryview(mapped).cast("B")
        if <uint64_t>self._view.shape[0] < <uint64_t>block_size * block_count:
            raise ValueError("mapped ring is smaller than block_size * block_count")
        self._base = &self._view[0]
        self._fd = fd
        self._block_size = block_size
        self._block_count = block_count
        self._cur = 0
        self._left = 0
        self._pkt = NULL
        self._skip_outgoing = skip_outgoing

    def release(self):
        """Drop the reference to the mapping (so the mmap can be closed)."""
        self._base = NULL
        self._view = None

    def fill(self, batch, uint8_t iface_id, int timeout_ms):
        if self._base == NULL:
            raise ValueError("ring is closed")
        cdef uint8_t[::1] buf = batch.buffer
        cdef uint64_t[::1] offset = batch.offset
        cdef uint32_t[::1] caplen = batch.caplen
        cdef uint32_t[::1] wirelen = batch.wirelen
        cdef int64_t[::1] ts_ns = batch.ts_ns
        cdef uint16_t[::1] linktype = batch.linktype
        cdef uint8_t[::1] iface = batch.iface
        cdef BatchOut out
        out.cap = offset.shape[0]
        if out.cap == 0 or buf.shape[0] == 0 or out.cap > linktype.shape[0] \
                or out.cap > iface.shape[0] or out.cap > ts_ns.shape[0] \
                or out.cap > caplen.shape[0] or out.cap > wirelen.shape[0]:
            return 0
        out.buf = &buf[0]
        out.bufcap = <uint64_t>buf.shape[0]
        out.offset = &offset[0]
        out.caplen = &caplen[0]
        out.wirelen = &wirelen[0]
        out.ts_ns = &ts_ns[0]
        out.linktype = &linktype[0]
        out.iface = &iface[0]
        out.iface_id = iface_id
        cdef Py_ssize_t n
        with nogil:
            n = self._fill(&out, timeout_ms)
        return n

    cdef Py_ssize_t _fill(self, BatchOut *out, int timeout_ms) noexcept nogil:
        cdef Py_ssize_t cap = out.cap
        cdef uint64_t bufcap = out.bufcap
        cdef Py_ssize_t n = 0
        cdef uint64_t pos = 0
        cdef bint waited = False
        cdef bint full = False
        cdef uint8_t *blk
        cdef uint8_t *h
        cdef uint8_t *dst
        cdef uint32_t status, pstatus, snap, wlen, need, tpid, tci
        cdef uint16_t mac
        cdef pollfd pfd
        while n < cap and not full:
            blk = self._base + <uint64_t>self._cur * self._block_size
            status = nw_ring_load_acquire(blk + 8)
            if not (status & TP_STATUS_USER):
                if n > 0 or waited or timeout_ms == 0:
                    break
                pfd.fd = self._fd
                pfd.events = POLLIN | POLLERR
                pfd.revents = 0
                poll(&pfd, 1, timeout_ms)
                waited = True
                if pfd.revents & (POLLERR | POLLHUP | POLLNVAL):
                    # Interface down or gone: the caller reads SO_ERROR and decides.
                    self.socket_errors += 1
                    return -1
                continue
            if self._pkt == NULL:
                self._left = nw_rd32(blk + 12)
                self._pkt = blk + nw_rd32(blk + 16)
                self.blocks += 1
                if status & TP_STATUS_LOSING:
                    self.losing_blocks += 1
            while self._left > 0 and n < cap:
                h = self._pkt
                if self._skip_outgoing and h[TPACKET3_PKTTYPE] == PACKET_OUTGOING:
                    self.outgoing_skipped += 1
                    self._left -= 1
                    self._pkt = h + nw_rd32(h)
                    continue
                snap = nw_rd32(h + 12)
                wlen = nw_rd32(h + 16)
                pstatus = nw_rd32(h + 20)
                mac = nw_rd16(h + 24)
                need = snap
                if (pstatus & TP_STATUS_VLAN_VALID) and snap >= 12:
                    need = snap + 4
                if pos + need > bufcap:
                    full = True
                    break
                dst = out.buf + pos
                if need != snap:
                    # Put the stripped tag back after the two MAC addresses.
                    tci = nw_rd32(h + 32) & 0xFFFF
                    tpid = 0x8100
                    if pstatus & TP_STATUS_VLAN_TPID_VALID:
                        tpid = nw_rd16(h + 36)
                    memcpy(dst, h + mac, 12)
                    dst[12] = <uint8_t>(tpid >> 8)
                    dst[13] = <uint8_t>(tpid & 0xFF)
                    dst[14] = <uint8_t>(tci >> 8)
                    dst[15] = <uint8_t>(tci & 0xFF)
                    memcpy(dst + 16, h + mac + 12, snap - 12)
                    wlen += 4
                    self.vlan_restored += 1
                else:
                    memcpy(dst, h + mac, snap)
                if snap < nw_rd32(h + 16):
                    self.truncated += 1
                out.offset[n] = pos
                out.caplen[n] = need
                out.wirelen[n] = wlen
                out.ts_ns[n] = <int64_t>nw_rd32(h + 4) * 1000000000 + nw_rd32(h + 8)
                out.linktype[n] = LINKTYPE_ETHERNET
                out.iface[n] = out.iface_id
                n += 1
                pos += need
                self.packets += 1
                self.bytes += wlen
                self._left -= 1
                self._pkt = h + nw_rd32(h)
            if self._left == 0:
                # Whole block copied: give it back now, not after the engine has run.
                self._pkt = NULL
                nw_ring_store_release(blk + 8, TP_STATUS_KERNEL)
                self._cur = (self._cur + 1) % self._block_count
        return n
