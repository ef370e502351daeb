"""What to do about an incident, by configurable thresholds (``[copilot]``):

- risk > ``contain_risk`` and confidence >= ``contain_confidence``: **contain**: block the
  attacker (rate-limit it for a flood from one real source); for spoofed floods and
  reflection, a rate limit at the victim and advice for the upstream provider (never bans
  of forged sources); for a MAC (ARP spoofing), isolate its switch port. Operations
  problems (IP conflict, misconfiguration, traffic anomaly) are never contained: the
  device is checked instead.
- risk > ``investigate_risk``: **investigate**, with ready-made hunting commands.
- otherwise **monitor**, listing the benign indicators that lowered the score.

The recommendation is advice with its rule; enforcing a step goes through policy
(``controller.response.policy``): only ``block`` steps on an IP address
are submitted there (policy applies its configured action), and policy's autonomy levels, approvals, circuit breaker and
anti-lockout decide what actually happens.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from controller.incidents.config import CopilotConfig
from controller.incidents.engine import Incident
from controller.incidents.kinds import NOT_ATTACKS, OUTBOUND, VICTIM_CENTRIC

CONTAIN, INVESTIGATE, MONITOR = "contain", "investigate", "monitor"
#: steps policy can enforce (kernel sets): the rest is advice for a person
ENFORCEABLE = ("block",)  # a per-source rate limit is advice until policy can choose the action
_REFERENCE_KEYS = ("learnt_reference", "reference", "baseline", "learnt_level", "expected")


@functools.lru_cache(maxsize=65536)
def is_ip(s: str | None) -> bool:
    if not s:
        return False
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def recommend(inc: Incident, cfg: CopilotConfig) -> dict[str, Any]:
    rule = {"risk": inc.risk, "confidence": inc.confidence, "contain_risk": cfg.contain_risk,
            "contain_confidence": cfg.contain_confidence, "investigate_risk": cfg.investigate_risk}  # fmt: skip
    attacks = [k for k in inc.kinds if k not in NOT_ATTACKS]
    if inc.risk > cfg.contain_risk and inc.confidence >= cfg.contain_confidence and attacks:
        steps = contain_steps(inc)
        return {"action": CONTAIN, "rule": rule, "steps": steps, "step_count": len(steps),
                "commands": hunting_commands(inc)}  # fmt: skip
    if inc.risk > cfg.investigate_risk or (not attacks and inc.risk > cfg.contain_risk):
        steps = (
            [{"do": "fix_device", "target": t, "enforce": False} for t in _hosts(inc)]
            if not attacks
            else []
        )
        return {
            "action": INVESTIGATE,
            "rule": rule,
            "steps": steps,
            "commands": hunting_commands(inc),
        }
    return {
        "action": MONITOR,
        "rule": rule,
        "steps": [],
        "commands": [],
        "benign": benign_indicators(inc),
    }


def _hosts(inc: Incident) -> list[str]:
    return list(dict.fromkeys([*inc.attackers, *[v for v in inc.victims if "/" not in v]]))[:3]


def contain_steps(inc: Incident) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(do: str, target: str, kind: str) -> None:
        if (do, target) not in seen:
            seen.add((do, target))
            steps.append(
                {
                    "do": do,
                    "target": target,
                    "kind": kind,
                    "enforce": do in ENFORCEABLE and is_ip(target),
                }
            )

    for a in sorted(inc.alerts, key=lambda a: (-a["score"], a["first_seen"])):
        kind, att = a["kind"], a["attacker"]
        if kind in NOT_ATTACKS:
            continue
        if kind in VICTIM_CENTRIC and not att:  # spoofed or reflected: the victim is the handle
            for v in a["victims"][:3]:
                add("victim_rate_limit", v, kind)
                add("upstream", v, kind)
        elif kind in VICTIM_CENTRIC:
            add("rate_limit", att, kind)
        elif is_ip(att):
            # the compromised inside host of beaconing/exfiltration is cut off the same way
            add("block", att, kind)
        elif att:
            add("isolate", att, kind)
        if kind in OUTBOUND:
            for v in a["victims"][:1]:  # the external peer (C2 server, drop zone)
                if is_ip(v):
                    add("block", v, kind)
    return steps


def hunting_commands(inc: Incident) -> list[str]:
    cmds = [f"netwarden incident show {inc.id}"]
    cmds.extend(f"netwarden alerts --kind {k} --json" for k in inc.kinds)
    hosts = [h for h in _hosts(inc) if is_ip(h)]
    for h in hosts[:2]:
        cmds.append(f"tcpdump -nn -i any 'host {h}'")
    if len(hosts) >= 2:
        cmds.append(f"tcpdump -nn -i any 'host {hosts[0]} and host {hosts[1]}'")
    if any(k.startswith("dns_") for k in inc.kinds) and hosts:
        cmds.append(f"tcpdump -nn -i any 'udp and port domain and host {hosts[0]}'")
    cmds.append(f"netwarden hunt incident {inc.id}")  # its hosts' archived connections
    cmds.extend(f"netwarden hunt host {h}" for h in hosts[:2])
    return cmds


def benign_indicators(inc: Incident) -> list[dict[str, Any]]:
    """What kept the score down, from the evidence: low confidence, a lone alert, no
    progression, a low-criticality victim, and detector evidence marked benign
    (``benign_*`` keys)."""
    out: list[dict[str, Any]] = []
    if inc.confidence < 0.85:
        out.append({"indicator": "confidence", "confidence": inc.confidence})
    if inc.alert_count == 1:
        out.append({"indicator": "single"})
    if inc.progression is None:
        out.append({"indicator": "no_progression"})
    for r in inc.reasons:
        if r.get("factor") == "criticality" and r.get("points", 0) < 0:
            out.append({"indicator": "low_criticality", "host": r["host"], "group": r["group"]})
    for a in inc.alerts:
        for k, v in a["evidence"].items():
            if k.startswith("benign_"):
                out.append({"indicator": "detector", "name": k[len("benign_") :], "value": v})
    return out


def reference_of(evidence: dict[str, Any]) -> Any:
    for k in _REFERENCE_KEYS:
        if k in evidence:
            return evidence[k]
    for k, v in evidence.items():
        if k.endswith(("_reference", "_baseline", "_p99")):
            return v
    return None
