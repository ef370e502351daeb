"""Alerts and incidents in the Elastic Common Schema shape: spoofed sources carry no
``source``, MAC attackers go to ``source.mac``, ATT&CK ids to ``threat.technique.id``."""

from __future__ import annotations

import itertools

from controller.incidents.config import IncidentConfig
from controller.incidents.ecs import ECS_VERSION, alert_to_ecs, incident_to_ecs
from controller.incidents.engine import IncidentEngine
from tests.incidents.alerts import SERVER, alert, flood, scan


def test_alert_shapes() -> None:
    f = alert_to_ecs({**flood().to_json(), "id": "A-1", "incident_id": "INC-1"})
    assert (
        "source" not in f and f["destination"] == {"ip": SERVER} and f["related"]["ip"] == [SERVER]
    )
    assert f["event"]["dataset"] == "netwarden.alert" and f["event"]["severity"] == 95
    assert (
        f["event"]["category"] == ["network", "intrusion_detection"]
        and f["rule"]["category"] == "impact"
    )
    assert f["threat"] == {"framework": "MITRE ATT&CK", "technique": {"id": ["T1498.001"]}}
    assert f["@timestamp"] == "2023-11-14T22:13:20.000Z" and f["ecs"]["version"] == ECS_VERSION
    assert (
        f["netwarden"]["alert_id"] == "A-1"
        and f["netwarden"]["evidence"]["distinct_sources"] == 9000
    )
    arp = alert_to_ecs(
        alert("arp_spoofing", "02:00:00:00:66:66", ["10.0.0.1"], 90, 0.9, 0).to_json()
    )
    assert arp["source"] == {"mac": "02-00-00-00-66-66"} and arp["related"]["ip"] == ["10.0.0.1"]


def test_incident_shape() -> None:
    n = itertools.count(1)
    eng = IncidentEngine(IncidentConfig(), lambda: f"INC-{next(n)}")
    inc, _ = eng.ingest(scan(), "A-1")
    inc.summary = {"en": "text", "ja": "テキスト"}
    doc = incident_to_ecs(inc.to_json(), lang="ja")
    assert doc["event"]["dataset"] == "netwarden.incident" and doc["event"]["id"] == "INC-1"
    assert doc["event"]["start"] == "2023-11-14T22:13:20.000Z" and doc["event"]["end"] is None
    assert doc["message"] == "テキスト" and doc["tags"] == [inc.priority, "reconnaissance"]
    assert doc["netwarden"]["alert_ids"] == ["A-1"] and doc["event"]["risk_score"] == inc.risk
    assert doc["@timestamp"] == "2023-11-14T22:13:20.000Z"
