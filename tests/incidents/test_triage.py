"""The triage pipeline on a dry-run controller: alerts and incidents stored through the
migration, recommendations through policy, acknowledge/resolve, feedback (suppression and
confirmation) and persistence across a restart."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from controller.app import Controller
from controller.incidents.engine import ACKNOWLEDGED, RESOLVED
from controller.state.migrations import SCHEMA_VERSION, schema_version
from controller.state.store import Store
from netwarden.errors import ConfigError
from tests.incidents.alerts import ATTACKER, C2, SERVER, alert, beacon, brute, flood, scan
from tests.incidents.helpers import Clock, make_controller, make_triage

REPO = Path(__file__).resolve().parents[2]


def test_migration_adds_the_triage_tables_to_an_old_state_dir(tmp_path: Path) -> None:
    shutil.copytree(REPO / "tests" / "fixtures" / "state_v1", tmp_path / "s")
    before = sqlite3.connect(tmp_path / "s" / "netwarden.db")
    old = schema_version(before)
    before.close()
    store = Store(tmp_path / "s")
    try:
        assert old < 3 and store.migrated[-1] == 3 == SCHEMA_VERSION
        tables = {
            r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {
            "alerts",
            "incidents",
            "feedback",
            "suppressions",
            "escalations",
            "bans",
            "audit",
        } <= tables
    finally:
        store.close()


def test_story_contained_through_policy(ctl: Controller, clock: Clock) -> None:
    tri = make_triage(ctl)
    recs = []
    for a in (scan(), brute(), beacon()):
        clock.t = a.detected_at
        recs.extend(tri.process([a]))
    assert [r["id"] for r in recs] == ["A-1", "A-2", "A-3"] and {
        r["incident_id"] for r in recs
    } == {"INC-1"}
    inc = tri.istore.get_incident("INC-1")
    assert inc is not None and inc.risk > 85 and inc.confidence >= 0.85
    assert inc.recommendation is not None and inc.recommendation["action"] == "contain"
    steps = {(s["do"], s["target"]) for s in inc.recommendation["steps"]}
    assert {("block", ATTACKER), ("block", SERVER), ("block", C2)} <= steps
    verdicts = {a["target"]: a["verdict"] for a in inc.actions if a["kind"] == "decision"}
    # external brute-forcer and C2 peer at level 3: banned; the compromised inside host:
    # approval (blocking an internal host is a risky action)
    assert verdicts == {ATTACKER: "act", SERVER: "pending", C2: "act"}
    assert sorted(str(b.addr) for b in ctl.store.active_bans(clock.t)) == [C2, ATTACKER]
    (pending,) = ctl.store.approvals("pending")
    assert pending.proposal["target"] == f"{SERVER}/32" and "internal host" in pending.reason
    events = [(e["actor"], e["event"], e["result"]) for e in ctl.audit.entries()]
    assert ("incidents", "incident-opened", "ok") in events
    assert ("copilot", "decision", "investigate") in events and (
        "copilot",
        "decision",
        "contain",
    ) in events
    assert ("detector:ssh_bruteforce", "decision", "act") in events
    # stored alerts carry their incident; a new pipeline on the same store sees the incident
    assert [a["incident_id"] for a in tri.istore.alerts()] == ["INC-1"] * 3
    again = make_triage(ctl)
    assert set(again.engine.active) == {"INC-1"}
    clock.t = beacon().detected_at + 30
    (r,) = again.process([brute(t=630)])
    assert r["incident_id"] == "INC-1" and r["decision"] is None  # already decided for this target


def test_a_batch_is_one_story_rendered_once(ctl: Controller, clock: Clock) -> None:
    """The alerts of one detection tick, given together: the same incident, decisions and
    summary as given one by one, rendered and stored once; the decision is reported on the
    batch's latest alert of the incident."""
    tri = make_triage(ctl)
    batch = [scan(), brute(), beacon()]
    clock.t = max(a.detected_at for a in batch)
    stored: list[str] = []
    put = tri.istore.put_incident
    tri.istore.put_incident = lambda inc: (stored.append(inc.id), put(inc))[1]  # type: ignore[method-assign]
    recs = tri.process(batch)
    assert stored == ["INC-1"]
    assert [r["incident_id"] for r in recs] == ["INC-1"] * 3
    assert [r["decision"] is not None for r in recs] == [False, False, True]
    inc = tri.istore.get_incident("INC-1")
    assert inc is not None and inc.alert_count == 3 and inc.recommendation is not None
    assert inc.recommendation["action"] == "contain"
    verdicts = {a["target"]: a["verdict"] for a in inc.actions if a["kind"] == "decision"}
    assert verdicts == {ATTACKER: "act", SERVER: "pending", C2: "act"}
    text = inc.summary["en"]  # rendered after the whole batch: it tells all of it
    assert "port scan, then SSH brute force, then command-and-control beaconing" in text
    assert "3 alert(s) in total" in text and text.count("Policy decided") == 3
    # one copilot decision audited for the batch: it went straight to contain
    decisions = [e["result"] for e in ctl.audit.entries() if e["actor"] == "copilot"]
    assert decisions == ["contain"]


