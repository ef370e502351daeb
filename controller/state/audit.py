"""Append-only, hash-chained audit log of every decision and action.

Each entry records who or what decided (``actor``), on which evidence, what was done and
the result. ``hash = sha256(prev_hash || canonical JSON of the entry)``, so changing,
removing or reordering any entry breaks every later link. The chain lives in the sqlite
database (triggers refuse UPDATE and DELETE) and is mirrored to ``audit.jsonl``; both can
be verified independently.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.state.store import Store

from controller.state.files import open_private
from netwarden.errors import StoreError

GENESIS = "0" * 64
JSONL_NAME = "audit.jsonl"

AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, event TEXT NOT NULL,
    subject TEXT NOT NULL, decision_id TEXT NOT NULL, evidence TEXT NOT NULL,
    result TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""

FIELDS = ("seq", "ts", "actor", "event", "subject", "decision_id", "evidence", "result", "detail")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: float
    actor: str  # "operator:<user>", "policy", "detector:<kind>", "controller"
    event: str  # decision | ban | unban | expire | allow | approval | reconcile | refused ...
    subject: str  # address, CIDR or approval id
    decision_id: str
    evidence: str
    result: str  # ok | refused | error | pending | ...
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in (*FIELDS, "prev_hash", "hash")}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    entries: int
    bad_seq: int | None = None
    problem: str = ""
    head: str = GENESIS  # hash of the last good entry: what the other copy must agree on

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "bad_seq": self.bad_seq,
            "problem": self.problem,
            "head": self.head,
        }


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canon = json.dumps(
        {f: fields[f] for f in FIELDS}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256((prev_hash + canon).encode()).hexdigest()


def verify_chain(entries: Iterable[dict[str, Any]]) -> VerifyResult:
    """Check sequence, links and hashes; report the first bad entry."""
    prev = GENESIS
    n = good = 0
    try:
        for n, e in enumerate(entries, start=1):
            if e["seq"] != n:
                return VerifyResult(
                    False, n - 1, e["seq"], f"sequence gap: expected {n}, found {e['seq']}", prev
                )
            if e["prev_hash"] != prev:
                return VerifyResult(False, n - 1, e["seq"], "link to previous entry broken", prev)
            if entry_hash(prev, e) != e["hash"]:
                return VerifyResult(
                    False, n - 1, e["seq"], "entry content does not match its hash", prev
                )
            prev = e["hash"]
            good = n
    except (ValueError, KeyError, TypeError) as exc:  # a mangled line is tampering too, not a crash
        return VerifyResult(
            False, good, good + 1, f"entry unreadable: {type(exc).__name__}: {exc}", prev
        )
    return VerifyResult(True, n, head=prev)


class AuditLog:
    """Append entries; inside a store transaction they become final only on commit.

    Pass the ``Store`` whose transactions wrap ``record()`` calls: on rollback the chain
    head is re-read from the database and the pending JSON lines are dropped, so neither
    copy gets a gap or an entry the other lacks.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        state_dir: str | Path,
        readonly: bool = False,
        store: Store | None = None,
    ) -> None:
        self.db = db
        self.jsonl = Path(state_dir) / JSONL_NAME
        self._pending: list[str] = []
        if not readonly:
            self.db.executescript(AUDIT_SCHEMA)
        self._load_head()
        #: entries re-written to a mirror that lagged the database (a crash between the
        #: database commit and the mirror write); a mirror that disagrees is left alone
        self.mirror_healed = 0 if readonly else self._heal_mirror()
        if store is not None:
            store.after_commit.append(self._flush)
            store.after_rollback.append(self._rolled_back)

    def _load_head(self) -> None:
        row = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self.seq, self.last_hash = (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def _heal_mirror(self) -> int:
        tail = _jsonl_tail(self.jsonl)
        if tail is None or tail[0] >= self.seq:
            return 0
        row = self.db.execute("SELECT hash FROM audit WHERE seq = ?", (tail[0],)).fetchone()
        if (row[0] if row else GENESIS) != tail[1]:
            return 0  # not a prefix of the database chain: evidence for `audit --verify`
        missing = self.entries(since_seq=tail[0])
        self._append([json.dumps(e, sort_keys=True) + "\n" for e in missing])
        return len(missing)

    def _append(self, lines: list[str]) -> None:
        try:
            with open_private(self.jsonl) as fh:
                fh.writelines(lines)
        except OSError as exc:
            raise StoreError(
                f"audit mirror {self.jsonl} not written ({exc.strerror or exc}); the database holds the entries "
                "and the mirror is healed once it is writable again"
            ) from exc

    def _flush(self) -> None:
        if self._pending:
            self._append(
                self._pending
            )  # kept pending when it fails: written, in order, by the next flush
            self._pending = []

    def _rolled_back(self) -> None:
        self._pending = []
        self._load_head()

    def record(
        self,
        actor: str,
        event: str,
        subject: str = "",
        *,
        decision_id: str = "",
        evidence: str = "",
        result: str = "ok",
        detail: dict[str, Any] | None = None,
        ts: float | None = None,
    ) -> AuditEntry:
        fields: dict[str, Any] = {
            "seq": self.seq + 1,
            "ts": round(time.time() if ts is None else ts, 6),
            "actor": actor,
            "event": event,
            "subject": subject,
            "decision_id": decision_id,
            "evidence": evidence,
            "result": result,
            "detail": json.loads(json.dumps(detail or {}, default=str)),  # what the hash sees
        }
        h = entry_hash(self.last_hash, fields)
        entry = AuditEntry(**fields, prev_hash=self.last_hash, hash=h)
        try:
            self.db.execute(
                "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.seq,
                    entry.ts,
                    actor,
                    event,
                    subject,
                    decision_id,
                    evidence,
                    result,
                    json.dumps(fields["detail"], sort_keys=True),
                    entry.prev_hash,
                    h,
                ),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"audit append failed: {exc}") from exc
        self.seq, self.last_hash = entry.seq, h
        # mirror; fsync is left to the OS: the database is the record of truth
        self._pending.append(json.dumps(entry.to_dict(), sort_keys=True) + "\n")
        if not self.db.in_transaction:
            self._flush()
        return entry

    def entries(self, limit: int | None = None, since_seq: int = 0) -> list[dict[str, Any]]:
        q = "SELECT * FROM audit WHERE seq > ? ORDER BY seq"
        rows = self.db.execute(q, (since_seq,)).fetchall()
        if limit is not None:
            rows = rows[-limit:]
        return [_row_dict(r) for r in rows]

    def verify(self) -> VerifyResult:
        return verify_chain(
            _row_dict(r) for r in self.db.execute("SELECT * FROM audit ORDER BY seq")
        )


