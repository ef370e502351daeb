"""``netwarden report``: a self-contained HTML report of a state dir (see netwarden.report)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report", help="write a self-contained HTML report (charts, incidents, bans)"
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="HTML file to write")
    p.add_argument(
        "--since",
        default=None,
        metavar="T",
        help="only since T (epoch, ISO time, or 30m/2h/1d before the state's latest time)",
    )
    p.add_argument(
        "--state-dir",
        default=None,
        help="controller or replay state dir (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)",
    )
    p.add_argument(
        "--lang", choices=("en", "ja"), default="en", help="language of incident summaries"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.config import default_state_dir
    from netwarden.report import load, render

    d = load(Path(args.state_dir) if args.state_dir else default_state_dir(), args.since, args.lang)
    text = render(d)
    out = Path(args.output)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(
        f"wrote {out} ({len(text):,} bytes): {len(d.incidents)} incidents, {len(d.alerts)} alerts, "
        f"{len(d.flows):,} flow records"
    )
    return 0
