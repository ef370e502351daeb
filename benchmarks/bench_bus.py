"""Bus throughput (records/s, MB/s) of FLOW_DTYPE batches over tcp loopback, per batch size,
against a baseline measured in the same run: the same record bytes sent with a bare ZeroMQ
PUSH/PULL pair (no header, no decode, no acks, no resend buffer). A third column runs the
bus with CURVE encryption and authentication on.

The sender runs in its own process (as a sensor would); the receiver is this process, and a
run is timed from the sender's start signal to the last record decoded.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (64, 256, 1024, 4096, 8192)

# Sender processes. Both wait for "go" on stdin, send `total` records in batches of `size`,
# and report the records they sent on stdout.
_RAW_SENDER = r"""
import sys, zmq, numpy as np
from netwarden.records.schema import FLOW_DTYPE
endpoint, size, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = zmq.Context(); s = ctx.socket(zmq.PUSH); s.setsockopt(zmq.SNDHWM, 1000)
s.connect(endpoint)
recs = np.zeros(size, FLOW_DTYPE); recs["flow_id"] = np.arange(size)
body = recs.tobytes()
sys.stdin.readline()
n = 0
while n < total:
    s.send(body, copy=len(body) < 65536)
    n += size
print(n, flush=True)
s.close(linger=-1); ctx.term()
"""

_BUS_SENDER = r"""
import sys, numpy as np
from netwarden.bus.publisher import CurveClientKeys, Publisher
from netwarden.records.schema import FLOW_DTYPE
endpoint, size, total, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
curve = CurveClientKeys.from_dir(keys) if keys else None
pub = Publisher(endpoint, sensor_id="bench", buffer_bytes=64 << 20, curve=curve)
recs = np.zeros(size, FLOW_DTYPE); recs["flow_id"] = np.arange(size)
sys.stdin.readline()
n = 0
while n < total:
    pub.wait_for_room(recs.nbytes, 60.0)  # offline sender: slow down, never evict
    pub.send("flow", recs)
    n += size
left = pub.close(timeout=60.0)
print(n, pub.stats()["bus_dropped_records"], left, flush=True)
"""


def _free_tcp() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _go(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None
    time.sleep(0.3)  # let the connection come up before the clock starts
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return time.perf_counter()


def run_raw(size: int, total: int) -> tuple[float, int]:
    """Baseline: bare PULL receiving the record bytes, viewing them with np.frombuffer."""
    from netwarden.records.schema import FLOW_DTYPE

    endpoint = _free_tcp()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1000)
    pull.bind(endpoint)
    proc = _spawn(_RAW_SENDER, endpoint, str(size), str(total))
    t0 = _go(proc)
    got = 0
    while got < total:
        frame = pull.recv(copy=False)
        got += len(np.frombuffer(frame.buffer, FLOW_DTYPE))
    dt = time.perf_counter() - t0
    proc.communicate(timeout=60)
    pull.close(0)
    ctx.term()
    return dt, got


def _curve_keys(tmp: Path) -> Path:
    """A controller key directory (server + authorized/) and a sensor one; returns the
    sensor's, the controller's is its sibling ``ctl``."""
    import zmq.auth

    ctl, sensor = tmp / "ctl", tmp / "sensor"
    (ctl / "authorized").mkdir(parents=True)
    sensor.mkdir()
    zmq.auth.create_certificates(ctl, "server")
    zmq.auth.create_certificates(sensor, "sensor")
    (ctl / "authorized" / "sensor.key").write_bytes((sensor / "sensor.key").read_bytes())
    (sensor / "server.key").write_bytes((ctl / "server.key").read_bytes())
    return sensor


def run_bus(size: int, total: int, sensor_keys: Path | None = None) -> tuple[float, int]:
    """NetWarden bus: Publisher -> Collector (header decode, sequence tracking, acks)."""
    from netwarden.bus.collector import Collector, CurveServerKeys

    endpoint = _free_tcp()
    curve = CurveServerKeys.from_dir(sensor_keys.parent / "ctl") if sensor_keys else None
    with Collector(endpoint, curve=curve) as c:
        proc = _spawn(_BUS_SENDER, endpoint, str(size), str(total), str(sensor_keys or ""))
        t0 = _go(proc)
        got = 0
        while got < total:
            for b in c.poll(100):
                got += len(b.records)
        dt = time.perf_counter() - t0
        # Keep acknowledging until the sender has closed cleanly.
        while proc.poll() is None:
            c.poll(20)
        out, _ = proc.communicate(timeout=60)
    sent, dropped, left = (int(x) for x in out.split())
    if dropped or left or sent != got:
        raise RuntimeError(f"bus lost records: sent {sent} got {got} dropped {dropped} left {left}")
    return dt, got


def main(argv: list[str] | None = None) -> int:
    from netwarden.records.schema import FLOW_DTYPE

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_bus", description=__doc__)
    ap.add_argument("--mbytes", type=int, default=256, help="record bytes per run (MB)")
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    args = ap.parse_args(sys.argv[1:] if argv is None and __name__ == "__main__" else argv or [])
    item = FLOW_DTYPE.itemsize
    total_target = args.mbytes * 1_000_000 // item
    print(
        f"bus throughput, FLOW_DTYPE ({item} B/record), tcp loopback, "
        f"~{args.mbytes} MB per run; baseline = bare PUSH/PULL of the same bytes"
    )
    print(
        f"{'batch':>6} | {'baseline rec/s':>14} {'MB/s':>6} | {'bus rec/s':>11} {'MB/s':>6} "
        f"{'vs base':>7} | {'CURVE rec/s':>11} {'MB/s':>6}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        keys = _curve_keys(Path(tmp))
        for size in BATCH_SIZES:
            total = max(size, total_target // size * size)
            raw_dt, raw_n = run_raw(size, total)
            bus_dt, bus_n = run_bus(size, total)
            cur_dt, cur_n = run_bus(size, total, keys)
            row = {
                "batch": size,
                "baseline_rps": raw_n / raw_dt, "baseline_MBps": raw_n * item / raw_dt / 1e6,
                "bus_rps": bus_n / bus_dt, "bus_MBps": bus_n * item / bus_dt / 1e6,
                "curve_rps": cur_n / cur_dt, "curve_MBps": cur_n * item / cur_dt / 1e6,
            }  # fmt: skip
            rows.append(row)
            print(
                f"{size:>6} | {row['baseline_rps']:>14,.0f} {row['baseline_MBps']:>6.0f} | "
                f"{row['bus_rps']:>11,.0f} {row['bus_MBps']:>6.0f} "
                f"{row['bus_rps'] / row['baseline_rps']:>6.2f}x | "
                f"{row['curve_rps']:>11,.0f} {row['curve_MBps']:>6.0f}",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
