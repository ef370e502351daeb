"""Escalation of low-confidence incidents and unhandled approvals through a webhook (a
local HTTP server on 127.0.0.1), syslog RFC 5424 (a local UDP socket) and a command hook;
each escalated once, recorded and audited; dry run sends nothing."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from controller.app import Controller
from controller.incidents.config import EscalationConfig, TriageConfig
from controller.incidents.escalate import Escalator, rfc5424
from tests.incidents.alerts import SERVER, brute, scan
from tests.incidents.helpers import Clock, make_triage


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.got.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_a: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Any:
    _Hook.got = []
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", _Hook.got
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def syslog_sock() -> Any:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


def test_low_confidence_incident_and_unhandled_approval_escalate_on_every_channel(
    ctl: Controller, clock: Clock, webhook: Any, syslog_sock: socket.socket, tmp_path: Path
) -> None:
    url, posted = webhook
    out = tmp_path / "hook.json"
    script = tmp_path / "hook.py"
    script.write_text(f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    cfg = EscalationConfig(low_confidence=0.6, incident_after_s=300, approval_after_s=120, webhook=url,
                           syslog=f"127.0.0.1:{syslog_sock.getsockname()[1]}",
                           command=(sys.executable, str(script)))  # fmt: skip
    tri = make_triage(ctl, TriageConfig(escalation=cfg), clock, Escalator(cfg))
    tri.process([scan(0, score=50, conf=0.4)])  # unsure: INC-1
    # a brute force on an internal victim by an internal host: containment needs approval
    clock.t = brute().detected_at
    tri.process([scan(50, attacker="10.0.0.66", victim="10.0.0.9", score=100, conf=0.95),
                 brute(60, attacker="10.0.0.66", victim="10.0.0.9", score=95, conf=0.95)])  # fmt: skip
    (approval,) = ctl.store.approvals("pending")
    assert tri.escalator.check(tri, scan(0).detected_at + 100) == []  # nothing due yet
    due = tri.escalator.check(tri, scan(0).detected_at + 301)
    assert [(d["reason"], d["subject"]) for d in due] == [("low_confidence", "INC-1"),
                                                          ("approval_unhandled", approval.id)]  # fmt: skip
    assert tri.escalator.check(tri, scan(0).detected_at + 900) == []  # each is escalated once
    assert [p[1]["subject"] for p in posted] == ["INC-1", approval.id]
    ctype, body = posted[0]
    assert (
        ctype == "application/json"
        and body["type"] == "escalation"
        and body["reason"] == "low_confidence"
    )
    assert body["confidence"] == 0.4 and body["threshold"] == 0.6 and "INC-1" in body["message"]
    assert (
        posted[1][1]["target"] == "10.0.0.66/32" and "internal host" in posted[1][1]["why_approval"]
    )
    msgs = [syslog_sock.recv(65535) for _ in range(2)]
    head = re.match(
        rb"<(\d+)>1 (\S+) (\S+) netwarden (\d+) escalation \[netwarden@32473 ([^\]]*)\] \xef\xbb\xbf",
        msgs[0],
    )
    assert head is not None, msgs[0]
    assert (
        body["priority"] == "P4" and int(head.group(1)) == 4 * 8 + 5
    )  # security facility, notice (P4)
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", head.group(2))
    assert b'reason="low_confidence"' in head.group(5) and b'incident="INC-1"' in head.group(5)
    assert b'reason="approval_unhandled"' in msgs[1]
    hooked = [json.loads(x) for x in out.read_text().splitlines()]
    assert [h["subject"] for h in hooked] == ["INC-1", approval.id]
    rows = tri.istore.escalations()
    assert [(r["subject"], r["sent"], r["channels"]) for r in rows] == [
        ("INC-1", True, {"webhook": "ok", "syslog": "ok", "command": "ok"}),
        (approval.id, True, {"webhook": "ok", "syslog": "ok", "command": "ok"})]  # fmt: skip
    assert tri.istore.get_incident("INC-1").escalations[0]["reason"] == "low_confidence"  # type: ignore[union-attr]
    audit = [e for e in ctl.audit.entries() if e["event"] == "escalate"]
    assert [e["subject"] for e in audit] == ["INC-1", approval.id] and audit[0]["result"] == "sent"


def test_acknowledged_or_confident_incidents_are_not_escalated(
    ctl: Controller, clock: Clock
) -> None:
    cfg = EscalationConfig(incident_after_s=0, webhook="http://127.0.0.1:9/never")
    tri = make_triage(ctl, TriageConfig(escalation=cfg), clock, Escalator(cfg))
    recs = tri.process(
        [scan(0, conf=0.95), scan(0, attacker="192.0.2.8", victim="10.0.0.8", conf=0.3)]
    )
    unsure = next(r["incident_id"] for r in recs if r["attacker"] == "192.0.2.8")
    tri.acknowledge(unsure, "alice")
    assert tri.escalator.check(tri, scan(0).detected_at + 10) == []


def test_a_failing_channel_is_recorded_and_the_others_still_run(ctl: Controller, clock: Clock,
                                                                syslog_sock: socket.socket) -> None:  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once closed
    cfg = EscalationConfig(incident_after_s=0, webhook=f"http://127.0.0.1:{dead}/x", timeout_s=2,
                           syslog=f"127.0.0.1:{syslog_sock.getsockname()[1]}")  # fmt: skip
    tri = make_triage(ctl, TriageConfig(escalation=cfg), clock, Escalator(cfg))
    tri.process([scan(0, conf=0.3)])
    tri.escalator.check(tri, scan(0).detected_at + 1)
    assert b"INC-1" in syslog_sock.recv(65535)
    (row,) = tri.istore.escalations()
    assert (
        row["sent"]
        and row["channels"]["syslog"] == "ok"
        and row["channels"]["webhook"].startswith("error:")
    )


def test_dry_run_records_what_would_have_been_escalated(ctl: Controller, clock: Clock) -> None:
    cfg = EscalationConfig(
        incident_after_s=0, webhook="http://127.0.0.1:9/never", syslog="127.0.0.1:9"
    )
    tri = make_triage(ctl, TriageConfig(escalation=cfg), clock, Escalator(cfg, dry_run=True))
    tri.process([scan(0, victim=SERVER, conf=0.3)])
    tri.tick(scan(0).detected_at + 1)
    (row,) = tri.istore.escalations()
    assert row["sent"] is False and row["channels"] == {"webhook": "dry-run", "syslog": "dry-run"}


def test_rfc5424_escapes_structured_data() -> None:
    msg = rfc5424({"at": 0.0, "reason": 'a"b]c\\d', "subject": "INC-1", "priority": "P1", "message": "hé"},
                  hostname="box", procid=7)  # fmt: skip
    assert msg.startswith(b"<34>1 1970-01-01T00:00:00.000000Z box netwarden 7 escalation ")
    assert b'reason="a\\"b\\]c\\\\d"' in msg and msg.endswith("\ufeffhé".encode())