def _row_dict(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    keys = (*FIELDS, "prev_hash", "hash")
    d = dict(zip(keys, tuple(row), strict=True))
    d["detail"] = json.loads(d["detail"])
    return d


def verify_jsonl(path: str | Path) -> VerifyResult:
    """Verify the JSON-lines mirror on its own (e.g. shipped off-box)."""
    if not os.path.exists(path):
        return VerifyResult(True, 0)
    with open(path) as fh:
        return verify_chain(json.loads(line) for line in fh if line.strip())


def _jsonl_tail(path: Path) -> tuple[int, str] | None:
    """(seq, hash) of the mirror's last entry, (0, GENESIS) if it has none, None if the
    last line cannot be read."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            block = 1 << 16
            while True:  # read backwards until the last line is whole
                start = max(0, end - block)
                fh.seek(start)
                lines = fh.read(end - start).rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or start == 0:
                    break
                block *= 4
    except FileNotFoundError:
        return (0, GENESIS)
    if lines == [b""]:
        return (0, GENESIS)
    try:
        last = json.loads(lines[-1])
        return int(last["seq"]), str(last["hash"])
    except (ValueError, KeyError, TypeError):
        return None


def compare_copies(
    db: sqlite3.Connection, jsonl: str | Path, db_res: VerifyResult, mirror: VerifyResult
) -> str:
    """Why the two copies disagree, or "" if they hold the same chain.

    Each chain alone cannot show that its newest entries were cut off (or the whole file
    removed): what remains is still a valid chain. Both copies must end at the same entry
    with the same hash.
    """
    if not (db_res.ok and mirror.ok) or (db_res.entries, db_res.head) == (
        mirror.entries,
        mirror.head,
    ):
        return ""
    if db_res.entries == mirror.entries:
        return f"the copies disagree at entry {db_res.entries}: one of them was rewritten"
    k = min(db_res.entries, mirror.entries)
    if mirror.entries < db_res.entries:
        row = db.execute("SELECT hash FROM audit WHERE seq = ?", (k,)).fetchone()
        same_prefix = (row[0] if row else GENESIS) == mirror.head
        short, longer, n = "json lines", "database", db_res.entries
    else:
        same_prefix = _jsonl_hash_at(jsonl, k) == db_res.head
        short, longer, n = "database", "json lines", mirror.entries
    how = "its last entries are missing" if same_prefix else "and the copies differ before that"
    return f"{short} ends at entry {k}, the {longer} at entry {n}: {how}"


def _jsonl_hash_at(path: str | Path, seq: int) -> str:
    if seq == 0:
        return GENESIS
    with open(path) as fh:
        for n, line in enumerate((ln for ln in fh if ln.strip()), start=1):
            if n == seq:
                return str(json.loads(line)["hash"])
    return ""
