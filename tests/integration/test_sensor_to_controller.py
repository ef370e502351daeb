"""The whole path over real sockets and processes: two `netwarden sensor --pcap` processes
publish to one `netwarden controller --listen`; `netwarden sensors` reports them, and the
controller's archive holds exactly the flows the engine makes from each capture."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from controller.ingest.archive import RecordArchive
from sensor.flows import iter_flow_records
from tests.conftest import REPO, ZEEK_CORPUS
from tests.jsonl import one

TRACES = {"s-ssh": "ssh_many", "s-wiki": "wikipedia"}


def _trace(name: str) -> Path:
    d = ZEEK_CORPUS / name
    found = sorted(d.glob("trace.pcap*"))
    if not found:
        pytest.skip(f"corpus trace {d} is missing (set NETWARDEN_SHARED)")
    return found[0]


def _tuples(recs) -> Counter:
    return Counter(
        (int(r["proto"]), bytes(r["orig_addr"]), int(r["orig_port"]), bytes(r["resp_addr"]),
         int(r["resp_port"]), int(r["orig_pkts"]), int(r["resp_pkts"]), int(r["orig_ip_bytes"]),
         int(r["resp_ip_bytes"]))
        for r in recs
    )  # fmt: skip


def _netwarden(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netwarden", *args], check=False, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)  # fmt: skip


def test_two_sensors_to_one_controller(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    state = tmp_path / "state"
    cfg = tmp_path / "controller.toml"
    cfg.write_text("[safety]\ndiscover_local = false\n")
    ctl = subprocess.Popen(
        [sys.executable, "-m", "netwarden", "controller", "--enforce", "dryrun", "--state-dir",
         str(state), "--config", str(cfg), "--listen", endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert ctl.stdout is not None
        assert "controller ready" in ctl.stdout.readline()
        sensors = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "netwarden",
                    "sensor",
                    "--pcap",
                    str(_trace(t)),
                    "--connect",
                    endpoint,
                    "--sensor-id",
                    sid,
                    "--batch",
                    "16",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            for sid, t in TRACES.items()
        ]
        for p in sensors:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        status = _netwarden("sensors", "--json", "--state-dir", str(state))
        assert status.returncode == 0, status.stderr
        got = one(status.stdout, "ingest")
        archive = RecordArchive(state / "archive")
        archived = archive.read("flow")
        expected_all: Counter = Counter()
        for sid, t in TRACES.items():
            expected = [r for arr in iter_flow_records([str(_trace(t))]) for r in arr]
            st = got["sensors"][sid]
            assert st["records_by_type"]["flow"] == len(expected)
            assert st["gaps"] == 0 and st["lost_messages"] == 0
            assert st["stopped"], "a sensor that finished cleanly says goodbye"
            expected_all += _tuples(expected)
        assert _tuples(archived) == expected_all
        # the archive is a hive-partitioned Parquet dataset, one sensor partition per sensor
        import pyarrow.dataset as ds

        flows = ds.dataset(state / "archive" / "type=flow", format="parquet", partitioning="hive")
        assert flows.count_rows() == len(archived)
        assert set(flows.to_table(columns=["sensor"]).column("sensor").to_pylist()) == set(TRACES)
        assert got["records"]["flow"] == sum(expected_all.values())
        # Host telemetry travels the same way.
        assert got["records"].get("host", 0) > 0 and len(archive.read("host")) > 0
        # The sensors connected from 127.0.0.1, which this config does not protect
        # (discover_local = false). They are not CURVE-authenticated, so the bus must not
        # grant that address immunity: banning it still works (dry run).
        assert got["sensors"]["s-ssh"]["peer_address"] == "127.0.0.1"
        ban = _netwarden(
            "ban", "127.0.0.1", "--ttl", "60", "--reason", "test", "--state-dir", str(state)
        )
        assert ban.returncode == 0, (ban.stdout, ban.stderr)
    finally:
        ctl.send_signal(signal.SIGTERM)
        try:
            ctl.wait(timeout=30)
        finally:
            if ctl.poll() is None:
                ctl.kill()
    assert ctl.returncode == 0


def test_sensors_command_without_controller(tmp_path: Path) -> None:
    proc = _netwarden("sensors", "--state-dir", str(tmp_path))
    assert proc.returncode != 0
    assert "controller" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
