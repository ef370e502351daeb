"""sqlite state: bans with expiry, allow-list, approvals, offender history."""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

import pytest

from controller.response.enforce.base import Action
from controller.state.store import Approval, Store, StoredBan
from netwarden.errors import StoreError

A = ipaddress.ip_address
N = ipaddress.ip_network
T0 = 1_700_000_000.0


def ban(addr: str, expires: float | None, action: Action = Action.DROP) -> StoredBan:
    return StoredBan(A(addr), action, f"d-{addr}", "test", "operator:alice", T0, expires)


def test_bans_expiry_and_replace(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.put_bans(
        [
            ban("203.0.113.1", T0 + 10),
            ban("203.0.113.2", None),
            ban("2001:db8::1", T0 + 100),
            ban("203.0.113.1", T0 + 50, Action.RATE_LIMIT),
        ]
    )
    assert len(s.active_bans(T0)) == 4
    assert {str(b.addr) for b in s.pop_expired(T0 + 20)} == {"203.0.113.1"}
    assert {(str(b.addr), b.action) for b in s.active_bans(T0 + 20)} == {
        ("203.0.113.2", Action.DROP),
        ("2001:db8::1", Action.DROP),
        ("203.0.113.1", Action.RATE_LIMIT),
    }
    s.put_ban(ban("2001:db8::1", T0 + 1000))  # a new ban on the same address replaces the old
    (b,) = s.get_bans(A("2001:db8::1"))
    assert b.remaining(T0) == 1000
    assert len(s.delete_ban(A("203.0.113.1"))) == 1


def test_transaction_rolls_back(tmp_path: Path) -> None:
    s = Store(tmp_path)
    with pytest.raises(RuntimeError), s.transaction():
        s.put_ban(ban("203.0.113.5", None))
        raise RuntimeError("kernel refused")
    assert s.active_bans(T0) == []


def test_allow_list(tmp_path: Path) -> None:
    s = Store(tmp_path)
    assert s.add_allow(N("192.0.2.0/24"), "lab", T0)
    assert not s.add_allow(N("192.0.2.0/24"), "again", T0)
    s.add_allow(N("2001:db8::/48"), "", T0 + 1)
    assert [n for n, _, _ in s.allow_list()] == [N("192.0.2.0/24"), N("2001:db8::/48")]
    assert s.remove_allow(N("192.0.2.0/24")) and not s.remove_allow(N("192.0.2.0/24"))


def test_offences_window(tmp_path: Path) -> None:
    s = Store(tmp_path)
    a = A("203.0.113.7")
    assert s.offences(a, T0, 100) == 0
    assert [s.record_offence(a, T0 + i, 100) for i in range(3)] == [1, 2, 3]
    assert s.offences(a, T0 + 50, 100) == 3
    assert s.offences(a, T0 + 500, 100) == 0  # forgiven after the window
    assert s.record_offence(a, T0 + 500, 100) == 1


def test_approvals(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.add_approval(
        Approval(
            "d-1", T0, T0 + 60, "pending", "internal host", {"target": "10.0.0.1/32"}, None, None
        )
    )
    s.set_approval_status("d-1", "approved", "operator:alice", T0 + 5)
    a = s.get_approval("d-1")
    assert a is not None and a.status == "approved" and a.proposal == {"target": "10.0.0.1/32"}
    assert s.approvals("pending") == []


def test_readonly_open_needs_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path / "missing", readonly=True)
    Store(tmp_path).close()
    ro = Store(tmp_path, readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.put_ban(ban("203.0.113.1", None))
