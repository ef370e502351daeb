"""``netwarden explain INCIDENT|BAN|DECISION``: why it was flagged, why this action at this
autonomy level, and what would have changed the decision.

Everything is read back from the record (incident, stored ban, audit log) and the
configuration in force; the counterfactuals use the same pieces policy decides with
(``Policy.level_for`` and its thresholds, the copilot's thresholds), so they say what the
code would do, not what a prose rule claims.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from controller.copilot.summary import _reasons, _Text, features, kind_label, num
from controller.incidents.config import CopilotConfig
from controller.incidents.engine import Incident


def explain_incident(inc: Incident, policy_cfg: Any, copilot: CopilotConfig,
                     audit: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    t = _Text("en")
    flagged = []
    for a in inc.alerts:
        line = f"{a['alert_id']} {a['kind']} ({a['stage']}) score {num(a['score'])}, confidence {num(a['confidence'])}"
        if a.get("count", 1) > 1:
            line += f", seen {a['count']} times"
        feats = features(t, a["evidence"])
        flagged.append(
            line
            + (f": {feats}" if feats else "")
            + (f". Detector: {a['summary']}" if a.get("summary") else "")
        )
    priority = [*_reasons(t, inc), f"risk {num(inc.risk)} gives priority {inc.priority}"]
    rec = inc.recommendation or {}
    rule = rec.get("rule", {})
    action_lines = [_copilot_rule(rec.get("action", "monitor"), rule)]
    changed = _copilot_counterfactual(rec.get("action", "monitor"), rule)
    decisions = []
    for d in (x for x in inc.actions if x.get("kind") == "decision"):
        why, alt = explain_decision_fields(d, policy_cfg)
        decisions.append({"decision_id": d["decision_id"], "verdict": d["verdict"], "why": why})
        action_lines.extend(why)
        changed.extend(alt)
    trail = [e for e in (audit or []) if e.get("subject") == inc.id or e.get("evidence") == inc.id]
    return {
        "type": "explanation",
        "subject": inc.id,
        "what": "incident",
        "flagged": flagged,
        "priority": priority,
        "action": action_lines,
        "decisions": decisions,
        "would_change": changed,
        "audit": trail,
    }


def _copilot_rule(action: str, r: dict[str, Any]) -> str:
    if not r:
        return "no recommendation recorded"
    risk, conf = num(r["risk"]), num(r["confidence"])
    if action == "contain":
        return (f"contain: risk {risk} > {num(r['contain_risk'])} and confidence {conf} >= "
                f"{num(r['contain_confidence'])} (copilot.contain_risk, copilot.contain_confidence)")  # fmt: skip
    if action == "investigate":
        extra = ""
        if r["risk"] > r["contain_risk"]:
            extra = f" (confidence {conf} < {num(r['contain_confidence'])}, or not an attack)"
        return f"investigate: risk {risk} > {num(r['investigate_risk'])} (copilot.investigate_risk){extra}"
    return f"monitor: risk {risk} <= {num(r['investigate_risk'])} (copilot.investigate_risk)"


def _copilot_counterfactual(action: str, r: dict[str, Any]) -> list[str]:
    if not r:
        return []
    out = []
    if action != "contain":
        out.append(f"containment would have been recommended with risk above {num(r['contain_risk'])} "
                   f"(now {num(r['risk'])}) and confidence at least {num(r['contain_confidence'])} "
                   f"(now {num(r['confidence'])})")  # fmt: skip
    else:
        out.append(f"risk at or below {num(r['contain_risk'])} or confidence below {num(r['contain_confidence'])} "
                   "would have meant investigation instead of containment")  # fmt: skip
    if action == "monitor":
        out.append(f"risk above {num(r['investigate_risk'])} would have meant investigation")
    return out


def explain_decision_fields(d: dict[str, Any], policy_cfg: Any) -> tuple[list[str], list[str]]:
    """Why a policy decision came out as it did, and what would have changed it. ``d`` has
    verdict, reason, level, risky, target, score, confidence and the detector kind."""
    kind = d.get("detector_kind") or d.get("kind_of_alert") or ""
    verdict, level = d["verdict"], d.get("level")
    why = [f"policy decision {d['decision_id']} on {d['target']}: {verdict} ({d['reason']})"]
    alt: list[str] = []
    if d.get("autonomy", -1) >= 0:  # recorded with the decision: the configuration in force then
        configured, src = int(d["autonomy"]), str(d["autonomy_from"])
        why.append(f"autonomy for {kind or 'this kind'}: level {configured} ({src}, as decided)")
    else:  # a decision recorded before levels were: the configuration given now
        configured = policy_cfg.detectors.get(kind, policy_cfg.default_level)
        src = f"policy.detectors.{kind}" if kind in policy_cfg.detectors else "policy.default_level"
        why.append(f"autonomy for {kind or 'this kind'}: level {configured} ({src})")
        for g in _groups_for(d, policy_cfg):
            why.append(f"victim in asset group {g.name} caps the level at {g.level}")
    thr = policy_cfg.thresholds
    score, conf = d.get("score"), d.get("confidence")
    if verdict == "refused":
        alt.append(
            f"{d['target']} is protected (anti-lockout or allow-list): no score or level would ban it"
        )
    elif verdict in ("observe", "recommend"):
        t3, t2 = thr.get(3), thr.get(2)
        if level is not None and level < configured:
            why.append(
                f"score {num(score)} / confidence {num(conf)} below the level-{level + 1} threshold"
            )
        if t3 is not None:
            alt.append(f"at autonomy level 3 for {kind} ({src} = 3) with score >= {num(t3.score)} and confidence >= "
                       f"{num(t3.confidence)}, policy would have banned {d['target']} automatically")  # fmt: skip
        if t2 is not None:
            alt.append(f"at level 2 with score >= {num(t2.score)} and confidence >= {num(t2.confidence)}, it would "
                       "have waited for an operator's approval")  # fmt: skip
    elif verdict == "pending":
        if d.get("risky"):
            why.append("approval needed because the action is risky: " + "; ".join(d["risky"]))
            alt.append(
                "without those risks ("
                + "; ".join(d["risky"])
                + ") at level 3 it would have acted at once"
            )
        else:
            alt.append(f"at level 3 ({src} = 3) with score >= {num(thr[3].score)} and confidence >= "
                       f"{num(thr[3].confidence)} it would have acted without approval")  # fmt: skip
        alt.append(
            "`netwarden approve` or `netwarden deny` decides it; unhandled approvals are escalated"
        )
    elif verdict == "act":
        if d.get("ttl_s"):
            why.append(
                f"ban for {num(d['ttl_s'])} s from the escalation ladder (policy.ban_ladder_s)"
            )
        alt.append(
            f"allow-listing {d['target']} (`netwarden allow add`), or {src} below 2, would have prevented the ban"
        )
        if 3 in thr:
            alt.append(f"score below {num(thr[3].score)} or confidence below {num(thr[3].confidence)} would have "
                       "lowered it to approval or a recommendation")  # fmt: skip
    return why, alt


def _groups_for(d: dict[str, Any], policy_cfg: Any) -> list[Any]:
    out = []
    for v in d.get("victims", []) or []:
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            continue
        for g in policy_cfg.asset_groups:
            if any(ip in n for n in g.networks) and g not in out:
                out.append(g)
    return out


def explain_audit_decision(
    decision_id: str, audit: list[dict[str, Any]], policy_cfg: Any
) -> dict[str, Any] | None:
    """A decision as the audit log recorded it (no incident needed: manual `detect` too)."""
    entries = [e for e in audit if e.get("decision_id") == decision_id]
    dec = next((e for e in entries if e["event"] == "decision"), None)
    if dec is None:
        return None
    det = dec["detail"]
    d = {"decision_id": decision_id, "verdict": dec["result"], "reason": det.get("reason", ""),
         "level": det.get("level"), "risky": det.get("risky", []), "target": dec["subject"],
         "autonomy": det.get("autonomy", -1), "autonomy_from": det.get("autonomy_from", ""),
         "score": det.get("score"), "confidence": det.get("confidence"), "ttl_s": det.get("ttl_s"),
         "detector_kind": dec["actor"].split(":", 1)[1] if dec["actor"].startswith("detector:") else ""}  # fmt: skip
    why, alt = explain_decision_fields(d, policy_cfg)
    return {"type": "explanation", "subject": decision_id, "what": "decision", "evidence": dec.get("evidence", ""),
            "action": why, "would_change": alt, "audit": entries}  # fmt: skip


def render(ex: dict[str, Any]) -> str:
    lines = [f"{ex['what']} {ex['subject']}"]
    for title, key in (("Why it was flagged", "flagged"), ("Priority", "priority"),
                       ("Why this action at this autonomy level", "action"),
                       ("What would have changed the decision", "would_change")):  # fmt: skip
        items = ex.get(key) or []
        if items:
            lines.append(f"{title}:")
            lines.extend(f"  - {x}" for x in items)
    if ex.get("incident"):
        lines.append("")
        lines.append(render(ex["incident"]))
    return "\n".join(lines)


__all__ = [
    "explain_audit_decision",
    "explain_decision_fields",
    "explain_incident",
    "kind_label",
    "render",
]
