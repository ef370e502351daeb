"""Configuration of incidents, the copilot and escalation: frozen dataclasses, validated
once, read from the same TOML file as the controller (sections of their own).

Example (every key optional)::

    [incidents]
    group_window_s = 1800       # an alert joins an incident active this recently
    close_after_s = 3600        # an incident with no new alert for this long closes
    focus_victims = 3           # alerts with more victims (scans) group by attacker only
    progression_points = 10     # priority points per further kill-chain stage on one host
    [incidents.criticality_points]
    low = -10
    normal = 0
    high = 10
    critical = 20
    [[incidents.asset_groups]]  # the victim's criticality raises (or lowers) priority
    name = "servers"
    networks = ["10.0.0.0/28"]  # may be omitted when [[policy.asset_groups]] has the name
    criticality = "high"

    [copilot]
    contain_risk = 85           # risk above this, with enough confidence: contain
    contain_confidence = 0.85
    investigate_risk = 60       # risk above this: investigate (hunting commands)
    lang = "en"                 # en | ja

    [feedback]
    suppress_s = 604800         # a false positive suppresses its pattern this long
    confirm_boost = 0.1         # a confirmation adds this to the pattern's confidence
    false_positive_cut = 0.2    # a false positive is the entity's learnt level for its kind:
    false_positive_margin = 10  # later alerts scoring at most this above it lose this confidence

    [escalation]
    low_confidence = 0.6        # open incidents below this confidence are escalated ...
    incident_after_s = 900      # ... when nobody acknowledged them for this long
    approval_after_s = 600      # pending approvals older than this are escalated
    webhook = "http://127.0.0.1:8080/hook"
    syslog = "127.0.0.1:514"    # UDP, RFC 5424
    command = ["/usr/local/bin/page-oncall"]   # JSON on stdin
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netwarden.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
CRITICALITIES = ("low", "normal", "high", "critical")
LANGS = ("en", "ja")


@dataclass(frozen=True, slots=True)
class CriticalGroup:
    name: str
    networks: tuple[IPNetwork, ...]
    criticality: str


@dataclass(frozen=True, slots=True)
class IncidentConfig:
    group_window_s: float = 1800.0
    close_after_s: float = 3600.0
    focus_victims: int = 3
    progression_points: float = 10.0
    criticality_points: dict[str, float] = field(
        default_factory=lambda: {"low": -10.0, "normal": 0.0, "high": 10.0, "critical": 20.0}
    )
    asset_groups: tuple[CriticalGroup, ...] = ()

    def __post_init__(self) -> None:
        if self.group_window_s <= 0 or self.close_after_s <= 0:
            raise ConfigError(
                "incidents.group_window_s and incidents.close_after_s must be positive"
            )
        if self.focus_victims < 1:
            raise ConfigError("incidents.focus_victims must be >= 1")
        for k in self.criticality_points:
            if k not in CRITICALITIES:
                raise ConfigError(
                    f"incidents.criticality_points.{k}: not one of {', '.join(CRITICALITIES)}"
                )


@dataclass(frozen=True, slots=True)
class CopilotConfig:
    contain_risk: float = 85.0
    contain_confidence: float = 0.85
    investigate_risk: float = 60.0
    lang: str = "en"

    def __post_init__(self) -> None:
        if not 0 <= self.investigate_risk <= self.contain_risk <= 100:
            raise ConfigError("copilot: need 0 <= investigate_risk <= contain_risk <= 100")
        if not 0 <= self.contain_confidence <= 1:
            raise ConfigError("copilot.contain_confidence must be 0..1")
        if self.lang not in LANGS:
            raise ConfigError(f"copilot.lang must be one of {', '.join(LANGS)}, got {self.lang!r}")


@dataclass(frozen=True, slots=True)
class FeedbackConfig:
    suppress_s: float = 7 * 86400.0
    confirm_boost: float = 0.1
    false_positive_cut: float = 0.2
    false_positive_margin: float = 10.0

    def __post_init__(self) -> None:
        if self.suppress_s <= 0:
            raise ConfigError("feedback.suppress_s must be positive")
        if not 0 < self.confirm_boost <= 0.5:
            raise ConfigError("feedback.confirm_boost must be in (0, 0.5]")
        if not 0 <= self.false_positive_cut <= 0.5:
            raise ConfigError("feedback.false_positive_cut must be in [0, 0.5]")
        if not 0 <= self.false_positive_margin <= 100:
            raise ConfigError("feedback.false_positive_margin must be in [0, 100]")


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    low_confidence: float = 0.6
    incident_after_s: float = 900.0
    approval_after_s: float = 600.0
    webhook: str | None = None
    syslog: str | None = None  # host:port, UDP
    command: tuple[str, ...] = ()
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.incident_after_s < 0 or self.approval_after_s < 0:
            raise ConfigError("escalation: incident_after_s and approval_after_s must be >= 0")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ConfigError(f"escalation.webhook must be an http(s) URL, got {self.webhook!r}")
        if self.syslog is not None:
            host, _, port = self.syslog.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"escalation.syslog must be HOST:PORT, got {self.syslog!r}")


@dataclass(frozen=True, slots=True)
class TriageConfig:
    incidents: IncidentConfig = field(default_factory=IncidentConfig)
    copilot: CopilotConfig = field(default_factory=CopilotConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)


_KNOWN = {
    "incidents": {"group_window_s", "close_after_s", "focus_victims", "progression_points", "criticality_points",
                  "asset_groups"},
    "copilot": {"contain_risk", "contain_confidence", "investigate_risk", "lang"},
    "feedback": {"suppress_s", "confirm_boost", "false_positive_cut", "false_positive_margin"},
    "escalation": {"low_confidence", "incident_after_s", "approval_after_s", "webhook", "syslog", "command",
                   "timeout_s"},
}  # fmt: skip


def _check_keys(section: str, d: dict[str, Any]) -> None:
    bad = sorted(set(d) - _KNOWN[section])
    if bad:
        raise ConfigError(
            f"unknown key {section}.{bad[0]} (known: {', '.join(sorted(_KNOWN[section]))})"
        )


def _groups(
    items: list[dict[str, Any]], policy_groups: dict[str, list[Any]]
) -> tuple[CriticalGroup, ...]:
    out = []
    for i, g in enumerate(items):
        name = str(g.get("name", f"group{i}"))
        nets = g.get("networks", policy_groups.get(name))
        if nets is None:
            raise ConfigError(
                f"incidents.asset_groups {name!r}: networks missing (and no policy asset group of that name)"
            )
        crit = str(g.get("criticality", "normal"))
        if crit not in CRITICALITIES:
            raise ConfigError(
                f"incidents.asset_groups {name!r}.criticality must be one of {', '.join(CRITICALITIES)}"
            )
        try:
            out.append(
                CriticalGroup(
                    name, tuple(ipaddress.ip_network(str(n), strict=False) for n in nets), crit
                )
            )
        except ValueError as exc:
            raise ConfigError(f"incidents.asset_groups {name!r}: {exc}") from exc
    return tuple(out)


def from_dict(data: dict[str, Any]) -> TriageConfig:
    sections = {k: dict(data.get(k, {})) for k in _KNOWN}
    for k, d in sections.items():
        _check_keys(k, d)
    policy_groups = {
        str(g.get("name")): list(g.get("networks", []))
        for g in data.get("policy", {}).get("asset_groups", [])
    }
    inc, cop, fb, esc = (
        sections["incidents"],
        sections["copilot"],
        sections["feedback"],
        sections["escalation"],
    )
    try:
        base = IncidentConfig()
        points = dict(base.criticality_points)
        points.update({str(k): float(v) for k, v in inc.get("criticality_points", {}).items()})
        incidents = IncidentConfig(
            group_window_s=float(inc.get("group_window_s", base.group_window_s)),
            close_after_s=float(inc.get("close_after_s", base.close_after_s)),
            focus_victims=int(inc.get("focus_victims", base.focus_victims)),
            progression_points=float(inc.get("progression_points", base.progression_points)),
            criticality_points=points,
            asset_groups=_groups(list(inc.get("asset_groups", [])), policy_groups),
        )
        copilot_args: dict[str, Any] = {
            k: (str(v) if k == "lang" else float(v)) for k, v in cop.items()
        }
        copilot = CopilotConfig(**copilot_args)
        feedback = FeedbackConfig(**{k: float(v) for k, v in fb.items()})
        cmd = esc.pop("command", ())
        if isinstance(cmd, str):
            cmd = (cmd,)
        esc_args: dict[str, Any] = {
            k: (v if k in ("webhook", "syslog") else float(v)) for k, v in esc.items()
        }
        escalation = EscalationConfig(command=tuple(str(c) for c in cmd), **esc_args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"incidents/copilot/feedback/escalation config: {exc}") from exc
    return TriageConfig(incidents, copilot, feedback, escalation)


def load(path: str | Path | None) -> TriageConfig:
    if path is None:
        return TriageConfig()
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
    return from_dict(data)
