"""Ordered store migrations: the database carries its schema version, and each migration
upgrades it by one step, in its own transaction.

To change the schema, append ``(N + 1, "what changes", function)`` to ``MIGRATIONS``;
never edit a released step (state dirs in the field have already run it). A database
newer than this code knows is refused, not opened: an older controller could silently
drop what it does not understand. Before upgrading an existing database a copy is kept
beside it (``netwarden.db.vN.bak``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from controller.state.audit import AUDIT_SCHEMA
from controller.state.files import create_private
from netwarden.errors import StoreError

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bans (
    addr TEXT NOT NULL, action TEXT NOT NULL, decision_id TEXT NOT NULL,
    reason TEXT NOT NULL, actor TEXT NOT NULL, created REAL NOT NULL, expires_at REAL,
    PRIMARY KEY (addr, action));
CREATE INDEX IF NOT EXISTS bans_expiry ON bans (expires_at);
CREATE TABLE IF NOT EXISTS allow (cidr TEXT PRIMARY KEY, note TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY, created REAL NOT NULL, expires_at REAL NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL, proposal TEXT NOT NULL,
    decided_by TEXT, decided_at REAL);
CREATE TABLE IF NOT EXISTS offenders (
    addr TEXT PRIMARY KEY, count INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL);
"""


def _v1(db: sqlite3.Connection) -> None:
    """The tables of the first release (bans, allow-list, approvals, offenders, audit)."""
    for stmt in (_V1 + AUDIT_SCHEMA).split(";\n"):
        if stmt.strip():
            db.execute(stmt)


def _v2(db: sqlite3.Connection) -> None:
    """Pending approvals are listed and expired every tick: index them by status."""
    db.execute("CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, expires_at)")


_V3 = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, incident_id TEXT, kind TEXT NOT NULL, attacker TEXT,
    detected_at REAL NOT NULL, score REAL NOT NULL, confidence REAL NOT NULL, suppressed_by TEXT,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (detected_at);
CREATE INDEX IF NOT EXISTS alerts_incident ON alerts (incident_id);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, status TEXT NOT NULL, priority TEXT NOT NULL,
    risk REAL NOT NULL, confidence REAL NOT NULL, opened_at REAL NOT NULL, updated_at REAL NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status, updated_at);
CREATE TABLE IF NOT EXISTS suppressions (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, entity TEXT NOT NULL, service TEXT NOT NULL,
    created REAL NOT NULL, expires_at REAL NOT NULL, feedback_id TEXT NOT NULL, note TEXT NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS suppressions_match ON suppressions (kind, entity);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, target TEXT NOT NULL, verdict TEXT NOT NULL,
    kind TEXT NOT NULL, entity TEXT NOT NULL, service TEXT NOT NULL, actor TEXT NOT NULL,
    note TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_pattern ON feedback (kind, entity, verdict);
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY, subject TEXT NOT NULL, reason TEXT NOT NULL, created REAL NOT NULL,
    channels TEXT NOT NULL, sent INTEGER NOT NULL, body TEXT NOT NULL,
    UNIQUE (subject, reason));
"""


def _v3(db: sqlite3.Connection) -> None:
    """Alerts and incidents (the triage layer), operator feedback with its scoped,
    expiring suppressions, and escalations sent."""
    for stmt in _V3.split(";\n"):
        if stmt.strip():
            db.execute(stmt)


#: (version reached, what it does, the step); applied in order, each exactly once
MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "initial schema", _v1),
    (2, "index approvals by status", _v2),
    (3, "alerts, incidents, feedback, suppressions, escalations", _v3),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(db: sqlite3.Connection) -> int:
    """The database's version; 0 for an empty database."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if not has_meta:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    try:
        return 0 if row is None else int(row[0])
    except ValueError:
        raise StoreError(f"unreadable schema version {row[0]!r}") from None


def migrate(db: sqlite3.Connection, path: Path) -> list[int]:
    """Bring the database at ``path`` to ``SCHEMA_VERSION``; returns the versions applied."""
    have = schema_version(db)
    if have > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {have} is newer than this NetWarden understands (up to {SCHEMA_VERSION}); "
            "refusing to open it: run the newer NetWarden, or restore a backup made by this one"
        )
    todo = [(v, step) for v, _what, step in MIGRATIONS if v > have]
    if todo and have > 0:
        backup = path.with_name(f"{path.name}.v{have}.bak")
        create_private(backup)
        with sqlite3.connect(backup) as dst:
            db.backup(dst)
        dst.close()
    for version, step in todo:
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return [v for v, _ in todo]