def test_spoofed_flood_gets_victim_side_advice_not_a_ban(ctl: Controller) -> None:
    tri = make_triage(ctl)
    tri.process([flood()])
    inc = tri.istore.get_incident("INC-1")
    assert (
        inc is not None
        and inc.recommendation is not None
        and inc.recommendation["action"] == "contain"
    )
    assert [(s["do"], s["target"], s["enforce"]) for s in inc.recommendation["steps"]] == [
        ("victim_rate_limit", SERVER, False), ("upstream", SERVER, False)]  # fmt: skip
    assert inc.actions == [] and ctl.store.active_bans(1e12) == []
    assert "upstream" in inc.summary["en"] and "rate-limit" in inc.summary["en"]


def test_ack_resolve_and_closing_are_stored_and_audited(ctl: Controller, clock: Clock) -> None:
    tri = make_triage(ctl, clock=clock)
    tri.process([scan()])
    tri.process([scan(attacker="192.0.2.99", victim="10.0.0.99")])
    assert tri.acknowledge("INC-1", "alice").status == ACKNOWLEDGED
    assert tri.resolve("INC-2", "bob").status == RESOLVED
    with pytest.raises(ConfigError, match="INC-9"):
        tri.acknowledge("INC-9", "alice")
    stored = {i.id: i for i in tri.istore.incidents()}
    assert (
        stored["INC-1"].acknowledged_by == "alice"
        and "Acknowledged by alice" in stored["INC-1"].summary["en"]
    )
    assert stored["INC-2"].status == RESOLVED
    closed = tri.tick(scan().detected_at + 3600)
    assert [i.id for i in closed] == ["INC-1"] and tri.istore.get_incident(
        "INC-1"
    ).status == "closed"  # type: ignore[union-attr]
    events = [(e["actor"], e["event"], e["subject"]) for e in ctl.audit.entries()]
    assert ("alice", "incident-ack", "INC-1") in events and (
        "bob",
        "incident-resolve",
        "INC-2",
    ) in events
    assert ("incidents", "incident-closed", "INC-1") in events


