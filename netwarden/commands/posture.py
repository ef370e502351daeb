"""``netwarden posture``: what is exposed and risky, from the archived traffic alone."""

from __future__ import annotations

import argparse
import sys

from netwarden.commands.hunt import add_source_arguments, check_limit, open_db


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "posture",
        help="exposed services, cleartext logins, new listeners, rare outbound services",
        description="Assess the network's posture from archived traffic alone: each finding "
        "with evidence and a suggested fix, and a score over time.",
    )
    p.add_argument("--since", default=None, metavar="T", help="epoch, ISO time, or 30m/2h/1d ago")
    p.add_argument(
        "--baseline-until",
        default=None,
        metavar="T",
        help="end of the baseline for new listeners (default: the archive's first day, "
        "or its first half when it spans under two days)",
    )
    add_source_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from netwarden.commands.incidents import parse_since
    from netwarden.hunt import posture
    from netwarden.hunt.output import emit
    from netwarden.hunt.window import Window

    check_limit(args)
    db = open_db(args)
    try:
        now = db.newest() or time.time()
        w = Window(parse_since(args.since, now), None, now)
        results = posture.assess(db, w, parse_since(args.baseline_until, now))
    finally:
        db.close()
    for r in results:
        if r.kind == "posture_finding" and not args.json:
            r.rows = r.rows[: args.limit]
    emit(results, args.json, sys.stdout)
    return 0
