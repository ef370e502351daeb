"""nftables interval sets (the allow-list) read back right: adjacent, overlapping,
single-address, top-of-space and IPv6 intervals, checked through our netlink read-back
AND ``nft -j list set`` inside the namespace; a controller whose protected addresses are
adjacent (the box at .2, its gateway at .1) starts, ``allow add`` beside them works, and a
refused allow-list change does not stay in the kernel.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import netns as nslab
import pytest

from controller.app import Controller
from controller.config import ControllerConfig, SafetyConfig
from controller.response.enforce.base import Enforcer
from controller.response.policy import Guard, Protected
from netwarden.errors import EnforcementError, PolicyRefused

N = ipaddress.ip_network

pytestmark = pytest.mark.kernel


def _ranges(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> list[tuple[int, int, int]]:
    """(version, first, last), overlapping and adjacent merged: the addresses covered."""
    out: list[tuple[int, int, int]] = []
    for v, a, b in sorted(
        (n.version, int(n.network_address), int(n.broadcast_address)) for n in nets
    ):
        if out and out[-1][0] == v and a <= out[-1][2] + 1:
            out[-1] = (v, out[-1][1], max(out[-1][2], b))
        else:
            out.append((v, a, b))
    return out


def nft_set(lab: nslab.Lab, name: str) -> list[tuple[int, int, int]]:
    """What ``nft -j list set inet netwarden NAME`` says the set covers (independent oracle)."""
    out = json.loads(
        lab.exec(lab.server, "nft", "-j", "list", "set", "inet", "netwarden", name).stdout
    )
    (body,) = [o["set"] for o in out["nftables"] if "set" in o]
    nets = []
    for el in body.get("elem", []):
        el = el.get("elem", {}).get("val", el) if isinstance(el, dict) and "elem" in el else el
        if isinstance(el, str):
            nets.append(N(el))
        elif "prefix" in el:
            nets.append(N(f"{el['prefix']['addr']}/{el['prefix']['len']}"))
        elif "range" in el:
            lo, hi = (ipaddress.ip_address(x) for x in el["range"])
            nets.extend(ipaddress.summarize_address_range(lo, hi))  # type: ignore[arg-type]
        else:
            raise AssertionError(f"unexpected element {el!r}")
    return _ranges(nets)


@pytest.fixture()
def nft(lab: nslab.Lab) -> Iterator[Enforcer]:
    reason = nslab.skip_reason("nft")
    if reason:
        pytest.skip(reason)
    enf = nslab.enforcer("nftables", lab.server)
    enf.setup()
    yield enf
    enf.teardown()
    enf.close()


CASES = {
    "adjacent-singles": ["10.77.0.1/32", "10.77.0.2/32"],
    "adjacent-cidrs": ["192.0.2.128/25", "192.0.3.0/24", "198.51.100.7/32"],
    "overlapping": ["198.51.100.0/24", "198.51.100.64/26", "198.51.100.255/32"],
    "single-address": ["203.0.113.7/32"],
    "top-and-bottom": ["0.0.0.0/8", "255.255.255.255/32", "255.255.255.254/32"],
    "v6-adjacent": ["fd77::1/128", "fd77::2/128", "2001:db8:0:1::/64", "2001:db8:0:2::/63"],
    "v6-overlapping-top": [
        "2001:db8::/32",
        "2001:db8:1::/48",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
    ],
    "mixed": ["10.77.0.1/32", "10.77.0.2/32", "fd77::1/128", "fd77::2/128"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_allow_intervals_round_trip(nft: Enforcer, lab: nslab.Lab, case: str) -> None:
    nets = [N(c) for c in CASES[case]]
    nft.set_allow(nets)  # raised "allow-list read-back mismatch" for adjacent intervals
    want = _ranges(nets)
    assert _ranges(nft.list_allow()) == want
    assert nft_set(lab, "allow4") + nft_set(lab, "allow6") == want
    # every listed network really is inside what was allowed (no 128.0.0.0/1 strays)
    for got in nft.list_allow():
        assert any(
            got.version == n.version and got.subnet_of(n)
            for n in ipaddress.collapse_addresses([x for x in nets if x.version == got.version])  # type: ignore[arg-type]
        ), got
    nft.set_allow([])
    assert nft.list_allow() == [] and nft_set(lab, "allow4") == [] and nft_set(lab, "allow6") == []


def test_adjacent_range_bans_read_back(nft: Enforcer, lab: nslab.Lab) -> None:
    from controller.response.enforce.base import Action, BanSpec

    a, b = N("192.0.2.0/24"), N("192.0.3.0/24")
    nft.apply([BanSpec(a, Action.DROP, 300, "d-a"), BanSpec(b, Action.DROP, None, "d-b")])
    got = {k.addr: k.decision_id for k in nft.list_bans()}
    assert got == {a: "d-a", b: "d-b"}
    assert nft_set(lab, "rng4") == _ranges([a, b])
    nft.apply(remove=[(a, Action.DROP)])
    assert {k.addr for k in nft.list_bans()} == {b}


def _controller(lab: nslab.Lab, tmp_path: Path, fixed: list[str]) -> Controller:
    guard = Guard(
        fixed=[Protected(N(f), "self" if i == 0 else "gateway") for i, f in enumerate(fixed)]
    )
    cfg = ControllerConfig(state_dir=tmp_path / "state", safety=SafetyConfig(discover_local=False))
    return Controller(cfg, enforcer=nslab.enforcer("nftables", lab.server), guard=guard)


def test_controller_starts_beside_its_gateway_and_allow_add_adjacent(
    lab: nslab.Lab, tmp_path: Path
) -> None:
    if nslab.skip_reason("nft"):
        pytest.skip(nslab.skip_reason("nft"))
    # the box at .2 and its gateway at .1: adjacent protected addresses
    ctl = _controller(lab, tmp_path, ["10.77.0.2/32", "10.77.0.1/32", "fd77::2/128", "fd77::1/128"])
    try:
        ctl.start(control=False)  # raised "allow-list read-back mismatch"
        assert nft_set(lab, "allow4") == _ranges([N("10.77.0.1/32"), N("10.77.0.2/32")])
        res = ctl.allow_add("10.77.0.3/32", "adjacent to the box", "operator:test")
        assert res["added"]
        assert nft_set(lab, "allow4") == _ranges([N("10.77.0.1/32"), N("10.77.0.2/31")])
        ctl.allow_add("fd77::3/128", "v6 adjacent", "operator:test")
        assert nft_set(lab, "allow6") == _ranges([N("fd77::1/128"), N("fd77::2/127")])
        ctl.resync()  # the periodic resync works (it failed forever)
        with pytest.raises(PolicyRefused):
            ctl.ban("10.77.0.3", 60, "allow-listed", "operator:test")
        # a change the read-back refuses is taken out of the kernel again, and the store
        # does not keep it: what the operator is told matches what is in force
        enf = ctl.enforcer
        real = enf.list_allow
        enf.list_allow = list  # type: ignore[method-assign]
        try:
            with pytest.raises(EnforcementError, match="read-back"):
                ctl.allow_add("10.77.0.9/32", "refused", "operator:test")
        finally:
            enf.list_allow = real  # type: ignore[method-assign]
        assert not any(
            v == 4 and a <= int(ipaddress.ip_address("10.77.0.9")) <= b
            for v, a, b in nft_set(lab, "allow4")
        )
        assert N("10.77.0.9/32") not in [n for n, _, _ in ctl.store.allow_list()]
        ctl.resync()
        assert nft_set(lab, "allow4") == _ranges([N("10.77.0.1/32"), N("10.77.0.2/31")])
    finally:
        ctl.enforcer.teardown()
        ctl.close()
