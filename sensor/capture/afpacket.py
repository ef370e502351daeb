"""AF_PACKET sockets: the TPACKET_V3 ring geometry, opening a configured ring socket
(filter, fanout, promiscuous mode), the kernel's loss counters, and the NIC offloads that
change what a capture sees. The ring itself is read by ``sensor.capture._ring``; workers and
capture control live in ``sensor.live``.
"""

from __future__ import annotations

import fcntl
import mmap
import socket
import struct
from dataclasses import dataclass

from netwarden.errors import ConfigError, InterfaceError

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000  # reassemble before hashing: fragments follow their flow
ETH_P_ALL = 0x0003
PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class RingConfig:
    """AF_PACKET ring geometry and capture options, validated once."""

    block_size: int = 1 << 20  # bytes; a multiple of the page size, holds the largest frame
    block_count: int = 64  # 64 MiB per worker: ~0.5 s of a saturated 1 Gb/s link
    retire_ms: int = 20  # the kernel hands over a partly filled block after this long
    batch_packets: int = 4096  # packets per engine call
    poll_ms: int = 100  # longest wait for traffic before the clocks are advanced
    promisc: bool = False
    ignore_outgoing: bool = False  # drop packets this host sends (PACKET_IGNORE_OUTGOING)
    telemetry: bool = True
    telemetry_window: float = 1.0  # seconds of packet time per host record window

    def __post_init__(self) -> None:
        if self.block_size < PAGE or self.block_size % PAGE or self.block_size > 1 << 30:
            raise ConfigError(f"ring block size must be a multiple of {PAGE} up to 1 GiB")
        if not 2 <= self.block_count <= 1 << 16:
            raise ConfigError(f"ring block count must be 2..65536, got {self.block_count}")
        if not 1 <= self.retire_ms <= 60_000:
            raise ConfigError(f"ring block timeout must be 1..60000 ms, got {self.retire_ms}")
        if not 1 <= self.batch_packets <= 1 << 20:
            raise ConfigError(f"batch size must be 1..{1 << 20}, got {self.batch_packets}")
        if not 1 <= self.poll_ms <= 10_000:
            raise ConfigError(f"poll interval must be 1..10000 ms, got {self.poll_ms}")
        if not self.telemetry_window > 0:
            raise ConfigError("telemetry window must be > 0 seconds")


def ifindex(iface: str) -> int:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise InterfaceError(f"no such interface: {iface!r}") from None


SIOCGIFFLAGS = 0x8913
IFF_LOOPBACK = 0x8


def is_loopback(iface: str) -> bool:
    """True for a loopback interface (asked of the kernel, so right inside a namespace)."""
    ifreq = struct.pack("16sH14x", iface.encode()[:15], 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq)
        except OSError:
            raise InterfaceError(f"no such interface: {iface!r}") from None
    return bool(struct.unpack_from("H", res, 16)[0] & IFF_LOOPBACK)


SIOCETHTOOL = 0x8946
ETHTOOL_GFLAGS = 0x25
ETHTOOL_GGRO = 0x2B
ETH_FLAG_LRO = 1 << 15


def receive_offloads(iface: str) -> dict[str, bool]:
    """Which receive offloads that merge packets are on (GRO, LRO), via the ethtool ioctl.

    With them, the kernel hands a capture socket fewer, larger "packets" than were on the
    wire (Suricata and Zeek users turn them off on capture ports); flows keep their bytes
    but not their packet counts. Unknown (driver does not say) is left out.
    """
    import ctypes

    out: dict[str, bool] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name, cmd in (("gro", ETHTOOL_GGRO), ("lro", ETHTOOL_GFLAGS)):
            val = ctypes.create_string_buffer(struct.pack("=II", cmd, 0), 8)
            ifreq = struct.pack("=16sQ16x", iface.encode()[:15], ctypes.addressof(val))
            try:
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
            except OSError:
                continue
            data = struct.unpack("=II", val.raw)[1]
            out[name] = bool(data & ETH_FLAG_LRO) if name == "lro" else bool(data)
    return out


def open_ring_socket(
    iface: str,
    ring: RingConfig,
    bpf_instructions: bytes | None = None,
    fanout_group: int | None = None,
) -> tuple[socket.socket, mmap.mmap]:
    """A bound AF_PACKET socket with a mapped TPACKET_V3 RX ring (caller closes both).

    The socket sees nothing until it is configured: it is created with protocol 0 and, when
    joining a fanout group, carries a drop-all filter until it is a member, so no worker
    ever holds a packet that another worker also gets.
    """
    from sensor.capture import bpf as bpfmod

    index = ifindex(iface)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise InterfaceError("live capture needs root (CAP_NET_RAW)") from None
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        if fanout_group is not None:
            bpfmod.attach_raw(sock, bpfmod.DROP_ALL)
        elif bpf_instructions:
            bpfmod.attach_raw(sock, bpf_instructions)
        frame_size = 2048
        req = struct.pack(
            "=7I",
            ring.block_size,
            ring.block_count,
            frame_size,
            ring.block_size // frame_size * ring.block_count,
            ring.retire_ms,
            0,
            0,
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        size = ring.block_size * ring.block_count
        mapped = mmap.mmap(sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if ring.ignore_outgoing:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.bind((iface, ETH_P_ALL))
        if ring.promisc:
            # Membership ends with the socket, so a crash never leaves the NIC promiscuous.
            mreq = struct.pack("=iHH8s", index, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if fanout_group is not None:
            mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
            arg = struct.pack("=I", (fanout_group & 0xFFFF) | (mode << 16))  # > INT_MAX
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, arg)
            if bpf_instructions:
                bpfmod.attach_raw(sock, bpf_instructions)
            else:
                bpfmod.detach(sock)
    except OSError as exc:
        sock.close()
        raise InterfaceError(f"cannot open a capture ring on {iface!r}: {exc}") from exc
    return sock, mapped


def kernel_stats(sock: socket.socket) -> tuple[int, int, int]:
    """(packets, drops, queue freezes) since the previous call (the kernel resets them)."""
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
    return struct.unpack("=3I", raw)
