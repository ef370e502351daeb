"""End to end: `netwarden controller` running inside a namespace, driven by the CLI.

Ban, anti-lockout refusals, allow-list, restart without unban/reban, reconciliation of a
drifted kernel, unban, and the audit chain (verified, then tampered with).
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import netns as nslab
import pytest
from controller_proc import ControllerProcess

from controller.response.enforce.base import Action, BanSpec, Enforcer
from tests.jsonl import jsonl

A = ipaddress.ip_address


def reader(backend: str, lab: nslab.Lab) -> Enforcer:
    """An independent view of the kernel sets (no setup: reads only, or edits for drift)."""
    return nslab.enforcer(backend, lab.server)


class Daemon(ControllerProcess):
    def __init__(self, lab: nslab.Lab, backend: str, state: Path, config: Path) -> None:
        super().__init__(
            state, config, "--enforce", backend, prefix=("ip", "netns", "exec", lab.server)
        )


def cli(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netwarden", *argv, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.kernel
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_controller_end_to_end(backend: str, lab: nslab.Lab, tmp_path: Path) -> None:
    reason = nslab.skip_reason(*nslab.ENFORCER_TOOLS[backend])
    if reason:
        pytest.skip(reason)
    state = tmp_path / "state"
    config = tmp_path / "controller.toml"
    config.write_text(
        "[controller]\ntick_s = 0.5\n"
        '[safety]\nresolv_conf = "/nonexistent"\nmanagement_networks = ["198.18.0.0/15"]\n'
        "[policy]\ndetectors = { ssh_bruteforce = 3 }\n"
    )
    kernel = reader(backend, lab)
    daemon = Daemon(lab, backend, state, config)
    try:
        # a ban drops v4 traffic from that address only
        r = cli(state, "ban", nslab.CLIENT_V4, "--ttl", "300", "--reason", "e2e test")
        assert r.returncode == 0, r.stderr
        assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))
        assert lab.passes(nslab.CLIENT2_V4, nslab.SERVER_V4)

        # a detector's record goes through policy: level 3 for this kind, but the attacker
        # is internal (fd77::/64 is in fc00::/7), so it waits for a human
        r = cli(
            state,
            "detect",
            "--kind",
            "ssh_bruteforce",
            "--attacker",
            nslab.CLIENT2_V6,
            "--victim",
            nslab.SERVER_V6,
            "--score",
            "95",
            "--confidence",
            "0.97",
            "--evidence",
            "inc-42",
        )
        assert (
            r.returncode == 0 and r.stdout.startswith("pending:") and "internal host" in r.stdout
        ), r
        assert lab.passes(nslab.CLIENT2_V6, nslab.SERVER_V6)
        pending = jsonl(cli(state, "approvals", "--json").stdout, "approval")
        assert len(pending) == 1 and pending[0]["proposal"]["detection"]["evidence_id"] == "inc-42"
        d = {"result": pending[0]}
        r = cli(state, "approve", d["result"]["id"])
        assert r.returncode == 0, r.stderr
        assert nslab.blocked(lab.probe(nslab.CLIENT2_V6, nslab.SERVER_V6))
        # (after a v6 ban the neighbour entry may need a new solicitation: poll, do not race)
        assert lab.passes(nslab.CLIENT_V6, nslab.SERVER_V6)

        # anti-lockout: self, gateway, management network and allow-list are refused and
        # never reach the kernel
        cli(state, "allow", "add", f"{nslab.CLIENT2_V4}/32", "--note", "jump host")
        for addr, why in (
            (nslab.SERVER_V4, "this host"),
            (nslab.GATEWAY_V6, "gateway"),
            ("198.18.3.4", "management"),
            (nslab.CLIENT2_V4, "allow-listed"),
        ):
            r = cli(state, "ban", addr, "--ttl", "60")
            assert r.returncode == 3, (addr, r.stdout, r.stderr)
            assert why in r.stderr
        in_kernel = {b.addr for b in kernel.list_bans()}
        assert in_kernel == {A(nslab.CLIENT_V4), A(nslab.CLIENT2_V6)}
        assert lab.passes(nslab.CLIENT2_V4, nslab.SERVER_V4)

        r = cli(state, "bans", "--json")
        bans = {b["addr"]: b for b in jsonl(r.stdout, "ban")}
        assert set(bans) == {nslab.CLIENT_V4, nslab.CLIENT2_V6}
        assert 0 < bans[nslab.CLIENT_V4]["remaining_s"] <= 300

        # a range is one kernel entry (interval set / hash:net)
        r = cli(state, "ban", "198.51.100.0/24", "--ttl", "900", "--reason", "scanner subnet")
        assert r.returncode == 0, r.stderr

        # restart: bans stay in the kernel while the controller is down, and the restart
        # neither unbans nor re-adds them (the kernel countdown continues)
        before = {b.addr: b.remaining_s for b in kernel.list_bans()}
        elements_before = element_timeouts(backend, lab)
        assert daemon.stop() == 0
        assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))
        seq_before = request_free_audit_len(state)
        daemon = Daemon(lab, backend, state, config)
        assert daemon.counts() == {"kept": 3, "readded": 0, "removed": 0, "expired": 0}
        after = {b.addr: b.remaining_s for b in kernel.list_bans()}
        assert set(after) == set(before)
        for addr, rem in after.items():
            assert rem is not None and before[addr] is not None and rem <= before[addr]
        events = [e["event"] for e in audit_entries(state)[seq_before:]]
        assert "ban" not in events and "unban" not in events, events
        # the kernel's own view: an element re-added with its remaining time would carry
        # a shorter original timeout than the one it was banned with
        assert element_timeouts(backend, lab) == elements_before

        # drift while down: an element lost, a stray one added -> reconcile fixes exactly those
        assert daemon.stop() == 0
        kernel.apply(
            add=[BanSpec(A("203.0.113.77"), Action.DROP, 600, "d-stray")],
            remove=[(A(nslab.CLIENT_V4), Action.DROP)],
        )
        daemon = Daemon(lab, backend, state, config)
        assert daemon.counts() == {"kept": 2, "readded": 1, "removed": 1, "expired": 0}
        now_in = {b.addr: b for b in kernel.list_bans()}
        assert set(now_in) == {
            A(nslab.CLIENT_V4),
            A(nslab.CLIENT2_V6),
            ipaddress.ip_network("198.51.100.0/24"),
        }
        readded = now_in[A(nslab.CLIENT_V4)]
        assert readded.remaining_s is not None and readded.remaining_s < 300, (
            "re-added with its remaining time"
        )
        assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))

        # a short ban expires on time in the kernel, and the controller records the expiry
        r = cli(
            state, "ban", nslab.CLIENT_V4, "--ttl", "2", "--reason", "short"
        )  # replaces the 300 s ban
        assert r.returncode == 0, r.stderr
        assert lab.passes(nslab.CLIENT_V4, nslab.SERVER_V4, within=20)
        assert lab.wait_until(
            lambda: (
                nslab.CLIENT_V4
                not in {b["addr"] for b in jsonl(cli(state, "bans", "--json").stdout, "ban")}
            ),
            timeout=20,
        )
        assert lab.wait_until(  # the controller's next tick records the expiry
            lambda: any(
                e["event"] == "expire" and e["subject"] == nslab.CLIENT_V4
                for e in audit_entries(state)
            ),
            timeout=20,
        )
        r = cli(state, "ban", nslab.CLIENT_V4, "--ttl", "300", "--reason", "again")
        assert r.returncode == 0 and nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))

        # unban restores traffic
        r = cli(state, "unban", nslab.CLIENT_V4)
        assert r.returncode == 0, r.stderr
        assert lab.passes(nslab.CLIENT_V4, nslab.SERVER_V4)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        kernel.teardown()
        kernel.close()

    # the audit chain verifies from the database alone, then a tampered entry is found
    r = cli(state, "audit", "--verify")
    assert (
        r.returncode == 0
        and "database: chain ok" in r.stdout
        and "json lines: chain ok" in r.stdout
    ), r.stdout
    db = sqlite3.connect(state / "netwarden.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET subject='198.51.100.1' WHERE seq=3")
    db.execute("DROP TRIGGER audit_no_update")  # a determined attacker
    db.execute("UPDATE audit SET subject='198.51.100.1' WHERE seq=3")
    db.commit()
    db.close()
    r = cli(state, "audit", "--verify")
    assert r.returncode == 4
    assert "database: TAMPERED at entry 3" in r.stdout
    lines = (state / "audit.jsonl").read_text().splitlines()
    entry = json.loads(lines[4])
    entry["result"] = "refused"
    lines[4] = json.dumps(entry, sort_keys=True)
    (state / "audit.jsonl").write_text("\n".join(lines) + "\n")
    r = cli(state, "audit", "--verify")
    assert "json lines: TAMPERED at entry 5" in r.stdout


def element_timeouts(backend: str, lab: nslab.Lab) -> dict[str, tuple[int, str]] | None:
    """Each ban element's original timeout and comment as ``nft -j`` shows them (None for
    ipset, whose listing shows only the time left)."""
    if backend != "nftables":
        return None
    doc = json.loads(lab.exec(lab.server, "nft", "-j", "list", "table", "inet", "netwarden").stdout)
    out: dict[str, tuple[int, str]] = {}
    for obj in doc["nftables"]:
        s = obj.get("set")
        if not s or s["name"].startswith(("allow", "meter")):
            continue
        for e in s.get("elem", []):
            el = e["elem"]
            val = el["val"]
            key = (
                f"{val['prefix']['addr']}/{val['prefix']['len']}"
                if isinstance(val, dict)
                else str(val)
            )
            out[key] = (el["timeout"], el.get("comment", ""))
    assert out, "no ban elements read back"
    return out


def audit_entries(state: Path) -> list[dict[str, object]]:
    from controller.state.audit import AuditLog
    from controller.state.store import Store

    store = Store(state, readonly=True)
    try:
        return AuditLog(store.db, state, readonly=True).entries()
    finally:
        store.close()


def request_free_audit_len(state: Path) -> int:
    return len(audit_entries(state))


@pytest.mark.kernel
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_resync_heals_a_flushed_ruleset(backend: str, lab: nslab.Lab, tmp_path: Path) -> None:
    reason = nslab.skip_reason(*nslab.ENFORCER_TOOLS[backend])
    if reason:
        pytest.skip(reason)
    from controller.app import Controller
    from controller.config import ControllerConfig, SafetyConfig
    from controller.response.policy import Guard

    cfg = ControllerConfig(
        state_dir=tmp_path, enforce=backend, safety=SafetyConfig(discover_local=False)
    )
    ctl = Controller(cfg, enforcer=reader(backend, lab), guard=Guard())
    try:
        ctl.start(control=False)
        ctl.ban(nslab.CLIENT_V4, 300, "test", "operator:test")
        assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))
        if backend == "nftables":
            lab.exec(lab.server, "nft", "flush", "ruleset")
        else:
            lab.exec(lab.server, "iptables", "-F", "NETWARDEN")
            lab.exec(lab.server, "ipset", "flush", "nw-ban4")
        assert lab.passes(nslab.CLIENT_V4, nslab.SERVER_V4)
        rep = ctl.resync()
        assert (rep.kept, rep.readded) == (0, 1)
        assert nslab.blocked(lab.probe(nslab.CLIENT_V4, nslab.SERVER_V4))
        assert ctl.resync().readded == 0  # and a healthy state is left alone
    finally:
        ctl.enforcer.teardown()
        ctl.close()


@pytest.mark.kernel
def test_resync_leaves_healthy_rules_alone_and_repairs_altered_ones(
    lab: nslab.Lab, tmp_path: Path
) -> None:
    import json as _json

    from controller.app import Controller
    from controller.config import ControllerConfig, SafetyConfig
    from controller.response.policy import Guard

    def handles() -> list[int]:
        out = lab.exec(
            lab.server, "nft", "-j", "list", "chain", "inet", "netwarden", "input"
        ).stdout
        return [o["rule"]["handle"] for o in _json.loads(out)["nftables"] if "rule" in o]

    cfg = ControllerConfig(
        state_dir=tmp_path, enforce="nftables", safety=SafetyConfig(discover_local=False)
    )
    ctl = Controller(cfg, enforcer=reader("nftables", lab), guard=Guard())
    try:
        ctl.start(control=False)
        before = handles()
        ctl.resync()
        assert handles() == before, "a healthy chain is not rewritten (counters kept)"
        lab.exec(
            lab.server,
            "nft",
            "delete",
            "rule",
            "inet",
            "netwarden",
            "input",
            "handle",
            str(before[0]),
        )
        ctl.resync()
        assert len(handles()) == len(before) and handles() != before
        assert any(e["event"] == "repair" for e in ctl.audit.entries())
    finally:
        ctl.enforcer.teardown()
        ctl.close()


@pytest.mark.kernel
def test_nftables_controller_runs_without_any_binary_on_path(
    lab: nslab.Lab, tmp_path: Path
) -> None:
    """The nftables backend talks netlink only: with an empty PATH (no nft, no ip) the
    controller still sets up, bans v4 and v6, reads back and unbans."""

    state = tmp_path / "state"
    config = tmp_path / "c.toml"
    config.write_text('[safety]\nresolv_conf = "/nonexistent"\n')
    empty = tmp_path / "empty-path"
    empty.mkdir()
    ctl = ControllerProcess(
        state,
        config,
        "--enforce",
        "nftables",
        prefix=("ip", "netns", "exec", lab.server, "env", f"PATH={empty}"),
    )
    kernel = reader("nftables", lab)
    try:
        assert "controller ready: backend=nftables" in ctl.ready, ctl.ready
        for addr in (nslab.CLIENT_V4, nslab.CLIENT_V6):
            server = nslab.SERVER_V4 if ":" not in addr else nslab.SERVER_V6
            assert (
                cli(state, "ban", addr, "--ttl", "120", "--reason", "no binaries").returncode == 0
            )
            assert nslab.blocked(lab.probe(addr, server))
        assert {b.addr for b in kernel.list_bans()} == {A(nslab.CLIENT_V4), A(nslab.CLIENT_V6)}
        for addr in (nslab.CLIENT_V4, nslab.CLIENT_V6):
            assert cli(state, "unban", addr).returncode == 0
        assert kernel.list_bans() == []
        # (after a v6 ban the neighbour entry may need a new solicitation: poll, do not race)
        assert lab.passes(nslab.CLIENT_V6, nslab.SERVER_V6)
        assert ctl.stop() == 0
    finally:
        ctl.kill()
        kernel.teardown()
        kernel.close()
