"""Who may act, and when: autonomy levels, thresholds, risky actions, anti-lockout.

``Policy.decide(detection)`` turns a detector's record into a ``Decision`` and never acts.
Order of checks, safest first:

1. Anti-lockout and allow-list (``Guard``): the box's own addresses, default gateways, the
   controller, sensors, DNS servers, management networks and operator allow-list CIDRs
   are never blocked, whatever the level. The same networks are accepted first in the
   kernel, so the refusal holds even if policy had a bug.
2. Autonomy level: per detector, lowered to the most conservative asset group among the
   victims; then lowered until the score and confidence thresholds of the level are met.
   0 observe, 1 recommend, 2 act after human approval, 3 act automatically.
3. Risky actions need approval at any level: an internal attacker, a range wider than one
   address, a host serving many clients, or the circuit breaker (too many bans a minute).
4. Ban duration from the escalation ladder by the attacker's earlier offences.
"""

from __future__ import annotations

import collections
import enum
import ipaddress
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from controller.config import PolicyConfig, SafetyConfig
from controller.detection import Detection
from controller.response.enforce.base import Action, IPNetwork, Target
from controller.response.enforce.base import target as _target
from controller.response.targets import unbannable

log = logging.getLogger(__name__)


class Verdict(enum.StrEnum):
    OBSERVE = "observe"  # level 0: logged only
    RECOMMEND = "recommend"  # level 1: logged as a recommendation
    PENDING = "pending"  # needs a human: an approval was (or will be) opened
    ACT = "act"  # enforce now
    REFUSED = "refused"  # never: anti-lockout, allow-list or out of bounds


def new_decision_id() -> str:
    return "d-" + uuid.uuid4().hex[:12]


@dataclass(frozen=True, slots=True)
class Decision:
    id: str
    verdict: Verdict
    reason: str
    target: IPNetwork | None
    action: Action
    ttl_s: float | None
    level: int
    risky: tuple[str, ...] = ()
    detection: Detection | None = None
    actor: str = "policy"
    #: the autonomy level policy started from (per detector, capped by asset groups) and
    #: the configuration keys that set it: recorded, so ``explain`` reads what was in force
    autonomy: int = -1
    autonomy_from: str = ""

    def targets(self) -> list[Target]:
        """What to ban: the address, or the whole range as one kernel entry."""
        return [] if self.target is None else [_target(self.target)]

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "target": None if self.target is None else str(self.target),
            "action": self.action.value,
            "ttl_s": self.ttl_s,
            "level": self.level,
            "risky": list(self.risky),
            "detection": None if self.detection is None else self.detection.to_dict(),
            "actor": self.actor,
            "autonomy": self.autonomy,
            "autonomy_from": self.autonomy_from,
        }


@dataclass(frozen=True, slots=True)
class Protected:
    net: IPNetwork
    why: str  # self | gateway | controller | sensor | dns | management | allow-list | loopback


@dataclass
class Guard:
    """Anti-lockout: the networks nobody may block, and why."""

    fixed: list[Protected] = field(default_factory=list)
    allow: list[IPNetwork] = field(default_factory=list)  # operator allow-list (mutable)

    def refusal(self, target: IPNetwork) -> str | None:
        special = unbannable(target)  # multicast, broadcast, unspecified, mapped, scoped
        if special:
            return special
        for p in self.fixed:
            if p.net.version == target.version and p.net.overlaps(target):  # type: ignore[arg-type]
                return f"{target} overlaps {p.net}: {_WHY[p.why]} (anti-lockout)"
        for net in self.allow:
            if net.version == target.version and net.overlaps(target):  # type: ignore[arg-type]
                return f"{target} is allow-listed ({net})"
        return None

    def kernel_allow(self) -> list[IPNetwork]:
        """What the kernel accepts before any ban: everything protected, plus the allow-list."""
        return [p.net for p in self.fixed] + list(self.allow)


_WHY = {
    "self": "an address of this host",
    "loopback": "loopback",
    "gateway": "a default gateway",
    "controller": "the controller",
    "sensor": "a known sensor",
    "dns": "a configured DNS server",
    "management": "a management network",
    "allow-list": "allow-listed",
}


def discover_local(netns: str | None = None) -> list[Protected]:
    """The box's own addresses and default gateways, read through pyroute2."""
    from pyroute2 import IPRoute

    out: list[Protected] = [
        Protected(ipaddress.ip_network("127.0.0.0/8"), "loopback"),
        Protected(ipaddress.ip_network("::1/128"), "loopback"),
    ]
    ipr = IPRoute(netns=netns) if netns else IPRoute()
    try:
        for msg in ipr.get_addr():
            addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if addr:
                out.append(Protected(ipaddress.ip_network(addr.split("%")[0]), "self"))
        for family in (2, 10):
            for route in ipr.get_routes(family=family):
                if route.get("dst_len") == 0 and route.get_attr("RTA_GATEWAY"):
                    gw = route.get_attr("RTA_GATEWAY").split("%")[0]
                    out.append(Protected(ipaddress.ip_network(gw), "gateway"))
    finally:
        ipr.close()
    return out


def resolv_nameservers(path: str) -> list[IPNetwork]:
    nets: list[IPNetwork] = []
    try:
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    nets.append(ipaddress.ip_network(parts[1].split("%")[0]))
                except ValueError:
                    continue
    except OSError:
        pass
    return nets