def test_false_positive_suppresses_the_pattern_until_it_expires(
    ctl: Controller, clock: Clock
) -> None:
    tri = make_triage(ctl, clock=clock)
    tri.process([brute()])
    out = tri.feedback("INC-1", "false_positive", "alice", note="our pentest box")
    (sup,) = out["suppressions"]
    assert (sup["kind"], sup["entity"], sup["service"]) == ("ssh_bruteforce", ATTACKER, "ssh")
    assert sup["expires_at"] == pytest.approx(clock.t + 7 * 86400)
    assert tri.istore.get_incident("INC-1").status == RESOLVED  # type: ignore[union-attr]
    (r,) = tri.process([brute(t=900)])
    assert r["suppressed_by"] == sup["id"] and r["incident_id"] is None and tri.suppressed == 1
    # scoped: another service or another source is not suppressed
    (r2,) = tri.process([scan(t=950)])
    (r3,) = tri.process([brute(t=960, attacker="192.0.2.50")])
    assert (
        r2["incident_id"]
        and r3["incident_id"]
        and not (r2.get("suppressed_by") or r3.get("suppressed_by"))
    )
    clock.t += 7 * 86400 + 1  # expired
    (r4,) = tri.process([brute(t=7 * 86400 + 100)])
    assert r4["incident_id"] is not None
    fb = [e for e in ctl.audit.entries() if e["event"] == "feedback"]
    assert fb and fb[0]["actor"] == "alice" and fb[0]["result"] == "false_positive"
    assert (
        fb[0]["detail"]["note"] == "our pentest box" and fb[0]["detail"]["suppression"] == sup["id"]
    )


def test_a_false_positive_is_the_learnt_level_after_its_suppression(
    ctl: Controller, clock: Clock
) -> None:
    tri = make_triage(ctl, clock=clock)
    (first,) = tri.process([brute(conf=0.85)])
    tri.feedback(first["incident_id"], "false_positive", "alice", note="our backup job")
    clock.t += 7 * 86400 + 1  # the suppression expired; what was learnt stays
    cfg = tri.cfg.feedback
    (same,) = tri.process([brute(t=7 * 86400 + 100, conf=0.85)])
    assert same["incident_id"] and not same.get("suppressed_by")
    assert same["confidence"] == pytest.approx(0.85 - cfg.false_positive_cut)
    inc = tri.istore.get_incident(same["incident_id"])
    assert inc is not None
    (fb,) = [r for r in inc.reasons if r["factor"] == "feedback"]
    assert fb["verdict"] == "false_positive" and fb["feedback"] == ["F-1"]
    assert (
        fb["benign_score"] == brute().score
        and "no worse than what an operator" in inc.summary["en"]
    )
    assert "誤検知" in inc.summary["ja"]
    first_inc = tri.istore.get_incident(first["incident_id"])
    assert first_inc is not None and inc.risk < first_inc.risk
    # clearly worse than what the operator judged: not discounted
    worse = brute(t=7 * 86400 + 200, conf=0.85, score=brute().score + cfg.false_positive_margin + 1)
    (w,) = tri.process([worse])
    assert w["confidence"] == pytest.approx(0.85)
    # another entity is not affected
    (o,) = tri.process([brute(t=7 * 86400 + 300, attacker="192.0.2.50", conf=0.85)])
    assert o["confidence"] == pytest.approx(0.85)


def test_confirmation_raises_confidence_for_the_pattern(ctl: Controller) -> None:
    tri = make_triage(ctl)
    tri.process([brute(conf=0.7)])
    first = tri.istore.get_incident("INC-1")
    tri.feedback("INC-1", "confirmed", "alice")
    tri.resolve("INC-1", "alice")
    tri.process([brute(t=5000, conf=0.7)])
    second = tri.istore.get_incident("INC-2")
    assert first is not None and second is not None
    assert second.confidence == pytest.approx(0.8) and first.confidence == pytest.approx(0.7)
    assert second.risk > first.risk
    (fb,) = [r for r in second.reasons if r["factor"] == "feedback"]
    assert (
        fb["verdict"] == "confirmed"
        and fb["feedback"] == ["F-1"]
        and fb["boost"] == pytest.approx(0.1)
    )


def test_ids_continue_across_runs_on_one_state_dir(tmp_path: Path) -> None:
    clock = Clock()
    for expected in ("INC-1", "INC-2"):
        c = make_controller(tmp_path / "s", clock)
        try:
            tri = make_triage(c)
            n = int(expected[-1])
            (r,) = tri.process([scan(attacker=f"192.0.2.{n}", victim=f"10.0.0.{n}")])
            assert r["incident_id"] == expected
        finally:
            c.close()


