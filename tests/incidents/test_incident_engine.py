"""Incidents from alerts: grouping by attacker or victim in time, de-duplication,
progression on one host as one story, priority with reasons, closing on inactivity."""

from __future__ import annotations

import ipaddress
import itertools
import json

import pytest

from controller.incidents.config import CriticalGroup, IncidentConfig, from_dict
from controller.incidents.engine import CLOSED, MERGED, IncidentEngine
from controller.incidents.kinds import stage_of
from netwarden.errors import ConfigError
from tests.incidents.alerts import ATTACKER, C2, SERVER, alert, beacon, brute, flood, scan


def _engine(cfg: IncidentConfig | None = None) -> IncidentEngine:
    n = itertools.count(1)
    return IncidentEngine(cfg or IncidentConfig(), lambda: f"INC-{next(n)}")


def _feed(eng: IncidentEngine, alerts: list) -> list:
    out = []
    for i, a in enumerate(alerts, 1):
        inc, _ = eng.ingest(a, f"A-{i}")
        out.append(inc)
    return out


def test_stages_per_kind() -> None:
    assert [stage_of(k) for k in ("port_scan", "host_sweep", "os_fingerprint")] == [
        "reconnaissance"
    ] * 3
    assert stage_of("ssh_bruteforce") == stage_of("http-auth_bruteforce") == "initial_access"
    assert stage_of("c2_beaconing") == stage_of("dns_tunneling") == "command_and_control"
    assert stage_of("data_exfiltration") == stage_of("dns_exfiltration") == "exfiltration"
    for k in (
        "syn_flood",
        "udp_amplification",
        "dns_amplification",
        "tcp_reflection",
        "icmp_flood",
    ):
        assert stage_of(k) == "impact"
    assert stage_of("arp_spoofing") == "interception"
    assert {stage_of(k) for k in ("ip_conflict", "address_misconfig", "traffic_anomaly")} == {
        "operations"
    }


def test_scan_bruteforce_beaconing_is_one_story_with_raised_priority() -> None:
    alone = _engine()
    (only_scan,) = _feed(alone, [scan()])
    eng = _engine()
    a, b, c = _feed(eng, [scan(), brute(), beacon()])
    assert a is b is c and c.id == "INC-1" and len(eng.active) == 1
    assert c.kinds == ["port_scan", "ssh_bruteforce", "c2_beaconing"]
    assert c.stages == ["reconnaissance", "initial_access", "command_and_control"]
    assert c.attackers == [SERVER, ATTACKER] and C2 in c.victims
    assert c.progression == {"host": SERVER, "stages": ["reconnaissance", "initial_access", "command_and_control"],
                             "steps": 2, "points": 20.0}  # fmt: skip
    assert c.risk > only_scan.risk + 20 and c.priority in ("P1", "P2")
    factors = [r["factor"] for r in c.reasons]
    assert factors == ["score", "confidence", "progression", "priority"]
    assert c.reasons[0] == {
        "factor": "score",
        "kind": "ssh_bruteforce",
        "score": 75.0,
        "alert_id": "A-2",
    }
    # confidence combines the three kinds as independent witnesses: 1 - 0.2*0.15*0.2 = 0.994, capped
    assert c.confidence == 0.99
    assert c.reasons[1]["kinds"] == 3 and c.reasons[1]["weight"] == pytest.approx(0.6 + 0.4 * 0.99)
    assert c.risk == pytest.approx(round(75 * (0.6 + 0.4 * 0.99) + 20, 1))


def test_unrelated_hosts_and_late_alerts_open_new_incidents() -> None:
    eng = _engine(IncidentConfig(group_window_s=300))
    i1, i2, i3 = _feed(
        eng, [scan(0), scan(10, attacker="198.18.0.9", victim="10.0.0.77"), scan(1000)]
    )
    assert (i1.id, i2.id, i3.id) == ("INC-1", "INC-2", "INC-3")


def test_repeats_are_counted_not_added() -> None:
    eng = _engine()
    incs = _feed(eng, [scan(0, score=60), scan(30, score=80), scan(90, score=70)])
    inc = incs[-1]
    assert len(inc.alerts) == 1 and inc.alert_count == 3
    kept = inc.alerts[0]
    assert kept["count"] == 3 and kept["score"] == 80.0 and kept["alert_id"] == "A-1"
    assert kept["last_detected_at"] == pytest.approx(scan(90).detected_at)


