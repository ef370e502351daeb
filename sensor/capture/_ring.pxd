# cython: language_level=3
# Table of contents of sensor/capture/_ring.pyx: the TPACKET_V3 ring walker's state.

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef struct BatchOut:  # the PacketBatch arrays _fill writes into, as raw pointers
    uint8_t *buf
    uint64_t bufcap
    uint64_t *offset
    uint32_t *caplen
    uint32_t *wirelen
    int64_t *ts_ns
    uint16_t *linktype
    uint8_t *iface
    Py_ssize_t cap  # packets the arrays hold
    uint8_t iface_id  # written into every packet's iface


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
    cdef bint _skip_outgoing  # loopback: drop the PACKET_OUTGOING copy of each packet
    cdef readonly uint64_t packets
    cdef readonly uint64_t bytes
    cdef readonly uint64_t blocks
    cdef readonly uint64_t losing_blocks  # blocks the kernel marked TP_STATUS_LOSING
    cdef readonly uint64_t truncated  # packets longer than what the ring kept
    cdef readonly uint64_t vlan_restored  # 802.1Q tags put back from tp_vlan_tci
    cdef readonly uint64_t socket_errors  # polls that reported POLLERR/POLLHUP
    cdef readonly uint64_t outgoing_skipped  # loopback copies left out (skip_outgoing)

    cdef Py_ssize_t _fill(self, BatchOut *out, int timeout_ms) noexcept nogil
