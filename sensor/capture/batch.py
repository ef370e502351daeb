"""A batch of raw packets: the only thing that crosses into the flow engine.

The packet bytes stay where they are (an mmap'd capture file, an AF_PACKET ring, a bytes
object); the batch carries one buffer plus parallel arrays describing each packet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PacketBatch:
    buffer: Any  # object exposing the buffer protocol (mmap, bytes, np.uint8 array)
    offset: np.ndarray  # uint64: start of each packet in buffer
    caplen: np.ndarray  # uint32: captured bytes
    wirelen: np.ndarray  # uint32: original length on the wire
    ts_ns: np.ndarray  # int64: timestamp, nanoseconds since the epoch
    linktype: np.ndarray  # uint16: LINKTYPE_* of each packet
    iface: np.ndarray  # uint8: interface index (pcapng IDB / fanout worker)
    count: int = 0

    @classmethod
    def empty(cls, capacity: int) -> PacketBatch:
        return cls(
            buffer=b"",
            offset=np.zeros(capacity, np.uint64),
            caplen=np.zeros(capacity, np.uint32),
            wirelen=np.zeros(capacity, np.uint32),
            ts_ns=np.zeros(capacity, np.int64),
            linktype=np.zeros(capacity, np.uint16),
            iface=np.zeros(capacity, np.uint8),
            count=0,
        )

    @classmethod
    def from_packets(cls, packets: list[tuple[int, bytes]], linktype: int = 1) -> PacketBatch:
        """Build a batch from ``(ts_ns, frame)`` pairs (tests and crafted input)."""
        b = cls.empty(len(packets))
        buf = bytearray()
        for i, (ts, frame) in enumerate(packets):
            b.offset[i] = len(buf)
            b.caplen[i] = b.wirelen[i] = len(frame)
            b.ts_ns[i] = ts
            b.linktype[i] = linktype
            buf += frame
        b.buffer = bytes(buf)
        b.count = len(packets)
        return b
