"""Controller state in sqlite3: bans with expiry, allow-list, approvals, offender history.

One database file in the state dir (``netwarden.db``, WAL mode) shared with the audit log.
The daemon is the only writer; CLI commands read it (``audit --verify``) or go through the
control socket. Writes that must match a kernel change run inside ``transaction()`` so a
refused kernel commit rolls the store back too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.response.enforce.base import Action, IPNetwork, Target, target
from controller.state.files import create_private
from controller.state.migrations import SCHEMA_VERSION, migrate
from netwarden.errors import StoreError

__all__ = ["DB_NAME", "SCHEMA_VERSION", "Approval", "Store", "StoredBan"]

DB_NAME = "netwarden.db"


@dataclass(frozen=True, slots=True)
class StoredBan:
    addr: Target  # an address, or a range (network)
    action: Action
    decision_id: str
    reason: str
    actor: str
    created: float
    expires_at: float | None

    def remaining(self, now: float) -> float | None:
        return None if self.expires_at is None else self.expires_at - now

    def to_dict(self, now: float) -> dict[str, Any]:
        rem = self.remaining(now)
        return {
            "addr": str(self.addr),
            "action": self.action.value,
            "decision_id": self.decision_id,
            "reason": self.reason,
            "actor": self.actor,
            "created": self.created,
            "expires_at": self.expires_at,
            "remaining_s": None if rem is None else round(max(0.0, rem), 3),
        }


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    created: float
    expires_at: float
    status: (
        str  # pending | approved | denied | expired | refused (approved, then anti-lockout said no)
    )
    reason: str  # why approval was needed
    proposal: dict[str, Any]
    decided_by: str | None
    decided_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "expires_at": self.expires_at,
            "status": self.status,
            "reason": self.reason,
            "proposal": self.proposal,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
        }


def _check_intact(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged database at open, with one line, rather than fail later mid-request."""
    try:
        problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.OperationalError:
        raise  # cannot open or read (permissions, locking): not damage
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: database is corrupt ({exc}); restore it from a backup") from exc
    if problems != ["ok"]:
        said = "; ".join(" ".join(p.split()) for p in problems)
        raise StoreError(f"{path}: database is corrupt ({said}); restore it from a backup")


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open without writing anything. Without a ``-wal`` file (no controller has the
    database open, or a copy taken for forensics) the file is read as it is
    (``immutable=1``): ``mode=ro`` would create the WAL's shared-memory files, or fail
    where it may not. Beside a live controller, ``mode=ro`` reads its WAL too."""
    if not path.is_file():
        raise StoreError(f"no database at {path}")
    uri = "file:" + urllib.parse.quote(str(path.resolve()))
    live = path.with_name(path.name + "-wal").exists()
    db = sqlite3.connect(
        f"{uri}?{'mode=ro' if live else 'immutable=1'}",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    _check_intact(db, path)
    return db


def _ban(row: sqlite3.Row) -> StoredBan:
    return StoredBan(
        target(row["addr"]),
        Action(row["action"]),
        row["decision_id"],
        row["reason"],
        row["actor"],
        row["created"],
        row["expires_at"],
    )


def _approval(row: sqlite3.Row) -> Approval:
    return Approval(
        row["id"],
        row["created"],
        row["expires_at"],
        row["status"],
        row["reason"],
        json.loads(row["proposal"]),
        row["decided_by"],
        row["decided_at"],
    )


class Store:
    """``readonly`` opens for reading only, without writing anything (``audit --verify``
    on a copy taken for forensics, on read-only media): an old schema is read as it is."""

    def __init__(self, state_dir: str | Path, readonly: bool = False) -> None:
        self.path = Path(state_dir) / DB_NAME
        #: schema versions applied when this store was opened (empty when it was current)
        self.migrated: list[int] = []
        try:
            if readonly:
                self.db = open_readonly(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                create_private(
                    self.path
                )  # 0600; sqlite gives its -wal and -shm files the same mode
                # one user at a time, but not necessarily the creating thread (a daemon
                # may be built in one thread and run its loop in another)
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                _check_intact(self.db, self.path)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.migrated = migrate(self.db, self.path)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        self.db.row_factory = sqlite3.Row
        self._depth = 0
        #: run once the outermost transaction commits / rolls back (e.g. the audit log's
        #: JSON-lines mirror is written only for entries the database kept)
        self.after_commit: list[Callable[[], None]] = []
        self.after_rollback: list[Callable[[], None]] = []

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Nestable: only the outermost level commits or rolls back."""
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
                for hook in self.after_rollback:
                    hook()
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")
            for hook in self.after_commit:
                hook()

    # --- bans ---------------------------------------------------------------------------
    def put_ban(self, ban: StoredBan) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO bans VALUES (?,?,?,?,?,?,?)",
            (
                str(ban.addr),
                ban.action.value,
                ban.decision_id,
                ban.reason,
                ban.actor,
                ban.created,
                ban.expires_at,
            ),
        )

    def put_bans(self, bans: list[StoredBan]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO bans VALUES (?,?,?,?,?,?,?)",
            [
                (
                    str(b.addr),
                    b.action.value,
                    b.decision_id,
                    b.reason,
                    b.actor,
                    b.created,
                    b.expires_at,
                )
                for b in bans
            ],
        )

    def delete_ban(self, addr: Target, action: Action | None = None) -> list[StoredBan]:
        if action is None:
            rows = self.db.execute("SELECT * FROM bans WHERE addr=?", (str(addr),)).fetchall()
            self.db.execute("DELETE FROM bans WHERE addr=?", (str(addr),))
        else:
            rows = self.db.execute(
                "SELECT * FROM bans WHERE addr=? AND action=?", (str(addr), action.value)
            ).fetchall()
            self.db.execute("DELETE FROM bans WHERE addr=? AND action=?", (str(addr), action.value))
        return [_ban(r) for r in rows]

    def get_bans(self, addr: Target) -> list[StoredBan]:
        return [_ban(r) for r in self.db.execute("SELECT * FROM bans WHERE addr=?", (str(addr),))]

    def active_bans(self, now: float) -> list[StoredBan]:
        rows = self.db.execute(
            "SELECT * FROM bans WHERE expires_at IS NULL OR expires_at > ? ORDER BY created", (now,)
        )
        return [_ban(r) for r in rows]

    def pop_expired(self, now: float) -> list[StoredBan]:
        rows = self.db.execute(
            "SELECT * FROM bans WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        ).fetchall()
        if rows:
            self.db.execute(
                "DELETE FROM bans WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            )
        return [_ban(r) for r in rows]

    # --- allow-list ---------------------------------------------------------------------
    def add_allow(self, net: IPNetwork, note: str, now: float) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO allow VALUES (?,?,?)", (str(net), note, now))
        return cur.rowcount > 0

    def remove_allow(self, net: IPNetwork) -> bool:
        return self.db.execute("DELETE FROM allow WHERE cidr=?", (str(net),)).rowcount > 0

    def allow_list(self) -> list[tuple[IPNetwork, str, float]]:
        return [
            (ipaddress.ip_network(r["cidr"]), r["note"], r["created"])
            for r in self.db.execute("SELECT * FROM allow ORDER BY created")
        ]

    # --- approvals ----------------------------------------------------------------------
    def add_approval(self, a: Approval) -> None:
        self.db.execute(
            "INSERT INTO approvals VALUES (?,?,?,?,?,?,?,?)",
            (
                a.id,
                a.created,
                a.expires_at,
                a.status,
                a.reason,
                json.dumps(a.proposal),
                a.decided_by,
                a.decided_at,
            ),
        )

    def get_approval(self, approval_id: str) -> Approval | None:
        row = self.db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone()
        return None if row is None else _approval(row)

    def set_approval_status(self, approval_id: str, status: str, by: str | None, at: float) -> None:
        self.db.execute(
            "UPDATE approvals SET status=?, decided_by=?, decided_at=? WHERE id=?",
            (status, by, at, approval_id),
        )

    def approvals(self, status: str | None = None) -> list[Approval]:
        if status is None:
            rows = self.db.execute("SELECT * FROM approvals ORDER BY created")
        else:
            rows = self.db.execute(
                "SELECT * FROM approvals WHERE status=? ORDER BY created", (status,)
            )
        return [_approval(r) for r in rows]

    # --- offenders ----------------------------------------------------------------------
    def offences(self, addr: Target, now: float, window_s: float) -> int:
        """Earlier bans of ``addr`` within the window (0 for a first offender)."""
        row = self.db.execute(
            "SELECT count, last_seen FROM offenders WHERE addr=?", (str(addr),)
        ).fetchone()
        if row is None or now - row["last_seen"] > window_s:
            return 0
        return int(row["count"])

    def record_offence(self, addr: Target, now: float, window_s: float) -> int:
        n = self.offences(addr, now, window_s) + 1
        self.db.execute(
            "INSERT INTO offenders VALUES (?,?,?,?) ON CONFLICT(addr) DO UPDATE SET count=?, last_seen=?",
            (str(addr), n, now, now, n, now),
        )
        return n
