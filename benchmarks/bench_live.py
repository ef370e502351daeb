"""Live capture rate: tcpreplay --topspeed into a veth, sent vs captured vs dropped.

Runs, on one veth pair in throwaway namespaces and the same replayed capture:
* baseline: ``tcpdump -w /dev/null`` (libpcap's own TPACKET_V3 reader), if installed;
* the ring alone (``--no-decode``: copy out of the ring, count, hand blocks back);
* the full sensor (flow engine + per-host telemetry), 1 worker and ``auto`` workers.
Then the telemetry tables alone, compiled vs reference, in packet summaries per second.
Then the ceiling: the sensor pinned to one core (``taskset``), the sender pinned to the
other, the ring as shipped, on the generated 200k-packet capture of ``bench_sensor``
looped: kernel drops at the sender's top speed, and the sensor's packets per CPU second (its
CPU time from ``wait4``, less the CPU of a run that captures nothing: start-up and idle
polling), which is the rate one fully busy core sustains; the same with 2 fanout workers
(both on the sensor's core: per-worker rate, the figure that scales with cores). Last, the
drop point: the receive path steered to the sensor's core (RPS, as IRQ affinity would put a
NIC queue on its worker's core), the sender at its top speed, then bisection on its rate
until the rate where kernel drops start is bracketed. The sender
is ``benchmarks/blast.c`` (AF_PACKET, qdisc bypassed, sendmmsg; built with ``cc``) when a C
compiler is there, else ``tcpreplay --topspeed`` (about 300 k packets/s at best here).

Needs root, iproute2 and tcpreplay; prints why and returns 0 when they are missing.
``NETWARDEN_BENCH_LOOPS`` sets how many times the capture is replayed (default 8).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NETWARDEN_SHARED", REPO.parent / "shared"))
PCAP = SHARED / "corpus" / "attacks" / "syn_flood" / "synflood_spoofed_to_10.10.10.10.pcap"


def _veth():
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from netns_live import VethPair

    return VethPair()


def _replay(veth, loops: int, pcap: Path = PCAP, pin: list[str] | None = None) -> tuple[int, float]:
    r = subprocess.run(
        veth.prefix(veth.ns_a)
        + (pin or [])
        + ["tcpreplay", "-i", veth.IF_A, "--topspeed", f"--loop={loops}", str(pcap)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    sent = re.search(r"Successful packets:\s+(\d+)", r.stdout)
    rate = re.search(r"([\d.]+) pps", r.stdout)
    return (int(sent.group(1)) if sent else -1), (float(rate.group(1)) if rate else 0.0)


def run_sensor(veth, loops: int, tmp: Path, extra: list[str]) -> dict:
    ready, out = tmp / f"r{time.monotonic_ns()}", tmp / f"o{time.monotonic_ns()}.npz"
    from netns_live import live_capture_command, wait_ready  # on sys.path after _veth()

    cmd = live_capture_command(veth.prefix(veth.ns_b), veth.IF_B, ready, out, *extra)
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    wait_ready(ready, proc)
    t0 = time.monotonic()
    sent, rate = _replay(veth, loops)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)
    done = time.monotonic() - t0  # until every captured packet went through the engine
    res = _result(out, sent, rate)
    res["processed_pps"] = res["captured"] / done if done else 0.0
    return res


def _result(out: Path, sent: int, rate: float) -> dict:
    """What a capture's ``--out`` file and the sender say about a run."""
    stats = json.loads(bytes(np.load(out)["stats"]).decode())
    return {
        "sent": sent,
        "sent_pps": rate,
        "captured": stats["packets"],
        "dropped": stats["kernel_drops"],
        "freezes": stats["ring_freezes"],
    }


