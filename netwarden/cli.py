"""The ``netwarden`` console command: one entry point, a subcommand per job.

Each subcommand lives in ``netwarden/commands/<name>.py`` and exposes ``register(sub)``,
which adds its parser(s) and sets ``func``. Heavy imports happen inside the handlers so
``netwarden --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# numpy's OpenBLAS starts a thread per core at import, and they spin: ~0.1 CPU s of every
# run, and a core taken from the sensor or the writers. NetWarden does no large matrix work.
# Set before anything imports numpy; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# numpy asks for transparent huge pages on every array of 4 MiB or more. The controller's
# detection ticks join and drop arrays of that size all the time, so each one arrives as
# fresh huge pages the kernel zeroes whole: on a virtual machine whose host backs guest
# memory lazily that was 1-2 CPU s of kernel time per 2M-packet benchmark run (perf:
# clear_page_erms under do_huge_pmd_anonymous_page), against 0.6 s with 4 KiB pages and the
# same user time. Our arrays are streamed, not probed at random, so huge pages buy little.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from netwarden import __version__
from netwarden.errors import NetWardenError

#: Modules under netwarden.commands, in help order.
COMMAND_MODULES = (
    "flows",
    "replay",
    "sensor",
    "controller",
    "response",
    "incidents",
    "status",
    "config",
    "report",
    "top",
    "evaluate",
    "tune",
    "simulate",
    "hunt",
    "ask",
    "posture",
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command`` (the word a user typed), only that command's
    module is imported when its module registers it (start-up is part of every run)."""
    parser = argparse.ArgumentParser(
        prog="netwarden",
        description="Network sensor and response controller.",
    )
    parser.add_argument("--version", action="version", version=f"netwarden {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--log-json", action="store_true", help="log JSON lines with stable event names"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in COMMAND_MODULES:
        importlib.import_module(f"netwarden.commands.{command}").register(sub)
        # A module that registers other names only (``evaluate`` adds ``eval``): all.
        return parser if command in sub.choices else build_parser()
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"netwarden.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"netwarden.commands.{name}":
                continue  # command not built yet
            raise
        mod.register(sub)
    return parser


def _command_word(argv: list[str]) -> str | None:
    """The first word that is not an option (the subcommand), if any."""
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_word(args_in))
    args = parser.parse_args(args_in)
    from netwarden.logs import setup

    setup(args.verbose, bool(args.log_json or getattr(args, "log_json_here", False)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except NetWardenError as exc:
        print(f"netwarden {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
