"""``ask "why was ADDR blocked"`` on the demo replay, whose policy bans the outside scanner
(dry run): the ban, the decisions behind it and the alerts naming it, from the state db."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.demo_state import generate, replay_demo
from tests.hunt.conftest import json_lines

SCANNER_IP = generate.SCANNER[1]  # the demo config lets policy act on it


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return replay_demo(tmp_path_factory.mktemp("hunt_demo"))


def test_why_was_the_scanner_blocked(demo: dict[str, Any]) -> None:
    state: Path = demo["state"]
    lines = json_lines("ask", f"why was {SCANNER_IP} blocked", "--state-dir", str(state))
    assert lines[0]["hunt"] == "blocked"
    with sqlite3.connect(state / "netwarden.db") as db:
        reason = db.execute("SELECT reason FROM bans WHERE addr = ?", (SCANNER_IP,)).fetchone()
        alerts = {r[0] for r in db.execute("SELECT id FROM alerts WHERE attacker = ?",
                                            (SCANNER_IP,))}  # fmt: skip
    bans = [x for x in lines if x["type"] == "ban"]
    assert reason and any(b["what"] == "ban" and b["reason"] == reason[0] for b in bans)
    assert any(b["what"] == "decision" for b in bans)
    assert {x["id"] for x in lines if x["type"] == "alert"} == alerts and alerts
    other = json_lines("hunt", "blocked", "198.51.100.200", "--state-dir", str(state))
    assert not [x for x in other if x["type"] in ("ban", "alert")]
