"""The closed loop, live: real attack tools against a gateway running NetWarden.

A gateway namespace runs ``netwarden controller`` (nftables, forward hook, policy from a
TOML file: port scans at autonomy 3, SSH brute force at autonomy 2) and ``netwarden sensor
--iface`` on its outside bridge, publishing to the controller over the bus. From outside,
``nmap -sS`` scans the server behind the gateway, then ``hydra`` brute-forces its sshd,
while a benign client keeps fetching a page from the server's web server.

Checked: the scanner is in the kernel set within 2 s of starting the scan (the measured time
is printed; starting the tool precedes its first packet, so it is an upper bound), its later
traffic is dropped (web fetches and hydra), the benign client never is; the brute force,
at autonomy 2, waits for ``netwarden approve`` and then lands; the gateway's upstream
router and an allow-listed address scan too and are never blocked.

The tests share one lab (module fixture) and run in file order; each one asserts only on
what it caused. Skips without root or when a tool is missing (``make sysdeps`` installs
them).
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from closed_loop_lab import (
    ALLOWED,
    BRUTE,
    CLIENT,
    GATEWAY_OUT,
    SCANNER,
    SERVER,
    UPSTREAM,
    LoopLab,
    missing_tools,
)

from tests.conftest import REPO
from tests.jsonl import jsonl, one

pytestmark = pytest.mark.kernel

BUS = "tcp://127.0.0.1:5571"  # inside the gateway namespace: nothing else listens there
BAN_WITHIN_S = 2.0
CLIENT_CONNECTIONS = 100  # the benign client's loop: bounded (10 fetches, about 2 s, each)

CONFIG = f"""
[controller]
enforce = "nftables"
hook = "forward"
tick_s = 0.5
detect_tick_s = 0.1  # detection advances within 0.1 s of new sensor batches

[policy]
default_level = 3  # external attackers are blocked at once...
detectors = {{ ssh_bruteforce = 2 }}  # ...except brute force, which waits for approval

