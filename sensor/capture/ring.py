"""Packets from one AF_PACKET TPACKET_V3 ring, as a packet source of ``sensor.runner``.

``RingSource`` owns one ring socket (optionally a member of a PACKET_FANOUT group) and the
one reusable ``PacketBatch`` the ring walker (``_ring.pyx``) fills. It counts what the
capture side loses: ``kernel_drops`` and ``ring_freezes`` (PACKET_STATISTICS), ``ring_losing``
(blocks the kernel marked as having lost packets), ``truncated`` and ``link_down``.

Packet timestamps are the kernel's wall clock, so when the wire is idle ``idle_ns()`` gives
the wall clock: flows still time out and windows still close with no traffic.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from netwarden.errors import InterfaceError
from sensor.capture.afpacket import RingConfig, is_loopback, kernel_stats, open_ring_socket
from sensor.capture.batch import PacketBatch

log = logging.getLogger(__name__)


class RingSource:
    """One ring: ``batches(stop)`` yields the reused batch after every poll (``count`` 0 when
    the poll timed out), ``tail()`` drains what was captured before the stop."""

    def __init__(
        self,
        iface: str,
        ring: RingConfig,
        bpf_instructions: bytes | None = None,
        fanout_group: int | None = None,
        worker_id: int = 0,
    ) -> None:
        from sensor.capture._ring import RxRing

        self.iface = iface
        self.config = ring
        self.worker_id = worker_id
        self.sock, self.mapped = open_ring_socket(iface, ring, bpf_instructions, fanout_group)
        self.ring = RxRing(
            self.sock.fileno(),
            self.mapped,
            ring.block_size,
            ring.block_count,
            skip_outgoing=is_loopback(iface),  # lo shows each packet leave and arrive
        )
        cap = ring.batch_packets
        self.batch = PacketBatch.empty(cap)
        # Room for a whole block plus re-inserted VLAN tags, so one packet always fits.
        self.batch.buffer = np.zeros(max(ring.block_size * 2, cap * 256), np.uint8)
        self.link_down = 0
        self._kernel = [0, 0, 0]  # packets, drops, freezes: PACKET_STATISTICS resets on read
        self._last_ts = 0

    def fill(self, timeout_ms: int) -> int:
        n = self.ring.fill(self.batch, self.worker_id & 0xFF, timeout_ms)
        if n < 0:
            self._socket_error(timeout_ms)
            n = 0
        self.batch.count = n
        if n:
            self._last_ts = int(self.batch.ts_ns[n - 1])
        return n

    def _socket_error(self, timeout_ms: int) -> None:
        """The link went down (keep waiting: the kernel resumes capture when it comes back)
        or the interface was removed (raise)."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # reading clears it
        try:
            socket.if_nametoindex(self.iface)
        except OSError:
            raise InterfaceError(f"interface {self.iface!r} was removed") from None
        if err and self.link_down == 0:
            log.warning("capture on %s: %s; waiting for the link", self.iface, os.strerror(err))
        self.link_down += 1
        time.sleep(timeout_ms / 1000.0)  # no busy loop while the link is down

    def batches(self, stop: Any) -> Iterator[PacketBatch]:
        while not stop:
            self.fill(self.config.poll_ms)
            yield self.batch

    def idle_ns(self) -> int:
        """Idle wire: network time still passes, so timeouts and windows must fire."""
        return max(time.time_ns(), self._last_ts)

    def tail(self) -> Iterator[PacketBatch]:
        """Drain the ring until it stays empty past a block timeout.

        At most one ring's worth of blocks is drained: what was captured before the stop is
        processed (and counted), while a busy wire cannot keep the worker from exiting."""
        quiet_ms = self.config.retire_ms * 3 + 20
        limit = int(self.ring.blocks) + self.config.block_count + 1
        while int(self.ring.blocks) < limit:
            try:
                n = self.fill(quiet_ms)
            except InterfaceError:
                break  # the interface is gone: flush what we hold
            if not n:
                break
            yield self.batch

    def counters(self) -> dict[str, int]:
        """Cumulative capture-side counters."""
        for i, v in enumerate(kernel_stats(self.sock)):
            self._kernel[i] += v
        return {
            "packets": int(self.ring.packets),
            "bytes": int(self.ring.bytes),
            "ring_losing": int(self.ring.losing_blocks),
            "truncated": int(self.ring.truncated),
            "link_down": self.link_down,
            "kernel_packets": self._kernel[0],
            "kernel_drops": self._kernel[1],
            "ring_freezes": self._kernel[2],
        }

    def close(self) -> None:
        self.ring.release()
        try:
            self.mapped.close()
        except (BufferError, ValueError):
            pass
        self.sock.close()