def run_tcpdump(veth, loops: int) -> dict | None:
    if not shutil.which("tcpdump"):
        return None
    proc = subprocess.Popen(
        veth.prefix(veth.ns_b)
        + ["tcpdump", "-i", veth.IF_B, "-n", "-w", "/dev/null", "-B", "65536"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # tcpdump prints nothing when ready; give it time to open the ring
    t0 = time.monotonic()
    sent, rate = _replay(veth, loops)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    done = time.monotonic() - t0
    cap = re.search(r"(\d+) packets captured", err)
    drop = re.search(r"(\d+) packets dropped by kernel", err)
    captured = int(cap.group(1)) if cap else -1
    return {
        "sent": sent,
        "sent_pps": rate,
        "captured": captured,
        "dropped": int(drop.group(1)) if drop else -1,
        "freezes": 0,
        "processed_pps": captured / done if done else 0.0,
    }


def _summaries(n: int, sources: int, seed: int) -> np.ndarray:
    """``n`` SYN packet summaries at 200 kpps of packet time from ``sources`` addresses."""
    from netwarden.records.schema import PKTSUM_DTYPE, PktEvent

    rng = np.random.default_rng(seed)
    a = np.zeros(n, PKTSUM_DTYPE)
    a["ts_ns"] = 1_700_000_000 * 10**9 + np.arange(n) * 5_000
    a["ip_version"] = 4
    a["proto"] = 6
    a["tcp_flags"] = 0x02
    a["events"] = int(PktEvent.NEW_FLOW)
    a["dport"] = rng.integers(0, 65536, n)
    a["ip_len"] = rng.integers(40, 1500, n)
    src = rng.integers(0, sources, n)
    a["src"][:, 0] = 10
    a["src"][:, 1] = (src >> 16) & 255
    a["src"][:, 2] = (src >> 8) & 255
    a["src"][:, 3] = src & 255
    a["dst"][:, :2] = [10, 0]
    a["dst"][:, 2:4] = rng.integers(0, 16, (n, 2))
    return a


def telemetry_rates(n: int = 200_000) -> list[tuple[str, str, float]]:
    """Packet summaries per second through each telemetry backend (no capture involved):
    a LAN-like mix (1,000 hosts, tables never full) and a spoofed flood (a new source per
    packet: every packet evicts a host and emits its partial record)."""
    from sensor.telemetry import BACKENDS, HostTelemetry, TelemetryConfig

    out = []
    for case, sources in (("1k hosts", 1000), ("spoofed flood", 1 << 24)):
        data = _summaries(n, sources, seed=7)
        for name in BACKENDS:
            try:
                t = HostTelemetry(TelemetryConfig(), backend=name)
            except ImportError:
                continue
            m = n if name == "c" else n // 20  # the reference is slow; time a slice
            t0 = time.process_time()  # CPU time: other jobs on the box do not count
            for i in range(0, m, 4096):
                part = data[i : i + 4096]
                t.update(part, len(part))
                t.drain()
            out.append((case, name, m / (time.process_time() - t0)))
    return out


def blaster() -> Path | None:
    """The C sender, rebuilt when its source changes (None without a C compiler)."""
    from benchmarks.bench_flows import c_binary

    return c_binary("blast")


def _blast(veth, loops: int, pcap: Path, pin: list[str], pps: float = 0) -> tuple[int, float]:
    exe = blaster()
    if exe is None:
        return _replay(veth, loops, pcap, pin)
    r = subprocess.run(
        veth.prefix(veth.ns_a) + pin + [str(exe), veth.IF_A, str(pcap), str(loops), str(pps)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    m = re.search(r"sent (\d+) packets in [\d.]+ s: ([\d.]+) pps", r.stdout)
    return (int(m.group(1)), float(m.group(2))) if m else (-1, 0.0)


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


def run_pinned(
    veth, tmp: Path, loops: int, pcap: Path, workers: int, cpus: tuple[int, int], pps: float = 0
) -> dict:
    """The sensor (``workers`` fanout workers, all on ``cpus[0]``) against the sender on
    ``cpus[1]`` (at ``pps``, 0: top speed); ``loops=0`` sends nothing (the start-up and idle
    cost)."""
    from netns_live import live_capture_command, wait_ready

    ready, out = tmp / f"r{time.monotonic_ns()}", tmp / f"o{time.monotonic_ns()}.npz"
    extra = ["--workers", str(workers)] if workers > 1 else []
    cmd = live_capture_command(
        veth.prefix(veth.ns_b) + _pin(cpus[0]), veth.IF_B, ready, out, *extra
    )
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    wait_ready(ready, proc)
    t0 = time.monotonic()
    sent, rate = _blast(veth, loops, pcap, _pin(cpus[1]), pps) if loops else (0, 0.0)
    if not loops:
        time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    res = _result(out, sent, rate)
    res["cpu"] = usage.ru_utime + usage.ru_stime
    res["wall"] = time.monotonic() - t0
    return res


def pinned_setup() -> tuple[Path, tuple[int, int]]:
    """The capture the pinned runs replay, and (sensor core, sender core)."""
    from benchmarks.bench_flows import capture

    avail = sorted(os.sched_getaffinity(0))
    return capture({"packets": 200_000, "flows": 10_000, "seed": 1}), (avail[0], avail[-1])


def ceiling(veth, tmp: Path) -> list[str]:
    """Lines of the pinned measurement (see the module docstring)."""
    pcap, cpus = pinned_setup()
    loops = int(os.environ.get("NETWARDEN_BENCH_CEILING_LOOPS", "8"))
    sender = "blast (benchmarks/blast.c)" if blaster() else "tcpreplay --topspeed"
    lines = [
        f"  pinned: sensor on core {cpus[0]}, {sender} on core {cpus[1]}, {pcap.name} x{loops}"
    ]
    for workers in (1, 2):
        idle = run_pinned(veth, tmp, 0, pcap, workers, cpus)
        r = run_pinned(veth, tmp, loops, pcap, workers, cpus)
        busy = max(r["cpu"] - idle["cpu"], 1e-9)
        per_core = r["captured"] / busy
        lines.append(
            f"  {workers} worker(s): sent {r['sent']} at {r['sent_pps'] / 1e3:.0f} k pps, captured "
            f"{r['captured']}, kernel drops {r['dropped']}; sensor CPU {r['cpu']:.2f} s "
            f"(idle run {idle['cpu']:.2f} s): {per_core / 1e3:.0f} k packets per CPU second"
            + (f" ({per_core / workers / 1e3:.0f} k per worker)" if workers > 1 else "")
            + f"; sensor core busy {busy / max(r['wall'], 1e-9):.0%} of the run"
        )
    return lines


def steer_receive(veth, cpu: int) -> None:
    """Run the receive path of the capture side (softirq: the copy into the sensor's ring)
    on ``cpu`` (RPS), as IRQ affinity does for a NIC whose queue is pinned to the worker's
    core. Without it a veth receives on the sender's core, which then limits the sender."""
    mask = f"{1 << cpu:x}"
    path = f"/sys/class/net/{veth.IF_B}/queues/rx-0/rps_cpus"
    veth._exec(veth.ns_b, "sh", "-c", f"echo {mask} > {path}")


def drop_point(tmp: Path) -> list[str]:
    """The rate at which kernel drops start for one worker whose core also receives: the
    sender at its top speed, then bisection on its rate (each run 1.6 M packets)."""
    if blaster() is None:
        return ["  drop point: skipped (needs a C compiler for benchmarks/blast.c)"]
    pcap, cpus = pinned_setup()
    steps = int(os.environ.get("NETWARDEN_BENCH_DROP_STEPS", "4"))

    def run(veth, pps: float) -> dict:
        r = run_pinned(veth, tmp, 8, pcap, 1, cpus, pps)
        r["lost"] = r["dropped"] > 0 or r["captured"] < r["sent"]
        return r

    head = (
        f"  drop point: receive steered to the sensor's core {cpus[0]} (RPS), blast on "
        f"core {cpus[1]}, 1 worker, ring as shipped, {pcap.name} x8"
    )
    lines = [head]
    with _veth() as veth:
        steer_receive(veth, cpus[0])
        top = run(veth, 0)
        lines.append(f"    top speed {top['sent_pps'] / 1e3:.0f} k pps: captured {top['captured']}"
                     f" of {top['sent']}, kernel drops {top['dropped']}")  # fmt: skip
        if not top["lost"]:
            lines.append("    no drops at the sender's top speed: the drop point is above it")
            return lines
        lo, hi = 0.0, top["sent_pps"]
        for _ in range(steps):
            mid = (lo + hi) / 2
            r = run(veth, mid)
            lines.append(f"    {r['sent_pps'] / 1e3:.0f} k pps: kernel drops {r['dropped']}")
            if r["lost"]:
                hi = mid
            else:
                lo = mid
        lines.append(f"    drops start between {lo / 1e3:.0f} and {hi / 1e3:.0f} k packets/s")
    return lines


def main() -> int:
    print("live capture: tcpreplay --topspeed into a veth; sent vs captured vs dropped")
    for case, name, pps in telemetry_rates():
        print(f"  telemetry {name:>2} ({case}): {pps / 1e3:9.1f} k packet summaries/s")
    if os.geteuid() != 0 or not shutil.which("tcpreplay") or not shutil.which("ip"):
        print("  skipped live part: needs root, iproute2 and tcpreplay")
        return 0
    try:
        import sensor.capture._ring  # noqa: F401
    except ImportError:
        print("  skipped live part: sensor.capture._ring not built (make build)")
        return 0
    if not PCAP.exists():
        print(f"  skipped live part: {PCAP} missing")
        return 0
    loops = int(os.environ.get("NETWARDEN_BENCH_LOOPS", "8"))
    from sensor.engine import load_backend

    engine = load_backend().__name__
    runs: list[tuple[str, dict | None]] = []
    with _veth() as veth, tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        runs.append(("tcpdump -w /dev/null (baseline)", run_tcpdump(veth, loops)))
        runs.append(("ring only, 1 worker", run_sensor(veth, loops, tmp, ["--no-decode"])))
        runs.append((f"sensor ({engine}), 1 worker", run_sensor(veth, loops, tmp, [])))
        runs.append(
            (
                f"sensor ({engine}), auto workers",
                run_sensor(veth, loops, tmp, ["--workers", "auto"]),
            )
        )
        pinned = ceiling(veth, tmp)
        pinned += drop_point(tmp)
    # "done pps": captured packets / (replay start -> capture process exit, flush included),
    # a lower bound of the rate the reader sustains.
    print(
        f"  {'mode':<40} {'sent':>9} {'sent pps':>10} {'captured':>9} {'dropped':>8} "
        f"{'done pps':>10}"
    )
    for name, r in runs:
        if r is None:
            print(f"  {name:<40} (not available)")
            continue
        print(
            f"  {name:<40} {r['sent']:>9} {r['sent_pps']:>10.0f} {r['captured']:>9} "
            f"{r['dropped']:>8} {r['processed_pps']:>10.0f}"
        )
    print("\n".join(pinned))
    return 0


if __name__ == "__main__":
    sys.exit(main())
