"""DNS message parsing for per-flow summaries (reference twin).

Only the header and the first question are read: QR bit, RCODE, QDCOUNT, ANCOUNT, and the
first QNAME/QTYPE. Names may use compression pointers; at most ``MAX_POINTERS`` jumps and
``MAX_NAME`` bytes are followed, so a pointer loop ends the parse instead of hanging.
DNS over TCP carries a 2-byte length prefix; only a message starting at the segment start
is parsed (no stream reassembly).
"""

from __future__ import annotations

import math

MAX_POINTERS = 16
MAX_NAME = 255
MAX_TRACKED_NAMES = 64  # distinct-name tracking per flow is bounded


class DnsMsg:
    __slots__ = (
        "ancount",
        "is_response",
        "label_entropy",
        "longest_label",
        "qname",
        "qtype",
        "rcode",
    )

    def __init__(self) -> None:
        self.is_response = 0
        self.rcode = 0
        self.qtype = 0
        self.ancount = 0
        self.qname = b""
        self.longest_label = 0
        self.label_entropy = 0.0


def parse_dns(b: bytes, off: int, end: int, m: DnsMsg) -> bool:
    if off + 12 > end:
        return False
    flags = (b[off + 2] << 8) | b[off + 3]
    qd = (b[off + 4] << 8) | b[off + 5]
    m.is_response = 1 if flags & 0x8000 else 0
    m.rcode = flags & 0xF
    m.ancount = (b[off + 6] << 8) | b[off + 7]
    m.qname = b""
    m.qtype = 0
    m.longest_label = 0
    m.label_entropy = 0.0
    if qd == 0:
        return True
    cur = off + 12
    name = bytearray()
    after = -1  # where parsing resumes after the name (first pointer position + 2)
    jumps = 0
    longest = b""
    while True:
        if cur >= end:
            return False
        ln = b[cur]
        if ln == 0:
            cur += 1
            break
        if ln & 0xC0 == 0xC0:
            if cur + 1 >= end:
                return False
            jumps += 1
            if jumps > MAX_POINTERS:
                return False
            if after < 0:
                after = cur + 2
            cur = off + (((ln & 0x3F) << 8) | b[cur + 1])
            continue
        if ln & 0xC0:
            return False  # extended label types are not supported
        if cur + 1 + ln > end:
            return False
        label = bytes(b[cur + 1 : cur + 1 + ln])
        if len(name) + ln + 1 > MAX_NAME:
            return False
        if name:
            name += b"."
        name += label
        if ln > len(longest):
            longest = label
        cur += 1 + ln
    if after >= 0:
        cur = after
    if cur + 4 > end:
        return False
    m.qtype = (b[cur] << 8) | b[cur + 1]
    m.qname = bytes(name).lower()
    m.longest_label = len(longest)
    m.label_entropy = shannon_entropy(longest.lower())
    return True


def shannon_entropy(s: bytes) -> float:
    """Shannon entropy in bits per byte; summed over byte values in ascending order so the
    compiled twin gets the same float."""
    n = len(s)
    if n == 0:
        return 0.0
    counts = [0] * 256
    for c in s:
        counts[c] += 1
    h = 0.0
    for c in range(256):
        if counts[c]:
            q = counts[c] / n
            h -= q * math.log2(q)
    return h
