# cython: language_level=3
# Table of contents of sensor/_ring.pyx: the TPACKET_V3 ring walker's state.

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


@cython.final
cdef class RxRing:
    cdef uint8_t[::1] _view  # the mmap'd ring, kept exported while we read it
    cdef uint8_t *_base
    cdef int _fd
    cdef uint32_t _block_size
    cdef uint32_t _block_count
    cdef uint32_t _cur  # block we read next
    cdef uint32_t _left  # packets not yet copied from the current block
    cdef uint8_t *_pkt  # next packet of the current block, NULL between blocks
    cdef readonly uint64_t packets
    cdef readonly uint64_t bytes
    cdef readonly uint64_t blocks
    cdef readonly uint64_t losing_blocks  # blocks the kernel marked TP_STATUS_LOSING
    cdef readonly uint64_t truncated  # packets longer than what the ring kept
    cdef readonly uint64_t vlan_restored  # 802.1Q tags put back from tp_vlan_tci
    cdef readonly uint64_t socket_errors  # polls that reported POLLERR/POLLHUP

    cdef Py_ssize_t _fill(
        self,
        uint8_t[::1] buf,
        uint64_t[::1] offset,
        uint32_t[::1] caplen,
        uint32_t[::1] wirelen,
        int64_t[::1] ts_ns,
        uint16_t[::1] linktype,
        uint8_t[::1] iface,
        uint8_t iface_id,
        int timeout_ms,
    ) noexcept nogil
