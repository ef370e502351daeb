# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""802.11 data frames and A-MSDU subframes (twin of wifi.pxi)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sensor.engine.reference import decode as D
from sensor.engine.reference.engine import PktCtx

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine


class WifiMixin:
    def _wifi(
        self: FlowEngine,
        b: bytes,
        off: int,
        end: int,
        wire_end: int,
        p: Any,
        at: PktCtx,
    ) -> None:
        """802.11 data frame: one LLC/SNAP packet, or each subframe of an A-MSDU (Zeek
        pads subframes to len % 4, as its analyzer does)."""
        pay = D.decode_ieee80211(b, off, end, p)
        if pay == D.NOT_IP:
            self.st["non_ip"] += 1
            return
        if pay < 0:
            self.st["decode_errors"] += 1
            return
        if not p.amsdu:
            l3 = D.decode_80211_payload(b, pay, end, p)
            if l3 == D.NOT_IP:
                self.st["non_ip"] += 1
            elif l3 < 0:
                self.st["decode_errors"] += 1
            else:
                self._l3(b, l3, end, wire_end, p, at)
            return
        cur = pay
        while cur < end:
            if end - cur < 14:
                self.st["decode_errors"] += 1
                return
            n = D.u16(b, cur + 12)
            if end - cur < n + 14:
                self.st["decode_errors"] += 1
                return
            q = D.Pkt()
            q.src_mac = bytes(b[cur + 6 : cur + 12])
            q.dst_mac = bytes(b[cur : cur + 6])
            sub_end = cur + 14 + n
            l3 = D.decode_80211_payload(b, cur + 14, sub_end, q)
            if l3 < 0:
                self.st["decode_errors"] += 1
                return
            self._l3(b, l3, sub_end, sub_end, q, at)
            cur = sub_end
            pad = n % 4
            if end - cur >= pad:
                cur += pad