def test_a_wide_scan_does_not_glue_its_victims_together() -> None:
    eng = _engine()
    sweep = alert("port_scan", ATTACKER, [f"10.0.0.{i}" for i in range(1, 6)], 80, 0.9, 0)
    other = brute(20, attacker="192.0.2.44", victim="10.0.0.3")
    i1, i2 = _feed(eng, [sweep, other])
    assert i1.id != i2.id  # the scan's five victims are not focus entities


def test_victim_centric_flood_groups_on_the_victim_and_names_no_attacker() -> None:
    eng = _engine()
    i1, i2 = _feed(eng, [flood(0), alert("tcp_reflection", None, [SERVER], 80, 0.9, 20)])
    assert i1 is i2 and i1.attackers == [] and i1.victims == [SERVER]


def test_an_alert_bridging_two_incidents_merges_them_into_the_oldest() -> None:
    eng = _engine()
    i1, i2 = _feed(eng, [scan(0, victim="10.0.0.9"), brute(5, attacker="192.0.2.7", victim=SERVER)])
    assert i1.id != i2.id
    (i3,) = _feed(eng, [brute(20, attacker=ATTACKER, victim=SERVER)])
    assert i3.id == "INC-1" and i2.status == MERGED and i2.merged_into == "INC-1"
    assert set(eng.active) == {"INC-1"} and i3.alert_count == 3


def test_criticality_from_config_raises_priority_with_a_reason() -> None:
    base = _engine()
    (plain,) = _feed(base, [brute()])
    cfg = IncidentConfig(
        asset_groups=(CriticalGroup("servers", (ipaddress.ip_network("10.0.0.0/28"),), "critical"),)
    )
    (crit,) = _feed(_engine(cfg), [brute()])
    assert crit.risk == pytest.approx(plain.risk + 20)
    assert {"factor": "criticality", "host": SERVER, "group": "servers", "criticality": "critical",
            "points": 20.0} in crit.reasons  # fmt: skip


def test_closes_on_inactivity_in_network_time() -> None:
    eng = _engine(IncidentConfig(close_after_s=600))
    (inc,) = _feed(eng, [scan(0)])
    assert eng.tick(scan(0).detected_at + 599) == []
    (closed,) = eng.tick(scan(0).detected_at + 600)
    assert (
        closed is inc
        and inc.status == CLOSED
        and inc.closed_at == pytest.approx(scan(0).detected_at + 600)
    )
    assert eng.active == {}


def test_deterministic() -> None:
    runs = []
    for _ in range(2):
        eng = _engine()
        _feed(eng, [scan(), brute(), beacon(), flood(30, victim="10.0.0.200")])
        runs.append(json.dumps([i.to_json() for i in eng.active.values()], sort_keys=True))
    assert runs[0] == runs[1]


def test_config_from_toml_sections_names_bad_keys() -> None:
    cfg = from_dict({
        "policy": {"asset_groups": [{"name": "dmz", "networks": ["192.0.2.0/24"], "level": 2}]},
        "incidents": {"close_after_s": 120, "asset_groups": [{"name": "dmz", "criticality": "high"}]},
        "copilot": {"contain_risk": 90, "lang": "ja"},
    })  # fmt: skip
    assert (
        cfg.incidents.close_after_s == 120
        and cfg.copilot.contain_risk == 90
        and cfg.copilot.lang == "ja"
    )
    assert cfg.incidents.asset_groups[0].networks == (ipaddress.ip_network("192.0.2.0/24"),)
    with pytest.raises(ConfigError, match="incidents.bogus"):
        from_dict({"incidents": {"bogus": 1}})
    with pytest.raises(ConfigError, match="criticality"):
        from_dict(
            {"incidents": {"asset_groups": [{"name": "x", "networks": [], "criticality": "huge"}]}}
        )


def test_a_long_running_incident_stays_bounded() -> None:
    from controller.incidents.engine import MAX_ENTRIES

    eng = _engine()
    many = [scan(i, victim=f"10.1.{i // 250}.{i % 250}") for i in range(MAX_ENTRIES + 50)]
    inc = _feed(eng, [*many, brute(400)])[-1]
    assert len(inc.alerts) == MAX_ENTRIES + 1 and inc.alert_count == MAX_ENTRIES + 51
    assert (
        "ssh_bruteforce" in inc.kinds and len(inc.victims) == MAX_ENTRIES + 51
    )  # the scans' and SERVER
