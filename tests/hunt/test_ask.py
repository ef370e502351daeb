"""``netwarden ask``: each supported form maps to the right hunt and window (and prints the
query it ran); anything else is refused with the list of forms and a non-zero exit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from netwarden.hunt import ask
from tests.hunt.conftest import json_lines, run_nw
from tests.hunt.traffic import PLANTED

NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC).timestamp()  # a Thursday
DAY = datetime(2026, 12, 3, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("question", "hunt", "arg", "since", "until"),
    [
        ("what did 10.0.0.5 do in the last hour?", "host", "10.0.0.5", NOW - 3600, None),
        ("What did 10.0.0.5 do in the last 3 days", "host", "10.0.0.5", NOW - 3 * 86400, None),
        ("who talked to 203.0.113.9 today", "peers", "203.0.113.9", DAY, None),
        ("top talkers yesterday", "talkers", None, DAY - 86400, DAY),
        ("why was 198.51.100.66 blocked", "blocked", "198.51.100.66", None, None),
        ("show beacons this week", "beacons", None, DAY - 3 * 86400, None),
        ("show me the scans in the past 12 hours", "scans", None, NOW - 12 * 3600, None),
        ("find dns tunnels last week", "dns", None, DAY - 10 * 86400, DAY - 3 * 86400),
        ("any beacons in the last week?", "beacons", None, NOW - 7 * 86400, None),
        ("show long connections", "long-connections", None, None, None),
        (
            "show rare destinations since 2026-12-01",
            "rare-destinations",
            None,
            DAY - 2 * 86400,
            None,
        ),
        (
            "what happened on 2001:db8::1 in the last 30 minutes",
            "host",
            "2001:db8::1",
            NOW - 1800,
            None,
        ),
    ],
)
def test_each_form_maps_to_its_hunt(
    question: str, hunt: str, arg: str | None, since: float | None, until: float | None
) -> None:
    q = ask.parse(question, NOW)
    assert (q.hunt, q.arg, q.window.since, q.window.until) == (hunt, arg, since, until)


@pytest.mark.parametrize(
    "question",
    [
        "how is the weather",
        "delete everything from 10.0.0.5",
        "",
        "what did do",
        "show beacons from mars",
        "top talkers in the last fortnight",
    ],
)
def test_other_questions_are_refused(question: str) -> None:
    with pytest.raises(ask.NotUnderstood):
        ask.parse(question, NOW)


def test_ask_runs_the_hunt_and_shows_its_query(crafted: Path) -> None:
    src, dst = PLANTED["beacon"]
    rc, out, err = run_nw("ask", "show beacons today", "--state-dir", str(crafted))
    assert rc == 0, err
    assert "-> hunt beacons" in out and "query:" in out and "FROM conns" in out
    assert src in out and dst in out
    assert max(len(line) for line in out.splitlines()) <= 80
    lines = json_lines("ask", f"who talked to {dst} today", "--state-dir", str(crafted))
    assert lines[0]["type"] == "question" and lines[0]["hunt"] == "peers"
    assert src in {x["peer"] for x in lines if x["type"] == "peer"}
    assert any(x["type"] == "query" for x in lines)
    # the same question through ``hunt`` gives the same rows
    direct = json_lines("hunt", "peers", dst, "--since", "1d", "--state-dir", str(crafted))
    assert [x for x in direct if x["type"] == "peer"] == [x for x in lines if x["type"] == "peer"]


def test_ask_refuses_with_the_forms(crafted: Path) -> None:
    rc, out, err = run_nw("ask", "make me a sandwich", "--state-dir", str(crafted))
    assert rc != 0 and not out
    assert "who talked to ADDR" in err and "top talkers" in err
    assert err.count("error:") == 1 and "Traceback" not in err
