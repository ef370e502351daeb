"""Store migrations: a state dir made by the first release (tests/fixtures/state_v1, made
by tests/fixtures/make_state_v1.py) opens and upgrades in place; a newer one is refused."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controller.app import Controller
from controller.config import ControllerConfig, SafetyConfig
from controller.state.audit import JSONL_NAME, AuditLog, compare_copies, verify_jsonl
from controller.state.migrations import MIGRATIONS, SCHEMA_VERSION, schema_version
from controller.state.store import DB_NAME, Store
from netwarden.errors import StoreError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "state_v1"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    shutil.copytree(FIXTURE, state)
    with sqlite3.connect(state / DB_NAME) as db:
        assert schema_version(db) == 1  # the fixture really is the old schema
    return state


def test_migrations_are_ordered_and_end_at_the_schema_version() -> None:
    versions = [v for v, _what, _step in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == versions[-1] > 1


def test_the_v1_state_dir_opens_and_upgrades_in_place(v1: Path) -> None:
    before = sqlite3.connect(v1 / DB_NAME)
    old_bans = sorted(
        before.execute("SELECT addr, action, decision_id, expires_at FROM bans").fetchall()
    )
    old_audit = before.execute("SELECT seq, hash FROM audit ORDER BY seq").fetchall()
    before.close()
    assert len(old_bans) == 3 and len(old_audit) > 5

    cfg = ControllerConfig(state_dir=v1, safety=SafetyConfig(discover_local=False))
    ctl = Controller(cfg)
    rep = ctl.start(control=False)
    assert ctl.store.migrated == list(range(2, SCHEMA_VERSION + 1))
    assert (rep.kept, rep.readded, rep.removed) == (
        3,
        0,
        0,
    )  # the dry-run kernel agreed with the store
    assert (
        sorted(
            (str(b.addr), b.action.value, b.decision_id, b.expires_at)
            for b in ctl.store.active_bans(ctl.clock())
        )
        == old_bans
    )
    assert [str(n) for n, _, _ in ctl.store.allow_list()] == ["192.0.2.0/28"]
    assert [a.proposal["target"] for a in ctl.store.approvals()] == ["203.0.113.50/32"]
    # the audit chain goes on from the old head, and the new entries say what happened
    start = ctl.audit.entries()[-1]
    assert start["event"] == "start" and start["detail"]["store_migrated"] == ctl.store.migrated
    assert [(e["seq"], e["hash"]) for e in ctl.audit.entries()[: len(old_audit)]] == old_audit
    ctl.ban("203.0.113.8", 60, "after the upgrade", "operator:test")
    assert ctl.audit.verify().ok
    ctl.close()

    with sqlite3.connect(v1 / DB_NAME) as db:
        assert schema_version(db) == SCHEMA_VERSION
    with sqlite3.connect(v1 / f"{DB_NAME}.v1.bak") as db:  # the pre-upgrade copy is kept
        assert schema_version(db) == 1
    store = Store(v1, readonly=True)
    mirror = verify_jsonl(v1 / JSONL_NAME)
    db_res = AuditLog(store.db, v1, readonly=True).verify()
    assert (
        db_res.ok and mirror.ok and compare_copies(store.db, v1 / JSONL_NAME, db_res, mirror) == ""
    )
    store.close()
    again = Store(v1)
    assert again.migrated == []  # already current: nothing applied twice
    again.close()


def test_the_v1_state_dir_verifies_read_only_without_upgrading(v1: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "netwarden", "audit", "--verify", "--state-dir", str(v1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0 and "database: chain ok, 11 entries" in r.stdout, r
    with sqlite3.connect(v1 / DB_NAME) as db:
        assert schema_version(db) == 1


def test_a_newer_schema_is_refused_untouched(v1: Path) -> None:
    with sqlite3.connect(v1 / DB_NAME) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    data = (v1 / DB_NAME).read_bytes()
    with pytest.raises(
        StoreError, match="schema version 99 is newer than this NetWarden understands"
    ):
        Store(v1)
    assert (v1 / DB_NAME).read_bytes() == data
    r = subprocess.run(
        [sys.executable, "-m", "netwarden", "controller", "--state-dir", str(v1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        r.returncode != 0
        and "newer than this NetWarden" in r.stderr
        and "Traceback" not in r.stderr
    ), r


def test_a_new_database_gets_every_step(tmp_path: Path) -> None:
    s = Store(tmp_path)
    assert s.migrated == [v for v, _, _ in MIGRATIONS]
    names = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master")}
    assert {"bans", "allow", "approvals", "offenders", "audit", "approvals_status"} <= names
    assert not list(tmp_path.glob("*.bak"))  # nothing to back up
    s.close()
