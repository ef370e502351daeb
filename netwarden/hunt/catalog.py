"""The built-in hunts by name: the argument each needs and one line of help. Light on
purpose: the command line builds its parser from it without loading the hunts (numpy,
DuckDB)."""

from __future__ import annotations

#: name -> (argument the hunt needs: ADDR, ID, SQL, or None; one-line help)
CATALOG: dict[str, tuple[str | None, str]] = {
    "beacons": (None, "regular check-ins to external hosts (RITA-style score)"),
    "long-connections": (None, "longest connections"),
    "rare-destinations": (None, "external hosts few internal hosts use"),
    "dns": (None, "DNS tunnelling candidates"),
    "scans": (None, "sources probing many targets, fast or slow"),
    "talkers": (None, "hosts moving the most bytes"),
    "host": ("ADDR", "everything one address did, with its alerts"),
    "peers": ("ADDR", "who an address talked to, and who talked to it"),
    "blocked": ("ADDR", "why an address was blocked"),
    "incident": ("ID", "an incident's hosts' connections around it"),
    "sql": ("SQL", "one read-only SELECT over the views"),
}
