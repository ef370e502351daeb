"""``netwarden sensors``: the sensors a running controller hears from, and its ingest.

Asks the controller (control socket, ``ingest`` operation) for each sensor's state: up,
down or stopped, last heard, records received per type, sequence gaps and records lost,
and the drop counters the sensor reports in its headers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sensors", help="sensors a running controller receives from")
    p.add_argument("--state-dir", default=None,
                   help="controller state dir (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)")
    p.add_argument("--json", action="store_true", help="print the controller's answer as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.config import default_state_dir
    from controller.ops.server import request

    resp = request(args.state_dir or default_state_dir(), "ingest")
    if not resp.get("ok"):
        err = resp.get("error", "no answer")
        print(f"netwarden sensors: error: {err} (is the controller running with --listen?)",
              file=sys.stderr)
        return 1
    status: dict[str, Any] = resp["result"]
    if args.json:
        json.dump(status, sys.stdout, indent=2, default=str)
        print()
        return 0
    _print(status)
    return 0


def _print(status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 120)
    endpoints = status.get("endpoint")
    con.print(f"listening on {endpoints}; {status['batches']} batches, records "
              + (", ".join(f"{k} {v}" for k, v in sorted(status["records"].items())) or "none"))
    tab = Table(title_justify="left")
    for col in ("sensor", "state", "last heard", "records", "gaps", "lost", "sensor drops"):
        tab.add_column(col)
    now = time.time()
    for sid, st in sorted(status["sensors"].items()):
        last = st["last_seen"]
        ago = f"{now - last:.0f}s ago" if last > 0 else "-"
        recs = ", ".join(f"{k} {v}" for k, v in sorted(st["records_by_type"].items())) or "0"
        drops_txt = ", ".join(f"{k} {v}" for k, v in sorted(st["drops"].items()) if v) or "0"
        state = "stopped" if st["stopped"] else ("up" if st["up"] else "DOWN")
        tab.add_row(sid, state, ago, recs, str(st["gaps"]), f"{st['lost_messages']} messages",
                    drops_txt)  # fmt: skip
    con.print(tab if status["sensors"] else "no sensor has connected yet")
    bus = status.get("bus")
    if bus:
        con.print(_rejected_line(bus))


def _rejected_line(bus: dict[str, Any]) -> str:
    """Bus messages the collector refused (malformed, wrong schema, oversized...), by reason."""
    why = ", ".join(f"{k} {v}" for k, v in sorted(bus.get("rejected", {}).items()) if v)
    return f"rejected messages: {bus.get('rejected_total', 0)}" + (f" ({why})" if why else "")
