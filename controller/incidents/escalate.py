"""Escalation: what nobody handled in time goes to people through notification channels.

Escalated (each once, recorded in the ``escalations`` table and the audit log):

- an open, unacknowledged incident whose confidence is below ``escalation.low_confidence``
  ``incident_after_s`` after it opened (the machine is unsure: a person must look);
- an approval still pending ``approval_after_s`` after it was opened.

Channels: a webhook (JSON POST), syslog (RFC 5424 over UDP) and a command hook (the JSON
on its standard input). In dry run (a replay) nothing is sent: what would have been is
recorded. A channel that fails is logged and recorded; the others still run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import urllib.request
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.incidents.config import EscalationConfig
from controller.incidents.engine import OPEN

log = logging.getLogger("netwarden.escalate")

LOW_CONFIDENCE, APPROVAL_UNHANDLED = "low_confidence", "approval_unhandled"
#: RFC 5424 severities by incident priority (2 critical, 3 error, 4 warning, 5 notice)
SEVERITY = {"P1": 2, "P2": 3, "P3": 4, "P4": 5}
FACILITY_SECURITY = 4  # security/authorization messages
#: structured-data id: private enterprise number 32473 is reserved for documentation (RFC 5612)
SD_ID = "netwarden@32473"


class Channel(Protocol):
    name: str

    def send(self, event: dict[str, Any]) -> None: ...


class Webhook:
    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url, timeout_s

    def send(self, event: dict[str, Any]) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "netwarden"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            if not 200 <= resp.status < 300:
                raise OSError(f"webhook answered HTTP {resp.status}")


def _sd_value(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def rfc5424(event: dict[str, Any], hostname: str | None = None, procid: int | None = None) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] BOM MSG``."""
    pri = FACILITY_SECURITY * 8 + SEVERITY.get(str(event.get("priority")), 4)
    ts = datetime.fromtimestamp(float(event["at"]), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    host = (hostname or socket.gethostname() or "-")[:255].replace(" ", "_")
    params = {"reason": event["reason"], "subject": event["subject"]}
    for k in ("incident", "priority", "risk", "confidence", "approval"):
        if event.get(k) is not None:
            params[k] = event[k]
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    msg = str(event.get("message", ""))
    head = f"<{pri}>1 {ts} {host} netwarden {procid or os.getpid()} escalation {sd} "
    return head.encode() + b"\xef\xbb\xbf" + msg.encode()


class Syslog:
    name = "syslog"

    def __init__(self, addr: str) -> None:
        host, _, port = addr.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)

    def send(self, event: dict[str, Any]) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(rfc5424(event), (self.host, self.port))


class CommandHook:
    name = "command"

    def __init__(self, argv: tuple[str, ...], timeout_s: float = 5.0) -> None:
        self.argv, self.timeout_s = list(argv), timeout_s

    def send(self, event: dict[str, Any]) -> None:
        env = {
            **os.environ,
            "NETWARDEN_REASON": str(event["reason"]),
            "NETWARDEN_SUBJECT": str(event["subject"]),
        }
        proc = subprocess.run(self.argv, input=json.dumps(event), text=True, capture_output=True,
                              timeout=self.timeout_s, env=env, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise OSError(f"command exited {proc.returncode}: {proc.stderr.strip()[:200]}")


def channels_from(cfg: EscalationConfig) -> list[Channel]:
    out: list[Channel] = []
    if cfg.webhook:
        out.append(Webhook(cfg.webhook, cfg.timeout_s))
    if cfg.syslog:
        out.append(Syslog(cfg.syslog))
    if cfg.command:
        out.append(CommandHook(cfg.command, cfg.timeout_s))
    return out


class Escalator:
    def __init__(
        self, cfg: EscalationConfig, dry_run: bool = False, channels: list[Channel] | None = None
    ) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.channels = channels if channels is not None else channels_from(cfg)

    def check(self, triage: Any, now: float) -> list[dict[str, Any]]:
        """Escalate what is due at ``now`` (network time, the clock policy runs on)."""
        due: list[dict[str, Any]] = []
        ist = triage.istore
        for inc in sorted(triage.engine.active.values(), key=lambda i: i.opened_at):
            if (inc.status == OPEN and inc.confidence < self.cfg.low_confidence
                    and now - inc.opened_at >= self.cfg.incident_after_s
                    and not ist.escalated(inc.id, LOW_CONFIDENCE)):  # fmt: skip
                due.append({"reason": LOW_CONFIDENCE, "subject": inc.id, "incident": inc.id, "priority": inc.priority,
                            "risk": inc.risk, "confidence": inc.confidence, "threshold": self.cfg.low_confidence,
                            "waited_s": round(now - inc.opened_at, 3), "message": inc.summary.get("en", ""),
                            "at": now})  # fmt: skip
        for a in triage.store.approvals("pending"):
            if now - a.created >= self.cfg.approval_after_s and not ist.escalated(
                a.id, APPROVAL_UNHANDLED
            ):
                det = a.proposal.get("detection") or {}
                inc_id = det.get("evidence_id") or None
                due.append({"reason": APPROVAL_UNHANDLED, "subject": a.id, "approval": a.id, "incident": inc_id,
                            "priority": (det.get("detail") or {}).get("priority"), "target": a.proposal.get("target"),
                            "why_approval": a.reason, "waited_s": round(now - a.created, 3),
                            "message": f"approval {a.id} to {a.proposal.get('action')} {a.proposal.get('target')} "
                                       f"is still pending: {a.reason}", "at": now})  # fmt: skip
        for ev in due:
            self._send(triage, ev)
        return due

    def _send(self, triage: Any, ev: dict[str, Any]) -> None:
        results: dict[str, str] = {}
        for ch in self.channels:
            if self.dry_run:
                results[ch.name] = "dry-run"
                continue
            try:
                ch.send({"type": "escalation", **ev})
                results[ch.name] = "ok"
            except Exception as exc:  # noqa: BLE001 - one failing channel must not stop the others
                log.warning("escalation %s via %s failed: %s", ev["subject"], ch.name, exc)
                results[ch.name] = f"error: {exc}"
        sent = any(v == "ok" for v in results.values())
        with triage.store.transaction():
            eid = triage.istore.add_escalation(
                ev["subject"], ev["reason"], ev["at"], results, sent, ev
            )
            triage.audit.record("escalation", "escalate", ev["subject"], evidence=eid,
                                result="dry-run" if self.dry_run else ("sent" if sent else "not-sent"),
                                detail={"reason": ev["reason"], "channels": results})  # fmt: skip
            inc = triage.engine.active.get(ev.get("incident") or "")
            if inc is not None:
                inc.escalations.append(
                    {"id": eid, "reason": ev["reason"], "at": ev["at"], "channels": results}
                )
                triage.istore.put_incident(inc)
