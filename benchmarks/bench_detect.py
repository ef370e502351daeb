"""Detection stack throughput (host, pair and flow records/s on one core) on a generated
stream, against river's HalfSpaceTrees ``learn_one``/``score_one`` on the same host records
in the same run, plus detection latency per corpus capture (``make bench``).

The stream: ``N_RECORDS`` records in all (default 10 M: 4 M host, 3 M pair, 3 M flow), 2,000
hosts on a /16 talking to 20,000 peers, in batches of 20,000 records arriving at 1 M
records per second of network time (``STEP_NS``).
river sees a sample (``RIVER_SAMPLE`` host records, it runs ~10^4/s) and its rate is
extrapolated; the detection stack sees every record.

Rates are records per second of CPU time of this process (``time.process_time``: the one
core the stack runs on, not slowed by other jobs on a shared machine, but counting any
helper thread a library starts), with the wall-clock rate beside them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from netwarden.commands.sensor import DEFAULT_BATCH
from netwarden.records.schema import FLOW_DTYPE, HOST_DTYPE, PAIR_DTYPE

N_RECORDS = int(os.environ.get("NETWARDEN_BENCH_DETECT_RECORDS", "10000000"))
BATCH = 20_000
BUS_MESSAGE = DEFAULT_BATCH  # records per bus message: ``netwarden sensor --batch``
RIVER_SAMPLE = 20_000
HOSTS, PEERS = 2_000, 20_000
#: network time one batch spans: records arrive at 1 M/s of network time per type (a
#: controller with a hundred sensors), so per-second work is amortised as it would be live
STEP_NS = BATCH * 1000
NS = 1_000_000_000


def _addrs(n: int, base: tuple[int, int], rng: np.random.Generator, pop: int) -> np.ndarray:
    """``n`` addresses drawn from a fixed population of ``pop`` under ``base``/16."""
    ids = rng.integers(0, pop, n)
    a = np.zeros((n, 16), np.uint8)
    a[:, 0], a[:, 1] = base
    a[:, 2], a[:, 3] = ids // 250, ids % 250 + 1
    return a


def make_batch(kind: str, n: int, t_s: int, rng: np.random.Generator) -> np.ndarray:
    dt = {"host": HOST_DTYPE, "pair": PAIR_DTYPE, "flow": FLOW_DTYPE}[kind]
    r = np.zeros(n, dt)
    t = t_s * NS
    if kind == "host":
        r["addr"] = _addrs(n, (10, 1), rng, HOSTS)
        r["ts_start_ns"], r["ts_end_ns"], r["ts_last_ns"] = t, t + NS, t + NS - 1
        for f in ("out_pkts", "in_pkts", "out_flows", "in_flows", "out_dst_hosts",
                  "out_dst_ports", "in_src_hosts"):  # fmt: skip
            r[f] = rng.poisson(20, n)
        r["out_bytes"], r["in_bytes"] = rng.lognormal(9, 2, n), rng.lognormal(10, 2, n)
        r["out_dns_queries"] = rng.poisson(0.5, n)  # a DNS query every other second
    elif kind == "pair":
        r["src"], r["dst"] = _addrs(n, (10, 1), rng, HOSTS), _addrs(n, (93, 184), rng, PEERS)
        r["ts_start_ns"], r["ts_end_ns"], r["ts_last_ns"] = t, t + NS, t + NS - 1
        r["bytes"], r["pkts"] = rng.poisson(5000, n), rng.poisson(10, n)
    else:
        r["orig_addr"], r["resp_addr"] = (
            _addrs(n, (10, 1), rng, HOSTS),
            _addrs(n, (93, 184), rng, PEERS),
        )
        r["ts_first_ns"] = t + rng.integers(0, NS, n)
        r["ts_last_ns"] = r["ts_first_ns"] + 1000
        r["proto"] = 6
        r["resp_port"] = 443
        r["orig_bytes"], r["resp_bytes"] = rng.poisson(500, n), rng.poisson(5000, n)
    r["ip_version"] = 4
    return r


def bench_stack(message: int | None = None, kinds: tuple[str, ...] = ()) -> dict[str, float]:
    """Records per second of CPU time (the one core the stack runs on) per record type,
    and, as ``<type>_wall``, per second of wall time (lower on a shared machine). With
    ``message``, each batch reaches the stack as a controller receives it: in messages of
    that many records (``netwarden sensor --batch``), then one advance (the tick)."""
    from controller.detect import DetectionStack, build

    rng = np.random.default_rng(1)
    share = {"host": 0.4, "pair": 0.3, "flow": 0.3}
    out = {}
    for kind, frac in share.items():
        if kinds and kind not in kinds:
            continue
        n_total = int(N_RECORDS * frac)
        stack = DetectionStack(build())
        batches = [make_batch(kind, BATCH, i, rng) for i in range(8)]
        cpu, wall, t_s = 0.0, 0.0, 0
        done = 0
        while done < n_total:
            b = batches[t_s % len(batches)].copy()
            for f in b.dtype.names or ():
                if f.startswith("ts_"):
                    b[f] = b[f] - (t_s % len(batches)) * NS + t_s * STEP_NS
            c0, t0 = time.process_time(), time.perf_counter()
            for at in range(0, len(b), message or len(b)):
                stack.observe(kind, b[at : at + (message or len(b))])
            stack.advance((t_s + 1) * STEP_NS + NS)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - t0
            done += len(b)
            t_s += 1
        out[kind] = done / cpu
        out[f"{kind}_wall"] = done / wall
    return out


def bench_river() -> float | None:
    try:
        from river.anomaly import HalfSpaceTrees
    except ImportError:
        return None
    from controller.detect.model import FEATURES, HostModel

    rng = np.random.default_rng(2)
    h = make_batch("host", RIVER_SAMPLE, 0, rng)
    x = HostModel.features(h)
    rows = [dict(zip(FEATURES, map(float, r), strict=True)) for r in x]
    hst = HalfSpaceTrees(seed=1, limits={f: (0.0, 25.0) for f in FEATURES})
    t0 = time.process_time()
    for r in rows:
        hst.score_one(r)
        hst.learn_one(r)
    return len(rows) / (time.process_time() - t0)


def latency() -> list[tuple[str, str, float | None]]:
    from tests.conftest import CORPUS  # the corpus location the tests use
    from tests.detect.harness import read_labels, run_captures

    labels = CORPUS / "attacks" / "LABELS.tsv"
    out = []
    for row in read_labels(labels) if labels.is_file() else []:
        kind = row["class"]
        if kind == "benign":
            continue
        run = run_captures([Path(labels.parent / row["file"])])
        start = run.t_first + float(row.get("attack_start_s") or 0)
        got = [a.detected_at - start for a in run.alerts if a.kind == kind]
        out.append((Path(row["file"]).stem, kind, min(got) if got else None))
    return out


def main() -> int:
    print(f"detection stack, one core, {N_RECORDS:,} generated records "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")  # fmt: skip
    rates = bench_stack()
    for kind in ("host", "pair", "flow"):
        print(f"  {kind:5s} records/s: {rates[kind] / 1e6:8.3f} M per CPU second"
              f" ({rates[kind + '_wall'] / 1e6:.3f} M per wall second)")  # fmt: skip
    live = bench_stack(message=BUS_MESSAGE, kinds=("host",))["host"]
    print(f"  host  records/s: {live / 1e6:8.3f} M per CPU second in messages of "
          f"{BUS_MESSAGE:,} records (the sensor's default --batch), "
          f"{-(-BATCH // BUS_MESSAGE)} messages per tick")  # fmt: skip
    rr = bench_river()
    if rr is None:
        print("  river HalfSpaceTrees: river not installed (pip install '.[bench]')")
    else:
        print(
            f"  river HalfSpaceTrees score_one+learn_one on host records: {rr / 1e3:8.1f} k"
            " per CPU second"
            f" (stack is {rates['host'] / rr:,.0f}x)"
        )
    print("detection latency (attack's first packet -> alert, capture time):")
    for name, kind, lat in latency():
        print(f"  {name:45s} {kind:20s} {'missed' if lat is None else f'{lat:7.2f} s'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
