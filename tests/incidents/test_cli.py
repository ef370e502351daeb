"""The incident commands on the demo capture's replay state dir (no controller running)
and against a running controller: replay --state-dir, incidents, incident show, alerts,
export (ECS), explain INCIDENT|BAN|DECISION, feedback changing the next replay, ack and
resolve through the control socket."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.demo_state import REPO, SCANNER, demo_fixture, nw
from tests.integration.controller_proc import ControllerProcess
from tests.jsonl import jsonl, one

demo = demo_fixture("inc_demo")


def _scan_incident(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return next(x for x in lines if x["type"] == "incident" and SCANNER in x["attackers"])


def test_replay_state_dir_stores_alerts_incidents_and_dry_run_decisions(
    demo: dict[str, Any],
) -> None:
    lines = demo["lines"]
    types = [x["type"] for x in lines]
    assert (
        types[-1] == "summary"
        and "incident" in types
        and types.index("incident") > types.index("alert")
    )
    alerts = [x for x in lines if x["type"] == "alert"]
    assert all(a["id"].startswith("A-") and a["incident_id"].startswith("INC-") for a in alerts)
    inc = _scan_incident(lines)
    assert (
        "port_scan" in inc["kinds"]
        and inc["stages"][0] == "reconnaissance"
        and inc["priority"] == "P1"
    )
    assert inc["recommendation"]["action"] == "contain"
    (dec,) = [a for a in inc["actions"] if a["kind"] == "decision"]
    assert (dec["target"], dec["verdict"], dec["level"]) == (SCANNER, "act", 3)
    summary = lines[-1]
    assert summary["triage"]["backend"] == "dryrun" and dec["decision_id"] in json.dumps(
        summary["triage"]["decisions"]
    )
    # the human replay ends with incidents, their summaries and what would have been blocked
    human = nw(
        "replay",
        "--state-dir",
        str(demo["dir"] / "human"),
        "--config",
        str(demo["cfg"]),
        str(demo["pcap"]),
    )
    assert "Incidents (" in human.stdout and "P1 (critical) incident INC-1" in human.stdout
    assert (
        f"would have blocked {SCANNER}" in human.stdout
        and "Dry run (dryrun backend" in human.stdout
    )


def test_list_show_alerts_export_on_the_replay_state_dir(demo: dict[str, Any]) -> None:
    st = ["--state-dir", str(demo["state"])]
    incs = jsonl(nw("incidents", "--json", *st).stdout, "incident")
    inc = _scan_incident(demo["lines"])
    assert inc["id"] in [i["id"] for i in incs] and incs[0]["priority"] == "P1"
    assert all(i["text"] for i in incs)
    show = nw("incident", "show", inc["id"], *st).stdout
    assert inc["summary"]["en"] in show and "Timeline:" in show and "Audit trail:" in show
    assert f"block {SCANNER}" in show and "incident-opened" in show
    ja = nw("incident", "show", inc["id"], "--lang", "ja", *st).stdout
    assert "インシデント" in ja and "封じ込め" in ja
    scans = jsonl(nw("alerts", "--kind", "port_scan", "--json", *st).stdout, "alert")
    assert (
        scans and all(a["kind"] == "port_scan" for a in scans) and scans[0]["attacker"] == SCANNER
    )
    table = nw("incidents", "--open", *st).stdout
    assert inc["id"] in table and SCANNER in table
    ecs = [json.loads(x) for x in nw("export", *st).stdout.splitlines()]
    kinds = {d["event"]["dataset"] for d in ecs}
    assert kinds == {"netwarden.alert", "netwarden.incident"}
    a = next(
        d
        for d in ecs
        if d["event"]["dataset"] == "netwarden.alert" and d["event"]["action"] == "port_scan"
    )
    assert (
        a["source"]["ip"] == SCANNER
        and a["event"]["kind"] == "alert"
        and a["@timestamp"].endswith("Z")
    )
    assert a["threat"]["technique"]["id"] == ["T1046"] and a["ecs"]["version"]
    i = next(
        d
        for d in ecs
        if d["event"]["dataset"] == "netwarden.incident" and d["event"]["id"] == inc["id"]
    )
    assert (
        i["message"] == inc["summary"]["en"]
        and i["tags"][0] == "P1"
        and SCANNER in i["related"]["ip"]
    )
    bad = nw("incident", "show", "INC-999", *st, check=False)
    assert (
        bad.returncode == 1
        and bad.stderr.strip() == "netwarden incident: error: no incident INC-999"
    )


#: ASCII words a Japanese summary may keep: protocol and standard names, id prefixes
JA_ASCII = {"INC", "P", "UTC", "d", "A", "S", "F", "SYN", "DNS", "NULL", "TXT", "SSH", "FTP", "ICMP", "UDP",
            "TCP", "ARP", "MAC", "IP", "RITA", "RFC", "C", "TLS", "HTTP", "HTTPS", "MITRE", "ATT", "CK"}  # fmt: skip


def test_japanese_summaries_and_show_are_japanese(demo: dict[str, Any]) -> None:
    st = ["--state-dir", str(demo["state"]), "--lang", "ja"]
    incs = jsonl(nw("incidents", "--json", *st).stdout, "incident")
    assert incs
    for inc in incs:
        # what is left once addresses, numbers and ids are taken out must be Japanese
        text = re.sub(r"[0-9a-fA-F:.]*[0-9][0-9a-fA-F:./-]*", " ", inc["text"])
        words = set(re.findall(r"[A-Za-z]+", text))
        assert words <= JA_ASCII, (inc["id"], words - JA_ASCII, inc["text"])
    show = nw("incident", "show", incs[0]["id"], *st).stdout
    assert "経過：" in show and "推奨対応：" in show and "監査ログ：" in show
    assert "Timeline:" not in show and "Recommendation:" not in show


def test_explain_incident_ban_and_decision(demo: dict[str, Any]) -> None:
    st = ["--state-dir", str(demo["state"]), "--config", str(demo["cfg"])]
    inc = _scan_incident(demo["lines"])
    (dec,) = [a for a in inc["actions"] if a["kind"] == "decision"]
    text = nw("explain", inc["id"], *st).stdout
    assert "Why it was flagged:" in text and "port_scan" in text and "distinct dst ports" in text
    assert (
        "contain: risk" in text
        and "autonomy for port_scan: level 3 (policy.detectors.port_scan, as decided)" in text
    )
    # the level in force when policy decided, not the configuration given to explain now
    bare = nw("explain", inc["id"], "--state-dir", str(demo["state"])).stdout
    assert "autonomy for port_scan: level 3 (policy.detectors.port_scan, as decided)" in bare
    assert f"allow-listing {SCANNER}" in text
    ban = one(nw("explain", SCANNER, "--json", *st).stdout, "explanation")
    assert (
        ban["what"] == "ban"
        and dec["decision_id"] in ban["subject"]
        and ban["incident"]["subject"] == inc["id"]
    )
    d = one(nw("explain", dec["decision_id"], "--json", *st).stdout, "explanation")
    assert d["what"] == "decision" and d["evidence"] == inc["id"]
    assert any(e["event"] == "ban" and e["result"] == "ok" for e in d["audit"])
    assert (
        nw("explain", "203.0.113.99", *st, check=False)
        .stderr.strip()
        .endswith("is not banned and was never banned")
    )


def test_feedback_changes_how_the_next_replay_scores(demo: dict[str, Any], tmp_path: Path) -> None:
    state = tmp_path / "fb"
    args = ["--state-dir", str(state), "--config", str(demo["cfg"])]

    def replay() -> list[dict[str, Any]]:
        out = nw("replay", "--json", *args, str(demo["pcap"])).stdout
        return [json.loads(x) for x in out.splitlines()]

    first = replay()
    incs = [x for x in first if x["type"] == "incident"]
    unsure = min(incs, key=lambda i: i["confidence"])
    assert unsure["confidence"] < 0.99
    out = nw("feedback", unsure["id"], "--confirmed", "--note", "seen before", *args).stdout
    assert out.startswith(f"feedback F-1 on {unsure['id']}: confirmed")
    nw("resolve", unsure["id"], *args)
    second = replay()
    again = next(x for x in second if x["type"] == "incident" and x["kinds"] == unsure["kinds"]
                 and x["attackers"] == unsure["attackers"])  # fmt: skip
    assert again["id"] != unsure["id"] and again["confidence"] > unsure["confidence"]
    assert again["risk"] > unsure["risk"]
    assert any(r["factor"] == "feedback" and r["verdict"] == "confirmed" for r in again["reasons"])
    # a false positive on the scan suppresses the scanner's scan alerts in the next replay
    scan = next(x for x in second if x["type"] == "incident" and SCANNER in x["attackers"])
    fp = nw("feedback", scan["id"], "--false-positive", "--note", "authorised scan", *args).stdout
    assert "suppression S-" in fp and f"from {SCANNER}" in fp
    third = replay()
    assert not any(x["type"] == "alert" and x["attacker"] == SCANNER for x in third)
    assert not any(x["type"] == "incident" and SCANNER in x["attackers"] for x in third)
    assert third[-1]["triage"]["suppressed_alerts"] >= 1
    mirror = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines()]
    fbs = [e for e in mirror if e["event"] == "feedback"]
    assert [e["result"] for e in fbs][:1] == ["confirmed"] and fbs[-1]["result"] == "false_positive"
    assert fbs[-1]["detail"]["note"] == "authorised scan"


def test_a_false_positive_lowers_the_next_replays_score_after_its_suppression(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    cfg = tmp_path / "short.toml"
    cfg.write_text(demo["cfg"].read_text() + "\n[feedback]\nsuppress_s = 1\n")
    args = ["--state-dir", str(tmp_path / "fp"), "--config", str(cfg)]

    def scan_incident() -> dict[str, Any]:
        out = nw("replay", "--json", *args, str(demo["pcap"])).stdout
        return _scan_incident([json.loads(x) for x in out.splitlines()])

    first = scan_incident()
    nw("feedback", first["id"], "--false-positive", "--note", "lab scanner", *args)
    time.sleep(1.5)  # the suppression (wall time) expires; the learnt level stays
    again = scan_incident()
    assert again["id"] != first["id"]
    assert again["confidence"] < first["confidence"] and again["risk"] < first["risk"]
    fb = [r for r in again["reasons"] if r["factor"] == "feedback"]
    assert fb and all(r["verdict"] == "false_positive" for r in fb)
    before = {a["kind"]: a["confidence"] for a in first["alerts"]}
    assert all(a["confidence"] < before[a["kind"]] for a in again["alerts"])


def test_changes_go_through_a_running_controller(demo: dict[str, Any], tmp_path: Path) -> None:
    state = tmp_path / "live"
    nw("replay", "--state-dir", str(state), "--config", str(demo["cfg"]), str(demo["pcap"]))
    ctl = ControllerProcess(state, demo["cfg"], "--enforce", "dryrun")
    try:
        st = ["--state-dir", str(state)]
        iid = jsonl(nw("incidents", "--json", *st).stdout)[0]["id"]
        # the controller's clock is wall time: the capture's incidents are long inactive, so
        # its periodic tick closes them (network time moved on)
        deadline = time.monotonic() + 20
        while one(nw("incident", "show", iid, "--json", *st).stdout)["status"] != "closed":
            assert time.monotonic() < deadline, (
                "the running controller did not close the stale incident"
            )
            time.sleep(0.5)
        refused = nw(
            "ack", iid, *st, check=False
        )  # through the control socket: the controller holds the lock
        assert (
            refused.returncode == 1
            and "is closed; only open incidents can be acknowledged" in refused.stderr
        )
        out = nw("resolve", iid, *st)
        assert out.stdout.strip().startswith(f"incident {iid} resolved by ")
        shown = one(nw("incident", "show", iid, "--json", *st).stdout, "incident")
        assert shown["status"] == "resolved"
        assert [e["event"] for e in shown["audit"]][-2:] == ["incident-closed", "incident-resolve"]
        inc = shown
        fb = nw("feedback", inc["id"], "--false-positive", "--state-dir", str(state))
        assert "suppression S-1" in fb.stdout
        text = nw(
            "explain", inc["id"], "--state-dir", str(state), "--config", str(demo["cfg"])
        ).stdout
        assert "Why it was flagged:" in text
    finally:
        assert ctl.stop() == 0


def test_demo_config_shows_what_would_have_been_blocked_and_escalated(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    """What `make demo` prints at its end (same command, same config)."""
    out = nw("replay", str(demo["pcap"]), "--state-dir", str(tmp_path / "d"), "--config",
             str(REPO / "pcaps" / "demo.toml")).stdout  # fmt: skip
    tail = out[out.index("Incidents (") :]
    assert (
        "P1 (critical) incident INC-1: port scan" in tail
        and "Next: contain: block 192.168.10.66" in tail
    )
    assert (
        f"would have asked approval to block {SCANNER} for INC-1: risky action needs approval: internal host"
        in tail
    )
    assert re.search(r"would have escalated INC-\d+ \(low_confidence\) via webhook", tail)
    assert re.search(
        r"would have escalated d-[0-9a-f]{12} \(approval_unhandled\) via webhook", tail
    )


def test_a_running_controller_fed_by_a_sensor_stores_incidents(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    state = tmp_path / "fed"
    ctl = ControllerProcess(
        state, demo["cfg"], "--enforce", "dryrun", "--listen", endpoint, "--no-archive"
    )
    try:
        sensor = subprocess.run([sys.executable, "-m", "netwarden", "sensor", "--pcap", str(demo["pcap"]), "--connect",
                                 endpoint, "--sensor-id", "s-inc", "--batch", "64"],
                                check=False, capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
        assert sensor.returncode == 0, sensor.stderr
        st = ["--state-dir", str(state)]
        deadline = time.monotonic() + 30
        incs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            incs = jsonl(nw("incidents", "--json", *st).stdout, "incident")
            if any(SCANNER in i["attackers"] for i in incs):
                break
            time.sleep(0.5)
        inc = next(i for i in incs if SCANNER in i["attackers"])
        assert (
            "port_scan" in inc["kinds"]
            and inc["status"] == "open"
            and inc["text"].startswith(inc["priority"])
        )
        (dec,) = [a for a in inc["actions"] if a["kind"] == "decision"]
        assert (
            dec["target"] == SCANNER and dec["verdict"] == "act"
        )  # level 3, outside the internal networks
        alerts = jsonl(nw("alerts", "--kind", "port_scan", "--json", *st).stdout, "alert")
        assert alerts[0]["incident_id"] == inc["id"]
        from controller.ops.server import request

        recent = request(state, "alerts")["result"]["recent"]
        assert any(r.get("incident_id") == inc["id"] and r["decision"] for r in recent)
    finally:
        assert ctl.stop() == 0
