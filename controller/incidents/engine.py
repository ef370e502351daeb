"""Alerts into incidents: grouping, de-duplication, priority with reasons, lifecycle.

An alert joins an open incident that shares one of its *focus entities* and was active
within ``group_window_s`` (network time). Focus entities are the attacker, and the
victims when there are few of them (a scan's hundred victims would glue unrelated
incidents together, so a scan groups by its source only). The attacker of an outbound
kind (beaconing, tunnelling, exfiltration) is the compromised inside host, which is how
"scan, then brute force, then beaconing" on one host becomes one story. An alert matching
several incidents merges them into the oldest.

A repeat of an alert already in the incident (same kind, attacker and victims) is counted,
not added: the incident keeps the strongest instance and the count.

Priority is computed from the evidence only, every step listed in ``reasons``:

    risk = top alert score x (0.6 + 0.4 x confidence) + victim criticality + progression

where confidence combines the distinct kinds as independent witnesses
(1 - prod(1 - c)), criticality is the most critical asset group of a victim, and
progression adds ``progression_points`` per further kill-chain stage reached on one host.
P1 >= 85, P2 >= 60, P3 >= 40, else P4.

Deterministic: the same alerts in the same order give the same incidents, ids included
(ids are sequential from the store's counter).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from controller.detect.alert import Alert
from controller.incidents.config import IncidentConfig
from controller.incidents.kinds import (
    KILL_CHAIN,
    OUTBOUND,
    STAGE_ORDER,
    VICTIM_CENTRIC,
    service_of,
    stage_of,
)

OPEN, ACKNOWLEDGED, RESOLVED, CLOSED, MERGED = (
    "open",
    "acknowledged",
    "resolved",
    "closed",
    "merged",
)
ACTIVE = (OPEN, ACKNOWLEDGED)
PRIORITY_BANDS = ((85.0, "P1"), (60.0, "P2"), (40.0, "P3"), (0.0, "P4"))
PRIORITY_NAMES = {"P1": "critical", "P2": "high", "P3": "medium", "P4": "low"}
#: distinct alert entries one incident keeps (repeats beyond are counted)
MAX_ENTRIES = 200


def priority_of(risk: float) -> str:
    for floor, p in PRIORITY_BANDS:
        if risk >= floor:
            return p
    return "P4"


@dataclass
class Incident:
    id: str
    status: str
    opened_at: float  # first evidence of the first alert (network time)
    updated_at: float  # latest alert's detection time
    attackers: list[str] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)
    focus: list[str] = field(default_factory=list)  # entities that group alerts here
    kinds: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # one entry per distinct alert
    alert_count: int = 0  # every alert, repeats included
    risk: float = 0.0
    confidence: float = 0.0
    priority: str = "P4"
    reasons: list[dict[str, Any]] = field(default_factory=list)
    progression: dict[str, Any] | None = None
    recommendation: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)  # lang -> text
    closed_at: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None
    merged_into: str | None = None
    escalations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return round(max(0.0, self.updated_at - self.opened_at), 3)

    def lead(self) -> dict[str, Any]:
        """The alert that drives the risk (highest score, then earliest)."""
        return max(self.alerts, key=lambda a: (a["score"], -a["detected_at"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "incident", "id": self.id, "status": self.status, "priority": self.priority,
            "priority_name": PRIORITY_NAMES[self.priority], "risk": self.risk, "confidence": self.confidence,
            "opened_at": self.opened_at, "updated_at": self.updated_at, "duration_s": self.duration_s,
            "attackers": list(self.attackers), "victims": list(self.victims), "focus": list(self.focus),
            "attacker_count": len(self.attackers), "victim_count": len(self.victims),
            "decision_count": sum(1 for a in self.actions if a.get("kind") == "decision"),
            "kinds": list(self.kinds), "stages": list(self.stages), "alert_count": self.alert_count,
            "alerts": [dict(a) for a in self.alerts], "reasons": [dict(r) for r in self.reasons],
            "progression": self.progression, "recommendation": self.recommendation,
            "actions": [dict(a) for a in self.actions], "summary": dict(self.summary),
            "closed_at": self.closed_at, "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at, "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at, "merged_into": self.merged_into,
            "escalations": [dict(e) for e in self.escalations],
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Incident:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def focus_entities(alert: Alert, focus_victims: int) -> list[str]:
    out = [alert.attacker] if alert.attacker else []
    if not alert.attacker or len(alert.victims) <= focus_victims:
        out.extend(v for v in alert.victims if "/" not in v)  # a subnet is no one host
    return out


def alert_entry(alert: Alert, alert_id: str) -> dict[str, Any]:
    j = alert.to_json()
    return {
        "alert_id": alert_id, "kind": alert.kind, "stage": stage_of(alert.kind), "attacker": alert.attacker,
        "victims": list(alert.victims), "score": j["score"], "confidence": j["confidence"],
        "first_seen": alert.first_seen, "detected_at": alert.detected_at, "mitre": alert.mitre,
        "evidence": j["evidence"], "summary": alert.summary, "detector": alert.detector,
        "detector_version": alert.detector_version, "service": service_of(alert.kind, alert.evidence),
        "count": 1, "adjustments": list(alert.extra.get("adjustments", [])),
    }  # fmt: skip


class IncidentEngine:
    """Incidents in memory; the caller persists what ``ingest`` and ``tick`` return."""

    def __init__(self, cfg: IncidentConfig, next_id: Callable[[], str]) -> None:
        self.cfg = cfg
        self.next_id = next_id
        self.active: dict[str, Incident] = {}

    def load(self, incidents: Iterable[Incident]) -> None:
        for inc in incidents:
            if inc.status in ACTIVE:
                self.active[inc.id] = inc

    # --- alerts in ----------------------------------------------------------------------
    def ingest(self, alert: Alert, alert_id: str) -> tuple[Incident, list[Incident]]:
        """Place one alert; returns its incident and the incidents merged into it."""
        keys = set(focus_entities(alert, self.cfg.focus_victims))
        horizon = alert.first_seen - self.cfg.group_window_s
        hits = sorted(
            (
                inc
                for inc in self.active.values()
                if inc.updated_at >= horizon and keys & set(inc.focus)
            ),
            key=lambda i: (i.opened_at, _id_order(i.id)),
        )
        merged: list[Incident] = []
        if not hits:
            inc = Incident(self.next_id(), OPEN, alert.first_seen, alert.detected_at)
            self.active[inc.id] = inc
        else:
            inc = hits[0]
            for other in hits[1:]:
                self._absorb(inc, other)
                merged.append(other)
        self._add(inc, alert, alert_id, keys)
        self.score(inc)
        return inc, merged

    def _absorb(self, inc: Incident, other: Incident) -> None:
        for a in other.alerts:
            self._add_entry(inc, dict(a))
        inc.alert_count += other.alert_count - len(other.alerts)
        inc.focus = sorted(set(inc.focus) | set(other.focus))
        inc.actions.extend(other.actions)
        other.status, other.merged_into = MERGED, inc.id
        self.active.pop(other.id, None)

    def _add(self, inc: Incident, alert: Alert, alert_id: str, keys: set[str]) -> None:
        self._add_entry(inc, alert_entry(alert, alert_id))
        inc.focus = sorted(set(inc.focus) | keys)

    def _add_entry(self, inc: Incident, e: dict[str, Any]) -> None:
        inc.alert_count += e.get("count", 1)
        inc.opened_at = min(inc.opened_at, e["first_seen"])
        inc.updated_at = max(inc.updated_at, e["detected_at"])
        same = next((a for a in inc.alerts if (a["kind"], a["attacker"], sorted(a["victims"]))
                     == (e["kind"], e["attacker"], sorted(e["victims"]))), None)  # fmt: skip
        if same is None and len(inc.alerts) >= MAX_ENTRIES:
            # a long-running incident stays bounded: further distinct alerts count towards
            # the strongest entry of their kind (the victims are still listed); a new kind
            # is always added (there are few kinds)
            same = max(
                (a for a in inc.alerts if a["kind"] == e["kind"]),
                key=lambda a: a["score"],
                default=None,
            )
        if same is not None:  # a repeat: count it, keep the strongest instance
            count = same["count"] + e.get("count", 1)
            if (e["score"], e["confidence"]) > (same["score"], same["confidence"]):
                same.update({k: v for k, v in e.items() if k not in ("alert_id", "first_seen")})
            same["count"] = count
            same["last_detected_at"] = max(
                same.get("last_detected_at", same["detected_at"]), e["detected_at"]
            )
        else:
            inc.alerts.append(e)
            inc.alerts.sort(key=lambda a: (a["first_seen"], a["detected_at"], a["kind"]))
        if e["attacker"] and e["attacker"] not in inc.attackers and e["kind"] not in VICTIM_CENTRIC:
            inc.attackers = sorted([*inc.attackers, e["attacker"]], key=_addr_order)
        inc.victims = sorted(set(inc.victims) | set(e["victims"]), key=_addr_order)
        kinds = [a["kind"] for a in inc.alerts]
        inc.kinds = list(dict.fromkeys(kinds))
        inc.stages = sorted({stage_of(k) for k in inc.kinds}, key=STAGE_ORDER.index)

    # --- priority -----------------------------------------------------------------------
    def score(self, inc: Incident) -> None:
        reasons: list[dict[str, Any]] = []
        lead = inc.lead()
        base = float(lead["score"])
        by_kind: dict[str, float] = {}
        for a in inc.alerts:
            by_kind[a["kind"]] = max(by_kind.get(a["kind"], 0.0), float(a["confidence"]))
        miss = 1.0
        for c in by_kind.values():
            miss *= 1.0 - c
        conf = round(min(0.99, 1.0 - miss), 3)
        weight = round(0.6 + 0.4 * conf, 3)
        risk = base * weight
        reasons.append(
            {"factor": "score", "kind": lead["kind"], "score": base, "alert_id": lead["alert_id"]}
        )
        reasons.append({"factor": "confidence", "confidence": conf, "weight": weight, "kinds": len(by_kind),
                        "points": round(base * weight - base, 1)})  # fmt: skip
        crit = self._criticality(inc)
        if crit is not None:
            risk += crit["points"]
            reasons.append(crit)
        prog = self._progression(inc)
        inc.progression = prog
        if prog is not None:
            risk += prog["points"]
            reasons.append({"factor": "progression", **prog})
        for a in inc.alerts:
            for adj in a.get("adjustments", []):
                reasons.append({"factor": "feedback", "alert_id": a["alert_id"], **adj})
        inc.risk = round(min(100.0, max(0.0, risk)), 1)
        inc.confidence = conf
        inc.priority = priority_of(inc.risk)
        reasons.append({"factor": "priority", "risk": inc.risk, "priority": inc.priority})
        inc.reasons = reasons

    def _criticality(self, inc: Incident) -> dict[str, Any] | None:
        best: dict[str, Any] | None = None
        if not self.cfg.asset_groups:
            return None
        pts = self.cfg.criticality_points
        hosts = list(inc.victims) + [
            a["attacker"] for a in inc.alerts if a["kind"] in OUTBOUND and a["attacker"]
        ]
        for h in dict.fromkeys(hosts):
            net = _network(h)
            if net is None:
                continue
            for g in self.cfg.asset_groups:
                if any(n.version == net.version and n.overlaps(net) for n in g.networks):  # type: ignore[arg-type]
                    p = float(pts.get(g.criticality, 0.0))
                    if best is None or p > best["points"]:
                        best = {"factor": "criticality", "host": h, "group": g.name,
                                "criticality": g.criticality, "points": p}  # fmt: skip
        return best

    def _progression(self, inc: Incident) -> dict[str, Any] | None:
        """The longest kill-chain run on one host: as victim of reconnaissance and initial
        access, as source of command and control and exfiltration."""
        per_host: dict[str, set[str]] = {}
        for a in inc.alerts:
            st = a["stage"]
            if st not in KILL_CHAIN:
                continue
            hosts = (
                [a["attacker"]]
                if a["kind"] in OUTBOUND
                else [v for v in a["victims"] if "/" not in v]
            )
            for h in hosts:
                if h:
                    per_host.setdefault(h, set()).add(st)
        best: dict[str, Any] | None = None
        for h in sorted(per_host, key=_addr_order):
            stages = [s for s in KILL_CHAIN if s in per_host[h]]
            if len(stages) >= 2 and (best is None or len(stages) > len(best["stages"])):
                best = {"host": h, "stages": stages, "steps": len(stages) - 1,
                        "points": self.cfg.progression_points * (len(stages) - 1)}  # fmt: skip
        return best

    # --- lifecycle ----------------------------------------------------------------------
    def tick(self, now: float) -> list[Incident]:
        """Close incidents inactive for ``close_after_s`` of network time."""
        closed = []
        for inc in sorted(self.active.values(), key=lambda i: _id_order(i.id)):
            if now - inc.updated_at >= self.cfg.close_after_s:
                inc.status, inc.closed_at = CLOSED, now
                closed.append(inc)
        for inc in closed:
            del self.active[inc.id]
        return closed


def _id_order(iid: str) -> tuple[int, str]:
    tail = iid.rsplit("-", 1)[-1]
    return (int(tail), iid) if tail.isdigit() else (1 << 62, iid)


@functools.lru_cache(maxsize=65536)
def _network(h: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(h, strict=False)
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def _addr_order(a: str) -> tuple[int, Any]:
    try:
        ip = ipaddress.ip_address(a)
        return (ip.version, int(ip))
    except ValueError:
        return (9, a)
