"""``netwarden top [--by bytes|flows|alerts]``: live top talkers.

From the state dir of a running controller (refreshed every ``--interval`` seconds on a
TTY until Ctrl-C, from the telemetry its sensors send) or of a replay (printed once).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from netwarden.commands.common_options import add_state_dir_argument
from netwarden.errors import ConfigError
from netwarden.jsonout import emit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from netwarden.top import BY

    p = sub.add_parser("top", help="top talkers: bytes, flows opened, or alerts, per host")
    p.add_argument("--by", choices=BY, default="bytes", help="rank by (default bytes)")
    p.add_argument("-n", type=int, default=10, metavar="N", help="rows (default 10)")
    p.add_argument(
        "--since",
        default=None,
        metavar="T",
        help="span (epoch, ISO time, or an age like 30s, 5m; default the last 5 minutes)",
    )
    p.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="refresh period when live"
    )
    p.add_argument("--once", action="store_true", help="print once, even on a TTY")
    p.add_argument("--json", action="store_true", help="one JSON object per line per host")
    add_state_dir_argument(p)
    p.set_defaults(func=run)


def _controller_running(d: Path) -> bool:
    from controller.ops.server import request
    from netwarden.errors import ControlError

    try:
        return bool(request(d, "ping", timeout_s=2.0).get("ok"))
    except ControlError:
        return False


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # not reached


def render(view: Any, by: str) -> Any:
    """The table of one ``TopView``."""
    from datetime import UTC, datetime

    from rich.console import Group

    from netwarden.tables import table

    def t(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")

    title = (f"Top talkers by {by}, {t(view.since)}-{t(view.until)[11:]} UTC "
             f"({'live' if view.live else 'stored'}, {view.windows} windows)")  # fmt: skip
    cols = ["host", "bytes", "out", "in", "flows", "alerts"]
    rows = [[x.addr, _human(x.bytes), _human(x.bytes_out), _human(x.bytes_in), str(x.flows_out),
             str(x.alerts)] for x in view.talkers]  # fmt: skip
    return Group(title, table(None, cols, rows, right=tuple(cols[1:])))


def run(args: argparse.Namespace) -> int:
    from controller.config import default_state_dir
    from controller.ops.server import request
    from netwarden.tables import console
    from netwarden.top import from_op, top

    if args.n < 1:
        raise ConfigError("-n must be >= 1")
    if not args.interval > 0:
        raise ConfigError("--interval must be > 0")
    d = Path(args.state_dir) if args.state_dir else default_state_dir()
    live = _controller_running(d)

    def view() -> Any:
        if live:  # the controller reads its archive, records not yet written included
            resp = request(d, "top", by=args.by, n=args.n, since=args.since)
            if resp.get("ok"):
                return from_op(d, resp["result"])
        return top(d, args.by, args.n, args.since, live=live)

    if args.json:
        emit("talker", (x.to_json() for x in view().talkers))
        return 0
    con = console()
    if not (live and con.is_terminal and not args.once):
        v = view()
        con.print(render(v, args.by))
        if not v.talkers:
            con.print("  no traffic or alerts in this span" + ("" if live else " (try --since)"))
        return 0
    from rich.live import Live

    with Live(render(view(), args.by), console=con, auto_refresh=False) as screen:
        while True:
            time.sleep(args.interval)
            screen.update(render(view(), args.by), refresh=True)
    return 0  # not reached: Ctrl-C ends it (exit 130)
