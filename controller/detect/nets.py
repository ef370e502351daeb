"""Address classes for detectors, vectorised over ``ADDR_KEY`` columns.

``external(keys)`` is True for public unicast addresses: what "an external peer" means for
beaconing and exfiltration. Private (RFC 1918, ULA), shared (100.64/10), loopback,
link-local, multicast, broadcast and reserved (0/8, 240/4) space is not external.
``subnet_keys`` maps addresses to their /24 (IPv4) or /64 (IPv6), ``prefix16`` to /16.
"""

from __future__ import annotations

import numpy as np

from controller.detect.base import ADDR_KEY, batch_addr_keys, shared

_V4_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], np.uint8)
_LOW7 = np.uint64((1 << 56) - 1)  # bytes 8-14 of a key's second little-endian word


def raw(keys: np.ndarray) -> np.ndarray:
    """The ``(n, 16)`` bytes of ``ADDR_KEY`` values."""
    return np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16)


def is_v4(keys: np.ndarray) -> np.ndarray:
    r = np.ascontiguousarray(keys).view("<u8").reshape(-1, 2)
    return (r[:, 0] == 0) & ((r[:, 1] & np.uint64(0xFFFFFFFF)) == np.uint64(0xFFFF0000))


def v4_u32(keys: np.ndarray) -> np.ndarray:
    """IPv4 addresses as big-endian integers (0 for IPv6 keys)."""
    out = np.ascontiguousarray(keys).view(">u4").reshape(-1, 4)[:, 3].astype(np.uint32)
    return np.where(is_v4(keys), out, 0).astype(np.uint32)


def _in(a: np.ndarray, net: int, bits: int) -> np.ndarray:
    mask = np.uint32((0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF)
    return (a & mask) == np.uint32(net)


def external(keys: np.ndarray) -> np.ndarray:
    """True for public unicast addresses."""
    v4 = is_v4(keys)
    a = v4_u32(keys)
    internal4 = (
        _in(a, 0x0A000000, 8)  # 10/8
        | _in(a, 0xAC100000, 12)  # 172.16/12
        | _in(a, 0xC0A80000, 16)  # 192.168/16
        | _in(a, 0x64400000, 10)  # 100.64/10
        | _in(a, 0x7F000000, 8)  # loopback
        | _in(a, 0xA9FE0000, 16)  # link-local
        | _in(a, 0x00000000, 8)  # this network
        | _in(a, 0xE0000000, 4)  # multicast
        | _in(a, 0xF0000000, 4)  # reserved + broadcast
    )
    r = raw(keys)
    w = np.ascontiguousarray(keys).view("<u8").reshape(-1, 2)
    internal6 = (
        ((r[:, 0] & 0xFE) == 0xFC)  # ULA
        | ((r[:, 0] == 0xFE) & ((r[:, 1] & 0xC0) == 0x80))  # link-local
        | (r[:, 0] == 0xFF)  # multicast
        | ((w[:, 0] == 0) & ((w[:, 1] & _LOW7) == 0))  # :: and ::1 (bytes 0-14 zero)
    )
    return np.where(v4, ~internal4, ~internal6)


def batch_external(batch: np.ndarray, field: str) -> np.ndarray:
    """``external`` of an address column of a record batch (shared per batch)."""
    return shared(batch, f"external:{field}", lambda: external(batch_addr_keys(batch, field)))


def multicast_or_broadcast(keys: np.ndarray) -> np.ndarray:
    v4 = is_v4(keys)
    a = v4_u32(keys)
    r = raw(keys)
    m4 = _in(a, 0xE0000000, 4) | ((a & 0xFF) == 0xFF)
    return np.where(v4, m4, r[:, 0] == 0xFF)


def _masked(keys: np.ndarray, v4_keep: int, v6_keep: int) -> np.ndarray:
    r = raw(keys).copy()
    v4 = is_v4(keys)
    r[v4, 12 + v4_keep :] = 0
    r[~v4, v6_keep:] = 0
    return r.view(ADDR_KEY).reshape(-1)


def subnet_keys(keys: np.ndarray) -> np.ndarray:
    """The /24 (IPv4) or /64 (IPv6) of each address, as a key."""
    return _masked(keys, 3, 8)


def prefix16(keys: np.ndarray) -> np.ndarray:
    """The /16 (IPv4) or /48 (IPv6) of each address, as a key."""
    return _masked(keys, 2, 6)


def ip4_keys(ip4: np.ndarray) -> np.ndarray:
    """Keys for a column of 4-byte IPv4 addresses (ARP records)."""
    r = np.zeros((len(ip4), 16), np.uint8)
    r[:, :12] = _V4_PREFIX
    r[:, 12:] = np.asarray(ip4, np.uint8).reshape(-1, 4)
    return r.view(ADDR_KEY).reshape(-1)


def mac_u64(macs: np.ndarray) -> np.ndarray:
    """6-byte MACs as integers."""
    m = np.zeros((len(macs), 8), np.uint8)
    m[:, 2:] = np.asarray(macs, np.uint8).reshape(-1, 6)
    return m.view(">u8").reshape(-1).astype(np.uint64)


def mac_str(m: int) -> str:
    return ":".join(f"{b:02x}" for b in int(m).to_bytes(8, "big")[2:])
