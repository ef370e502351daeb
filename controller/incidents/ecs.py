"""Alerts and incidents as JSON lines in the Elastic Common Schema shape, for a SIEM.

ECS fields used: ``@timestamp``, ``event.*`` (kind ``alert``, category
``intrusion_detection``, dataset ``netwarden.alert`` / ``netwarden.incident``, severity,
risk score, start/end), ``rule.*``, ``threat.*`` (MITRE ATT&CK technique), ``source`` /
``destination`` (``ip`` or ``mac``), ``related.ip``, ``message``, ``observer.*``, ``tags``
and ``ecs.version``; NetWarden's own fields go under ``netwarden.*`` (custom fields live
under the vendor's name, as ECS advises).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from controller.incidents.kinds import stage_of

ECS_VERSION = "8.11.0"
OBSERVER = {"vendor": "NetWarden", "product": "netwarden", "type": "ids"}


def _ts(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _endpoint(addr: str | None) -> dict[str, Any]:
    if not addr:
        return {}
    try:
        return {"ip": str(ipaddress.ip_address(addr))}
    except ValueError:
        pass
    if addr.count(":") == 5:
        return {"mac": addr.upper().replace(":", "-")}  # ECS writes MACs with dashes
    return {"address": addr}


def _ips(values: list[str | None]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v or "")))
        except ValueError:
            continue
    return sorted(set(out))


def alert_to_ecs(a: dict[str, Any]) -> dict[str, Any]:
    victims = list(a.get("victims") or [])
    doc: dict[str, Any] = {
        "@timestamp": _ts(a["detected_at"]),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "alert", "category": ["network", "intrusion_detection"], "type": ["info"],
                  "module": "netwarden", "dataset": "netwarden.alert", "action": a["kind"],
                  "severity": round(float(a["score"])), "risk_score": float(a["score"]),
                  "start": _ts(a.get("first_seen")), "created": _ts(a["detected_at"]), "id": a.get("id")},
        "rule": {"name": a["kind"], "id": f"{a.get('detector', '')}/{a.get('detector_version', '')}",
                 "category": stage_of(a["kind"])},
        "message": a.get("summary", ""),
        "observer": dict(OBSERVER),
        "related": {"ip": _ips([a.get("attacker"), *victims])},
        "netwarden": {"alert_id": a.get("id"), "incident_id": a.get("incident_id"), "confidence": a["confidence"],
                      "victims": victims, "evidence": a.get("evidence", {}), "suppressed_by": a.get("suppressed_by")},
    }  # fmt: skip
    if a.get("mitre"):
        doc["threat"] = {"framework": "MITRE ATT&CK", "technique": {"id": [a["mitre"]]}}
    if a.get("attacker"):
        doc["source"] = _endpoint(a["attacker"])
    if victims:
        doc["destination"] = _endpoint(victims[0])
    return doc


def incident_to_ecs(inc: dict[str, Any], lang: str = "en") -> dict[str, Any]:
    mitre = sorted({a["mitre"] for a in inc.get("alerts", []) if a.get("mitre")})
    doc: dict[str, Any] = {
        "@timestamp": _ts(inc["updated_at"]),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "alert", "category": ["network", "intrusion_detection"], "type": ["info"],
                  "module": "netwarden", "dataset": "netwarden.incident", "action": ",".join(inc["kinds"]),
                  "severity": round(float(inc["risk"])), "risk_score": float(inc["risk"]),
                  "start": _ts(inc["opened_at"]), "end": _ts(inc.get("closed_at")), "id": inc["id"],
                  "outcome": "unknown"},
        "message": (inc.get("summary") or {}).get(lang, ""),
        "observer": dict(OBSERVER),
        "related": {"ip": _ips([*inc.get("attackers", []), *inc.get("victims", [])])},
        "tags": [inc["priority"], *inc.get("stages", [])],
        "netwarden": {"incident_id": inc["id"], "status": inc["status"], "priority": inc["priority"],
                      "confidence": inc["confidence"], "alert_count": inc["alert_count"],
                      "attackers": inc.get("attackers", []), "victims": inc.get("victims", []),
                      "stages": inc.get("stages", []), "reasons": inc.get("reasons", []),
                      "recommendation": inc.get("recommendation"), "actions": inc.get("actions", []),
                      "alert_ids": [a["alert_id"] for a in inc.get("alerts", [])]},
    }  # fmt: skip
    if mitre:
        doc["threat"] = {"framework": "MITRE ATT&CK", "technique": {"id": mitre}}
    if inc.get("attackers"):
        doc["source"] = _endpoint(inc["attackers"][0])
    if inc.get("victims"):
        doc["destination"] = _endpoint(inc["victims"][0])
    return doc
