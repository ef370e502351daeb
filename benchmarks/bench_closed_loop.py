"""Attack start to kernel element: the live closed loop, timed over repeated scans.

The namespace lab of ``tests/integration/test_closed_loop.py`` (a gateway running
``netwarden controller`` with nftables on the forward hook and ``netwarden sensor --iface``
on its outside bridge, a server behind it, a benign client fetching a page): ``nmap -sS``
scans the server again and again, each time from a new outside address, and each run is
timed from starting nmap to that address's element appearing in the gateway's kernel set
(read over netlink every 10 ms). Starting the tool precedes its first packet, so every time
is an upper bound. A random pause before each scan samples every phase of the sensor's
one-second telemetry window.

``python -m benchmarks.bench_closed_loop [--scans N] [--window S]``; needs root, nmap,
curl and sshd (``make sysdeps``); prints p50, p90, p99 and max.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUS = "tcp://127.0.0.1:5572"
CONFIG = """
[controller]
enforce = "nftables"
hook = "forward"
tick_s = 0.5
detect_tick_s = 0.1  # detection advances within 0.1 s of new sensor batches

[policy]
default_level = 3
breaker_bans_per_minute = 1000  # every scan here is a new attacker: no circuit breaker

[safety]
resolv_conf = "/nonexistent"
"""


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def run(scans: int, window: float | None) -> list[float]:
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from closed_loop_lab import SERVER, LoopLab

    from controller.response.enforce.nftables import NftablesEnforcer

    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="nw-bench-loop-") as tmp, LoopLab(Path(tmp)) as lab:
        lab.start_server()
        extra = ("--window", str(window)) if window else ()
        ctl = lab.start_netwarden(CONFIG, Path(tmp) / "state", BUS, *extra)
        lab.start_client(connections=10_000)
        kernel = NftablesEnforcer(netns=lab.gw)
        rng = random.Random(1)
        addrs = [f"198.51.100.{100 + i}" for i in range(scans)]
        for a in addrs:
            lab.ip(lab.atk, "addr", "add", f"{a}/24", "dev", "e0")
        time.sleep(3.0)  # sensor connected, first windows in
        for i, addr in enumerate(addrs):
            time.sleep(rng.uniform(0.3, 1.3))
            t0 = time.monotonic()
            scan = lab.spawn(f"nmap-{i}", lab.atk, "nmap", "-sS", "-Pn", "-n", "-T4", "--max-retries", "1",
                             "--host-timeout", "15s", "-p", "1-1000", "-S", addr, "-e", "e0", SERVER)  # fmt: skip
            landed = None
            while time.monotonic() - t0 < 10.0:
                if any(str(b.addr) == addr for b in kernel.list_bans()):
                    landed = time.monotonic() - t0
                    break
                time.sleep(0.01)
            lab.stop(scan, timeout=5)
            if landed is None:
                print(f"  scan {i + 1} from {addr}: no ban within 10 s", flush=True)
                continue
            times.append(landed)
            print(f"  scan {i + 1:2d} from {addr}: {landed * 1000:6.0f} ms", flush=True)
        lab.stop(ctl)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=30)
    ap.add_argument(
        "--window", type=float, default=None, help="sensor telemetry window, s (default 1)"
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_closed_loop: skipped (needs root for network namespaces)")
        return 0
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from closed_loop_lab import missing_tools

    missing = missing_tools()
    if missing:
        print(f"bench_closed_loop: skipped (missing tools: {', '.join(missing)}; make sysdeps)")
        return 0
    times = run(args.scans, args.window)
    if not times:
        print("bench_closed_loop: no scan was banned")
        return 1
    ms = [t * 1000 for t in times]
    print(f"nmap -sS start to kernel element over {len(ms)}/{args.scans} scans "
          f"(sensor window {args.window or 1.0:g} s): p50 {percentile(ms, 50):.0f} ms, "
          f"p90 {percentile(ms, 90):.0f} ms, p99 {percentile(ms, 99):.0f} ms, max {max(ms):.0f} ms, "
          f"mean {statistics.fmean(ms):.0f} ms")  # fmt: skip
    return 0 if len(ms) == args.scans else 1


if __name__ == "__main__":
    sys.exit(main())
