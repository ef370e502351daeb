"""A running ``netwarden controller --listen`` fed garbage by a raw ZeroMQ DEALER: every
hostile message is rejected and counted (``netwarden sensors`` shows the count), the
controller keeps running, and a real sensor afterwards still delivers all its flows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from netwarden.records.schema import SCHEMA_VERSION
from sensor.flows import iter_flow_records
from tests.conftest import REPO, ZEEK_CORPUS
from tests.jsonl import one

TRACE = ZEEK_CORPUS / "wikipedia" / "trace.pcap"


def _netwarden(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "netwarden", *args], capture_output=True,
                          text=True, check=False, cwd=REPO, env=env, timeout=120)  # fmt: skip


def _bus_stats(state: Path) -> dict:
    proc = _netwarden("sensors", "--json", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    return one(proc.stdout, "ingest")["bus"]


def test_controller_survives_and_counts_hostile_frames(tmp_path: Path) -> None:
    if not TRACE.exists():
        pytest.skip(f"corpus trace {TRACE} is missing (set NETWARDEN_SHARED)")
    endpoint = f"ipc://{tmp_path}/ctl.sock"
    state = tmp_path / "state"
    cfg = tmp_path / "controller.toml"
    cfg.write_text("[safety]\ndiscover_local = false\n")
    ctl = subprocess.Popen(
        [sys.executable, "-m", "netwarden", "controller", "--enforce", "dryrun", "--state-dir",
         str(state), "--config", str(cfg), "--listen", endpoint, "--no-archive"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        assert ctl.stdout is not None
        assert "controller ready" in ctl.stdout.readline()
        hostile = [
            [b"\xc1 not msgpack"],  # one frame, not a header
            [b"\x93\x01\x02\x03", b"records"],  # a msgpack array, not a map
            [msgpack.packb({"v": SCHEMA_VERSION + 1}), b""],  # a map without our fields
            [b"\x80" * 5000, b""],  # header over the size limit
            [b"a", b"b", b"c", b"d"],  # too many frames
        ]
        dealer.connect(endpoint)
        for frames in hostile:
            dealer.send_multipart(frames)
        # Wait (bounded) until the controller has seen them all; not a timing assertion.
        deadline = time.monotonic() + 30
        while _bus_stats(state)["rejected_total"] < len(hostile) and time.monotonic() < deadline:
            time.sleep(0.2)
        bus = _bus_stats(state)
        assert bus["rejected_total"] == len(hostile), bus["rejected"]
        assert ctl.poll() is None, "controller died on hostile frames"

        text = _netwarden("sensors", "--state-dir", str(state))
        assert f"rejected messages: {len(hostile)}" in text.stdout, text.stdout

        # Still serving: a real sensor delivers every flow.
        sensor = _netwarden("sensor", "--pcap", str(TRACE), "--connect", endpoint,
                            "--sensor-id", "after-garbage", "--stats-interval", "0")  # fmt: skip
        assert sensor.returncode == 0, sensor.stderr
        status = one(_netwarden("sensors", "--json", "--state-dir", str(state)).stdout, "ingest")
        expected = sum(len(a) for a in iter_flow_records([str(TRACE)]))
        assert status["sensors"]["after-garbage"]["records_by_type"]["flow"] == expected
    finally:
        dealer.close(0)
        ctx.term()
        ctl.send_signal(signal.SIGTERM)
        try:
            _, err = ctl.communicate(timeout=30)
        finally:
            if ctl.poll() is None:
                ctl.kill()
                ctl.wait()
    assert ctl.returncode == 0
    # Rejects are logged as one clear line naming the reason (rate-limited per reason).
    assert "rejected a bus message" in err