def test_an_alert_that_breaks_triage_costs_only_itself(ctl: Controller, clock: Clock) -> None:
    """A plugin detector's alert whose evidence cannot be stored makes triage raise in the
    middle of a batch: the batch's transaction is rolled back, the incidents in memory are
    reloaded to agree with the store, and the alerts are placed again one at a time: the
    bad one is left out (counted, returned with an error), the others are kept."""
    tri = make_triage(ctl)
    bad = brute()
    bad.evidence["session"] = object()  # nothing JSON can hold
    batch = [scan(), bad, beacon()]
    clock.t = max(a.detected_at for a in batch)
    recs = tri.process(batch)
    assert tri.failed == 1
    assert [r.get("error") for r in recs] == [None, "triage failed", None]
    assert [r["kind"] for r in recs] == ["port_scan", "ssh_bruteforce", "c2_beaconing"]
    stored = tri.istore.alerts()
    assert [a["kind"] for a in stored] == ["port_scan", "c2_beaconing"]
    # memory and store agree: the same incidents, holding exactly the stored alerts
    for iid, inc in tri.engine.active.items():
        kept = tri.istore.get_incident(iid)
        assert kept is not None and kept.to_json() == inc.to_json()
    held = {e["alert_id"] for inc in tri.engine.active.values() for e in inc.alerts}
    assert held == {a["id"] for a in stored}
    assert ctl.audit.verify().ok
    # the next batch goes on from there: no alert id given twice
    clock.t += 60
    more = tri.process([scan(t=661.0)])
    assert more[0].get("error") is None
    ids = [a["id"] for a in tri.istore.alerts()]
    assert len(ids) == len(set(ids)) == 3


def test_feedback_reaches_the_detectors_and_what_they_learnt_is_audited(
    ctl: Controller, clock: Clock
) -> None:
    from controller.detect.detectors.anomaly import HostAnomalyDetector
    from controller.detect.stack import DetectionStack
    from controller.incidents.stage import TriagedDetection

    tri = make_triage(ctl, clock=clock)
    stack = DetectionStack([HostAnomalyDetector()])
    staged = TriagedDetection(stack, ctl, tri, clock=lambda: int(clock() * 1e9))
    backup = alert("traffic_anomaly", SERVER, [SERVER], 40.0, 0.5, 0.0,
                   {"volume_bytes": 6e7, "reference_p99_bytes": 1e6, "direction": "above"})  # fmt: skip
    rec = tri.process([backup], clock())[0]
    tri.feedback(rec["incident_id"], "false_positive", "alice", note="the nightly backup")
    tri.feedback(tri.process([scan(t=5.0)], clock())[0]["incident_id"], "false_positive", "bob")
    learnt = staged.sync_feedback()
    assert len(learnt) == 1 and learnt[0].startswith("host_anomaly: ") and SERVER in learnt[0]
    assert staged.sync_feedback() == []  # handed over once
    audited = [e for e in ctl.audit.entries() if e["event"] == "detector-feedback"]
    assert [(e["actor"], e["result"], e["detail"]["learnt"]) for e in audited] == [
        ("netwarden", "false_positive", learnt)
    ]
    assert ctl.audit.verify().ok
    # After a restart all feedback is handed over again: a detector that saved the vouch
    # learns nothing new (nothing audited), one that lost its state learns it again.
    kept = HostAnomalyDetector()
    kept.load_state(stack.detectors[0].state_dict())
    assert TriagedDetection(DetectionStack([kept]), ctl, tri).sync_feedback() == []
    assert (
        len(TriagedDetection(DetectionStack([HostAnomalyDetector()]), ctl, tri).sync_feedback())
        == 1
    )
