"""Options several subcommands share: detector selection, JSON logging, a metrics endpoint.

Not a subcommand (as ``engine_options``): each ``add_*`` adds the same arguments, with the
same destinations, to a parser, so the commands that run detection or serve metrics spell
them alike. Kept free of heavy imports because it runs while the parsers are built.
"""

from __future__ import annotations

from typing import Any


def add_detector_arguments(p: Any, on_what: str = "") -> None:
    """``--detectors NAMES`` (default: all registered) and ``--detector-plugin MODULE``."""
    p.add_argument(
        "--detectors",
        default=None,
        metavar="NAMES",
        help=f"comma-separated detectors to run{on_what} (default: all registered)",
    )
    p.add_argument(
        "--detector-plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE to register more detectors (repeatable)",
    )


def add_service_arguments(p: Any, metric_prefix: str) -> None:
    """``--log-json`` (as the global flag, after the subcommand) and ``--metrics HOST:PORT``."""
    p.add_argument(
        "--log-json",
        action="store_true",
        dest="log_json_here",
        help="log JSON lines with stable event names (as `netwarden --log-json`)",
    )
    p.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT",
        help=f"serve Prometheus metrics ({metric_prefix}*) on http://HOST:PORT/metrics",
    )


def add_state_dir_argument(p: Any) -> None:
    """``--state-dir DIR``: a controller's or a replay's state dir."""
    p.add_argument(
        "--state-dir",
        default=None,
        help="controller or replay state dir (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)",
    )
