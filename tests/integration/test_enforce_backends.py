"""Enforcer backends against a real kernel: traffic across a veth in throwaway namespaces.

nftables and iptables run in-process (their sockets / commands bound to the server
namespace); dry-run goes through the same contract checks without traffic.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import netns as nslab
import pytest

from controller.response.enforce.base import Action, BanSpec, Enforcer
from controller.response.enforce.dryrun import DryRunEnforcer

A = ipaddress.ip_address
N = ipaddress.ip_network
KERNEL_BACKENDS = ("nftables", "iptables")


def _skip(backend: str) -> None:
    reason = nslab.skip_reason(*nslab.ENFORCER_TOOLS[backend])
    if reason:
        pytest.skip(reason)


def make(backend: str, lab: nslab.Lab) -> Enforcer:
    return nslab.enforcer(backend, lab.server)


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel(request: pytest.FixtureRequest, lab: nslab.Lab) -> Iterator[Enforcer]:
    _skip(request.param)
    enf = make(request.param, lab)
    enf.setup()
    yield enf
    enf.teardown()
    enf.close()


PAIRS = [
    pytest.param(nslab.CLIENT_V4, nslab.CLIENT2_V4, nslab.SERVER_V4, id="v4"),
    pytest.param(nslab.CLIENT_V6, nslab.CLIENT2_V6, nslab.SERVER_V6, id="v6"),
]


@pytest.mark.kernel
@pytest.mark.parametrize(("attacker", "bystander", "server"), PAIRS)
def test_ban_drops_and_unban_restores(
    kernel: Enforcer, lab: nslab.Lab, attacker: str, bystander: str, server: str
) -> None:
    assert lab.passes(attacker, server)
    kernel.apply([BanSpec(A(attacker), Action.DROP, 300, "d-test1")])
    assert nslab.blocked(lab.probe(attacker, server))
    assert lab.passes(bystander, server), "a ban must hit only its address"
    (kb,) = [b for b in kernel.list_bans() if b.addr == A(attacker)]
    assert kb.decision_id == "d-test1" and kb.remaining_s is not None and 0 < kb.remaining_s <= 300
    kernel.apply(remove=[(A(attacker), Action.DROP)])
    assert lab.passes(attacker, server)
    assert kernel.list_bans() == []


@pytest.mark.kernel
@pytest.mark.parametrize(("attacker", "bystander", "server"), PAIRS)
def test_ban_expires_on_time(
    kernel: Enforcer, lab: nslab.Lab, attacker: str, bystander: str, server: str
) -> None:
    kernel.apply([BanSpec(A(attacker), Action.DROP, 2, "d-short")])
    assert nslab.blocked(lab.probe(attacker, server))
    # the kernel expires the element by itself; generous bound, polled
    assert lab.wait_until(lambda: not kernel.list_bans(), timeout=20)
    assert lab.passes(attacker, server)


@pytest.mark.kernel
@pytest.mark.parametrize(("attacker", "bystander", "server"), PAIRS)
def test_allow_list_wins(
    kernel: Enforcer, lab: nslab.Lab, attacker: str, bystander: str, server: str
) -> None:
    kernel.apply(
        [
            BanSpec(A(attacker), Action.DROP, None, "d-perm"),
            BanSpec(A(bystander), Action.DROP, None, "d-perm2"),
        ]
    )
    assert nslab.blocked(lab.probe(attacker, server))
    nets = [N(attacker), N("192.0.2.0/24"), N("192.0.3.0/24"), N("2001:db8::/32")]
    kernel.set_allow(nets)
    want = sorted(["192.0.2.0/23", str(N(attacker)), "2001:db8::/32"])
    assert sorted(map(str, kernel.list_allow())) == want
    if kernel.name == "nftables":  # an independent decoder: the nft binary's JSON
        assert sorted(map(str, _nft_allow(lab))) == want
    assert lab.passes(attacker, server), "allow-listed source must pass despite its ban"
    assert nslab.blocked(lab.probe(bystander, server)), "the allow-list covers only its networks"
    kernel.set_allow([])
    assert kernel.list_allow() == []
    assert nslab.blocked(lab.probe(attacker, server))


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("attacker", "bystander", "server", "prefix", "wider"),
    [
        pytest.param(
            nslab.CLIENT_V4,
            nslab.CLIENT2_V4,
            nslab.SERVER_V4,
            "10.77.0.0/31",
            "10.77.0.0/30",
            id="v4",
        ),
        pytest.param(
            nslab.CLIENT_V6, nslab.CLIENT2_V6, nslab.SERVER_V6, "fd77::/127", "fd77::/126", id="v6"
        ),
    ],
)
def test_range_ban_is_one_entry_and_expires(
    kernel: Enforcer,
    lab: nslab.Lab,
    attacker: str,
    bystander: str,
    server: str,
    prefix: str,
    wider: str,
) -> None:
    from controller.response.enforce.base import target

    rng = target(prefix)
    kernel.apply([BanSpec(rng, Action.DROP, 300, "d-range")])
    assert [(b.addr, b.decision_id) for b in kernel.list_bans()] == [(rng, "d-range")]
    assert nslab.blocked(lab.probe(attacker, server))
    assert lab.passes(bystander, server)
    # a wider range replaces the narrower one in one transaction (interval sets refuse overlap)
    kernel.apply([BanSpec(target(wider), Action.DROP, 2, "d-wider")], remove=[(rng, Action.DROP)])
    assert [(b.addr, b.decision_id) for b in kernel.list_bans()] == [(target(wider), "d-wider")]
    assert nslab.blocked(lab.probe(bystander, server))
    assert lab.wait_until(lambda: not kernel.list_bans(), timeout=20)
    assert lab.passes(attacker, server)


@pytest.mark.kernel
def test_rate_limit_is_softer_than_drop_and_per_source(kernel: Enforcer, lab: nslab.Lab) -> None:
    burst = 200
    kernel.apply(
        [
            BanSpec(A(nslab.CLIENT_V4), Action.RATE_LIMIT, 300, "d-rl"),
            BanSpec(A(nslab.CLIENT2_V4), Action.RATE_LIMIT, 300, "d-rl2"),
            BanSpec(A(nslab.CLIENT_V6), Action.DROP, 300, "d-drop"),
        ]
    )
    first = lab.udp_burst(nslab.CLIENT_V4, nslab.SERVER_V4, burst)
    second = lab.udp_burst(nslab.CLIENT2_V4, nslab.SERVER_V4, burst)
    dropped = lab.udp_burst(nslab.CLIENT_V6, nslab.SERVER_V6, burst)
    assert dropped == 0
    assert 0 < first < burst  # the limiter's burst passes, the rest of a fast burst is dropped
    # each source has its own limiter: the first burst did not use up the second's budget
    # (limit_burst is 20 packets; a shared limiter would leave only what refilled meanwhile)
    assert second >= 15, (first, second)


@pytest.mark.kernel
def test_bulk_commit_spans_many_messages_and_reads_back(kernel: Enforcer) -> None:
    v4 = [
        BanSpec(ipaddress.IPv4Address(0xC6336400 + i), Action.DROP, 600, f"d-{i:05d}")
        for i in range(5000)
    ]
    v6 = [
        BanSpec(ipaddress.IPv6Address((0x20010DB8 << 96) + i), Action.DROP, None, f"e-{i:05d}")
        for i in range(3000)
    ]
    kernel.apply(v4 + v6)  # > 64 KiB of elements per family: several messages
    got = {(b.addr, b.decision_id) for b in kernel.list_bans()}
    assert got == {(s.addr, s.decision_id) for s in v4 + v6}
    absent = [(A("203.0.113.99"), Action.DROP), (A("2001:db8:ffff::1"), Action.RATE_LIMIT)]
    kernel.apply(remove=[(s.addr, s.action) for s in v4 + v6] + absent)
    assert kernel.list_bans() == []


@pytest.mark.kernel
def test_replacing_a_ban_updates_timeout_and_decision(kernel: Enforcer, lab: nslab.Lab) -> None:
    a = A(nslab.CLIENT_V4)
    kernel.apply([BanSpec(a, Action.DROP, 3000, "d-first")])
    kernel.apply([BanSpec(a, Action.DROP, 60, "d-second")], remove=[(a, Action.DROP)])
    (b,) = kernel.list_bans()
    assert b.decision_id == "d-second" and b.remaining_s is not None and b.remaining_s <= 60
    assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))


@pytest.mark.kernel
def test_unban_of_absent_element_does_not_abort_the_batch(kernel: Enforcer) -> None:
    kernel.apply(
        add=[BanSpec(A("203.0.113.5"), Action.DROP, 60, "d-x")],
        remove=[(A("203.0.113.6"), Action.DROP), (A("2001:db8::6"), Action.DROP)],
    )
    assert [b.addr for b in kernel.list_bans()] == [A("203.0.113.5")]


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("attacker", "server", "banned", "absent"),
    [
        pytest.param(
            nslab.CLIENT_V4,
            nslab.SERVER_V4,
            "10.77.0.0/31",
            ("10.77.0.0/30", "10.77.0.0/24"),
            id="v4",
        ),
        pytest.param(
            nslab.CLIENT_V6, nslab.SERVER_V6, "fd77::/127", ("fd77::/126", "fd77::/64"), id="v6"
        ),
    ],
)
def test_unbanning_an_absent_range_leaves_an_overlapping_one(
    kernel: Enforcer,
    lab: nslab.Lab,
    attacker: str,
    server: str,
    banned: str,
    absent: tuple[str, ...],
) -> None:
    """An interval-set entry is keyed by its start: removing a range that was never banned
    but starts where a banned one does must not lift the banned one."""
    from controller.response.enforce.base import target

    kernel.apply([BanSpec(target(banned), Action.DROP, 300, "d-kept")])
    kernel.apply(remove=[(target(r), Action.DROP) for r in absent])
    assert [(b.addr, b.decision_id) for b in kernel.list_bans()] == [(target(banned), "d-kept")]
    assert nslab.blocked(lab.probe(attacker, server))


@pytest.mark.kernel
def test_setup_again_keeps_elements_and_their_expiry(kernel: Enforcer, lab: nslab.Lab) -> None:
    kernel.apply([BanSpec(A(nslab.CLIENT_V4), Action.DROP, 300, "d-keep")])
    (before,) = kernel.list_bans()
    lab.wait_until(lambda: False, timeout=1.1)  # let the clock move past a second
    kernel.setup()  # what a restart does
    (after,) = kernel.list_bans()
    assert after.decision_id == "d-keep"
    assert before.remaining_s is not None and after.remaining_s is not None
    assert after.remaining_s < before.remaining_s, "setup must not re-add (reset) existing bans"
    assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))


@pytest.mark.kernel
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_hook_change_keeps_bans(backend: str, lab: nslab.Lab) -> None:
    """input -> prerouting (raw, before conntrack) -> forward: bans survive, traffic follows."""
    from controller.response.enforce.base import Hook

    _skip(backend)
    first = make_hooked(backend, lab, Hook.INPUT)
    first.setup()
    try:
        first.apply([BanSpec(A(nslab.CLIENT_V4), Action.DROP, 300, "d-hook")])
        raw = make_hooked(backend, lab, Hook.PREROUTING)
        raw.setup()
        assert [b.decision_id for b in raw.list_bans()] == ["d-hook"]
        assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))
        if backend == "nftables":
            chains = {c["chain"]["name"]: c["chain"] for c in _nft_json(lab) if "chain" in c}
            assert set(chains) == {"prerouting"} and chains["prerouting"]["prio"] == -300
        else:
            assert (
                "NETWARDEN"
                in lab.exec(lab.server, "iptables", "-t", "raw", "-S", "PREROUTING").stdout
            )
            assert "NETWARDEN" not in lab.exec(lab.server, "iptables", "-S", "INPUT").stdout
        # forward: a gateway's hook; traffic to this host no longer passes our chain
        fwd = make_hooked(backend, lab, Hook.FORWARD)
        fwd.setup()
        assert [b.decision_id for b in fwd.list_bans()] == ["d-hook"]
        assert lab.passes(nslab.CLIENT_V4, nslab.SERVER_V4)
        if backend == "nftables":
            chains = {c["chain"]["name"]: c["chain"] for c in _nft_json(lab) if "chain" in c}
            assert set(chains) == {"forward"} and chains["forward"]["hook"] == "forward"
    finally:
        first.teardown()


def make_hooked(backend: str, lab: nslab.Lab, hook: object) -> Enforcer:
    return nslab.enforcer(backend, lab.server, hook)


def _nft_allow(lab: nslab.Lab) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    import json

    nets = []
    for set_name in ("allow4", "allow6"):
        out = lab.exec(lab.server, "nft", "-j", "list", "set", "inet", "netwarden", set_name).stdout
        (s,) = [o["set"] for o in json.loads(out)["nftables"] if "set" in o]
        for e in s.get("elem", []):
            nets.append(
                N(f"{e['prefix']['addr']}/{e['prefix']['len']}") if isinstance(e, dict) else N(e)
            )
    return nets


def _nft_json(lab: nslab.Lab) -> list[dict[str, dict[str, object]]]:
    import json

    out = lab.exec(lab.server, "nft", "-j", "list", "table", "inet", "netwarden").stdout
    return json.loads(out)["nftables"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def routed() -> Iterator[nslab.Lab]:
    reason = nslab.skip_reason("nft", "sysctl")
    if reason:
        pytest.skip(reason)
    with nslab.Lab(routed=True) as lab:
        lab.start_echo(lab.backend)
        yield lab


@pytest.mark.kernel
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize(
    ("attacker", "bystander", "target"),
    [
        pytest.param(nslab.CLIENT_V4, nslab.CLIENT2_V4, nslab.BACKEND_V4, id="v4"),
        pytest.param(nslab.CLIENT_V6, nslab.CLIENT2_V6, nslab.BACKEND_V6, id="v6"),
    ],
)
def test_forward_hook_protects_hosts_behind_a_gateway(
    backend: str, routed: nslab.Lab, attacker: str, bystander: str, target: str
) -> None:
    from controller.response.enforce.base import Hook

    _skip(backend)
    gw = make_hooked(backend, routed, Hook.FORWARD)
    gw.setup()
    try:
        assert routed.passes(attacker, target)
        gw.apply([BanSpec(A(attacker), Action.DROP, 300, "d-fwd")])
        assert nslab.blocked(routed.probe(attacker, target))
        assert routed.passes(bystander, target)
        gateway = nslab.SERVER_V6 if ":" in attacker else nslab.SERVER_V4
        assert routed.probe(attacker, gateway)["icmp"], (
            "the forward hook leaves the gateway itself alone"
        )
        gw.apply(remove=[(A(attacker), Action.DROP)])
        assert routed.passes(attacker, target)
    finally:
        gw.teardown()


def test_element_messages_stay_under_64k() -> None:
    from controller.response.enforce import netlink_msgs as nl

    els = [nl.element(ipaddress.IPv6Address(i).packed, 600_000, f"d-{i:012x}") for i in range(5000)]
    bodies = list(nl.element_list_bodies("netwarden", "ban6", els))
    assert len(bodies) > 1
    for body in bodies:
        (elements,) = [v for k, v in nl.iter_attrs(body) if k == nl.ELEM_LIST_ELEMENTS]
        assert len(elements) + 4 < 65536
    decoded = [e for b in bodies for e in nl.decode_elements(b)]
    assert [(e.key, e.timeout_ms, e.comment) for e in decoded] == [
        (ipaddress.IPv6Address(i).packed, 600_000, f"d-{i:012x}") for i in range(5000)
    ]


# --- the same contract without a kernel ----------------------------------------------------
def test_dryrun_contract(tmp_path: Path) -> None:
    now = [1000.0]
    enf = DryRunEnforcer(tmp_path, clock=lambda: now[0])
    enf.setup()
    enf.apply(
        [
            BanSpec(A("203.0.113.5"), Action.DROP, 60, "d-1"),
            BanSpec(A("2001:db8::5"), Action.RATE_LIMIT, None, "d-2"),
        ],
        remove=[(A("203.0.113.9"), Action.DROP)],
    )
    assert {(b.addr, b.action, b.decision_id) for b in enf.list_bans()} == {
        (A("203.0.113.5"), Action.DROP, "d-1"),
        (A("2001:db8::5"), Action.RATE_LIMIT, "d-2"),
    }
    enf.set_allow([N("192.0.2.0/25"), N("192.0.2.128/25")])
    assert enf.list_allow() == [N("192.0.2.0/24")]
    now[0] += 61
    reopened = DryRunEnforcer(tmp_path, clock=lambda: now[0])  # state survives a restart
    assert [b.addr for b in reopened.list_bans()] == [A("2001:db8::5")]
    assert reopened.list_allow() == [N("192.0.2.0/24")]
    journal = (tmp_path / "dryrun.jsonl").read_text().splitlines()
    assert sum('"would": "ban"' in line for line in journal) == 2
