"""Policy alone: autonomy levels, thresholds, risky actions, breaker, ladder, anti-lockout."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from controller import config
from controller.config import AssetGroup, PolicyConfig, Threshold
from controller.detection import Detection
from controller.response.policy import (
    Guard,
    Policy,
    Protected,
    Verdict,
    build_guard,
    resolv_nameservers,
)
from netwarden.errors import ConfigError

N = ipaddress.ip_network
NOW = 1_000_000.0


def det(
    attacker: str = "203.0.113.9",
    score: float = 95,
    conf: float = 0.95,
    kind: str = "portscan",
    **kw,
) -> Detection:  # type: ignore[no-untyped-def]
    return Detection.make(
        kind, attacker, kw.pop("victims", ["198.51.100.10"]), score, conf, "ev-1", **kw
    )


def policy(guard: Guard | None = None, offences: int = 0, **cfg) -> Policy:  # type: ignore[no-untyped-def]
    cfg.setdefault("detectors", {"portscan": 3, "bruteforce": 2, "beacon": 0})
    return Policy(PolicyConfig(**cfg), guard or Guard(), lambda _a: offences)


@pytest.mark.parametrize(
    ("kind", "verdict"),
    [
        ("portscan", Verdict.ACT),
        ("bruteforce", Verdict.PENDING),
        ("beacon", Verdict.OBSERVE),
        ("unknown", Verdict.RECOMMEND),
    ],
)
def test_autonomy_level_per_detector(kind: str, verdict: Verdict) -> None:
    assert policy().decide(det(kind=kind), NOW).verdict is verdict


def test_thresholds_lower_the_level() -> None:
    p = policy()
    t3, t2 = p.cfg.thresholds[3], p.cfg.thresholds[2]
    assert p.decide(det(score=t3.score, conf=t3.confidence), NOW).verdict is Verdict.ACT
    d = p.decide(det(score=t3.score - 1, conf=1.0), NOW)
    assert d.verdict is Verdict.PENDING and d.level == 2
    d = p.decide(det(score=t2.score, conf=t2.confidence - 0.01), NOW)
    assert d.verdict is Verdict.RECOMMEND and "threshold" in d.reason


def test_asset_group_is_more_conservative() -> None:
    p = policy(asset_groups=(AssetGroup("crown-jewels", (N("198.51.100.0/24"),), 2),))
    capped = p.decide(det(victims=["198.51.100.10"]), NOW)
    assert capped.verdict is Verdict.PENDING
    # the level policy started from, and why, travel with the decision (explain reads them)
    assert (capped.autonomy, capped.autonomy_from) == (2, "asset group crown-jewels")
    free = p.decide(det(victims=["192.0.2.10"]), NOW)
    assert (
        free.verdict is Verdict.ACT
        and free.to_dict()["autonomy"] == p.level_for(det(victims=["192.0.2.10"])) == 3
    )


@pytest.mark.parametrize(
    ("kw", "risk"),
    [
        ({"attacker": "10.1.2.3"}, "internal host"),
        ({"attacker": "203.0.113.0/29"}, "range 203.0.113.0/29"),
        ({"attacker": "2001:db8:1:2::/64"}, "range 2001:db8:1:2::/64"),
        ({"attacker_clients": 500}, "serves 500 clients"),
    ],
)
def test_risky_actions_need_approval_even_at_level_3(kw: dict[str, object], risk: str) -> None:
    d = policy().decide(det(**kw), NOW)  # type: ignore[arg-type]
    assert d.verdict is Verdict.PENDING
    assert risk in d.risky


def test_range_wider_than_limit_is_refused() -> None:
    p = policy(widest_prefix_v4=24, widest_prefix_v6=48)
    assert p.decide(det(attacker="203.0.112.0/23"), NOW).verdict is Verdict.REFUSED
    assert p.decide(det(attacker="2001:db8::/32"), NOW).verdict is Verdict.REFUSED
    assert p.decide(det(attacker="203.0.113.0/24"), NOW).verdict is Verdict.PENDING
    (t,) = p.decide(det(attacker="203.0.113.0/24"), NOW).targets()
    assert t == N("203.0.113.0/24")  # one kernel entry for the range, not 256


def test_circuit_breaker_trips_and_resets() -> None:
    p = policy(breaker_bans_per_minute=3)
    for i in range(3):
        assert p.decide(det(attacker=f"203.0.113.{i + 1}"), NOW + i).verdict is Verdict.ACT
        p.note_acted(NOW + i)
    d = p.decide(det(attacker="203.0.113.50"), NOW + 5)
    assert d.verdict is Verdict.PENDING and any("circuit breaker" in r for r in d.risky)
    assert p.decide(det(attacker="203.0.113.50"), NOW + 61).verdict is Verdict.ACT


@pytest.mark.parametrize("offences", [0, 1, 2, 3, 10])
def test_escalation_ladder(offences: int) -> None:
    ladder = (60.0, 600.0, 6000.0)
    d = policy(offences=offences, ban_ladder_s=ladder).decide(det(), NOW)
    assert d.ttl_s == ladder[min(offences, len(ladder) - 1)]


def test_anti_lockout_refuses_whatever_the_level() -> None:
    guard = Guard(
        fixed=[
            Protected(N("192.0.2.1/32"), "gateway"),
            Protected(N("2001:db8::/64"), "management"),
        ],
        allow=[N("198.18.0.0/16")],
    )
    p = policy(guard)
    for attacker, word in (
        ("192.0.2.1", "gateway"),
        ("2001:db8::77", "management"),
        ("198.18.4.4", "allow-listed"),
        ("192.0.2.0/28", "gateway"),
    ):
        d = p.decide(det(attacker=attacker), NOW)
        assert d.verdict is Verdict.REFUSED and word in d.reason, (attacker, d.reason)
    assert p.check_operator(N("203.0.113.1/32")) is None
    assert set(guard.kernel_allow()) == {N("192.0.2.1/32"), N("2001:db8::/64"), N("198.18.0.0/16")}


def test_guard_from_safety_config(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n")
    cfg = config.SafetyConfig(
        sensors=(N("192.0.2.7/32"),), discover_local=False, resolv_conf=str(resolv)
    )
    guard = build_guard(cfg)
    assert {p.why for p in guard.fixed} == {"sensor", "dns"}
    assert resolv_nameservers(str(resolv)) == [N("192.0.2.53/32"), N("fe80::1/128")]
    assert guard.refusal(N("192.0.2.53/32")) is not None


def test_detection_record_validates() -> None:
    with pytest.raises(ConfigError):
        det(score=101)
    with pytest.raises(ConfigError):
        det(conf=1.5)
    d = det()
    assert Detection.from_dict(d.to_dict()) == d


def test_config_toml_round(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        textwrap.dedent("""
        [controller]
        enforce = "nftables"
        hook = "forward"
        [policy]
        default_level = 2
        detectors = { portscan = 3 }
        ban_ladder_s = [30, 60]
        [policy.thresholds]
        3 = { score = 70, confidence = 0.8 }
        [[policy.asset_groups]]
        name = "dmz"
        networks = ["192.0.2.0/24"]
        level = 1
        [safety]
        management_networks = ["10.99.0.0/16"]
    """)
    )
    cfg = config.load(f, state_dir=str(tmp_path))
    assert cfg.enforce == "nftables" and cfg.hook.value == "forward"
    assert cfg.policy.thresholds[3] == Threshold(70.0, 0.8)
    assert cfg.policy.asset_groups[0].networks == (N("192.0.2.0/24"),)
    assert cfg.safety.management_networks == (N("10.99.0.0/16"),)
    assert config.load(f, enforce="dryrun").enforce == "dryrun"  # command line wins


@pytest.mark.parametrize(
    "text",
    [
        '[controller]\nenforce = "pf"',
        '[controller]\nhook = "output"',
        "[policy]\ndefault_level = 5",
        '[safety]\nallow = ["not-a-cidr"]',
        "[policy]\nban_ladder_s = []",
        "not toml [",
    ],
)
def test_config_rejects_bad_values(tmp_path: Path, text: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError):
        config.load(f)
