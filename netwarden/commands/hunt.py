"""``netwarden hunt NAME``: built-in threat hunts over the archive (DuckDB, docs/hunting.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """--state-dir, --config, --json, --limit: shared by hunt, ask and posture."""
    p.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="controller or replay state dir (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)",
    )
    p.add_argument(
        "--config", default=None, metavar="FILE", help="controller TOML (internal networks)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line, with type")
    p.add_argument("--limit", type=int, default=20, help="rows per table (default 20)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from netwarden.hunt.catalog import CATALOG

    names = "; ".join(
        f"{n}{' ' + arg if arg else ''}: {text}" for n, (arg, text) in CATALOG.items()
    )
    p = sub.add_parser(
        "hunt",
        help="threat hunts over the archived records (beacons, scans, dns, ...)",
        description=f"Built-in hunts over STATE_DIR/archive and the alerts. Hunts: {names}. "
        "Ages (--since 2h) count back from the newest archived activity.",
    )
    p.add_argument("name", metavar="NAME", choices=list(CATALOG), help="the hunt")
    p.add_argument("arg", nargs="?", default=None, metavar="ARG", help="ADDR, ID or SQL")
    p.add_argument("--since", default=None, metavar="T", help="epoch, ISO time, or 30m/2h/1d ago")
    p.add_argument("--until", default=None, metavar="T", help="end of the window (same forms)")
    add_source_arguments(p)
    p.set_defaults(func=run)


def open_db(args: argparse.Namespace) -> Any:
    from controller.config import default_state_dir
    from netwarden.hunt.db import HuntDB

    internal = None
    if args.config:
        from controller.config import load

        internal = load(args.config).policy.internal_networks
    state = Path(args.state_dir) if args.state_dir else default_state_dir()
    return HuntDB(state, internal)


def check_limit(args: argparse.Namespace) -> None:
    from netwarden.errors import ConfigError

    if args.limit < 1:
        raise ConfigError("--limit must be >= 1")


def run(args: argparse.Namespace) -> int:
    import time

    from netwarden.commands.incidents import parse_since
    from netwarden.hunt import hunts
    from netwarden.hunt.output import emit
    from netwarden.hunt.window import Window

    check_limit(args)
    db = open_db(args)
    try:
        now = db.newest() or time.time()
        w = Window(parse_since(args.since, now), parse_since(args.until, now), now)
        results = hunts.run(db, args.name, w, args.limit, args.arg)
    finally:
        db.close()
    emit(results, args.json, sys.stdout)
    return 0