[safety]
allow = ["{ALLOWED}/32"]
resolv_conf = "/nonexistent"
"""


def _root_ruleset() -> str:
    return subprocess.run(
        ["nft", "-j", "list", "ruleset"], capture_output=True, text=True, check=False
    ).stdout


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy, at most ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = predicate()
        if got or time.monotonic() >= end:
            return got
        time.sleep(interval)


def show(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """A measurement on the terminal even in a quiet ``make test`` run."""
    with capsys.disabled():
        print(f"\n{line}", flush=True)


class Loop:
    """The running lab: namespaces, server, controller, sensor, benign client."""

    def __init__(self, lab: LoopLab, state: Path) -> None:
        self.lab = lab
        self.state = state
        from controller.response.enforce.nftables import NftablesEnforcer

        self.kernel = NftablesEnforcer(netns=lab.gw)  # reads only (no setup)

    def cli(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "netwarden", *argv, "--state-dir", str(self.state)],
                              capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)  # fmt: skip

    def banned(self) -> set[str]:
        return {str(b.addr) for b in self.kernel.list_bans()}

    def alerts(self) -> list[dict[str, Any]]:
        r = self.cli("alerts", "--json")
        if r.returncode != 0:
            return []
        return jsonl(r.stdout, "alert")

    def alerted(self, attacker: str, kind: str) -> bool:
        return any(a.get("attacker") == attacker and a.get("kind") == kind for a in self.alerts())

    def nmap(self, src: str | None = None) -> subprocess.Popen[str]:
        """A real SYN scan of the server's first 1,000 ports (bounded by nmap's host timeout)."""
        spoof = ("-S", src, "-e", "e0") if src else ()
        return self.lab.spawn(f"nmap-{src or SCANNER}", self.lab.atk, "nmap", "-sS", "-Pn", "-n", "-T4",
                              "--max-retries", "1", "--host-timeout", "15s", "-p", "1-1000", *spoof, SERVER)  # fmt: skip

    def hydra(self, ns: str, name: str, tasks: int = 4) -> subprocess.Popen[str]:
        words = self.lab.work / "passwords.txt"
        words.write_text("".join(f"guess{i}\n" for i in range(60)))
        return self.lab.spawn(name, ns, "hydra", "-I", "-l", "nwtest", "-P", str(words), "-t", str(tasks),
                              "-w", "3", "-f", f"ssh://{SERVER}")  # fmt: skip

    def pending_for(self, addr: str) -> list[dict[str, Any]]:
        r = self.cli("approvals", "--json")
        want = ipaddress.ip_network(addr)
        return [p for p in jsonl(r.stdout, "approval")
                if ipaddress.ip_network(p["proposal"]["detection"]["attacker"], strict=False) == want]  # fmt: skip

    def client_results(self) -> list[str]:
        return [ln.strip() for ln in self.lab.log("client").splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces and nftables in them)")
    missing = missing_tools()
    if missing:
        pytest.skip(
            f"missing tools: {', '.join(missing)} (make sysdeps installs nmap, hydra, openssh-server, curl)"
        )
    work = tmp_path_factory.mktemp("closed_loop")
    before = _root_ruleset()
    lab = LoopLab(work)
    try:
        lab.start_server()
        state = work / "state"
        ctl = lab.start_netwarden(CONFIG, state, BUS)
        assert (
            "hook=forward" in lab.controller_ready and "backend=nftables" in lab.controller_ready
        ), lab.log("controller")
        lp = Loop(lab, state)
        lab.start_client(CLIENT_CONNECTIONS)

        def sensor_flowing() -> bool:
            r = lp.cli("sensors", "--json")
            if r.returncode != 0:
                return False
            st = one(r.stdout, "ingest")["sensors"].get("gateway", {})
            return bool(st.get("records_by_type", {}).get("host"))

        assert wait_for(sensor_flowing, 20, 0.3), (lab.log("sensor"), lab.log("controller"))
        assert wait_for(lambda: "200" in lp.client_results(), 10), lab.log("client")
        yield lp
        assert lab.stop(ctl) == 0, lab.log("controller")
    finally:
        lab.close()
    assert _root_ruleset() == before, "root namespace ruleset changed"


def test_gateway_and_allow_listed_scanners_never_blocked(loop: Loop) -> None:
    """The gateway's upstream router and an allow-listed address scan: both are detected
    (alerts stored), policy refuses both, the kernel never holds them."""
    scans = [loop.nmap(UPSTREAM), loop.nmap(ALLOWED)]
    for p in scans:
        p.wait(timeout=30)
    assert wait_for(lambda: loop.alerted(UPSTREAM, "port_scan") and loop.alerted(ALLOWED, "port_scan"), 15, 0.5), (
        loop.alerts(), loop.lab.log("controller"))  # fmt: skip
    time.sleep(1.0)  # a decision would have landed by now
    assert not ({UPSTREAM, ALLOWED, GATEWAY_OUT} & loop.banned())
    audit = loop.cli("audit", "--json").stdout
    assert "gateway" in audit and "allow" in audit  # the refusals say why


def test_scanner_banned_within_two_seconds(loop: Loop, capsys: pytest.CaptureFixture[str]) -> None:
    """nmap -sS from outside: the scanner is in the gateway's kernel set within 2 s of the
    scan starting, its later traffic is dropped, other sources still pass."""
    assert SCANNER not in loop.banned()
    assert loop.lab.fetch(loop.lab.atk), "the scanner reaches the server before its scan"
    t0 = time.monotonic()
    scan = loop.nmap()
    landed = wait_for(lambda: SCANNER in loop.banned(), 10, 0.01)
    elapsed = time.monotonic() - t0
    show(
        capsys,
        f"closed loop: nmap -sS start to kernel element for {SCANNER}: {elapsed * 1000:.0f} ms",
    )
    assert landed, (loop.alerts(), loop.lab.log("controller"), loop.lab.log("sensor"))
    assert elapsed <= BAN_WITHIN_S, f"ban landed after {elapsed:.2f} s"
    loop.lab.stop(scan, timeout=30)
    bans = {str(b.addr): b for b in loop.kernel.list_bans()}
    why = loop.cli("explain", bans[SCANNER].decision_id)  # the kernel element names its decision
    assert why.returncode == 0 and "port_scan" in why.stdout, (why.stdout, why.stderr)
    # later traffic: a web fetch and an SSH brute force from the banned scanner go nowhere
    assert not loop.lab.fetch(loop.lab.atk, timeout=1.5)
    hydra = loop.hydra(loop.lab.atk, "hydra-banned", tasks=1)
    try:
        hydra.wait(timeout=40)
    except subprocess.TimeoutExpired:
        loop.lab.stop(hydra)
    out = loop.lab.log("hydra-banned")
    assert "valid password found" not in out and "1 of 1 target completed" not in out, out
    assert (
        "could not connect" in out.lower() or "timeout" in out.lower() or hydra.returncode != 0
    ), out
    assert loop.lab.fetch(loop.lab.client), "the benign client still passes"


def test_bruteforce_at_autonomy_two_waits_for_approval(
    loop: Loop, capsys: pytest.CaptureFixture[str]
) -> None:
    """hydra against sshd: ssh_bruteforce is at autonomy 2, so the ban waits for
    ``netwarden approve`` (the attacker still passes meanwhile), then lands.

    The brute force joins the incident of the scans above (same victim, close in time),
    whose risk calls for containment; that containment goes to policy for the new source.
    (A brute force alone alerts at its first six attempts with a score near 62: the copilot
    recommends investigating, and nothing goes to policy.)"""
    t0 = time.monotonic()
    hydra = loop.hydra(loop.lab.atk2, "hydra")
    try:
        pending = wait_for(lambda: loop.pending_for(BRUTE), 40, 0.5)
    finally:
        loop.lab.stop(hydra)
    assert pending, (loop.alerts(), loop.lab.log("hydra"), loop.lab.log("controller"))
    show(
        capsys,
        f"closed loop: hydra start to pending approval for {BRUTE}: {time.monotonic() - t0:.1f} s",
    )
    brute = [a for a in loop.alerts() if a["kind"] == "ssh_bruteforce" and a["attacker"] == BRUTE]
    assert brute and brute[0]["victims"] == [SERVER]
    scans = [a for a in loop.alerts() if a["kind"] == "port_scan"]
    assert brute[0]["incident_id"] in {a["incident_id"] for a in scans}, (brute, scans)
    time.sleep(1.0)
    assert BRUTE not in loop.banned(), "autonomy 2: nothing lands before approval"
    assert loop.lab.fetch(loop.lab.atk2), "not blocked while the approval waits"
    r = loop.cli("approve", pending[0]["id"])
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: BRUTE in loop.banned(), 5, 0.05)
    assert not loop.lab.fetch(loop.lab.atk2, timeout=1.5)


def test_benign_client_never_blocked(loop: Loop) -> None:
    """Through everything above, the benign client's every fetch was answered."""
    results = loop.client_results()
    assert len(results) >= 20, results
    assert set(results) == {"200"}, [r for r in results if r != "200"][:5]
    assert CLIENT not in loop.banned()
    banned = {ipaddress.ip_address(a) for a in loop.banned()}
    assert banned <= {ipaddress.ip_address(SCANNER), ipaddress.ip_address(BRUTE)}, banned
