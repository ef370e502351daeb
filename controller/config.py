"""Controller configuration: frozen dataclasses, validated once, loaded from TOML.

Example (every key optional)::

    [controller]
    enforce = "dryrun"          # nftables | iptables | dryrun (the default)
    hook = "input"              # input | forward | prerouting
    state_dir = "/var/lib/netwarden"
    resync_s = 300              # re-check the kernel against the store (heals a flushed ruleset)
    detect_tick_s = 0           # with --listen: also advance detection this long after new
                                # sensor batches (0: on the one-second tick only)

    [enforce]
    limit_rate = 10             # packets/s above which a rate-limited source is dropped
    limit_burst = 20

    [policy]
    default_level = 1           # 0 observe, 1 recommend, 2 act after approval, 3 act
    detectors = { port_scan = 3, ssh_bruteforce = 2 }   # by alert kind (docs/detection.md)
    internal_networks = ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"]
    busy_clients = 50           # an attacker serving this many clients is risky to block
    widest_prefix_v4 = 16       # widest range ban (needs approval anyway); wider is refused
    widest_prefix_v6 = 32
    breaker_bans_per_minute = 30
    approval_ttl_s = 3600
    ban_ladder_s = [600, 3600, 86400, 604800]
    offender_window_s = 2592000 # repeat offences counted over 30 days
    [policy.thresholds]         # per level: minimum score and confidence to reach it
    3 = { score = 80, confidence = 0.9 }
    2 = { score = 50, confidence = 0.6 }
    [[policy.asset_groups]]      # victims here lower the level to the group's
    name = "dmz"
    networks = ["192.0.2.0/24"]
    level = 2

    [safety]                    # never blocked; also accepted first in the kernel
    allow = []
    management_networks = []
    dns_servers = []            # plus the nameservers in /etc/resolv.conf
    sensors = []
    controller_addresses = []
    discover_local = true       # the box's own addresses and default gateways
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.response.enforce.base import Action, Hook
from netwarden.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_STATE_DIR = "/var/lib/netwarden"
BACKENDS = ("nftables", "iptables", "dryrun")


def default_state_dir() -> Path:
    return Path(os.environ.get("NETWARDEN_STATE_DIR") or DEFAULT_STATE_DIR)


def _nets(values: Any, what: str) -> tuple[IPNetwork, ...]:
    if not isinstance(values, list | tuple):
        raise ConfigError(f"{what}: expected a list of CIDRs, got {values!r}")
    try:
        return tuple(ipaddress.ip_network(str(v), strict=False) for v in values)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from exc


def _level(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3:
        raise ConfigError(f"{what}: autonomy level must be 0..3, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Threshold:
    score: float
    confidence: float


@dataclass(frozen=True, slots=True)
class AssetGroup:
    name: str
    networks: tuple[IPNetwork, ...]
    level: int


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    default_level: int = 1
    detectors: dict[str, int] = field(default_factory=dict)
    thresholds: dict[int, Threshold] = field(
        default_factory=lambda: {
            0: Threshold(0, 0.0),
            1: Threshold(0, 0.0),
            2: Threshold(50, 0.6),
            3: Threshold(80, 0.9),
        }
    )
    asset_groups: tuple[AssetGroup, ...] = ()
    internal_networks: tuple[IPNetwork, ...] = tuple(
        ipaddress.ip_network(n)
        for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
    )
    busy_clients: int = 50
    widest_prefix_v4: int = 16
    widest_prefix_v6: int = 32
    breaker_bans_per_minute: int = 30
    approval_ttl_s: float = 3600.0
    ban_ladder_s: tuple[float, ...] = (600.0, 3600.0, 86400.0, 604800.0)
    offender_window_s: float = 30 * 86400.0
    action: Action = Action.DROP

    def __post_init__(self) -> None:
        _level(self.default_level, "policy.default_level")
        for k, v in self.detectors.items():
            _level(v, f"policy.detectors.{k}")
        if not self.ban_ladder_s or any(t <= 0 for t in self.ban_ladder_s):
            raise ConfigError("policy.ban_ladder_s: needs at least one positive duration")
        if self.breaker_bans_per_minute < 1:
            raise ConfigError("policy: breaker_bans_per_minute must be >= 1")
        if not (0 < self.widest_prefix_v4 <= 32 and 0 < self.widest_prefix_v6 <= 128):
            raise ConfigError("policy: widest_prefix_v4 must be 1..32 and widest_prefix_v6 1..128")
        if self.approval_ttl_s <= 0:
            raise ConfigError("policy.approval_ttl_s must be positive")


@dataclass(frozen=True, slots=True)
class SafetyConfig:
    allow: tuple[IPNetwork, ...] = ()
    management_networks: tuple[IPNetwork, ...] = ()
    dns_servers: tuple[IPNetwork, ...] = ()
    sensors: tuple[IPNetwork, ...] = ()
    controller_addresses: tuple[IPNetwork, ...] = ()
    discover_local: bool = True
    resolv_conf: str = "/etc/resolv.conf"


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    enforce: str = "dryrun"
    hook: Hook = Hook.INPUT
    state_dir: Path = field(default_factory=default_state_dir)
    limit_rate: int = 10
    limit_burst: int = 20
    priority: int | None = None
    tick_s: float = 1.0
    resync_s: float = 300.0
    detect_tick_s: float = 0.0
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self) -> None:
        if self.enforce not in BACKENDS:
            raise ConfigError(f"enforce must be one of {', '.join(BACKENDS)}, got {self.enforce!r}")
        if self.limit_rate < 1 or self.limit_burst < 1:
            raise ConfigError("enforce.limit_rate and limit_burst must be >= 1")
        if self.tick_s <= 0 or self.resync_s <= 0:
            raise ConfigError("controller.tick_s and resync_s must be positive")
        if self.detect_tick_s < 0:
            raise ConfigError("controller.detect_tick_s must be >= 0")


def _policy(d: dict[str, Any]) -> PolicyConfig:
    base = PolicyConfig()
    thresholds = dict(base.thresholds)
    for k, v in d.get("thresholds", {}).items():
        thresholds[_level(int(k), "policy.thresholds")] = Threshold(
            float(v["score"]), float(v["confidence"])
        )
    groups = tuple(
        AssetGroup(
            str(g["name"]),
            _nets(g["networks"], f"asset group {g.get('name')}"),
            _level(g["level"], "asset group level"),
        )
        for g in d.get("asset_groups", [])
    )
    try:
        return PolicyConfig(
            default_level=d.get("default_level", base.default_level),
            detectors=dict(d.get("detectors", {})),
            thresholds=thresholds,
            asset_groups=groups,
            internal_networks=_nets(d["internal_networks"], "policy.internal_networks")
            if "internal_networks" in d
            else base.internal_networks,
            busy_clients=int(d.get("busy_clients", base.busy_clients)),
            widest_prefix_v4=int(d.get("widest_prefix_v4", base.widest_prefix_v4)),
            widest_prefix_v6=int(d.get("widest_prefix_v6", base.widest_prefix_v6)),
            breaker_bans_per_minute=int(
                d.get("breaker_bans_per_minute", base.breaker_bans_per_minute)
            ),
            approval_ttl_s=float(d.get("approval_ttl_s", base.approval_ttl_s)),
            ban_ladder_s=tuple(float(x) for x in d.get("ban_ladder_s", base.ban_ladder_s)),
            offender_window_s=float(d.get("offender_window_s", base.offender_window_s)),
            action=Action(d.get("action", base.action)),
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"policy: {exc}") from exc


def _safety(d: dict[str, Any]) -> SafetyConfig:
    kw: dict[str, Any] = {}
    for key in ("allow", "management_networks", "dns_servers", "sensors", "controller_addresses"):
        if key in d:
            kw[key] = _nets(d[key], f"safety.{key}")
    if "discover_local" in d:
        kw["discover_local"] = bool(d["discover_local"])
    if "resolv_conf" in d:
        kw["resolv_conf"] = str(d["resolv_conf"])
    return SafetyConfig(**kw)


def load(path: str | Path | None = None, **overrides: Any) -> ControllerConfig:
    """Read TOML (if given), then apply command-line overrides (None values ignored)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config {path}: {exc}") from exc
    return from_dict(data, **overrides)


def from_dict(data: dict[str, Any], **overrides: Any) -> ControllerConfig:
    """The controller's configuration from parsed TOML (``load`` without the file)."""
    c = data.get("controller", {})
    e = data.get("enforce", {})
    kw: dict[str, Any] = {
        "enforce": c.get("enforce", "dryrun"),
        "hook": c.get("hook", "input"),
        "limit_rate": e.get("limit_rate", 10),
        "limit_burst": e.get("limit_burst", 20),
        "priority": e.get("priority"),
        "tick_s": float(c.get("tick_s", 1.0)),
        "resync_s": float(c.get("resync_s", 300.0)),
        "detect_tick_s": float(c.get("detect_tick_s", 0.0)),
        "policy": _policy(data.get("policy", {})),
        "safety": _safety(data.get("safety", {})),
    }
    if "state_dir" in c:
        kw["state_dir"] = Path(c["state_dir"])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        kw["hook"] = Hook(kw["hook"])
    except ValueError as exc:
        raise ConfigError(f"hook must be input, forward or prerouting, got {kw['hook']!r}") from exc
    kw["state_dir"] = Path(kw.get("state_dir") or default_state_dir())
    return ControllerConfig(**kw)
