"""The copilot: every number in a summary comes from the incident's evidence (English and
Japanese), the catalogues agree, recommendations follow the configured thresholds, and
explanations say what would have changed the decision."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.app import Controller
from controller.config import PolicyConfig
from controller.copilot.explain import explain_audit_decision, explain_incident, render
from controller.copilot.locales import en, ja
from controller.copilot.recommend import recommend
from controller.copilot.summary import summarize
from controller.incidents.config import CopilotConfig, TriageConfig
from controller.incidents.engine import Incident
from tests.incidents.alerts import ATTACKER, SERVER, alert, beacon, brute, flood, scan
from tests.incidents.helpers import Clock, make_triage

IP = r"\b(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?\b"
MAC = r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b"
STAMP = r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\b"
IDS = r"\b(?:INC|A|F|S|E)-\d+\b|\bd-[0-9a-f]{12}\b"
NUMBER = r"(?<![A-Za-z0-9_.])\d+(?:\.\d+)?(?![A-Za-z0-9_])"


def _walk(v: Any, nums: list[float], strs: list[str]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            if k != "summary":  # the text under test is not its own evidence
                _walk(x, nums, strs)
    elif isinstance(v, list):
        for x in v:
            _walk(x, nums, strs)
    elif isinstance(v, bool) or v is None:
        return
    elif isinstance(v, int | float):
        nums.append(abs(float(v)))
    elif isinstance(v, str):
        strs.append(v)
        nums.extend(float(n) for n in re.findall(NUMBER, v))  # numbers inside evidence strings


def assert_numbers_from_evidence(text: str, record: dict[str, Any]) -> int:
    """Each number in ``text`` equals a number of ``record`` at the text's precision;
    addresses, times and ids in it appear in the record. Returns how many were checked."""
    nums: list[float] = []
    strs: list[str] = []
    _walk(record, nums, strs)
    blob = " ".join(strs)
    times = {  # numbers in the range of epoch seconds (2001 to 2286); bigger ones are counts
        datetime.fromtimestamp(n, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        for n in nums
        if 1e9 < n < 1e10
    }
    checked = 0
    for stamp in re.findall(STAMP, text):
        assert stamp in times, f"time {stamp} not in the evidence"
        checked += 1
    rest = re.sub(STAMP, " ", text)
    for pattern in (IP, MAC, IDS):
        for token in re.findall(pattern, rest):
            assert token in blob, f"{token} not in the evidence"
            checked += 1
        rest = re.sub(pattern, " ", rest)
    for token in re.findall(NUMBER, rest):
        decimals = len(token.split(".")[1]) if "." in token else 0
        assert any(f"{n:.{decimals}f}" == token for n in nums), (
            f"number {token} not in the evidence: {text}"
        )
        checked += 1
    return checked


def _incidents(ctl: Controller, clock: Clock) -> list[Incident]:
    tri = make_triage(ctl, TriageConfig(), clock)
    for a in (scan(), brute(), beacon(), flood(30, victim="10.0.0.200"),
              alert("dns_tunneling", "10.0.0.31", ["192.0.2.53"], 55, 0.5, 40,
                    {"long_labels": 37, "entropy_bits": 4.21, "benign_known_resolver": 1,
                     "learnt_reference": "labels under 24 chars or entropy under 3.2 bits/char"}),
              alert("port_scan", "192.0.2.77", [f"10.0.5.{i}" for i in range(1, 6)], 90, 0.95, 45),
              *[brute(100 + i, attacker=f"192.0.2.{10 + i}", victim="10.0.0.44", score=95, conf=0.95)
                for i in range(4)]):  # fmt: skip
        clock.t = a.detected_at
        tri.process([a])
    tri.acknowledge("INC-3", "alice")
    clock.t = beacon().detected_at + 3600  # an hour without alerts: everything closes
    tri.tick(clock.t)
    return tri.istore.incidents()


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_every_number_in_a_summary_comes_from_the_evidence(
    ctl: Controller, clock: Clock, lang: str
) -> None:
    incs = _incidents(ctl, clock)
    actions = {(i.recommendation or {}).get("action") for i in incs}
    assert {"contain", "monitor"} <= actions
    total = 0
    for inc in incs:
        text = inc.summary[lang]
        assert text == summarize(inc, lang)  # stored text is the deterministic rendering
        total += assert_numbers_from_evidence(text, inc.to_json())
    assert total > 40
    wide = next(i for i in incs if "192.0.2.77" in i.attackers)
    assert (
        "10.0.5.1, 10.0.5.2, 10.0.5.3 (5 in total)" in wide.summary["en"]
        and "（計 5 件）" in wide.summary["ja"]
    )
    crowd = next(i for i in incs if "10.0.0.44" in i.victims)
    assert (
        crowd.to_json()["decision_count"] == 4
        and "4 policy decisions in all" in crowd.summary["en"]
    )
    assert (
        "(4 in total)" in crowd.summary["en"]
    )  # the four sources, and the four blocks recommended
    # the check itself catches an invented figure, address or time
    rec = incs[0].to_json()
    for bad in (" 12345 hosts.", " 10.9.8.7 too.", " at 2001-01-01 00:00:00 UTC."):
        with pytest.raises(AssertionError):
            assert_numbers_from_evidence(incs[0].summary[lang] + bad, rec)


def test_summary_says_what_who_since_how_sure_done_next(ctl: Controller, clock: Clock) -> None:
    inc = next(i for i in _incidents(ctl, clock) if i.id == "INC-1")
    text = inc.summary["en"]
    for part in ("P1 (critical) incident INC-1: port scan, then SSH brute force, then command-and-control beaconing",
                 f"Source: {SERVER}, {ATTACKER}.", "First evidence 2023-11-14 22:13:20 UTC",
                 "One story on 10.0.0.5: reconnaissance -> initial access -> command and control.",
                 "failed logins 240 against a learnt reference of 0.5 (threshold 30)",
                 "progression on 10.0.0.5, +20 points", f"Policy decided to act on {ATTACKER} (drop for 600 s",
                 "Next: contain: block 203.0.113.5", "Closed at"):  # fmt: skip
        assert part in text, (part, text)
    ja_text = inc.summary["ja"]
    for part in ("P1（緊急）インシデント INC-1", "ポートスキャン、続いてSSH へのブルートフォース", "偵察 → 初期侵入 → C&C 通信",
                 "次の対応：封じ込め：203.0.113.5 を遮断", "無活動のためクローズ"):  # fmt: skip
        assert part in ja_text, (part, ja_text)
    assert summarize(inc, "en") == summarize(
        Incident.from_json(inc.to_json()), "en"
    )  # deterministic


def test_monitor_lists_the_benign_indicators(ctl: Controller, clock: Clock) -> None:
    tun = next(i for i in _incidents(ctl, clock) if "dns_tunneling" in i.kinds)
    rec = tun.recommendation
    assert rec is not None and rec["action"] == "monitor"
    assert {"indicator": "detector", "name": "known_resolver", "value": 1} in rec["benign"]
    assert {"indicator": "confidence", "confidence": 0.5} in rec["benign"]
    assert (
        "indicators that lowered the score: confidence only 0.5, a single alert"
        in tun.summary["en"]
    )
    assert "known resolver 1" in tun.summary["en"]


def test_thresholds_are_configurable_and_investigate_has_hunting_commands(
    ctl: Controller, clock: Clock
) -> None:
    inc = next(i for i in _incidents(ctl, clock) if i.id == "INC-1")
    strict = recommend(
        inc, CopilotConfig(contain_risk=99.9, contain_confidence=0.85, investigate_risk=60)
    )
    assert strict["action"] == "investigate" and strict["rule"]["contain_risk"] == 99.9
    cmds = strict["commands"]
    assert (
        "netwarden incident show INC-1" in cmds
        and "netwarden alerts --kind ssh_bruteforce --json" in cmds
    )
    assert f"tcpdump -nn -i any 'host {SERVER} and host {ATTACKER}'" in cmds
    assert any(c.startswith("netwarden hunt incident ") for c in cmds)
    lax = recommend(
        inc, CopilotConfig(contain_risk=100, contain_confidence=0.85, investigate_risk=99.95)
    )
    assert lax["action"] == "monitor"
    unsure = recommend(inc, CopilotConfig(contain_confidence=0.999))
    assert unsure["action"] == "investigate"


def test_catalogues_have_the_same_keys_and_fields() -> None:
    assert set(en.MESSAGES) == set(ja.MESSAGES)

    def fields(s: str) -> list[str]:
        return sorted(f[1] for f in string.Formatter().parse(s) if f[1])

    assert {k: fields(v) for k, v in en.MESSAGES.items()} == {
        k: fields(v) for k, v in ja.MESSAGES.items()
    }


def test_explain_incident_and_decision(ctl: Controller, clock: Clock) -> None:
    inc = next(i for i in _incidents(ctl, clock) if i.id == "INC-1")
    policy: PolicyConfig = ctl.cfg.policy
    ex = explain_incident(inc, policy, CopilotConfig(), ctl.audit.entries())
    assert any("ssh_bruteforce" in f and "failed logins 240" in f for f in ex["flagged"])
    assert (
        ex["action"][0].startswith("contain: risk ")
        and "> 85 and confidence 0.99 >= 0.85" in ex["action"][0]
    )
    act = next(d for d in inc.actions if d.get("target") == ATTACKER)
    assert any(f"allow-listing {ATTACKER}" in w for w in ex["would_change"])
    assert any(e["event"] == "incident-opened" for e in ex["audit"])
    dec = explain_audit_decision(act["decision_id"], ctl.audit.entries(), policy)
    assert dec is not None and dec["evidence"] == "INC-1"
    assert any(
        "autonomy for ssh_bruteforce: level 3 (policy.detectors.ssh_bruteforce, as decided)" in w
        for w in dec["action"]
    )
    pend = next(d for d in inc.actions if d.get("target") == SERVER)
    dp = explain_audit_decision(pend["decision_id"], ctl.audit.entries(), policy)
    assert dp is not None and any("internal host" in w for w in dp["action"])
    assert any(
        "without those risks (internal host) at level 3 it would have acted" in w
        for w in dp["would_change"]
    )
    text = render(ex)
    assert "Why it was flagged:" in text and "What would have changed the decision:" in text
