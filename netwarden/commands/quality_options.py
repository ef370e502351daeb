"""Options ``eval``, ``tune`` and ``simulate`` share (not a subcommand)."""

from __future__ import annotations

from typing import Any


def add_replay_output_arguments(p: Any) -> None:
    """``--backend`` (the flow engine the captures are replayed with) and ``--json``."""
    p.add_argument("--backend", choices=("c", "py"), default="c", help="flow engine backend")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
