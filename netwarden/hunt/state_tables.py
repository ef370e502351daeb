"""Alerts, incidents and bans from the controller's database, as Arrow tables for DuckDB.

Read-only: the database is opened with ``mode=ro`` (or ``immutable=1`` when no controller
has it open), so hunting never writes to a state dir. A state dir without a database (an
archive copied for analysis) gives empty tables with the same columns.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa

from netwarden.records.arrowbuf import table_from_rows

TS = pa.timestamp("us", tz="UTC")
STRS = pa.list_(pa.string())

ALERTS = pa.schema([
    ("id", pa.string()), ("incident_id", pa.string()), ("kind", pa.string()),
    ("attacker", pa.string()), ("victims", STRS), ("detected_at", TS), ("first_seen", TS),
    ("score", pa.float64()), ("confidence", pa.float64()), ("suppressed_by", pa.string()),
    ("mitre", pa.string()), ("summary", pa.string()), ("evidence", pa.string()),
])  # fmt: skip
INCIDENTS = pa.schema([
    ("id", pa.string()), ("status", pa.string()), ("priority", pa.string()),
    ("risk", pa.float64()), ("confidence", pa.float64()), ("opened_at", TS),
    ("updated_at", TS), ("attackers", STRS), ("victims", STRS), ("hosts", STRS),
    ("kinds", STRS), ("alert_count", pa.int64()), ("summary", pa.string()),
])  # fmt: skip
AUDIT = pa.schema([
    ("seq", pa.int64()), ("ts", TS), ("actor", pa.string()), ("event", pa.string()),
    ("subject", pa.string()), ("decision_id", pa.string()), ("evidence", pa.string()),
    ("result", pa.string()), ("detail", pa.string()),
])  # fmt: skip
BANS = pa.schema([
    ("addr", pa.string()), ("action", pa.string()), ("decision_id", pa.string()),
    ("reason", pa.string()), ("actor", pa.string()), ("created", TS), ("expires_at", TS),
])  # fmt: skip


def _ts(t: Any) -> Any:
    return None if t is None else int(float(t) * 1_000_000)


def _connect(path: Path) -> sqlite3.Connection | None:
    """The database read-only as the store opens it for forensics (nothing written, a
    corrupt file refused with a clear error); None when there is none."""
    from controller.state.store import open_readonly

    return open_readonly(path) if path.is_file() else None


def _has(db: sqlite3.Connection, table: str) -> bool:
    q = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
    return db.execute(q, (table,)).fetchone() is not None


def _alert_row(body: str, incident_id: str | None) -> dict[str, Any]:
    a = json.loads(body)
    return {
        "id": a.get("id"), "incident_id": incident_id, "kind": a.get("kind"),
        "attacker": a.get("attacker"), "victims": [str(v) for v in a.get("victims") or []],
        "detected_at": _ts(a.get("detected_at")), "first_seen": _ts(a.get("first_seen")),
        "score": a.get("score"), "confidence": a.get("confidence"),
        "suppressed_by": a.get("suppressed_by"), "mitre": a.get("mitre"),
        "summary": a.get("summary"), "evidence": json.dumps(a.get("evidence"), sort_keys=True),
    }  # fmt: skip


def _incident_row(body: str) -> dict[str, Any]:
    i = json.loads(body)
    att, vic = list(i.get("attackers") or []), list(i.get("victims") or [])
    summary = i.get("summary") or {}
    return {
        "id": i.get("id"), "status": i.get("status"), "priority": i.get("priority"),
        "risk": i.get("risk"), "confidence": i.get("confidence"),
        "opened_at": _ts(i.get("opened_at")), "updated_at": _ts(i.get("updated_at")),
        "attackers": att, "victims": vic,
        "hosts": sorted({h for h in att + vic if h and "/" not in h}),
        "kinds": list(i.get("kinds") or []), "alert_count": i.get("alert_count"),
        "summary": summary.get("en") or next(iter(summary.values()), None),
    }  # fmt: skip


def load(state_dir: Path) -> dict[str, pa.Table]:
    """``{"alerts", "incidents", "bans", "audit"}`` tables of the state dir's database."""
    rows: dict[str, list[dict[str, Any]]] = {"alerts": [], "incidents": [], "bans": [], "audit": []}
    from controller.state.store import DB_NAME

    db = _connect(state_dir / DB_NAME)
    if db is not None:
        try:
            if _has(db, "alerts"):
                q = "SELECT body, incident_id FROM alerts ORDER BY seq"
                rows["alerts"] = [_alert_row(b, i) for b, i in db.execute(q)]
            if _has(db, "incidents"):
                q = "SELECT body FROM incidents WHERE status != 'merged' ORDER BY seq"
                rows["incidents"] = [_incident_row(b) for (b,) in db.execute(q)]
            if _has(db, "bans"):
                q = "SELECT addr, action, decision_id, reason, actor, created, expires_at FROM bans"
                for addr, act, dec, reason, actor, created, exp in db.execute(q):
                    rows["bans"].append({"addr": addr, "action": act, "decision_id": dec,
                                         "reason": reason, "actor": actor,
                                         "created": _ts(created), "expires_at": _ts(exp)})  # fmt: skip
            if _has(db, "audit"):
                q = "SELECT seq, ts, actor, event, subject, decision_id, evidence, result, detail FROM audit"
                names = AUDIT.names
                for r in db.execute(q):
                    d = dict(zip(names, r, strict=True))
                    d["ts"] = _ts(d["ts"])
                    rows["audit"].append(d)
        finally:
            db.close()
    schemas = {"alerts": ALERTS, "incidents": INCIDENTS, "bans": BANS, "audit": AUDIT}
    # from buffers: pa.Table.from_pylist would import pandas (half a second of every hunt)
    return {k: table_from_rows(v, schemas[k]) for k, v in rows.items()}