def build_guard(safety: SafetyConfig, netns: str | None = None) -> Guard:
    fixed: list[Protected] = []
    if safety.discover_local:
        fixed.extend(discover_local(netns))
    groups: Iterable[tuple[str, Iterable[IPNetwork]]] = (
        ("controller", safety.controller_addresses),
        ("sensor", safety.sensors),
        ("dns", [*safety.dns_servers, *resolv_nameservers(safety.resolv_conf)]),
        ("management", safety.management_networks),
        ("allow-list", safety.allow),
    )
    for why, nets in groups:
        fixed.extend(Protected(n, why) for n in nets)
    return Guard(fixed=fixed)


class Policy:
    def __init__(
        self,
        cfg: PolicyConfig,
        guard: Guard,
        offences: Callable[[Target], int] = lambda _a: 0,
    ) -> None:
        self.cfg = cfg
        self.guard = guard
        self.offences = offences
        self._recent_acts: collections.deque[float] = collections.deque()

    # --- pieces, each testable alone ----------------------------------------------------
    def level_for(self, det: Detection) -> int:
        return self.autonomy(det)[0]

    def autonomy(self, det: Detection) -> tuple[int, str]:
        """The level for ``det`` before thresholds, and the configuration keys that set it."""
        if det.kind in self.cfg.detectors:
            level, src = self.cfg.detectors[det.kind], f"policy.detectors.{det.kind}"
        else:
            level, src = self.cfg.default_level, "policy.default_level"
        for victim in det.victims:
            for group in self.cfg.asset_groups:
                if any(victim in net for net in group.networks) and group.level < level:
                    level, src = group.level, f"asset group {group.name}"
        return level, src

    def gate(self, level: int, det: Detection) -> tuple[int, str]:
        """Lower the level until the detection meets its thresholds."""
        why = ""
        while level > 0:
            t = self.cfg.thresholds.get(level)
            if t is None or (det.score >= t.score and det.confidence >= t.confidence):
                break
            why = f"score {det.score:g}/confidence {det.confidence:g} below level-{level} threshold"
            level -= 1
        return level, why

    def breaker_tripped(self, now: float) -> bool:
        while self._recent_acts and self._recent_acts[0] <= now - 60.0:
            self._recent_acts.popleft()
        return len(self._recent_acts) >= self.cfg.breaker_bans_per_minute

    def note_acted(self, now: float, count: int = 1) -> None:
        """Called by the daemon for every automatic ban it actually enforced."""
        self._recent_acts.extend([now] * count)

    def risks(self, det: Detection, now: float) -> list[str]:
        out = []
        target = det.attacker
        if any(
            n.version == target.version and n.overlaps(target) for n in self.cfg.internal_networks
        ):  # type: ignore[arg-type]
            out.append("internal host")
        if target.num_addresses > 1:
            out.append(f"range {target}")
        if det.attacker_clients >= self.cfg.busy_clients:
            out.append(f"serves {det.attacker_clients} clients")
        if self.breaker_tripped(now):
            out.append(
                f"circuit breaker: {self.cfg.breaker_bans_per_minute} bans in the last minute"
            )
        return out

    def ttl_for(self, addr: Target) -> float:
        ladder = self.cfg.ban_ladder_s
        return ladder[min(self.offences(addr), len(ladder) - 1)]

    # --- the decision -------------------------------------------------------------------
    def decide(self, det: Detection, now: float) -> Decision:
        did = new_decision_id()
        target = det.attacker
        ttl = self.ttl_for(_target(target))
        autonomy, autonomy_from = self.autonomy(det)

        def make(
            verdict: Verdict, reason: str, level: int, risky: tuple[str, ...] = ()
        ) -> Decision:
            return Decision(
                did,
                verdict,
                reason,
                target,
                self.cfg.action,
                ttl,
                level,
                risky,
                det,
                f"detector:{det.kind}",
                autonomy,
                autonomy_from,
            )

        refusal = self.guard.refusal(target)
        if refusal:
            return make(Verdict.REFUSED, refusal, -1)
        too_wide = self.too_wide(target)
        if too_wide:
            return make(Verdict.REFUSED, too_wide, -1)
        level, why = self.gate(autonomy, det)
        if level == 0:
            return make(Verdict.OBSERVE, why or "autonomy level 0 (observe)", 0)
        if level == 1:
            return make(Verdict.RECOMMEND, why or "autonomy level 1 (recommend)", 1)
        risky = tuple(self.risks(det, now))
        if risky:
            return make(
                Verdict.PENDING, "risky action needs approval: " + "; ".join(risky), level, risky
            )
        if level == 2:
            return make(Verdict.PENDING, "autonomy level 2 (act after approval)", 2)
        return make(
            Verdict.ACT, f"autonomy level 3, offence #{self.offences(_target(target)) + 1}", 3
        )

    def too_wide(self, target: IPNetwork) -> str | None:
        widest = self.cfg.widest_prefix_v4 if target.version == 4 else self.cfg.widest_prefix_v6
        if target.prefixlen < widest:
            return (
                f"range {target} is wider than /{widest} (policy.widest_prefix_v{target.version})"
            )
        return None

    def check_operator(self, target: IPNetwork) -> str | None:
        """Operators may ban anything policy may not refuse: anti-lockout and the widest
        range still apply (a typo such as 2000::/3 must not cut off a whole family)."""
        return self.guard.refusal(target) or self.too_wide(target)
