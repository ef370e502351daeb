"""Triage in a running controller: the detection stack's output path goes through
``Triage`` (feedback suppression, incidents, copilot, containment through policy), and the
operators' incident changes are served on the control socket.

``attach_triage`` always registers the operations (``incident-ack``,
``incident-resolve``, ``incident-feedback``) and a periodic tick (closing incidents,
escalation); with ``detect=True`` (the controller listens to sensors) it also plugs in
the detection stack, whose alerts it filters and groups after the stack, not inside any
detector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from controller.detect.stack import DetectionStack, IngestDetection, build
from controller.incidents import config as tconfig
from controller.incidents.escalate import Escalator
from controller.incidents.triage import Triage, pattern_entity

log = logging.getLogger("netwarden.incidents")


class TriagedDetection(IngestDetection):
    """``IngestDetection`` whose alerts go through triage instead of straight to policy.
    ``recent`` keeps each alert with its id, incident, the copilot's recommendation
    (contain, investigate, monitor) and policy's decision on its source when a containment
    went to policy (None otherwise); ``submitted`` counts alerts triaged.

    Operator feedback reaches the detectors too (``DetectionStack.feedback``): each tick
    first hands them the feedback given since the last one, through the control socket or
    offline while the controller was down (all of it once after a start: a detector's
    response is idempotent). What a detector learnt is written to the audit log."""

    def __init__(self, stack: DetectionStack, controller: Any, triage: Triage,
                 clock: Callable[[], int] = time.time_ns, min_tick_s: float | None = None) -> None:  # fmt: skip
        super().__init__(stack, controller, clock=clock, min_tick_s=min_tick_s)
        self.triage = triage
        self._feedback_seq = 0  # the last feedback handed to the detectors

    def sync_feedback(self) -> list[str]:
        """Hand the detectors the feedback given since the last call; what they learnt."""
        learnt: list[str] = []
        for f in self.triage.istore.feedback(after_seq=self._feedback_seq):
            self._feedback_seq = int(f["seq"])
            attacker, victims = self._about(f)
            at_ns = int(float(f["created"]) * 1e9)
            notes = self.stack.feedback(str(f["verdict"]), str(f["kind"]), attacker, victims, at_ns)
            if notes:
                self.triage.audit.record(
                    "netwarden", "detector-feedback", str(f["target"]), evidence=str(f["id"]),
                    result=str(f["verdict"]),
                    detail={"kind": f["kind"], "entity": f["entity"], "learnt": notes},
                )  # fmt: skip
                learnt += notes
        return learnt

    def _about(self, f: dict[str, Any]) -> tuple[str | None, list[str]]:
        """The source and victims of the alerts one feedback row judged (its target's
        alerts of its kind and entity); the entity as source if they are gone."""
        alerts = [a for a in self.triage.istore.judged_alerts(str(f["target"]))
                  if a["kind"] == f["kind"] and pattern_entity(a) == f["entity"]]  # fmt: skip
        if not alerts:
            return str(f["entity"]), []
        attacker = next((str(a["attacker"]) for a in alerts if a.get("attacker")), None)
        return attacker, sorted({str(v) for a in alerts for v in a.get("victims") or []})

    def tick(self) -> None:
        try:
            self.sync_feedback()
        except Exception:
            log.exception("feedback not handed to the detectors")
        now_ns = self.clock()
        alerts = self.stack.advance(now_ns)
        if alerts:
            try:
                records = self.triage.process(alerts, now_ns / 1e9)
            except Exception:
                log.exception("triage failed on %d alert(s)", len(alerts))
                records = [a.to_json() for a in alerts]
            for rec in records:
                inc = self.triage.engine.active.get(rec.get("incident_id") or "")
                if inc is not None:
                    rec["recommendation"] = (inc.recommendation or {}).get("action")
                    if rec.get("decision") is None and rec.get("attacker"):
                        # the alert is covered by the incident's earlier decision on its source
                        done = [
                            a
                            for a in inc.actions
                            if a.get("kind") == "decision" and a["target"] == rec["attacker"]
                        ]
                        if done:
                            d = done[-1]
                            rec["decision"] = {
                                "id": d["decision_id"],
                                "verdict": d["verdict"],
                                "reason": d["reason"],
                            }
                self.submitted += 1
                self.recent.append(rec)
                log.warning("alert %s %s attacker=%s victims=%s score=%.0f incident=%s",
                            rec.get("id"), rec["kind"], rec["attacker"], rec["victims"][:3], rec["score"],
                            rec.get("incident_id") or f"suppressed by {rec.get('suppressed_by')}")  # fmt: skip
        if time.monotonic() - self._last_save >= self.save_every_s:
            self.save()


def attach_triage(
    controller: Any,
    state_dir: str | Path,
    config_path: str | None = None,
    detect: bool = False,
    names: str | None = None,
    plugins: Iterable[str] = (),
) -> Triage:
    cfg = tconfig.load(config_path)
    tri = Triage(controller.store, controller.audit, cfg, submit=controller.submit_detection,
                 escalator=Escalator(cfg.escalation))  # fmt: skip

    def change(op: str) -> Callable[[dict[str, Any], str], Any]:
        def run(args: dict[str, Any], actor: str) -> Any:
            target = str(args["id"])
            if op == "ack":
                return tri.acknowledge(target, actor).to_json()
            if op == "resolve":
                return tri.resolve(target, actor).to_json()
            return tri.feedback(
                target, str(args.get("verdict", "")), actor, str(args.get("note", ""))
            )

        return run

    for op in ("ack", "resolve", "feedback"):
        controller.add_op(f"incident-{op}", change(op))
    controller.add_periodic(1.0, lambda: tri.tick(time.time()))
    if detect:
        wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
        from controller.detect.thresholds import load as load_thresholds

        stack = DetectionStack(build(wanted, plugins), state_dir=state_dir,
                               thresholds=load_thresholds(config_path))  # fmt: skip
        eager = float(getattr(getattr(controller, "cfg", None), "detect_tick_s", 0.0) or 0.0)
        TriagedDetection(stack, controller, tri, min_tick_s=eager or None).attach(controller)
    return tri
