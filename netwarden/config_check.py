"""``netwarden config check FILE``: every key of a NetWarden TOML config checked against
what the controller, incidents, copilot, feedback and escalation read, before a daemon
starts with a typo silently ignored.

Problems are named by their dotted key (``policy.default_levle: unknown key``); values are
then run through the real loaders (``controller.config.load``,
``controller.incidents.config.load``) so range checks are the daemon's own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netwarden.errors import ConfigError

# type names: str, int, num (int or float), bool, cidrs (list of CIDR strings), strs, level
# (0..3), table (free keys, values checked by the loader), tables (array of tables)
NUM, INT, STR, BOOL, CIDRS, STRS, LEVEL = "num", "int", "str", "bool", "cidrs", "strs", "level"

SCHEMA: dict[str, Any] = {
    "controller": {"enforce": STR, "hook": STR, "state_dir": STR, "tick_s": NUM, "resync_s": NUM},
    "enforce": {"limit_rate": INT, "limit_burst": INT, "priority": INT},
    "policy": {
        "default_level": LEVEL, "detectors": {"*": LEVEL},
        "thresholds": {"*": {"score": NUM, "confidence": NUM}},
        "asset_groups": [{"name": STR, "networks": CIDRS, "level": LEVEL}],
        "internal_networks": CIDRS, "busy_clients": INT, "widest_prefix_v4": INT, "widest_prefix_v6": INT,
        "breaker_bans_per_minute": INT, "approval_ttl_s": NUM, "ban_ladder_s": [NUM], "offender_window_s": NUM,
        "action": STR,
    },
    "safety": {"allow": CIDRS, "management_networks": CIDRS, "dns_servers": CIDRS, "sensors": CIDRS,
               "controller_addresses": CIDRS, "discover_local": BOOL, "resolv_conf": STR},
    "incidents": {
        "group_window_s": NUM, "close_after_s": NUM, "focus_victims": INT, "progression_points": NUM,
        "criticality_points": {"*": NUM},
        "asset_groups": [{"name": STR, "networks": CIDRS, "criticality": STR}],
    },
    "copilot": {"contain_risk": NUM, "contain_confidence": NUM, "investigate_risk": NUM, "lang": STR},
    "feedback": {"suppress_s": NUM, "confirm_boost": NUM, "false_positive_cut": NUM,
                 "false_positive_margin": NUM},
    "detect": {"thresholds": {"*": NUM}},
    "escalation": {"low_confidence": NUM, "incident_after_s": NUM, "approval_after_s": NUM, "webhook": STR,
                   "syslog": STR, "command": STRS, "timeout_s": NUM},
}  # fmt: skip

_EXPECTED = {NUM: "a number", INT: "an integer", STR: "a string", BOOL: "true or false", CIDRS: "a list of CIDRs",
             STRS: "a list of strings", LEVEL: "an autonomy level 0..3"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def _type_ok(kind: str, v: Any) -> bool:
    if kind == NUM:
        return isinstance(v, int | float) and not isinstance(v, bool)
    if kind in (INT, LEVEL):
        return isinstance(v, int) and not isinstance(v, bool) and (kind == INT or 0 <= v <= 3)
    if kind == STR:
        return isinstance(v, str)
    if kind == BOOL:
        return isinstance(v, bool)
    if kind == STRS:
        return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    if kind == CIDRS:
        import ipaddress

        if not isinstance(v, list):
            return False
        try:
            for x in v:
                ipaddress.ip_network(str(x), strict=False)
        except ValueError:
            return False
        return True
    raise AssertionError(kind)


def _walk(spec: Any, value: Any, key: str, out: list[Problem]) -> None:
    if isinstance(spec, str):
        if not _type_ok(spec, value):
            out.append(Problem(key, f"expected {_EXPECTED[spec]}, got {value!r}"))
        return
    if isinstance(spec, list):  # an array: of tables or of scalars
        if not isinstance(value, list):
            out.append(Problem(key, f"expected a list, got {value!r}"))
            return
        for i, item in enumerate(value):
            _walk(spec[0], item, f"{key}[{i}]", out)
        return
    if not isinstance(value, dict):
        out.append(Problem(key, f"expected a table, got {value!r}"))
        return
    for k, v in value.items():
        sub = f"{key}.{k}" if key else k
        if k in spec:
            _walk(spec[k], v, sub, out)
        elif "*" in spec:
            _walk(spec["*"], v, sub, out)
        else:
            known = ", ".join(sorted(spec))
            out.append(Problem(sub, f"unknown key (known here: {known})"))


def check_data(data: dict[str, Any]) -> list[Problem]:
    """Keys and types first (all problems); then, when those are clean, the loaders' own
    value checks (the first one they raise)."""
    problems: list[Problem] = []
    _walk(SCHEMA, data, "", problems)
    if problems:
        return problems
    from controller import config as ccfg
    from controller.detect import thresholds
    from controller.incidents import config as tcfg

    for loader in (ccfg.from_dict, tcfg.from_dict, thresholds.from_dict):
        try:
            loader(data)
        except (ConfigError, ValueError, TypeError, KeyError) as exc:
            problems.append(Problem(_key_in(str(exc)), str(exc)))
    return problems


def _key_in(message: str) -> str:
    """The dotted key a loader's message starts with (``policy.default_level: ...``)."""
    head = message.split(":", 1)[0].split()[0] if message else ""
    return head if "." in head or head in SCHEMA else "config"


def check_file(path: str | Path) -> list[Problem]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [Problem("syntax", str(exc))]
    return check_data(data)
