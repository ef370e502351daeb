"""Per-kind alert thresholds from the ``[detect.thresholds]`` table of the TOML config.

A threshold is the lowest score (0-100) an alert of that kind must reach to be raised: the
stack drops quieter alerts before de-duplication, protection and policy, so a raised
threshold changes what detection reports, everywhere the stack runs (``netwarden replay``,
``eval``, ``simulate``, the controller). A threshold only raises a detector's own gates
(its floors and learnt references still decide what becomes a candidate alert).

``netwarden tune`` writes this table, with a comment naming the captures and the target it
was learnt for::

    [detect.thresholds]
    port_scan = 72.5
    ssh_bruteforce = 40
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from netwarden.errors import ConfigError

SECTION = "detect"
KEY = "thresholds"


def known_kind(kind: str) -> bool:
    """An alert kind the detectors raise (the stages table of incidents knows them all)."""
    from controller.incidents.kinds import OTHER, stage_of

    return stage_of(kind) != OTHER


def from_dict(data: dict[str, Any]) -> dict[str, float]:
    """``{kind: min score}`` from parsed TOML; a bad kind or value raises ``ConfigError``."""
    table = data.get(SECTION, {}).get(KEY, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{SECTION}.{KEY}: expected a table of kind = score")
    out: dict[str, float] = {}
    for kind, value in table.items():
        where = f"{SECTION}.{KEY}.{kind}"
        if not known_kind(kind):
            raise ConfigError(f"{where}: unknown alert kind")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ConfigError(f"{where}: expected a score 0..100, got {value!r}")
        out[kind] = float(value)
    return out


def load(path: str | Path | None) -> dict[str, float]:
    """The thresholds of a config file (none when ``path`` is None)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
    return from_dict(data)
