"""Every list fits 80 columns when written to a file, cuts no address, and works on a
replay's state dir with no controller running (bans, approvals and audit included);
``--json`` is one object per line with a ``type``."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from netwarden.tables import print_table
from tests.demo_state import nw, replay_demo
from tests.jsonl import jsonl

V6 = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return replay_demo(tmp_path_factory.mktemp("tables_demo"))


def _words(text: str) -> set[str]:
    return set(re.split(r"[\s,;]+", text))


def test_a_table_too_wide_for_80_columns_becomes_blocks_that_cut_nothing() -> None:
    out = io.StringIO()
    cols = ["id", "pri", "risk", "status", "kinds", "source", "target", "alerts"]
    rows = [["INC-12", "P1", "99.6", "acknowledged", "port_scan, host_sweep", V6, f"{V6}, 192.0.2.0/24", "12"],
            ["INC-2", "P3", "40", "open", "port_scan", "192.0.2.7", "192.0.2.8", "1"]]  # fmt: skip
    print_table("2 incident(s)", cols, rows, stream=out)
    text = out.getvalue()
    assert max(len(x) for x in text.splitlines()) <= 80
    assert {V6, "192.0.2.0/24", "192.0.2.7", "INC-12", "acknowledged"} <= _words(text)
    assert "source 2001:db8" in text and "status acknowledged" in text
    narrow = io.StringIO()
    print_table("1 incident(s)", cols, rows[1:], stream=narrow)
    head = narrow.getvalue().splitlines()[1]
    assert head.split() == cols  # fits: a table with its header


def test_lists_of_a_replay_state_dir_fit_80_columns(demo: dict[str, Any]) -> None:
    st = ["--state-dir", str(demo["state"])]
    alerts = jsonl(nw("alerts", "--json", *st).stdout, "alert")
    addrs = {a["attacker"] for a in alerts if a["attacker"]} | {
        v for a in alerts for v in a["victims"]
    }
    for cmd in (
        ["incidents"],
        ["alerts"],
        ["audit", "--limit", "1000"],
        ["approvals"],
        ["bans"],
        ["top"],
    ):
        text = nw(*cmd, *st).stdout
        assert text and max(len(x) for x in text.splitlines()) <= 80, (cmd, text)
        if cmd[0] in ("alerts", "incidents"):
            assert addrs <= _words(text), (cmd, addrs - _words(text))
    audit = nw("audit", "--limit", "1000", *st).stdout
    assert "actor detector:port_scan" in audit or "detector:port_scan" in audit.split()


def test_bans_approvals_and_audit_read_a_replay_state_dir(demo: dict[str, Any]) -> None:
    st = ["--state-dir", str(demo["state"])]
    bans = jsonl(nw("bans", "--json", *st).stdout, "ban")
    incidents = jsonl(nw("incidents", "--json", *st).stdout, "incident")
    acted = [a for i in incidents for a in i["actions"] if a.get("verdict") == "act"]
    assert sorted(b["addr"] for b in bans) == sorted({a["target"] for a in acted}) != []
    assert {b["decision_id"] for b in bans} == {a["decision_id"] for a in acted}
    text = nw("bans", *st).stdout
    assert "DRY RUN: not enforced" in text and "dryrun.jsonl" in text
    audit = jsonl(nw("audit", "--json", "--limit", "1000", *st).stdout, "audit_entry")
    assert [e["seq"] for e in audit] == list(range(1, len(audit) + 1))
    assert {"incident-opened", "ban"} <= {e["event"] for e in audit}
    approvals = jsonl(nw("approvals", "--json", *st).stdout, "approval")
    assert all(a["status"] == "pending" for a in approvals)
    change = nw("ban", "192.0.2.1", *st, check=False)  # a change still needs the controller
    assert change.returncode == 1 and "no controller at" in change.stderr
