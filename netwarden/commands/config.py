"""``netwarden config check FILE``: validate a configuration, naming each bad key."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="check a configuration file")
    p.add_argument("verb", choices=("check",))
    p.add_argument(
        "file", metavar="FILE", help="TOML configuration (see docs/netwarden.sample.toml)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netwarden.config_check import check_file

    problems = check_file(args.file)
    if not problems:
        print(f"{args.file}: ok")
        return 0
    for p in problems:
        print(f"{args.file}: {p}", file=sys.stderr)
    return 1
