"""Run captures through the detection stack the way ``netwarden replay`` does (capture
time, records as they are made) and judge the alerts against a label row."""

from __future__ import annotations

import csv
import functools
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.detect import Alert, DetectionStack, build

#: seconds from the attack's first packet within which the alert must be raised
DEADLINES = {"c2_beaconing": 180.0, "data_exfiltration": 60.0}
DEFAULT_DEADLINE = 5.0
BRUTEFORCE_DEADLINE = 60.0


def deadline(kind: str) -> float:
    if kind.endswith("_bruteforce"):
        return BRUTEFORCE_DEADLINE
    return DEADLINES.get(kind, DEFAULT_DEADLINE)


@dataclass
class Run:
    alerts: list[Alert]
    t_first: float  # capture time of the first packet, epoch seconds
    errors: dict[str, int] = field(default_factory=dict)
    warm_alerts: list[Alert] = field(default_factory=list)


Event = tuple[str, Any]  # ("obs", (record_type, batch)) or ("adv", now_ns)


@functools.cache
def record_events(path: str, backend: str | None = "c") -> tuple[Event, ...]:
    """The record batches and clock advances a replay of ``path`` hands a sink (cached)."""
    from sensor.export.replay_summary import _run

    events: list[Event] = []

    class Rec:
        @staticmethod
        def observe(kind: str, batch: Any) -> None:
            events.append(("obs", (kind, batch.copy())))

        @staticmethod
        def advance(now_ns: int) -> None:
            events.append(("adv", now_ns))

    _, _, _, fault = _run([path], backend, 1.0, Rec())
    if fault is not None:
        raise fault
    return tuple(events)


def run_captures(
    paths: list[str | Path],
    backend: str | None = "c",
    warm: tuple[Event, ...] = (),
    **stack_kw: Any,
) -> Run:
    """All of ``paths`` as one stream through a fresh stack of every registered detector,
    after the stack has learnt from the recorded records ``warm`` (alerts raised while
    warming are kept in ``Run.warm_alerts``)."""
    from sensor.export.replay_summary import _run

    stack = DetectionStack(build(), **stack_kw)
    warm_alerts: list[Alert] = []
    for what, arg in warm:
        if what == "obs":
            stack.observe(*arg)
        else:
            warm_alerts += stack.advance(arg)
    alerts: list[Alert] = []

    class Sink:
        observe = stack.observe

        @staticmethod
        def advance(now_ns: int) -> None:
            alerts.extend(stack.advance(now_ns))

    _, counts, _, fault = _run([str(p) for p in paths], backend, 1.0, Sink())
    if fault is not None:
        raise fault
    return Run(alerts, counts.get("t_first", 0) / 1e9, dict(stack.errors), warm_alerts)


def read_labels(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


_IP = re.compile(r"[0-9a-fA-F:.]+(?:/\d+)?")
_MAC = re.compile(r"\b[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\b")


def first_address(text: str) -> str | None:
    """The first IP address, network or MAC named in a label cell."""
    m = _MAC.search(text)
    if m and text.strip().upper().startswith("MAC"):
        return m.group(0).lower()
    for tok in _IP.findall(text):
        try:
            ipaddress.ip_network(tok, strict=False)
        except ValueError:
            continue
        if any(c.isdigit() for c in tok) and ("." in tok or ":" in tok):
            return tok
    return None


def is_victim_centric(attacker_cell: str) -> bool:
    return attacker_cell.strip().lower().startswith(("spoofed", "reflectors"))


def names(addr: str, candidates: list[str]) -> bool:
    """True when ``addr`` (an address or network) is one of / inside one of ``candidates``."""
    for c in candidates:
        if c.lower() == addr.lower():
            return True
        try:
            want = ipaddress.ip_network(addr, strict=False)
            got = ipaddress.ip_network(c, strict=False)
        except ValueError:
            continue
        if want.version == got.version and (want.subnet_of(got) or got.subnet_of(want)):  # type: ignore[arg-type]
            return True
    return False


def judge(label: dict[str, str], run: Run) -> tuple[Alert | None, str]:
    """(the first alert that matches the label, or None; a short reason)."""
    kind = label["class"]
    start = run.t_first + float(label["attack_start_s"] or 0)
    want_att = first_address(label["attacker_ip"])
    want_vic = first_address(label["victim_ips"])
    centric = is_victim_centric(label["attacker_ip"])
    of_kind = [a for a in run.alerts if a.kind == kind]
    if not of_kind:
        got = sorted({a.kind for a in run.alerts})
        return None, f"no {kind} alert (got {', '.join(got) or 'nothing'})"
    for a in of_kind:
        if centric:
            ok = want_vic is not None and names(want_vic, a.victims)
        else:
            ok = want_att is not None and a.attacker is not None and names(want_att, [a.attacker])
        if ok:
            if a.detected_at - start > deadline(kind):
                return a, f"late: {a.detected_at - start:.1f} s > {deadline(kind):.0f} s"
            return a, "ok"
    return None, f"{kind} alert names {of_kind[0].attacker} -> {of_kind[0].victims[:2]}"


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
