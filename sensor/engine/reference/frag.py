# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""IP fragment reassembly (twin of frag.pxi)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sensor.engine.reference import decode as D
from sensor.engine.reference.engine import NS

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine

MAX_FRAG_BYTES = 65535 + 40


class FragBuf:
    __slots__ = ("data", "first_ns", "have", "hdr", "ranges", "total")

    def __init__(self, first_ns: int) -> None:
        self.first_ns = first_ns
        self.total = -1  # payload length once the last fragment is seen
        self.have = 0
        self.data = bytearray()
        self.hdr = b""
        self.ranges: list[tuple[int, int]] = []


class FragMixin:
    def _reassemble(self: FlowEngine, b: bytes, p: Any, ts: int, end: int) -> bytes | None:
        """Collect fragments; returns the reassembled datagram (header + payload) or None."""
        self._expire_frags(ts)
        key = (p.ip_version, p.src, p.dst, p.frag_id, p.proto)
        fb = self.frags.get(key)
        if fb is None:
            if len(self.frags) >= self.cfg.max_frag_datagrams:
                self.frags.popitem(last=False)
                self.st["frag_dropped"] += 1
            fb = FragBuf(ts)
            self.frags[key] = fb
        start = p.frag_off
        data = b[p.l4_off : min(p.l4_off + p.l4_len, end)]
        stop = start + len(data)
        if stop > MAX_FRAG_BYTES:
            del self.frags[key]
            self.st["frag_dropped"] += 1
            return None
        if start == 0:
            fb.hdr = bytes(b[p.ip_off : p.l4_off])
        if not p.frag_more:
            fb.total = stop
        if len(fb.data) < stop:
            fb.data.extend(b"\x00" * (stop - len(fb.data)))
        fb.data[start:stop] = data
        fb.ranges.append((start, stop))
        if fb.total < 0 or not fb.hdr:
            return None
        # Complete when the ranges cover [0, total).
        rs = sorted(fb.ranges)
        covered = 0
        for s, e in rs:
            if s > covered:
                return None
            covered = max(covered, e)
        if covered < fb.total:
            return None
        del self.frags[key]
        self.st["frag_reassembled"] += 1
        payload = bytes(fb.data[: fb.total])
        hdr = bytearray(fb.hdr)
        if p.ip_version == 4:
            tot = len(hdr) + len(payload)
            hdr[2] = (tot >> 8) & 0xFF
            hdr[3] = tot & 0xFF
            hdr[6] = 0
            hdr[7] = 0
        else:
            # Drop the fragment header: rewrite the previous next-header to the fragment's.
            hdr = self._ipv6_strip_frag(hdr, p.proto)
            plen = len(hdr) - 40 + len(payload)
            hdr[4] = (plen >> 8) & 0xFF
            hdr[5] = plen & 0xFF
        if len(hdr) + len(payload) > MAX_FRAG_BYTES:
            return None
        return bytes(hdr) + payload

    @staticmethod
    def _ipv6_strip_frag(hdr: bytearray, proto: int) -> bytearray:
        nxt_pos = 6
        cur = 40
        nxt = hdr[6]
        while cur < len(hdr):
            if nxt == D.IPV6_EXT_FRAGMENT:
                hdr[nxt_pos] = proto
                del hdr[cur : cur + 8]
                return hdr
            if nxt == D.IPV6_EXT_AH:
                ln = (hdr[cur + 1] + 2) * 4
            else:
                ln = (hdr[cur + 1] + 1) * 8
            nxt_pos = cur
            nxt = hdr[cur]
            cur += ln
        return hdr

    def _expire_frags(self: FlowEngine, now: int) -> None:
        lim = int(self.cfg.frag_timeout * NS)
        while self.frags:
            k, fb = next(iter(self.frags.items()))
            if fb.first_ns + lim > now:
                break
            del self.frags[k]
            self.st["frag_dropped"] += 1
