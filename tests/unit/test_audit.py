"""The hash-chained audit log: verification, tamper detection in sqlite and JSON lines."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from controller.state.audit import JSONL_NAME, AuditLog, verify_jsonl
from controller.state.store import Store


def filled(tmp_path: Path, n: int = 6) -> tuple[Store, AuditLog]:
    store = Store(tmp_path)
    log = AuditLog(store.db, tmp_path)
    for i in range(n):
        log.record(
            "policy" if i % 2 else "operator:alice",
            "ban",
            f"203.0.113.{i}",
            decision_id=f"d-{i}",
            evidence=f"inc-{i}",
            detail={"ttl_s": 60 * i, "nested": {"k": [1, 2]}},
        )
    return store, log


def test_chain_verifies_and_survives_reopen(tmp_path: Path) -> None:
    store, log = filled(tmp_path)
    assert log.verify().ok and log.verify().entries == 6
    store.close()
    store = Store(tmp_path)
    log = AuditLog(store.db, tmp_path)
    log.record("controller", "start")
    res = log.verify()
    assert res.ok and res.entries == 7
    assert verify_jsonl(tmp_path / JSONL_NAME).entries == 7


def test_database_refuses_update_and_delete(tmp_path: Path) -> None:
    store, _ = filled(tmp_path)
    for stmt in ("UPDATE audit SET result='x' WHERE seq=2", "DELETE FROM audit WHERE seq=6"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute(stmt)


@pytest.mark.parametrize(
    ("sql", "bad_seq", "problem"),
    [
        ("UPDATE audit SET subject='198.51.100.1' WHERE seq=3", 3, "content"),
        ("UPDATE audit SET detail='{}' WHERE seq=4", 4, "content"),
        ("DELETE FROM audit WHERE seq=2", 3, "sequence"),
        ("DELETE FROM audit WHERE seq=6", None, None),  # truncation of the tail: see below
    ],
)
def test_tampered_database_entry_is_found(
    tmp_path: Path, sql: str, bad_seq: int | None, problem: str | None
) -> None:
    store, log = filled(tmp_path)
    store.db.execute("DROP TRIGGER audit_no_update")
    store.db.execute("DROP TRIGGER audit_no_delete")
    store.db.execute(sql)
    res = log.verify()
    if bad_seq is None:
        # dropping the newest entry keeps the chain consistent; the JSON-lines mirror
        # (or a copy shipped off-box) still shows the longer chain
        assert res.ok and res.entries == 5
        assert verify_jsonl(tmp_path / JSONL_NAME).entries == 6
        return
    assert not res.ok and res.bad_seq == bad_seq and problem in res.problem


def test_tampered_jsonl_line_is_found(tmp_path: Path) -> None:
    filled(tmp_path)
    path = tmp_path / JSONL_NAME
    lines = path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["actor"] = "operator:mallory"
    lines[1] = json.dumps(entry)
    path.write_text("\n".join(lines) + "\n")
    res = verify_jsonl(path)
    assert not res.ok and res.bad_seq == 2


def test_rehashed_forgery_breaks_the_next_link(tmp_path: Path) -> None:
    """Recomputing the forged entry's own hash does not help: the next entry links the old one."""
    from controller.state.audit import entry_hash

    store, log = filled(tmp_path)
    store.db.execute("DROP TRIGGER audit_no_update")
    row = log.entries()[2]
    row["subject"] = "198.51.100.1"
    new_hash = entry_hash(row["prev_hash"], row)
    store.db.execute("UPDATE audit SET subject=?, hash=? WHERE seq=3", (row["subject"], new_hash))
    res = log.verify()
    assert not res.ok and res.bad_seq == 4 and "link" in res.problem


