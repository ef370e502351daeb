"""Operator input the controller must refuse (issue 9): TTLs that are not finite and
bounded, targets that can never be a packet's source (multicast, broadcast, unspecified,
IPv4-mapped, scoped), and an allow-list entry that would lift every ban."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.app import Controller
from controller.config import ControllerConfig, PolicyConfig, SafetyConfig
from controller.detection import Detection
from controller.response.enforce.dryrun import DryRunEnforcer
from controller.response.policy import Verdict
from controller.response.targets import MAX_TTL_S, check_ttl
from netwarden.errors import ConfigError, PolicyRefused
from tests.conftest import REPO

N = ipaddress.ip_network


@pytest.fixture()
def ctl(tmp_path: Path) -> Iterator[Controller]:
    cfg = ControllerConfig(state_dir=tmp_path, policy=PolicyConfig(detectors={"portscan": 3}),
                           safety=SafetyConfig(discover_local=False))  # fmt: skip
    c = Controller(cfg, enforcer=DryRunEnforcer(tmp_path))
    c.start(control=False)
    yield c
    c.close()


def state(c: Controller) -> tuple[list[str], list[str]]:
    return [str(b.addr) for b in c.store.active_bans(c.clock())], [
        str(b.addr) for b in c.enforcer.list_bans()
    ]


BAD_TTLS = [
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1",
    "0",
    float("nan"),
    float("inf"),
    MAX_TTL_S * 2,
    "abc",
    True,
]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=[repr(t) for t in BAD_TTLS])
def test_bad_ttl_is_refused_with_a_clear_error(ctl: Controller, ttl: object) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        ctl.ban("203.0.113.5", ttl, "bad ttl", "operator:test")  # type: ignore[arg-type]
    # through the control-socket handler too (JSON carries NaN and Infinity)
    with pytest.raises(ConfigError, match="ttl"):
        ctl.handle(
            "ban",
            {
                "addr": "203.0.113.5",
                "ttl": ttl if not isinstance(ttl, str) else float(ttl) if ttl != "abc" else ttl,
            },
            "operator:test",
        )
    assert state(ctl) == ([], [])


def test_good_ttls_still_work(ctl: Controller) -> None:
    assert check_ttl(None) is None and check_ttl("60") == 60.0 and check_ttl(MAX_TTL_S) == MAX_TTL_S
    d = ctl.ban("203.0.113.5", 0.5, "short", "operator:test")
    assert d.ttl_s == 0.5 and state(ctl) == (["203.0.113.5"], ["203.0.113.5"])


@pytest.mark.parametrize("ttl", ["nan", "inf", "1e308", "-1"])
def test_cli_refuses_bad_ttl_before_asking_the_controller(tmp_path: Path, ttl: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "netwarden", "ban", "203.0.113.5", "--ttl", ttl,
                           "--state-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert (
        "ttl" in proc.stderr
        and "Traceback" not in proc.stderr
        and "no controller" not in proc.stderr
    )


SPECIAL = {
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "224.0.0.0/24": "multicast",
    "255.255.255.255": "broadcast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "::ffff:127.0.0.1": "IPv4-mapped",
    "::ffff:198.51.100.7": "IPv4-mapped",
    "fe80::1%eth0": "scoped",
}


@pytest.mark.parametrize("addr", list(SPECIAL))
def test_special_targets_are_refused_with_the_reason(ctl: Controller, addr: str) -> None:
    with pytest.raises(PolicyRefused, match=SPECIAL[addr]):
        ctl.ban(addr, 60, "special", "operator:test")
    assert state(ctl) == ([], [])
    # a detector cannot get them banned either
    if "%" not in addr and "/" not in addr:
        d = ctl.submit_detection(
            Detection.make("portscan", addr, ["198.51.100.10"], 95, 0.97, "inc")
        )
        assert d.verdict is Verdict.REFUSED and SPECIAL[addr] in d.reason
        assert state(ctl) == ([], [])


def test_scoped_ban_does_not_flip_on_resync(ctl: Controller) -> None:
    with pytest.raises(PolicyRefused, match="ban fe80::1 instead"):
        ctl.ban("fe80::1%eth0", 60, "scoped", "operator:test")
    ctl.ban("fe80::1", 60, "bare", "operator:test")
    for _ in range(3):
        rep = ctl.resync()
        assert (rep.readded, rep.removed) == (0, 0)
        assert state(ctl) == (["fe80::1"], ["fe80::1"])


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "0.0.0.0/1", "2000::/3"])
def test_allow_everything_needs_force(ctl: Controller, cidr: str) -> None:
    ctl.ban("203.0.113.5", 600, "scanner", "operator:test")
    ctl.ban("2001:db8::5", 600, "scanner", "operator:test")
    with pytest.raises(PolicyRefused, match="--force"):
        ctl.allow_add(cidr, "oops", "operator:test")
    with pytest.raises(PolicyRefused, match="--force"):
        ctl.handle("allow-add", {"cidr": cidr, "force": "yes"}, "operator:test")  # only a real true
    assert sorted(state(ctl)[1]) == ["2001:db8::5", "203.0.113.5"]
    assert ctl.store.allow_list() == []
    res = ctl.handle("allow-add", {"cidr": cidr, "force": True}, "operator:test")
    assert res["added"]
    if N(cidr).prefixlen == 0:
        assert res["lifted"]


def test_scoped_allow_is_refused_and_normal_allow_works(ctl: Controller) -> None:
    with pytest.raises(PolicyRefused, match="scoped"):
        ctl.allow_add("fe80::%eth0/64", "scoped", "operator:test")
    assert ctl.allow_add("10.0.0.0/8", "lab", "operator:test")["added"]
    assert N("10.0.0.0/8") in ctl.enforcer.list_allow()
