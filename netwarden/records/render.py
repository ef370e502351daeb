"""Text of record values for whole columns at once: IP addresses, MAC addresses, times.

Each function builds a character matrix with numpy (one row per value, one column per
possible character) plus a mask of the characters kept, and hands the compacted bytes to
Arrow as a string array: no Python loop per value. The text is the standard one: IPv4
dotted decimal, IPv6 as Python's ``ipaddress`` writes it (RFC 5952: lower-case hex, leading
zeros dropped, the first longest run of two or more zero groups as ``::``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from netwarden.records.arrowbuf import numpy_array, string_array, text_from_buffers

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_COLON, _DOT, _ZERO = ord(":"), ord("."), ord("0")


def strings(chars: np.ndarray, keep: np.ndarray | None = None) -> pa.Array:
    """A string array from an ``(n, width)`` uint8 character matrix: row ``i`` is the
    characters of row ``i`` where ``keep`` is true (all of them without ``keep``)."""
    n, width = chars.shape
    offsets = np.zeros(n + 1, np.int32)
    if keep is None:
        data = np.ascontiguousarray(chars).reshape(-1)
        offsets[1:] = np.arange(width, (n + 1) * width, width, dtype=np.int32)[:n]
    else:
        data = chars[keep]
        np.cumsum(keep.sum(axis=1, dtype=np.int32), out=offsets[1:])
    return text_from_buffers(n, offsets, np.ascontiguousarray(data))


def ipv4_text(raw: np.ndarray) -> pa.Array:
    """Dotted decimal of the first 4 bytes of each row of an ``(n, >=4)`` uint8 array."""
    n = len(raw)
    chars = np.full((n, 16), _DOT, np.uint8)
    keep = np.zeros((n, 16), bool)
    for i in range(4):
        v = raw[:, i]
        col = 4 * i
        chars[:, col] = _ZERO + v // 100
        chars[:, col + 1] = _ZERO + v // 10 % 10
        chars[:, col + 2] = _ZERO + v % 10
        keep[:, col] = v >= 100
        keep[:, col + 1] = v >= 10
        keep[:, col + 2] = True
        keep[:, col + 3] = i < 3
    return strings(chars, keep)


def ipv6_text(raw: np.ndarray) -> pa.Array:
    """RFC 5952 text of each row of an ``(n, 16)`` uint8 array."""
    n = len(raw)
    groups = (raw[:, 0::2].astype(np.uint16) << 8) | raw[:, 1::2]
    # Five slots per group: four hex digits and the colon after it (the last one is
    # kept only to end a trailing "::").
    chars = np.empty((n, 8, 5), np.uint8)
    keep = np.zeros((n, 8, 5), bool)
    for d in range(4):
        nibble = (groups >> (4 * (3 - d))) & 15
        chars[:, :, d] = _HEX[nibble]
        keep[:, :, d] = (groups >> (4 * (3 - d))) != 0  # leading zeros dropped
    keep[:, :, 3] = True  # at least one digit
    chars[:, :, 4] = _COLON
    keep[:, :7, 4] = True
    # Zero runs: run[:, j] = zero groups starting at j; the first longest run of >= 2
    # becomes "::" (its digits and all but its last colon dropped; two colons at the start).
    zero = groups == 0
    run = np.zeros((n, 9), np.int32)
    for j in range(7, -1, -1):
        run[:, j] = (run[:, j + 1] + 1) * zero[:, j]
    start = run[:, :8].argmax(axis=1)
    length = run[np.arange(n), start]
    rows = np.flatnonzero(length >= 2)
    s, ln = start[rows], length[rows]
    in_run = (np.arange(8) >= s[:, None]) & (np.arange(8) < (s + ln)[:, None])
    sub = keep[rows]
    sub[in_run] = False
    sub[np.arange(len(rows)), s + ln - 1, 4] = True
    at_start = s == 0
    sub[np.flatnonzero(at_start), (s + ln - 2)[at_start], 4] = True
    keep[rows] = sub
    return strings(chars.reshape(n, 40), keep.reshape(n, 40))


def ip_text(raw: np.ndarray, is_v4: np.ndarray) -> pa.Array:
    """Text of ``(n, 4|16)`` uint8 addresses; ``is_v4`` says which rows are IPv4."""
    import pyarrow.compute as pc

    text = ipv4_text(raw)
    v6 = np.flatnonzero(~is_v4) if raw.shape[1] == 16 else np.zeros(0, np.intp)
    if not len(v6):
        return text
    six = raw[v6]
    six_text = ipv6_text(six)
    # IPv4-mapped addresses: the text this Python's ipaddress gives them (it changed in 3.13).
    mapped = np.flatnonzero(~six[:, :10].any(axis=1) & (six[:, 10:12] == 0xFF).all(axis=1))
    if len(mapped):
        import ipaddress

        fix = np.zeros(len(six), bool)
        fix[mapped] = True
        own_text = [str(ipaddress.IPv6Address(six[i].tobytes())) for i in mapped]
        six_text = pc.replace_with_mask(six_text, numpy_array(fix), string_array(own_text))
    mask = np.zeros(len(raw), bool)
    mask[v6] = True
    return pc.replace_with_mask(text, numpy_array(mask), six_text)


def mac_text(raw: np.ndarray) -> pa.Array:
    """``(n, 6)`` uint8 MAC addresses as ``aa:bb:cc:dd:ee:ff``."""
    chars = np.full((len(raw), 17), _COLON, np.uint8)
    chars[:, 0::3] = _HEX[raw >> 4]
    chars[:, 1::3] = _HEX[raw & 15]
    return strings(chars)


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day of days since 1970-01-01 (proleptic Gregorian, H. Hinnant's
    ``civil_from_days``)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def iso_text(us: np.ndarray) -> pa.Array:
    """Microseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (years 0-9999)."""
    us = np.asarray(us, np.int64)
    secs, frac = np.divmod(us, 1_000_000)
    days, sod = np.divmod(secs, 86400)
    year, month, day = _civil(days)
    parts = (
        (year, 4, b"-"),
        (month, 2, b"-"),
        (day, 2, b"T"),
        (sod // 3600, 2, b":"),
        (sod // 60 % 60, 2, b":"),
        (sod % 60, 2, b"."),
        (frac, 6, b"Z"),
    )
    chars = np.empty((len(us), 27), np.uint8)
    col = 0
    for value, width, sep in parts:
        v = np.clip(value, 0, 10**width - 1)
        for k in range(width):
            chars[:, col + k] = _ZERO + v // 10 ** (width - 1 - k) % 10
        chars[:, col + width] = sep[0]
        col += width + 1
    return strings(chars)