def test_rolled_back_entries_leave_no_gap_in_either_copy(tmp_path: Path) -> None:
    store = Store(tmp_path)
    log = AuditLog(store.db, tmp_path, store=store)
    log.record("policy", "decision", "203.0.113.1")
    with pytest.raises(RuntimeError), store.transaction():
        log.record("policy", "decision", "203.0.113.2")
        log.record("policy", "approval-opened", "d-2")
        raise RuntimeError("approval could not be stored")
    with store.transaction():
        log.record("policy", "decision", "203.0.113.3")
    log.record("controller", "stop")
    res = log.verify()
    assert res.ok and res.entries == 3
    mirror = verify_jsonl(tmp_path / JSONL_NAME)
    assert mirror.ok and mirror.entries == 3
    assert [e["subject"] for e in log.entries()] == ["203.0.113.1", "203.0.113.3", ""]


def _cut_jsonl_tail(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))


def _garble_jsonl_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3][: len(lines[3]) // 2] + "\n"  # a half-written or hand-edited line
    path.write_text("".join(lines))


def _rechain_jsonl(path: Path) -> None:
    """A forger who rewrites the whole mirror with freshly computed hashes."""
    from controller.state.audit import GENESIS, entry_hash

    prev, out = GENESIS, []
    for line in path.read_text().splitlines():
        e = json.loads(line)
        if e["seq"] == 2:
            e["actor"] = "operator:mallory"
        e["prev_hash"], e["hash"] = prev, entry_hash(prev, e)
        prev = e["hash"]
        out.append(json.dumps(e, sort_keys=True) + "\n")
    path.write_text("".join(out))


def _drop_db_tail(store: Store) -> None:
    store.db.execute("DROP TRIGGER audit_no_delete")
    store.db.execute("DELETE FROM audit WHERE seq >= 5")
    store.db.commit()


@pytest.mark.parametrize(
    ("tamper", "expect"),
    [
        (lambda store, path: None, None),
        (
            lambda store, path: _cut_jsonl_tail(path),
            "json lines ends at entry 4, the database at entry 6",
        ),
        (lambda store, path: path.unlink(), "json lines ends at entry 0, the database at entry 6"),
        (lambda store, path: _garble_jsonl_line(path), "json lines: TAMPERED at entry 4"),
        (lambda store, path: _rechain_jsonl(path), "the copies disagree at entry 6"),
        (
            lambda store, path: _drop_db_tail(store),
            "database ends at entry 4, the json lines at entry 6",
        ),
    ],
    ids=[
        "intact",
        "jsonl-tail-cut",
        "jsonl-removed",
        "jsonl-garbled",
        "jsonl-rechained",
        "db-tail-cut",
    ],
)
def test_audit_verify_cli_compares_both_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: object, expect: str | None
) -> None:
    """Tampering that leaves each copy a valid chain on its own (a cut-off tail, a removed
    or wholly re-hashed mirror) is still found: `audit --verify` makes the copies agree."""
    from netwarden.cli import main as cli

    store, _ = filled(tmp_path)
    tamper(store, tmp_path / JSONL_NAME)  # type: ignore[operator]
    store.close()
    rc = cli(["audit", "--verify", "--state-dir", str(tmp_path)])
    out = capsys.readouterr().out
    if expect is None:
        assert rc == 0 and "TAMPERED" not in out, out
    else:
        assert rc == 4 and expect in out, out


def test_a_lagging_mirror_is_completed_on_reopen_and_a_forged_one_is_not(tmp_path: Path) -> None:
    """A crash between the database commit and the mirror write leaves the mirror short:
    the next start completes it from the database. A mirror whose last entry disagrees
    with the database is left for `audit --verify` to report."""
    from controller.state.audit import compare_copies

    store, log = filled(tmp_path)
    path = tmp_path / JSONL_NAME
    _cut_jsonl_tail(path)
    store.close()
    store = Store(tmp_path)
    log = AuditLog(store.db, tmp_path)
    assert log.mirror_healed == 2
    db_res, mirror = log.verify(), verify_jsonl(path)
    assert (
        mirror.ok and mirror.entries == 6 and compare_copies(store.db, path, db_res, mirror) == ""
    )
    store.close()

    _rechain_jsonl(path)  # same length, different chain
    _cut_jsonl_tail(path)
    store = Store(tmp_path)
    log = AuditLog(store.db, tmp_path)
    assert log.mirror_healed == 0
    assert "differ" in compare_copies(store.db, path, log.verify(), verify_jsonl(path))
