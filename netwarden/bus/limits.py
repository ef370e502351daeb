"""Bounds the collector applies to what peers send: plausible sequence numbers, a sensor
table that hostile ids cannot fill for good, and queued bytes per peer.

Kept apart from ``collector.py`` so the rules can be read (and tested) on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

#: no sensor jumps this many messages at once (at 1,000 messages/s: 4.6 hours of data);
#: a header claiming more is forged or corrupt, and is rejected instead of being counted
#: as billions of lost messages
MAX_SEQ_JUMP = 1 << 24
#: a full sensor table forgets the longest-silent unauthenticated sensor once it has been
#: silent this long (a live sensor sends a heartbeat every second or so)
EVICT_SILENT_S = 10.0
#: sensors silent this long are forgotten (status shows them as down until then)
EXPIRE_SILENT_S = 3600.0
#: ZeroMQ queues at most this many bytes of received messages per peer (by default):
#: about a dozen messages of the largest size, and as many heartbeats or small batches
MAX_QUEUED_BYTES_PER_PEER = 256 << 20


class _Header(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def base(self) -> int: ...
    @property
    def acked(self) -> int: ...
    @property
    def next_seq(self) -> int: ...


class _Entry(Protocol):
    key: str
    stopped: bool
    last_seen_mono: float


def implausible(h: _Header, expected: int | None, data_kind: str) -> str | None:
    """Why the header's sequence numbers cannot be a real sensor's, or None.

    ``expected`` is the next sequence number the collector expects from this session
    (None for a new sensor or session: then ``min(base, acked + 1)``, as the collector
    starts counting)."""
    if h.kind == data_kind and h.seq < h.base:
        return f"sequence number {h.seq} below the sensor's own base {h.base}"
    if h.kind != data_kind and h.next_seq and h.next_seq < h.base:
        return f"next sequence number {h.next_seq} below the sensor's own base {h.base}"
    start = min(h.base, h.acked + 1) if expected is None else expected
    top = max(h.base, h.seq, h.next_seq)
    if top - start > MAX_SEQ_JUMP:
        return f"sequence numbers jump by {top - start} messages (limit {MAX_SEQ_JUMP})"
    return None


def evictable(
    entries: Mapping[str, _Entry], now_mono: float, newcomer_authenticated: bool
) -> str | None:
    """Which sensor id a full table may forget to admit a newcomer, or None.

    Authenticated sensors are never displaced by unauthenticated ones. Among the rest,
    the longest-silent entry goes if it said goodbye or has been silent for
    ``EVICT_SILENT_S``; an authenticated newcomer displaces the longest-silent
    unauthenticated entry whatever its age (ids made up by an unauthenticated peer must
    not lock out a real sensor)."""
    best: tuple[bool, bool, float] | None = None
    victim = None
    for sid, st in entries.items():
        rank = (
            bool(st.key),
            not st.stopped,
            st.last_seen_mono,
        )  # unauthenticated, stopped, oldest first
        if best is None or rank < best:
            best, victim = rank, sid
    if victim is None or best is None:
        return None
    st = entries[victim]
    if st.key and not newcomer_authenticated:
        return None
    if st.stopped or now_mono - st.last_seen_mono >= EVICT_SILENT_S:
        return victim
    if newcomer_authenticated and not st.key:
        return victim
    return None


def expired(
    entries: Mapping[str, _Entry], now_mono: float, after_s: float | None = None
) -> list[str]:
    """Sensor ids silent for longer than ``after_s`` (default ``EXPIRE_SILENT_S``)."""
    after_s = EXPIRE_SILENT_S if after_s is None else after_s
    return [sid for sid, st in entries.items() if now_mono - st.last_seen_mono > after_s]


def peer_hwm(max_frame_bytes: int, rcvhwm: int, max_queued_bytes: int) -> int:
    """Messages ZeroMQ may queue per peer so that they hold at most ``max_queued_bytes``."""
    return max(1, min(rcvhwm, max_queued_bytes // max(1, max_frame_bytes)))
