"""``netwarden posture`` on the crafted traffic: the planted telnet login, the SSH server
answering outside, the service that appeared after the baseline and the rare outbound
service are each found with evidence and a fix; benign traffic is not."""

from __future__ import annotations

from pathlib import Path

from tests.hunt.conftest import json_lines, run_nw
from tests.hunt.traffic import PLANTED, WEB


def test_posture_findings_evidence_and_score(crafted: Path) -> None:
    lines = json_lines("posture", "--state-dir", str(crafted))
    found = [x for x in lines if x["type"] == "posture_finding"]
    by = {(f["kind"], f["host"], f["port"]) for f in found}
    client, server, port = PLANTED["telnet"]
    assert ("cleartext_auth", server, port) in by
    telnet = next(f for f in found if f["kind"] == "cleartext_auth" and f["host"] == server)
    assert telnet["severity"] == "high" and telnet["protocol"] == "telnet"
    outside, server, port = PLANTED["exposed"]
    exposed = [f for f in found if f["kind"] == "exposed_service"]
    assert [(f["host"], f["port"]) for f in exposed] == [(server, port)]
    assert outside in exposed[0]["evidence"] and exposed[0]["fix"]
    _client, server, port = PLANTED["new_listener"]
    assert {(f["host"], f["port"]) for f in found if f["kind"] == "new_listener"} == {
        (server, port)
    }
    client, dst, port = PLANTED["rare_service"]
    rare = {(f["host"], f["dst"], f["port"]) for f in found if f["kind"] == "rare_external_service"}
    assert (client, dst, port) in rare
    assert not {d for _h, d, _p in rare} & set(WEB)  # everyone's web servers are not rare
    assert all(f["evidence"] and f["fix"] for f in found)
    summary = next(x for x in lines if x["type"] == "posture")
    assert summary["findings"] == len(found) and 0 <= summary["score"] < 100
    over_time = [x for x in lines if x["type"] == "posture_score"]
    assert len(over_time) >= 6 and min(x["score"] for x in over_time) < 100


def test_posture_before_the_telnet_login_has_no_telnet_finding(crafted: Path) -> None:
    lines = json_lines("posture", "--since", "2h", "--state-dir", str(crafted))
    kinds = {(x["kind"], x.get("port")) for x in lines if x["type"] == "posture_finding"}
    assert ("cleartext_auth", PLANTED["telnet"][2]) not in kinds
    rc, out, err = run_nw("posture", "--state-dir", str(crafted))
    assert rc == 0 and max(len(line) for line in out.splitlines()) <= 80, err
