"""Alerts, incidents, feedback, suppressions and escalations in the controller's database
(tables from migration 3, ``controller.state.migrations``).

Rows keep the fields lists filter on as columns and the whole record as JSON (``body``),
so the record can grow without a migration. Ids are sequential and readable: ``A-17``
(alert), ``INC-3`` (incident), ``F-2`` (feedback), ``S-2`` (suppression), ``E-1``
(escalation); a replay into the same state dir continues the numbering.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from controller.detect.alert import Alert
from controller.incidents.engine import ACTIVE, Incident


@dataclass(frozen=True, slots=True)
class Suppression:
    id: str
    kind: str
    entity: str
    service: str
    created: float
    expires_at: float
    feedback_id: str
    note: str
    hits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "entity": self.entity, "service": self.service,
                "created": self.created, "expires_at": self.expires_at, "feedback_id": self.feedback_id,
                "note": self.note, "hits": self.hits}  # fmt: skip


class IncidentStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    # --- ids ----------------------------------------------------------------------------
    def _next(self, table: str) -> int:
        row = self.db.execute(
            f"SELECT COALESCE(MAX(seq), 0) FROM {table}"
        ).fetchone()  # table names are fixed strings
        return int(row[0]) + 1

    def next_alert_seq(self) -> int:
        return self._next("alerts")

    def next_incident_seq(self) -> int:
        return self._next("incidents")

    # --- alerts -------------------------------------------------------------------------
    def put_alert(self, alert_id: str, incident_id: str | None, alert: Alert, suppressed_by: str | None = None,
                  extra: dict[str, Any] | None = None) -> None:  # fmt: skip
        body = {**alert.to_json(), "id": alert_id, "incident_id": incident_id, "suppressed_by": suppressed_by,
                **(extra or {})}  # fmt: skip
        self.db.execute(
            "INSERT OR REPLACE INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?)",
            (alert_id, int(alert_id.split("-")[-1]), incident_id, alert.kind, alert.attacker, alert.detected_at,
             alert.score, alert.confidence, suppressed_by, json.dumps(body)),
        )  # fmt: skip

    def set_alert_incident(self, alert_ids: list[str], incident_id: str) -> None:
        self.db.executemany(
            "UPDATE alerts SET incident_id=? WHERE id=?", [(incident_id, a) for a in alert_ids]
        )

    def alerts(self, since: float | None = None, kind: str | None = None, incident_id: str | None = None,
               include_suppressed: bool = True) -> list[dict[str, Any]]:  # fmt: skip
        q = "SELECT body, incident_id FROM alerts WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            q += " AND detected_at >= ?"
            args.append(since)
        if kind is not None:
            q += " AND kind = ?"
            args.append(kind)
        if incident_id is not None:
            q += " AND incident_id = ?"
            args.append(incident_id)
        if not include_suppressed:
            q += " AND suppressed_by IS NULL"
        out = []
        for body, inc in self.db.execute(q + " ORDER BY seq", args):
            d = json.loads(body)
            d["incident_id"] = inc
            out.append(d)
        return out

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT body, incident_id FROM alerts WHERE id=?", (alert_id,)
        ).fetchone()  # table names are fixed strings
        if row is None:
            return None
        d = json.loads(row[0])
        d["incident_id"] = row[1]
        return d

    # --- incidents ----------------------------------------------------------------------
    def put_incident(self, inc: Incident) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO incidents VALUES (?,?,?,?,?,?,?,?,?)",
            (inc.id, int(inc.id.split("-")[-1]), inc.status, inc.priority, inc.risk, inc.confidence, inc.opened_at,
             inc.updated_at, json.dumps(inc.to_json())),
        )  # fmt: skip

    def judged_alerts(self, target: str) -> list[dict[str, Any]]:
        """The alerts feedback on ``target`` judged: the alert (``A-``), or the
        incident's alerts; none if it is gone."""
        if target.startswith("A-"):
            one = self.get_alert(target)
            return [one] if one else []
        inc = self.get_incident(target)
        return inc.alerts if inc else []

    def get_incident(self, incident_id: str) -> Incident | None:
        row = self.db.execute(
            "SELECT body FROM incidents WHERE id=?", (incident_id,)
        ).fetchone()  # table names are fixed strings
        return None if row is None else Incident.from_json(json.loads(row[0]))

    def incidents(
        self, status: tuple[str, ...] | None = None, since: float | None = None
    ) -> list[Incident]:
        q = "SELECT body FROM incidents WHERE status != 'merged'"
        args: list[Any] = []
        if status:
            q += f" AND status IN ({','.join('?' * len(status))})"
            args.extend(status)
        if since is not None:
            q += " AND updated_at >= ?"
            args.append(since)
        return [
            Incident.from_json(json.loads(r[0])) for r in self.db.execute(q + " ORDER BY seq", args)
        ]

    def active_incidents(self) -> list[Incident]:
        return self.incidents(ACTIVE)

    # --- feedback and suppressions --------------------------------------------------------
    def add_feedback(self, target: str, verdict: str, kind: str, entity: str, service: str, actor: str, note: str,
                     now: float) -> str:  # fmt: skip
        seq = self._next("feedback")
        fid = f"F-{seq}"
        self.db.execute("INSERT INTO feedback VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (fid, seq, target, verdict, kind, entity, service, actor, note, now))  # fmt: skip
        return fid

    def feedback(self, after_seq: int = 0) -> list[dict[str, Any]]:
        """Feedback in the order it was given; only that after ``after_seq`` if set."""
        cols = (
            "id",
            "seq",
            "target",
            "verdict",
            "kind",
            "entity",
            "service",
            "actor",
            "note",
            "created",
        )
        return [
            dict(zip(cols, r, strict=True))
            for r in self.db.execute(
                "SELECT * FROM feedback WHERE seq > ? ORDER BY seq", (after_seq,)
            )
        ]

    def confirmations(self, kind: str, entities: list[str]) -> list[str]:
        """Feedback ids confirming this kind for one of these entities."""
        if not entities:
            return []
        q = (f"SELECT id FROM feedback WHERE verdict='confirmed' AND kind=? AND entity IN "
             f"({','.join('?' * len(entities))}) ORDER BY seq")  # fmt: skip
        return [r[0] for r in self.db.execute(q, (kind, *entities))]

    def false_positives(self, kind: str, entities: list[str]) -> list[tuple[str, str]]:
        """(feedback id, target) of false positives reported for this kind and one of these
        entities, any service."""
        if not entities:
            return []
        q = (f"SELECT id, target FROM feedback WHERE verdict='false_positive' AND kind=? AND entity IN "
             f"({','.join('?' * len(entities))}) ORDER BY seq")  # fmt: skip
        return [(r[0], r[1]) for r in self.db.execute(q, (kind, *entities))]

    def add_suppression(self, kind: str, entity: str, service: str, now: float, expires_at: float,
                        feedback_id: str, note: str) -> Suppression:  # fmt: skip
        row = self.db.execute(
            "SELECT COUNT(*) FROM suppressions"
        ).fetchone()  # table names are fixed strings
        sid = f"S-{int(row[0]) + 1}"
        s = Suppression(sid, kind, entity, service, now, expires_at, feedback_id, note)
        self.db.execute("INSERT INTO suppressions VALUES (?,?,?,?,?,?,?,?,?)",
                        (s.id, kind, entity, service, now, expires_at, feedback_id, note, 0))  # fmt: skip
        return s

    def suppressions(self, now: float | None = None) -> list[Suppression]:
        q, args = "SELECT * FROM suppressions", []
        if now is not None:
            q += " WHERE expires_at > ?"
            args.append(now)
        return [Suppression(*r) for r in self.db.execute(q + " ORDER BY created, id", args)]

    def matching_suppression(
        self, kind: str, entities: list[str], service: str, now: float
    ) -> Suppression | None:
        if not entities:
            return None
        q = (f"SELECT * FROM suppressions WHERE kind=? AND expires_at > ? AND entity IN "
             f"({','.join('?' * len(entities))}) AND (service=? OR service='*') ORDER BY created, id LIMIT 1")  # fmt: skip
        row = self.db.execute(
            q, (kind, now, *entities, service)
        ).fetchone()  # table names are fixed strings
        if row is None:
            return None
        self.db.execute("UPDATE suppressions SET hits = hits + 1 WHERE id=?", (row[0],))
        return Suppression(*row)

    # --- escalations --------------------------------------------------------------------
    def escalated(self, subject: str, reason: str) -> bool:
        q = "SELECT 1 FROM escalations WHERE subject=? AND reason=?"
        return self.db.execute(q, (subject, reason)).fetchone() is not None

    def add_escalation(self, subject: str, reason: str, now: float, channels: dict[str, str], sent: bool,
                       body: dict[str, Any]) -> str:  # fmt: skip
        row = self.db.execute(
            "SELECT COUNT(*) FROM escalations"
        ).fetchone()  # table names are fixed strings
        eid = f"E-{int(row[0]) + 1}"
        self.db.execute("INSERT INTO escalations VALUES (?,?,?,?,?,?,?)",
                        (eid, subject, reason, now, json.dumps(channels, sort_keys=True), int(sent),
                         json.dumps(body, sort_keys=True)))  # fmt: skip
        return eid

    def escalations(self) -> list[dict[str, Any]]:
        out = []
        for r in self.db.execute(
            "SELECT id, subject, reason, created, channels, sent, body FROM escalations ORDER BY rowid"
        ):
            out.append({"id": r[0], "subject": r[1], "reason": r[2], "created": r[3], "channels": json.loads(r[4]),
                        "sent": bool(r[5]), "body": json.loads(r[6])})  # fmt: skip
        return out
