"""Enforcement speed in a throwaway namespace: commit 100k bans, reconcile 100k after a
restart, and decision -> verified-in-kernel latency (p50/p99) at 10 and 1000 decisions/s.

Baselines measured in the same run: ``nft -f`` loading the same 100k elements (the nft
binary's own netlink batching) and ``ipset restore`` for the iptables backend. For scale:
CrowdSec's firewall bouncer is reported to need about 45 s for 100k, fail2ban hours.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from controller.app import Controller
from controller.config import ControllerConfig, PolicyConfig, SafetyConfig
from controller.detection import Detection
from controller.response.enforce.base import Action, BanSpec
from controller.response.enforce.nftables import NftablesEnforcer
from controller.response.policy import Guard
from controller.state.store import StoredBan

N_BANS = 100_000
BASE = int(ipaddress.IPv4Address("100.64.0.0"))  # outside the default internal networks


def _specs(n: int, ttl: float = 3600) -> list[BanSpec]:
    return [
        BanSpec(ipaddress.IPv4Address(BASE + i), Action.DROP, ttl, f"d-{i:06x}") for i in range(n)
    ]


def _ns(name: str, *cmd: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["ip", "netns", "exec", name, *cmd], input=stdin, text=True, check=True, capture_output=True
    )


def bench_commit(ns: str) -> dict[str, float]:
    out: dict[str, float] = {}
    enf = NftablesEnforcer(netns=ns)
    enf.setup()
    specs = _specs(N_BANS)
    t = time.perf_counter()
    enf.apply(specs)  # includes the read-back of all 100k
    out["nftables commit 100k (verified)"] = time.perf_counter() - t
    t = time.perf_counter()
    assert len(enf.list_bans()) == N_BANS
    out["nftables read back 100k"] = time.perf_counter() - t
    t = time.perf_counter()
    enf.apply(remove=[(s.addr, s.action) for s in specs])
    out["nftables unban 100k (verified)"] = time.perf_counter() - t
    enf.teardown()
    enf.close()

    # baseline: the nft binary loading the same elements from a file
    body = ",".join(f'{s.addr} timeout 3600s comment "{s.decision_id}"' for s in specs)
    script = f"table inet nwbase {{\nset s {{\ntype ipv4_addr; flags timeout\nelements = {{ {body} }}\n}}\n}}\n"
    t = time.perf_counter()
    _ns(ns, "nft", "-f", "-", stdin=script)
    out["baseline: nft -f 100k"] = time.perf_counter() - t
    _ns(ns, "nft", "delete", "table", "inet", "nwbase")

    if shutil.which("ipset") and shutil.which("iptables"):
        from controller.response.enforce.iptables import IptablesEnforcer

        ipt = IptablesEnforcer(netns=ns)
        ipt.setup()
        t = time.perf_counter()
        ipt.apply(specs)
        out["iptables+ipset commit 100k (verified)"] = time.perf_counter() - t
        ipt.teardown()
    return out


def bench_reconcile(ns: str, state: Path) -> dict[str, float]:
    """A controller restart over 100k stored + kernel bans: all kept, then 10% drifted."""
    out: dict[str, float] = {}
    cfg = ControllerConfig(
        state_dir=state, enforce="nftables", safety=SafetyConfig(discover_local=False)
    )
    first = Controller(cfg, enforcer=NftablesEnforcer(netns=ns), guard=Guard())
    first.start(control=False)
    specs = _specs(N_BANS)
    for i in range(0, N_BANS, 10_000):  # bulk load, 10k per store+kernel commit
        now = time.time()
        chunk = specs[i : i + 10_000]
        with first.store.transaction():
            first.store.put_bans(
                [
                    StoredBan(s.addr, s.action, s.decision_id, "bench", "bench", now, now + 3600)
                    for s in chunk
                ]
            )
            first.enforcer.apply(chunk)
    first.close()
    ctl = Controller(cfg, enforcer=NftablesEnforcer(netns=ns), guard=Guard())
    t = time.perf_counter()
    rep = ctl.start(control=False)
    out["reconcile 100k after restart (all kept)"] = time.perf_counter() - t
    assert rep.kept == N_BANS and rep.readded == 0 and rep.removed == 0, rep
    ctl.close()
    # drift: 10k elements lost while down
    raw = NftablesEnforcer(netns=ns)
    raw.apply(remove=[(s.addr, s.action) for s in specs[:10_000]])
    ctl = Controller(cfg, enforcer=NftablesEnforcer(netns=ns), guard=Guard())
    t = time.perf_counter()
    rep = ctl.start(control=False)
    out["reconcile 100k after restart (10k re-added)"] = time.perf_counter() - t
    assert rep.readded == 10_000, rep
    ctl.close()
    raw.teardown()
    raw.close()
    return out


def bench_latency(ns: str, state: Path, rate: float, seconds: float) -> tuple[float, float, int]:
    """Open loop: decisions are scheduled at ``rate``; latency is from the scheduled time
    to ``submit_detection`` returning, i.e. policy + store + audit + kernel commit +
    read-back, including any queueing behind earlier decisions."""
    cfg = ControllerConfig(
        state_dir=state,
        enforce="nftables",
        safety=SafetyConfig(discover_local=False),
        policy=PolicyConfig(
            detectors={"bench": 3}, breaker_bans_per_minute=10**9, internal_networks=()
        ),
    )
    ctl = Controller(cfg, enforcer=NftablesEnforcer(netns=ns), guard=Guard())
    ctl.start(control=False)
    n = int(rate * seconds)
    lat: list[float] = []
    warm = Detection.make(
        "bench", str(ipaddress.IPv4Address(BASE + 199_999)), ["192.0.2.10"], 99, 0.99, "warm-up"
    )
    ctl.submit_detection(warm)  # first-call costs (imports, sqlite pages) are not latency
    start = time.perf_counter() + 0.05
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        det = Detection.make(
            "bench",
            str(ipaddress.IPv4Address(BASE + 200_000 + i)),
            ["192.0.2.10"],
            99,
            0.99,
            f"ev-{i}",
        )
        ctl.submit_detection(det)
        lat.append(time.perf_counter() - due)
    ctl.enforcer.teardown()
    ctl.close()
    q = statistics.quantiles(lat, n=100)
    return q[49], q[98], n


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("nft"):
        print("bench_enforce: needs root and nft (runs in a throwaway namespace); skipped")
        return 0
    ns = f"nwbench{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = bench_commit(ns)
            results.update(bench_reconcile(ns, Path(tmp) / "reconcile"))
            print(f"{'measurement':48s} {'seconds':>9s}")
            for k, v in results.items():
                print(f"{k:48s} {v:9.3f}")
            print(f"{'decision -> kernel latency':48s} {'p50 ms':>9s} {'p99 ms':>9s} {'n':>6s}")
            for rate, secs in ((10.0, 5.0), (1000.0, 3.0)):
                p50, p99, n = bench_latency(ns, Path(tmp) / f"lat{int(rate)}", rate, secs)
                print(f"{f'at {rate:g} decisions/s':48s} {p50 * 1e3:9.2f} {p99 * 1e3:9.2f} {n:6d}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
