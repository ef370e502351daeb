"""Captures through the detection stack and judged against a label row: the product's
own harness (``netwarden.quality``, which ``netwarden eval`` runs), re-exported for the
detection tests, plus a helper that moves a capture in time."""

from __future__ import annotations

from pathlib import Path

from netwarden.quality.evaluate import judge, judge_row
from netwarden.quality.labels import deadline, first_address, is_victim_centric, names, read_labels
from netwarden.quality.replaying import Event, Run, feed, record_events, replay_run, run_captures

__all__ = [
    "Event", "Run", "deadline", "feed", "first_address", "is_victim_centric", "judge", "judge_row",
    "names", "read_labels", "record_events", "replay_run", "run_captures", "shift_pcap",
]  # fmt: skip


def shift_pcap(src: Path, dst: Path, start_s: float) -> float:
    """Copy a classic pcap (microsecond or nanosecond) so its first packet is at epoch
    ``start_s``; returns the shift in seconds."""
    import struct

    data = bytearray(src.read_bytes())
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        bo = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        bo = ">"
    else:
        raise ValueError(f"{src}: not a classic pcap")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    unit = 1e9 if nano else 1e6
    off, first, shift = 24, None, 0
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from(bo + "IIII", data, off)
        t = sec * unit + frac
        if first is None:
            first = t
            shift = int(start_s * unit) - int(first)
        t += shift
        struct.pack_into(bo + "II", data, off, int(t // unit), int(t % unit))
        off += 16 + incl
    dst.write_bytes(bytes(data))
    return shift / unit
