"""The triage pipeline: the detection stack's alerts in, stored incidents out.

For each alert, in detection order (``Triage.process``):

1. Operator feedback first: an alert matching an active suppression (a false positive
   reported for the same kind, entity and service) is stored as suppressed and goes no
   further. Past the suppression (expired, or another service), a false positive is the
   entity's learnt level for that kind: an alert scoring at most
   ``feedback.false_positive_margin`` above what the operator called benign loses
   ``feedback.false_positive_cut`` confidence, and one scoring well above it keeps its
   confidence (it is worse than what was judged). An alert of a pattern operators
   confirmed gets its confidence raised.
2. The alert is stored and placed in an incident (``IncidentEngine``), which is re-scored.
3. Once per batch (the alerts of one ``process`` call, one transaction) and incident the
   batch touched: the copilot recommends (``controller.copilot.recommend``); a containment
   step that can be enforced (blocking an IP address) goes to policy through ``submit``
   (the controller's ``submit_detection``: autonomy levels, approvals, circuit breaker,
   anti-lockout, escalating bans, audit), once per incident and target; the decision is
   kept on the incident and reported on the batch's latest alert of that incident. Other
   outcomes are audited as the copilot's decision when they change.
4. Summaries in every catalogue language are regenerated and the incident is stored, also
   once per batch: an alert storm arrives in large batches, and redoing this work (which
   grows with the incident) for every alert made a large incident take ~50 ms an alert.

An alert that makes triage raise (a bug, e.g. a plugin's evidence JSON cannot hold) rolls
its batch back; the incidents in memory are reloaded from the store and the batch's alerts
are placed again one at a time, so only that alert is lost (``failed`` counts it).

``tick(now)`` closes incidents inactive for ``close_after_s`` and runs escalation. Time
is network time (capture time in a replay, wall time in a controller); suppressions
expire in wall time (they are an operator's decision).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from controller.copilot.recommend import CONTAIN, recommend
from controller.copilot.summary import LANGS, summarize
from controller.detect.alert import Alert
from controller.detection import Detection
from controller.incidents.config import TriageConfig
from controller.incidents.engine import ACKNOWLEDGED, ACTIVE, RESOLVED, Incident, IncidentEngine
from controller.incidents.kinds import service_of
from controller.incidents.store import IncidentStore
from netwarden.errors import ConfigError, NetWardenError, StoreError

log = logging.getLogger("netwarden.incidents")

FALSE_POSITIVE, CONFIRMED = "false_positive", "confirmed"
MAX_BOOST = 0.3


def pattern_entity(a: dict[str, Any]) -> str:
    """Whom feedback on alert ``a`` is about: its source, else its first victim."""
    return str(a.get("attacker") or (a.get("victims") or ["*"])[0])


class Triage:
    def __init__(
        self,
        store: Any,  # controller.state.store.Store (transactions, db)
        audit: Any,  # controller.state.audit.AuditLog
        cfg: TriageConfig,
        submit: Callable[[Detection], Any] | None = None,
        wall: Callable[[], float] = time.time,
        escalator: Any = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.cfg = cfg
        self.submit = submit
        self.wall = wall
        self.escalator = escalator
        self.istore = IncidentStore(store.db)
        self.engine = IncidentEngine(cfg.incidents, self._next_incident_id)
        self.engine.load(self.istore.active_incidents())
        self.suppressed = 0
        self.failed = 0  # alerts left out because triage raised on them (a bug: logged)
        self.now = 0.0

    def _next_incident_id(self) -> str:
        seq = max(
            [
                self.istore.next_incident_seq(),
                *[int(i.split("-")[-1]) + 1 for i in self.engine.active],
            ]
        )
        return f"INC-{seq}"

    # --- alerts in ----------------------------------------------------------------------
    def process(self, alerts: list[Alert], now: float | None = None) -> list[dict[str, Any]]:
        """Triage a batch in one transaction. If an alert makes it raise (a bug), nothing of
        the batch was kept: the incidents in memory are reloaded from the store, so both
        agree again, and the alerts are placed one at a time, each in its own transaction.
        One that still fails is left out (logged, counted in ``failed``, returned with an
        ``error``); the others are kept. A failing store (``StoreError``: full disk, broken
        database) is not the alerts' fault and is raised as it is."""
        order = sorted(alerts, key=lambda a: (a.detected_at, a.kind, a.attacker or "", a.victims))
        done = self._attempt(order, now, f"a batch of {len(order)} alert(s)")
        if done is not None:
            return done
        out: list[dict[str, Any]] = []
        for a in order:  # one at a time: only a failing alert is left out
            one = self._attempt([a], now, f"a {a.kind} alert from {a.attacker or '-'}")
            if one is None:
                self.failed += 1
                one = [{**a.to_json(), "incident_id": None, "decision": None,
                        "error": "triage failed"}]  # fmt: skip
            out += one
        return out

    def _attempt(
        self, order: list[Alert], now: float | None, what: str
    ) -> list[dict[str, Any]] | None:
        """``_process``; None (logged) if it raised: its transaction was rolled back, so the
        incidents in memory are reloaded to agree with the store. A ``StoreError`` goes up."""
        suppressed = self.suppressed
        try:
            return self._process(order, now)
        except StoreError:
            raise
        except Exception:
            self.engine.active.clear()
            self.engine.load(self.istore.active_incidents())
            self.suppressed = suppressed
            log.exception("triage failed on %s; nothing of it was stored", what)
            return None

    def _process(self, order: list[Alert], now: float | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        latest: dict[str, int] = {}  # incident id -> index in out of its latest alert
        with self.store.transaction():
            for a in order:
                self.now = max(self.now, a.detected_at if now is None else now)
                rec = self._one(a)
                if rec.get("incident_id"):
                    latest[rec["incident_id"]] = len(out)
                out.append(rec)
            for iid, i in latest.items():
                inc = self.engine.active.get(iid)
                if inc is None:  # merged into a later alert's incident (stored then)
                    continue
                out[i]["decision"] = self._respond(inc)
                self._render(inc)
                self.istore.put_incident(inc)
        return out

    def _one(self, alert: Alert) -> dict[str, Any]:
        """Store one alert and place it in an incident (within ``process``' transaction)."""
        rec = alert.to_json()
        aid = f"A-{self.istore.next_alert_seq()}"
        rec["id"] = aid
        entities = [e for e in [alert.attacker, *alert.victims] if e]
        service = service_of(alert.kind, alert.evidence)
        sup = self.istore.matching_suppression(alert.kind, entities, service, self.wall())
        if sup is not None:
            self.suppressed += 1
            self.istore.put_alert(aid, None, alert, suppressed_by=sup.id)
            rec.update(incident_id=None, suppressed_by=sup.id, decision=None)
            return rec
        adjustments = self._learnt_benign(alert, entities)
        confirmed = self.istore.confirmations(alert.kind, entities)
        if confirmed:
            boost = round(min(MAX_BOOST, self.cfg.feedback.confirm_boost * len(confirmed)), 3)
            before = alert.confidence
            alert.confidence = min(0.99, alert.confidence + boost)
            adjustments.append({"verdict": CONFIRMED, "feedback": confirmed, "boost": boost,
                                "confidence_before": round(before, 3)})  # fmt: skip
        if adjustments:
            alert.extra["adjustments"] = adjustments
            rec["confidence"] = round(alert.confidence, 3)
        inc, merged = self.engine.ingest(alert, aid)
        self.istore.put_alert(aid, inc.id, alert)
        for m in merged:
            self.istore.set_alert_incident([e["alert_id"] for e in m.alerts], inc.id)
            self.istore.put_incident(m)
            self.audit.record(
                "incidents", "incident-merged", m.id, evidence=inc.id, detail={"into": inc.id}
            )
        if inc.alert_count == 1 and not merged:
            self.audit.record("incidents", "incident-opened", inc.id, evidence=aid,
                              detail={"kind": alert.kind, "priority": inc.priority, "risk": inc.risk})  # fmt: skip
        rec.update(incident_id=inc.id, decision=None)
        return rec

    def _respond(self, inc: Incident) -> dict[str, Any] | None:
        """Recommend; submit enforceable containment to policy once per target; audit the
        copilot's outcome when it changes. Returns the policy decision made now, if any."""
        before = (inc.recommendation or {}).get("action")
        rec = recommend(inc, self.cfg.copilot)
        inc.recommendation = rec
        made = None
        if rec["action"] == CONTAIN and self.submit is not None:
            done = {a["target"] for a in inc.actions if a.get("kind") == "decision"}
            for step in rec["steps"]:
                if not step["enforce"] or step["target"] in done:
                    continue
                made = self._submit(inc, step)
                done.add(step["target"])
        if rec["action"] != before:
            lead = inc.lead()
            subject = lead["attacker"] or (lead["victims"] or [""])[0]
            self.audit.record(
                "copilot", "decision", subject, evidence=inc.id, result=rec["action"],
                detail={"incident": inc.id, "rule": rec["rule"], "steps": rec["steps"], "priority": inc.priority},
            )  # fmt: skip
        return made

    def _submit(self, inc: Incident, step: dict[str, Any]) -> dict[str, Any] | None:
        assert self.submit is not None
        victims = []
        for v in inc.victims:
            try:
                victims.append(str(ipaddress.ip_address(v)))
            except ValueError:
                continue
        try:
            det = Detection.make(step["kind"], step["target"], victims[:16], inc.risk, inc.confidence, inc.id,
                                 detail={"incident": inc.id, "step": step["do"], "priority": inc.priority})  # fmt: skip
            d = self.submit(det)
        except NetWardenError as exc:
            log.warning("policy refused %s for %s: %s", step["target"], inc.id, exc)
            return None
        entry = {"kind": "decision", "decision_id": d.id, "verdict": d.verdict.value, "reason": d.reason,
                 "target": step["target"], "action": d.action.value, "ttl_s": d.ttl_s, "level": d.level,
                 "autonomy": d.autonomy, "autonomy_from": d.autonomy_from, "risky": list(d.risky), "at": self.now, "step": step["do"], "score": inc.risk,
                 "confidence": inc.confidence, "detector_kind": step["kind"]}  # fmt: skip
        inc.actions.append(entry)
        return {"id": d.id, "verdict": d.verdict.value, "reason": d.reason}

    def _render(self, inc: Incident) -> None:
        inc.summary = {lang: summarize(inc, lang) for lang in LANGS}

    # --- time ---------------------------------------------------------------------------
    def tick(self, now: float) -> list[Incident]:
        self.now = max(self.now, now)
        closed = self.engine.tick(self.now)
        if closed:
            with self.store.transaction():
                for inc in closed:
                    self._render(inc)
                    self.istore.put_incident(inc)
                    self.audit.record("incidents", "incident-closed", inc.id,
                                      detail={"after_s": self.cfg.incidents.close_after_s, "risk": inc.risk})  # fmt: skip
        if self.escalator is not None:
            self.escalator.check(self, self.now)
        return closed

    # --- operators ----------------------------------------------------------------------
    def _get(self, incident_id: str) -> Incident:
        inc = self.engine.active.get(incident_id) or self.istore.get_incident(incident_id)
        if inc is None:
            raise ConfigError(f"no incident {incident_id}")
        return inc

    def acknowledge(self, incident_id: str, actor: str) -> Incident:
        inc = self._get(incident_id)
        if inc.status not in ACTIVE:
            raise ConfigError(
                f"incident {incident_id} is {inc.status}; only open incidents can be acknowledged"
            )
        with self.store.transaction():
            inc.status, inc.acknowledged_by, inc.acknowledged_at = ACKNOWLEDGED, actor, self.wall()
            self._render(inc)
            self.istore.put_incident(inc)
            self.audit.record(actor, "incident-ack", inc.id, detail={"priority": inc.priority})
        return inc

    def resolve(self, incident_id: str, actor: str, resolution: str = "resolved") -> Incident:
        inc = self._get(incident_id)
        with self.store.transaction():
            inc.status, inc.resolved_by, inc.resolved_at = RESOLVED, actor, self.wall()
            inc.actions.append(
                {"kind": "resolution", "resolution": resolution, "by": actor, "at": inc.resolved_at}
            )
            self.engine.active.pop(inc.id, None)
            self._render(inc)
            self.istore.put_incident(inc)
            self.audit.record(actor, "incident-resolve", inc.id, result=resolution)
        return inc

    def _learnt_benign(self, alert: Alert, entities: list[str]) -> list[dict[str, Any]]:
        """The false-positive baseline: the highest score of the alerts operators called
        false positives for this kind and entity; an alert not clearly above it has its
        confidence cut (an adjustment, with the feedback ids, is returned)."""
        fps = self.istore.false_positives(alert.kind, entities)
        if not fps or self.cfg.feedback.false_positive_cut <= 0:
            return []
        scores = []
        for _fid, target in fps:
            scores += [float(a["score"]) for a in self.istore.judged_alerts(target)
                       if a["kind"] == alert.kind
                       and set(entities) & {a.get("attacker"), *a.get("victims", [])}]  # fmt: skip
        if not scores or alert.score > max(scores) + self.cfg.feedback.false_positive_margin:
            return []
        cut = round(min(MAX_BOOST, self.cfg.feedback.false_positive_cut * len(fps)), 3)
        before = alert.confidence
        alert.confidence = max(0.05, alert.confidence - cut)
        return [{"verdict": FALSE_POSITIVE, "feedback": [f for f, _ in fps], "cut": cut,
                 "benign_score": round(max(scores), 1), "confidence_before": round(before, 3)}]  # fmt: skip

    def feedback(self, target_id: str, verdict: str, actor: str, note: str = "") -> dict[str, Any]:
        """``false_positive``: a suppression per (kind, entity, service) of the target's
        alerts, expiring after ``feedback.suppress_s``; the incident is resolved as a false
        positive. ``confirmed``: the patterns' confidence is raised for future alerts."""
        if verdict not in (FALSE_POSITIVE, CONFIRMED):
            raise ConfigError(f"feedback verdict must be {FALSE_POSITIVE} or {CONFIRMED}")
        if target_id.startswith("A-"):
            a = self.istore.get_alert(target_id)
            if a is None:
                raise ConfigError(f"no alert {target_id}")
            alerts, inc = [a], None
        else:
            inc = self._get(target_id)
            alerts = inc.alerts
        patterns = sorted({(a["kind"], pattern_entity(a), a.get("service") or service_of(a["kind"], a.get("evidence")))
                           for a in alerts})  # fmt: skip
        now = self.wall()
        out: dict[str, Any] = {
            "target": target_id,
            "verdict": verdict,
            "feedback": [],
            "suppressions": [],
        }
        with self.store.transaction():
            for kind, entity, service in patterns:
                fid = self.istore.add_feedback(
                    target_id, verdict, kind, entity, service, actor, note, now
                )
                out["feedback"].append(fid)
                detail: dict[str, Any] = {
                    "kind": kind,
                    "entity": entity,
                    "service": service,
                    "note": note,
                }
                if verdict == FALSE_POSITIVE:
                    s = self.istore.add_suppression(kind, entity, service, now, now + self.cfg.feedback.suppress_s,
                                                    fid, note)  # fmt: skip
                    out["suppressions"].append(s.to_dict())
                    detail["suppression"] = s.id
                    detail["expires_at"] = s.expires_at
                else:
                    detail["boost"] = self.cfg.feedback.confirm_boost
                self.audit.record(
                    actor, "feedback", target_id, evidence=fid, result=verdict, detail=detail
                )
            if inc is not None:
                inc.actions.append({"kind": "feedback", "verdict": verdict, "by": actor, "note": note, "at": now,
                                    "feedback": list(out["feedback"])})  # fmt: skip
                if verdict == FALSE_POSITIVE and inc.status in ACTIVE:
                    inc.status, inc.resolved_by, inc.resolved_at = RESOLVED, actor, now
                    self.engine.active.pop(inc.id, None)
                self._render(inc)
                self.istore.put_incident(inc)
        return out
