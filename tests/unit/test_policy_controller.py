"""The Controller's decision path with the dry-run backend and a fake clock (no root)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from controller.app import Controller
from controller.config import ControllerConfig, PolicyConfig, SafetyConfig
from controller.detection import Detection
from controller.response.enforce.base import Action, BanSpec
from controller.response.enforce.dryrun import DryRunEnforcer
from controller.response.policy import Guard, Protected, Verdict
from netwarden.errors import ControlError, PolicyRefused

A = ipaddress.ip_address
N = ipaddress.ip_network


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path: Path, clock: Clock, **policy) -> Controller:  # type: ignore[no-untyped-def]
    policy.setdefault("detectors", {"portscan": 3, "bruteforce": 2})
    policy.setdefault("ban_ladder_s", (60.0, 600.0, 6000.0))
    cfg = ControllerConfig(
        state_dir=tmp_path, policy=PolicyConfig(**policy), safety=SafetyConfig(discover_local=False)
    )
    guard = Guard(
        fixed=[Protected(N("192.0.2.1/32"), "gateway"), Protected(N("192.0.2.2/32"), "self")]
    )
    ctl = Controller(cfg, enforcer=DryRunEnforcer(tmp_path, clock=clock), guard=guard, clock=clock)
    ctl.start(control=False)
    return ctl


def det(attacker: str = "203.0.113.9", kind: str = "portscan") -> Detection:
    return Detection.make(kind, attacker, ["198.51.100.10"], 95, 0.97, "inc-1")


def kernel(ctl: Controller) -> dict[str, str]:
    return {str(b.addr): b.decision_id for b in ctl.enforcer.list_bans()}


def events(ctl: Controller) -> list[tuple[str, str, str]]:
    return [(e["event"], e["subject"], e["result"]) for e in ctl.audit.entries()]


def test_level3_acts_and_audits(tmp_path: Path) -> None:
    ctl = make(tmp_path, Clock())
    d = ctl.submit_detection(det())
    assert d.verdict is Verdict.ACT
    assert kernel(ctl) == {"203.0.113.9": d.id}
    assert ("decision", "203.0.113.9/32", "act") in events(ctl)
    assert ("ban", "203.0.113.9/32", "ok") in events(ctl)
    assert ctl.audit.verify().ok


def test_approval_then_enforce_and_deny(tmp_path: Path) -> None:
    ctl = make(tmp_path, Clock())
    d1 = ctl.submit_detection(det("203.0.113.10", "bruteforce"))
    d2 = ctl.submit_detection(det("203.0.113.11", "bruteforce"))
    assert d1.verdict is d2.verdict is Verdict.PENDING and kernel(ctl) == {}
    assert {a.id for a in ctl.approvals.pending(ctl.clock())} == {d1.id, d2.id}
    ctl.resolve_approval(d1.id, True, "operator:alice")
    ctl.resolve_approval(d2.id, False, "operator:alice")
    assert kernel(ctl) == {"203.0.113.10": d1.id}
    with pytest.raises(ControlError, match="already approved"):
        ctl.resolve_approval(d1.id, True, "operator:bob")


def test_approval_of_a_since_allow_listed_target_is_refused_and_says_so(tmp_path: Path) -> None:
    ctl = make(tmp_path, Clock())
    d = ctl.submit_detection(det("203.0.113.14", "bruteforce"))
    assert d.verdict is Verdict.PENDING
    ctl.allow_add("203.0.113.0/28", "partner", "operator:bob")
    with pytest.raises(PolicyRefused, match="allow-listed"):
        ctl.resolve_approval(d.id, True, "operator:alice")
    assert kernel(ctl) == {}
    (a,) = [a for a in ctl.store.approvals() if a.id == d.id]
    assert a.status == "refused" and a.decided_by == "operator:alice"
    assert ("ban", "203.0.113.14/32", "refused") in events(ctl)
    assert ctl.audit.verify().ok


def test_approval_expires(tmp_path: Path) -> None:
    clock = Clock()
    ctl = make(tmp_path, clock, approval_ttl_s=30.0)
    d = ctl.submit_detection(det("203.0.113.12", "bruteforce"))
    clock.t += 31
    ctl.tick()
    assert ctl.approvals.pending(clock()) == []
    assert ("approval-expired", d.id, "ok") in events(ctl)
    with pytest.raises(ControlError):
        ctl.resolve_approval(d.id, True, "operator:late")


def test_repeat_offender_escalates(tmp_path: Path) -> None:
    clock = Clock()
    ctl = make(tmp_path, clock)
    ttls = []
    for _ in range(4):
        d = ctl.submit_detection(det("203.0.113.20"))
        ttls.append(d.ttl_s)
        clock.t += 7000  # ban expired before the next offence
        ctl.tick()
    assert ttls == [60.0, 600.0, 6000.0, 6000.0]


def test_operator_ban_refused_never_reaches_backend(tmp_path: Path) -> None:
    ctl = make(tmp_path, Clock())
    for addr in ("192.0.2.1", "192.0.2.2"):
        with pytest.raises(PolicyRefused):
            ctl.ban(addr, 60, "oops", "operator:alice")
    assert kernel(ctl) == {}
    assert [e[2] for e in events(ctl) if e[0] == "ban"] == ["refused", "refused"]


@pytest.mark.parametrize("cidr", ["2000::/3", "10.0.0.0/8", "0.0.0.0/1"])
def test_operator_range_wider_than_the_policy_limit_is_refused(tmp_path: Path, cidr: str) -> None:
    """A typo such as 2000::/3 must not cut off a whole family: the widest-range bound of
    policy holds for operators too, and the refusal never reaches the backend."""
    ctl = make(tmp_path, Clock(), widest_prefix_v4=16, widest_prefix_v6=32)
    with pytest.raises(PolicyRefused, match="wider than"):
        ctl.ban(cidr, 60, "typo", "operator:alice")
    assert kernel(ctl) == {}
    assert [e[2] for e in events(ctl) if e[0] == "ban"] == ["refused"]
    ctl.ban("198.51.0.0/16", 60, "at the limit", "operator:alice")
    assert kernel(ctl) == {"198.51.0.0/16": kernel(ctl)["198.51.0.0/16"]}


def test_allow_add_lifts_covered_bans_and_refuses_later(tmp_path: Path) -> None:
    ctl = make(tmp_path, Clock())
    ctl.ban("203.0.113.30", 600, "x", "operator:alice")
    ctl.ban("203.0.113.99", 600, "x", "operator:alice")
    out = ctl.allow_add("203.0.113.0/27", "partner", "operator:alice")
    assert out["lifted"] == ["203.0.113.30"]
    assert kernel(ctl).keys() == {"203.0.113.99"}
    assert N("203.0.113.0/27") in ctl.enforcer.list_allow()
    assert ctl.submit_detection(det("203.0.113.31")).verdict is Verdict.REFUSED
    ctl.allow_remove("203.0.113.0/27", "operator:alice")
    assert ctl.submit_detection(det("203.0.113.31")).verdict is Verdict.ACT


def test_reconcile_readds_removes_and_expires_without_touching_the_rest(tmp_path: Path) -> None:
    clock = Clock()
    ctl = make(tmp_path, clock)
    for i in range(5):
        ctl.ban(f"203.0.113.{40 + i}", 100 + 100 * i, "x", "operator:alice")
    ctl.close()
    # drift while down: one element lost, one stray, and time passes (the 100 s ban ends)
    backend = DryRunEnforcer(tmp_path, clock=clock)
    backend.apply(
        [BanSpec(A("198.51.100.77"), Action.DROP, 1000, "d-stray")],
        [(A("203.0.113.44"), Action.DROP)],
    )
    clock.t += 150
    ctl2 = Controller(
        ctl.cfg, enforcer=DryRunEnforcer(tmp_path, clock=clock), guard=ctl.guard, clock=clock
    )
    rep = ctl2.start(control=False)
    assert (rep.kept, rep.readded, rep.removed, rep.expired) == (3, 1, 1, 1)
    bans = {str(b.addr): b.remaining_s for b in ctl2.enforcer.list_bans()}
    assert set(bans) == {"203.0.113.41", "203.0.113.42", "203.0.113.43", "203.0.113.44"}
    assert bans["203.0.113.44"] == pytest.approx(500 - 150)  # re-added with its remaining time
    assert ctl2.audit.verify().ok


def test_range_bans_nest_without_overlap(tmp_path: Path) -> None:
    ctl = make(tmp_path, Clock())
    d = ctl.submit_detection(det("203.0.113.64/27"))  # a range is risky: approval first
    assert d.verdict is Verdict.PENDING and kernel(ctl) == {}
    ctl.resolve_approval(d.id, True, "operator:alice")
    assert kernel(ctl) == {"203.0.113.64/27": d.id}
    with pytest.raises(PolicyRefused, match="already banned as part of 203.0.113.64/27"):
        ctl.ban("203.0.113.80/28", 60, "narrower", "operator:alice")
    wide = ctl.ban("203.0.113.0/24", 60, "wider", "operator:alice")
    assert kernel(ctl) == {"203.0.113.0/24": wide.id}  # the /27 was superseded
    assert [str(b.addr) for b in ctl.store.active_bans(ctl.clock())] == ["203.0.113.0/24"]
    assert ctl.unban("203.0.113.0/24", "operator:alice") == 1
    assert kernel(ctl) == {}
    with pytest.raises(PolicyRefused, match="gateway"):
        ctl.ban("192.0.2.0/30", 60, "covers the gateway", "operator:alice")


def test_circuit_breaker_survives_restart(tmp_path: Path) -> None:
    clock = Clock()
    ctl = make(tmp_path, clock, breaker_bans_per_minute=3)
    for i in range(3):
        assert ctl.submit_detection(det(f"203.0.113.{100 + i}")).verdict is Verdict.ACT
    ctl.close()
    clock.t += 5
    ctl2 = Controller(
        ctl.cfg, enforcer=DryRunEnforcer(tmp_path, clock=clock), guard=ctl.guard, clock=clock
    )
    ctl2.start(control=False)
    d = ctl2.submit_detection(det("203.0.113.200"))
    assert d.verdict is Verdict.PENDING and any("circuit breaker" in r for r in d.risky)


def test_anti_lockout_follows_a_new_host_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.response import responder as daemon

    clock = Clock()
    fixed = [Protected(N("192.0.2.2/32"), "self")]
    monkeypatch.setattr(daemon, "build_guard", lambda _safety: Guard(fixed=list(fixed)))
    cfg = ControllerConfig(state_dir=tmp_path, safety=SafetyConfig(discover_local=True))
    ctl = Controller(cfg, enforcer=DryRunEnforcer(tmp_path, clock=clock), clock=clock)
    ctl.start(control=False)
    ctl.ban("198.51.100.9", 600, "scanner", "operator:alice")
    fixed.append(Protected(N("198.51.100.9/32"), "self"))  # DHCP gave the box that address
    ctl.refresh_guard()
    assert N("198.51.100.9/32") in ctl.enforcer.list_allow()
    assert kernel(ctl) == {} and ctl.store.active_bans(clock()) == []  # the ban was lifted
    with pytest.raises(PolicyRefused, match="an address of this host"):
        ctl.ban("198.51.100.9", 600, "again", "operator:alice")
    assert ("guard-refresh", "", "ok") in events(ctl)


def test_a_learnt_sensor_address_is_protected_and_its_ban_lifted(tmp_path: Path) -> None:
    clock = Clock()
    ctl = make(tmp_path, clock)
    d = ctl.submit_detection(det("203.0.113.50"))
    assert "203.0.113.50" in kernel(ctl), d
    # A sensor connects from that address: anti-lockout now covers it, in policy and kernel.
    assert ctl.protect("203.0.113.50", "sensor") is True
    assert ctl.protect("203.0.113.50", "sensor") is False  # already protected
    assert "203.0.113.50" not in kernel(ctl)
    assert N("203.0.113.50/32") in ctl.enforcer.list_allow()
    again = ctl.submit_detection(det("203.0.113.50"))
    assert again.verdict is not Verdict.ACT and "sensor" in again.reason
    assert "203.0.113.50" not in kernel(ctl)
    assert any(e == "guard-learn" for e, _, _ in events(ctl))
    ctl.refresh_guard()  # re-reading the box's addresses keeps what was learnt
    assert N("203.0.113.50/32") in ctl.enforcer.list_allow()
    assert ctl.audit.verify().ok
    assert ctl.protect("not an address", "sensor") is False


@pytest.mark.parametrize("typo", ["198.51.100.77/24", "2001:db8::1/32"])
def test_operator_cidr_with_host_bits_is_refused_not_widened(tmp_path: Path, typo: str) -> None:
    from netwarden.errors import ConfigError

    ctl = make(tmp_path, Clock())
    with pytest.raises(ConfigError, match="host bits"):
        ctl.ban(typo, 60, "typo", "operator")
    with pytest.raises(ConfigError, match="host bits"):
        ctl.allow_add(typo, "typo", "operator")
    assert kernel(ctl) == {}
    ctl.ban("198.51.100.77", 60, "single address", "operator")
    assert "198.51.100.77" in kernel(ctl)
