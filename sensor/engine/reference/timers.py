# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""Network-time timers (twin of timers.pxi): Zeek's TCP attempt/expire/delete/reset timers, inactivity, active and DNS session timers."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from netwarden.records.schema import (
    EndReason,
)
from sensor.engine.reference import tcp as T
from sensor.engine.reference.engine import (
    DNS_SESSION_TIMEOUT,
    NS,
    PROTO_ICMP,
    PROTO_ICMP6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_CONNECTION_LINGER,
    TCP_SESSION_TIMER,
    TM_ACTIVE,
    TM_ATTEMPT,
    TM_DELETE,
    TM_DNS,
    TM_EXPIRE,
    TM_INACTIVITY,
    TM_RESET,
)
from sensor.engine.reference.flow import Flow

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine


class TimersMixin:
    # --- timers -------------------------------------------------------------------------
    def _add_timer(self: FlowEngine, due: int, kind: int, f: Flow) -> None:
        self.timer_seq += 1
        heapq.heappush(self.timers, (due, self.timer_seq, kind, f))
        if len(self.timers) > 8 * len(self.table) + 4096:
            # Timers of ended flows are dropped lazily; compact so memory follows the
            # number of live flows, not the flow rate times the longest timeout.
            self.timers = [e for e in self.timers if not e[3].removed]
            heapq.heapify(self.timers)

    def _run_timers(self: FlowEngine, t: int) -> None:
        timers = self.timers
        while timers and timers[0][0] <= t:
            _due, _seq, kind, f = heapq.heappop(timers)
            if f.removed:
                continue
            self._fire(kind, f, t)

    def _fire(self: FlowEngine, kind: int, f: Flow, t: int) -> None:
        eo, er = f.eo, f.er
        if kind == TM_INACTIVITY:
            to = self._timeout(f)
            if f.last_ns + to <= t:
                self._remove(f, EndReason.IDLE)
            else:
                self._add_timer(f.last_ns + to, TM_INACTIVITY, f)
        elif kind == TM_ATTEMPT:
            if eo.state in (T.SYN_SENT, T.SYN_ACK_SENT) and er.state == T.INACTIVE:
                self._remove(f, EndReason.IDLE)
        elif kind == TM_EXPIRE:
            if f.last_ns + TCP_CONNECTION_LINGER < t:
                if eo.did_close or er.did_close:  # noqa: SIM102 -- Zeek's branch structure
                    if (
                        (eo.did_close and er.did_close)
                        or eo.state == T.RESET
                        or er.state == T.RESET
                        or eo.state == T.INACTIVE
                        or er.state == T.INACTIVE
                    ):
                        self._remove(f, EndReason.CLOSED)
                        return
                if er.state == T.INACTIVE and eo.state == T.INACTIVE:
                    self._remove(f, EndReason.IDLE)
                    return
            self._add_timer(t + TCP_SESSION_TIMER, TM_EXPIRE, f)
        elif kind == TM_DELETE or kind == TM_RESET:
            self._remove(f, EndReason.CLOSED)
        elif kind == TM_DNS:
            if t - f.last_ns >= DNS_SESSION_TIMEOUT - NS:
                self._remove(f, EndReason.IDLE)
            else:
                self._add_timer(t + DNS_SESSION_TIMEOUT, TM_DNS, f)
        elif kind == TM_ACTIVE:
            self._emit(f, EndReason.ACTIVE, True)
            self._add_timer(t + int(self.cfg.active_timeout * NS), TM_ACTIVE, f)

    def _timeout(self: FlowEngine, f: Flow) -> int:
        c = self.cfg
        if f.proto == PROTO_TCP:
            return int(c.tcp_timeout * NS)
        if f.proto == PROTO_UDP:
            return int(c.udp_timeout * NS)
        if f.proto == PROTO_ICMP or f.proto == PROTO_ICMP6:
            return int(c.icmp_timeout * NS)
        return int(c.other_timeout * NS)
