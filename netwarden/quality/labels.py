"""The labelled-capture table and the deadlines detection is held to.

A label file is tab-separated with a header, one row per capture (the shape of the shared
corpus's ``LABELS.tsv``): ``file`` (relative to the capture directory), ``class`` (the
alert kind expected, or ``benign`` when nothing should fire), ``attacker_ip`` (an address
or MAC, or text starting ``spoofed``/``reflectors`` for attacks judged by their victim),
``victim_ips`` and ``attack_start_s`` (seconds from the capture's first packet to the
attack's first packet). Other columns are kept but not read.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from pathlib import Path

from netwarden.errors import ConfigError

REQUIRED = ("file", "class", "attacker_ip", "victim_ips", "attack_start_s")
BENIGN = "benign"

#: Seconds from an attack's first packet within which its alert must be raised. Most
#: attacks show in their first seconds; brute force and exfiltration need repeated
#: attempts or volume over a baseline, beaconing needs several check-ins.
DEADLINES_S: dict[str, float] = {
    "*": 5.0,
    "*_bruteforce": 60.0,
    "data_exfiltration": 60.0,
    "c2_beaconing": 180.0,
}


def deadline(kind: str) -> float:
    """The deadline of ``kind`` (exact entry, then ``*_suffix`` pattern, then ``*``)."""
    if kind in DEADLINES_S:
        return DEADLINES_S[kind]
    for pattern, seconds in DEADLINES_S.items():
        if pattern.startswith("*_") and kind.endswith(pattern[1:]):
            return seconds
    return DEADLINES_S["*"]


def read_labels(path: Path) -> list[dict[str, str]]:
    """The rows of a label file; a missing file or column is one clear error."""
    try:
        with Path(path).open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise ConfigError(f"labels {path}: {exc.strerror or exc}") from exc
    if not rows:
        raise ConfigError(f"labels {path}: no rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise ConfigError(f"labels {path}: missing column(s) {', '.join(missing)}")
    for i, r in enumerate(rows, 2):
        try:
            float(r["attack_start_s"] or 0)
        except ValueError as exc:
            raise ConfigError(f"labels {path} line {i}: attack_start_s {r['attack_start_s']!r} "
                              "is not a number") from exc  # fmt: skip
    return rows


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
