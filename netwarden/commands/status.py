"""``netwarden sensors`` and ``netwarden status``.

``sensors``: the sensors a running controller hears from, and its ingest.

Asks the controller (control socket, ``ingest`` operation) for each sensor's state: up,
down or stopped, last heard, records received per type, sequence gaps and records lost,
and the drop counters the sensor reports in its headers.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import time
from typing import Any

from netwarden.commands.common_options import add_state_dir_argument
from netwarden.jsonout import emit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sensors", help="sensors a running controller receives from")
    p.add_argument(
        "--state-dir",
        default=None,
        help="controller state dir (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)",
    )
    p.add_argument("--json", action="store_true", help="print the controller's answer as JSON")
    p.set_defaults(func=run)

    p = sub.add_parser(
        "status", help="one screen: sensors, controller, enforcement, incidents, approvals, bans"
    )
    add_state_dir_argument(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run_status)


def run(args: argparse.Namespace) -> int:
    from controller.config import default_state_dir
    from controller.ops.server import request

    resp = request(args.state_dir or default_state_dir(), "ingest")
    if not resp.get("ok"):
        err = resp.get("error", "no answer")
        print(
            f"netwarden sensors: error: {err} (is the controller running with --listen?)",
            file=sys.stderr,
        )
        return 1
    status: dict[str, Any] = resp["result"]
    if args.json:
        emit("ingest", status)
        return 0
    _print(status)
    return 0


def _print(status: dict[str, Any]) -> None:
    from netwarden.tables import console, print_table, say

    con = console()
    endpoints = status.get("endpoint")
    say(con, f"listening on {endpoints}; {status['batches']} batches, records "
        + (", ".join(f"{k} {v}" for k, v in sorted(status["records"].items())) or "none"))  # fmt: skip
    rows = []
    now = time.time()
    for sid, st in sorted(status["sensors"].items()):
        last = st["last_seen"]
        ago = f"{now - last:.0f}s ago" if last > 0 else "-"
        recs = ", ".join(f"{k} {v}" for k, v in sorted(st["records_by_type"].items())) or "0"
        drops_txt = ", ".join(f"{k} {v}" for k, v in sorted(st["drops"].items()) if v) or "0"
        state = "stopped" if st["stopped"] else ("up" if st["up"] else "DOWN")
        rows.append(
            [sid, state, ago, recs, str(st["gaps"]), f"{st['lost_messages']} messages", drops_txt]
        )
    if rows:
        print_table(
            None, ["sensor", "state", "last heard", "records", "gaps", "lost", "sensor drops"], rows
        )
    else:
        say(con, "no sensor has connected yet")
    bus = status.get("bus")
    if bus:
        say(con, _rejected_line(bus))


def _rejected_line(bus: dict[str, Any]) -> str:
    """Bus messages the collector refused (malformed, wrong schema, oversized...), by reason."""
    why = ", ".join(f"{k} {v}" for k, v in sorted(bus.get("rejected", {}).items()) if v)
    return f"rejected messages: {bus.get('rejected_total', 0)}" + (f" ({why})" if why else "")


# --- status -----------------------------------------------------------------------------
PRIORITIES = ("P1", "P2", "P3", "P4")


def gather_status(state_dir: str | None) -> dict[str, Any]:
    """Everything ``status`` shows, as one dict: live answers from the controller holding
    the state dir when one runs, else what the state dir's database holds (a stopped
    controller's or a replay's state, as of its last audit entry)."""
    from pathlib import Path

    from controller.config import default_state_dir
    from controller.ops.server import request
    from controller.state.audit import AuditLog
    from controller.state.store import DB_NAME, Store
    from netwarden.errors import ConfigError, ControlError

    d = Path(state_dir) if state_dir else default_state_dir()
    if not (d / DB_NAME).is_file():
        raise ConfigError(
            f"no NetWarden state in {d} (run a controller or `netwarden replay ... --state-dir {d}`)"
        )
    live: dict[str, Any] | None = None
    try:
        ping = request(d, "ping", timeout_s=5.0)
        if ping.get("ok"):
            live = {"ping": ping["result"]}
            for op in ("ingest", "bans", "approvals"):
                r = request(d, op, timeout_s=5.0)
                live[op] = r["result"] if r.get("ok") else None
    except ControlError:
        live = None
    store = Store(d, readonly=True)
    try:
        audit = AuditLog(store.db, d, readonly=True).entries()
        starts = [e for e in audit if e["event"] == "start" and e["actor"] == "controller"]
        backend = (
            live["ping"]["backend"] if live else (starts[-1]["subject"] if starts else "unknown")
        )
        as_of = time.time() if live else _state_clock(store, audit)
        bans = (
            live["bans"]
            if live and live.get("bans") is not None
            else [b.to_dict(as_of) for b in store.active_bans(as_of)]
        )
        approvals = (
            live["approvals"]
            if live and live.get("approvals") is not None
            else [a.to_dict() for a in store.approvals("pending") if a.expires_at > as_of]
        )
        incidents = _open_incidents(store)
    finally:
        store.close()
    ingest = live.get("ingest") if live else None
    sensors: dict[str, Any] = {}
    controller: dict[str, Any] = {"running": live is not None, "pid": live["ping"].get("pid") if live else None,
                                  "records": None, "records_per_s": None, "bus_lag_s": None}  # fmt: skip
    if ingest:
        now = time.time()
        controller["records"] = sum(ingest.get("records", {}).values())
        controller["records_per_s"] = ingest.get("records_per_s")
        controller["queue_depth"] = ingest.get("queue_depth")
        controller["queue_depth_max_60s"] = ingest.get("queue_depth_max_60s")
        controller["endpoint"] = ingest.get("endpoint")
        controller["rejected_messages"] = (ingest.get("bus") or {}).get("rejected_total", 0)
        lags = []
        for sid, st in ingest.get("sensors", {}).items():
            span = max(st["last_seen"] - st["first_seen"], 1e-9)
            sensors[sid] = {
                "state": "stopped" if st["stopped"] else ("up" if st["up"] else "down"),
                "address": st.get("peer_address") or None,
                "last_heartbeat_age_s": round(now - st["last_seen"], 1)
                if st["last_seen"] > 0
                else None,
                "records": st["received_records"],
                "records_per_s": round(st["received_records"] / span, 1)
                if st["received_records"]
                else 0.0,
                "pps": st["drops"].get("packets_per_s"),
                "drops": {k: v for k, v in st["drops"].items() if v and k != "packets_per_s"},
                "lost_messages": st["lost_messages"],
            }
            lags.append(st.get("last_latency_s", 0.0))
        controller["bus_lag_s"] = max(lags) if lags else None
    by_pri = {p: sum(1 for i in incidents if i["priority"] == p) for p in PRIORITIES}
    return {
        "state_dir": str(d),
        "source": "controller" if live else "state dir (no controller running)",
        "as_of": as_of,
        "controller": controller,
        "sensors": sensors,
        "enforcement": {
            "backend": backend,
            "dry_run": backend in ("dryrun", "unknown"),
            "dry_run_file": str(d / "dryrun.jsonl") if backend == "dryrun" else None,
        },
        "incidents": {"open": len(incidents), "by_priority": by_pri, "list": incidents},
        "approvals": approvals,
        "bans": bans,
    }


def _state_clock(store: Any, audit: list[dict[str, Any]]) -> float:
    """The time a stopped state dir was last written, on its own clock: a replay's bans and
    incidents carry capture time (the audit log wall time), a stopped controller's both wall
    time. The latest ban or incident time, else the last audit entry."""
    times = [r[0] for r in store.db.execute("SELECT MAX(created) FROM bans") if r[0] is not None]
    with contextlib.suppress(sqlite3.Error):  # no incident table in an old state dir
        times += [
            r[0]
            for r in store.db.execute("SELECT MAX(updated_at) FROM incidents")
            if r[0] is not None
        ]
    if times:
        return float(max(times))
    return float(audit[-1]["ts"]) if audit else time.time()


def _open_incidents(store: Any) -> list[dict[str, Any]]:
    from controller.incidents.store import IncidentStore

    try:
        incs = IncidentStore(store.db).incidents(("open", "acknowledged"))
    except Exception:  # noqa: BLE001 - a state dir made before incidents existed
        return []
    incs.sort(key=lambda i: (i.priority, -i.risk, i.id))
    return [{"id": i.id, "priority": i.priority, "status": i.status, "risk": i.risk, "kinds": list(i.kinds),
             "attackers": list(i.attackers)} for i in incs]  # fmt: skip


def run_status(args: argparse.Namespace) -> int:
    st = gather_status(args.state_dir)
    if args.json:
        emit("status", st)
        return 0
    print_status(st, sys.stdout)
    return 0


def _ago(age: float | None) -> str:
    return "-" if age is None else f"{age:.0f}s ago"


def print_status(st: dict[str, Any], out: Any) -> None:
    """Plain text that fits 80 columns: one block per part, most urgent first."""
    from datetime import UTC, datetime

    w = out.write
    enf = st["enforcement"]
    if enf["dry_run"]:
        w(f"!!! DRY RUN: nothing is enforced (backend {enf['backend']}) !!!\n")
        if enf["dry_run_file"]:
            w(f"    would-be bans are written to {enf['dry_run_file']}\n")
    when = datetime.fromtimestamp(st["as_of"], tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    w(f"State dir: {st['state_dir']}\n  read from the {st['source']}, as of {when}\n\n")
    c = st["controller"]
    if c["running"]:
        rate = "-" if c["records_per_s"] is None else f"{c['records_per_s']:.0f}"
        lag = "-" if c["bus_lag_s"] is None else f"{c['bus_lag_s'] * 1000:.0f} ms"
        w(f"Controller: running (pid {c['pid']}), enforcement {enf['backend']}\n")
        if c["records"] is not None:
            w(f"  listening on {c.get('endpoint')}\n")
            w(
                f"  {c['records']} records, {rate} records/s, bus lag {lag}, "
                f"rejected messages {c.get('rejected_messages', 0)}\n"
            )
            if c.get("queue_depth") is not None:
                w(f"  queue depth {c['queue_depth']} batches (most in the last minute "
                  f"{c['queue_depth_max_60s']})\n")  # fmt: skip
        else:
            w("  not listening for sensors (no --listen)\n")
    else:
        w(f"Controller: not running; enforcement backend last used: {enf['backend']}\n")
    w("\nSensors:\n")
    if not st["sensors"]:
        w(
            "  none connected"
            + ("" if c["running"] else " (only a running controller knows)")
            + "\n"
        )
    for sid, s in sorted(st["sensors"].items()):
        drops = ", ".join(f"{k} {v}" for k, v in sorted(s["drops"].items())) or "no drops"
        pps = (
            f"{s['pps']:.0f} pps" if s["pps"] is not None else f"{s['records_per_s']:.0f} records/s"
        )
        w(
            f"  {sid:<16} {s['state'].upper() if s['state'] == 'down' else s['state']:<7} "
            f"heartbeat {_ago(s['last_heartbeat_age_s'])}, {pps}, {drops}\n"
        )
    inc = st["incidents"]
    w(
        "\nOpen incidents: "
        + str(inc["open"])
        + "  ("
        + ", ".join(f"{p} {n}" for p, n in inc["by_priority"].items())
        + ")\n"
    )
    for i in inc["list"][:5]:
        w(
            f"  {i['id']:<8} {i['priority']} {i['status']:<12} {', '.join(i['kinds'])[:30]:<30} "
            f"{', '.join(i['attackers'][:1])}\n"
        )
    if inc["open"] > 5:
        w(f"  ... {inc['open'] - 5} more: netwarden incidents --open\n")
    w(f"\nPending approvals: {len(st['approvals'])}\n")
    for a in st["approvals"]:
        prop = a.get("proposal", {})
        w(f"  {a['id']}: {prop.get('action', '?')} {prop.get('target', '?')} ({a['reason']})\n")
    verb = "would block (dry run)" if enf["dry_run"] else "enforced"
    w(f"\nActive bans: {len(st['bans'])}" + (f", {verb}" if st["bans"] else "") + "\n")
    for b in st["bans"]:
        rem = "permanent" if b["remaining_s"] is None else f"{b['remaining_s']:.0f}s left"
        w(f"  {b['addr']:<39} {b['action']:<6} {rem}\n")
