"""Both capture commands end with a final stats line (packets, pps, drops) and stop cleanly
on SIGINT, flushing live flows: ``netwarden flows --iface`` on a veth in throwaway
namespaces, and ``netwarden sensor --pcap`` publishing to a real collector."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from netns_live import VethPair, have_root, missing_tools

from sensor.telemetry import TelemetryConfig
from tests.conftest import CORPUS, REPO

WAIT_S = 60
LIVE_TRACE = CORPUS / "zeek" / "ssh_many" / "trace.pcap"
PCAP_TRACE = CORPUS / "zeek" / "wikipedia" / "trace.pcap"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _manifest_packets(name: str) -> int:
    with open(CORPUS / "zeek" / "MANIFEST.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["name"] == name:
                return int(row["packets"])
    raise LookupError(name)


def _file_flow_keys(pcap: Path) -> Counter:
    proc = subprocess.run([sys.executable, "-m", "netwarden", "flows", "--format", "json", str(pcap)],
                          capture_output=True, text=True, check=True, cwd=REPO, env=_env())  # fmt: skip
    return _keys(proc.stdout)


def _keys(jsonl: str) -> Counter:
    return Counter(
        (f["ip_proto"], f["orig_h"], f["orig_p"], f["resp_h"], f["resp_p"],
         f["orig_pkts"], f["resp_pkts"], f["orig_ip_bytes"], f["resp_ip_bytes"])
        for f in map(json.loads, jsonl.splitlines())
    )  # fmt: skip


def test_flows_iface_stops_on_sigint_with_final_stats_and_flushed_flows(tmp_path: Path) -> None:
    if not have_root():
        pytest.skip("needs root for network namespaces")
    if missing_tools("ip", "tcpreplay"):
        pytest.skip(f"missing tools: {missing_tools('ip', 'tcpreplay')}")
    try:
        import sensor.capture._ring  # noqa: F401
    except ImportError:
        pytest.skip("sensor.capture._ring is not built (make build)")
    if not LIVE_TRACE.exists():
        pytest.skip(f"{LIVE_TRACE} missing (set NETWARDEN_SHARED)")
    out = tmp_path / "live.json"
    with VethPair() as veth:
        proc = subprocess.Popen(
            veth.prefix(veth.ns_b)
            + [sys.executable, "-m", "netwarden", "flows", "--iface", veth.IF_B, "--format", "json",
               "-o", str(out)],
            cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # the first stats line: the ring is open
                if line.startswith("capture:"):
                    break
            else:
                pytest.fail(f"flows --iface exited early (rc {proc.wait()})")
            veth.exec_a("tcpreplay", "-i", veth.IF_A, "--pps=5000", str(LIVE_TRACE))
            time.sleep(0.2)  # past the ring's block timeout: every packet reached the ring
            proc.send_signal(signal.SIGINT)
            err = proc.stderr.read()
            proc.wait(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    final = [ln for ln in err.splitlines() if ln.startswith("capture:") and ln.endswith("(final)")]
    assert len(final) == 1, err
    m = re.match(r"capture: (\d+) pkts \((\d+) pps\), kernel drops (\d+)", final[0])
    assert m, final[0]
    assert int(m.group(1)) == _manifest_packets("ssh_many") and int(m.group(3)) == 0
    # The flows still live at SIGINT were flushed into the output.
    assert _keys(out.read_text()) == _file_flow_keys(LIVE_TRACE)


def test_sensor_pcap_prints_final_stats(tmp_path: Path) -> None:
    if not PCAP_TRACE.exists():
        pytest.skip(f"{PCAP_TRACE} missing (set NETWARDEN_SHARED)")
    from netwarden.bus.collector import Collector

    with Collector(f"ipc://{tmp_path}/c.sock") as c:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netwarden", "sensor", "--pcap", str(PCAP_TRACE), "--connect",
             c.endpoint, "--sensor-id", "stats", "--stats-interval", "0"],
            cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        while proc.poll() is None:  # the sensor waits for acknowledgements: keep collecting
            assert time.monotonic() < deadline, "sensor did not finish"
            c.poll(50)
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert proc.returncode == 0, err
    final = [
        ln
        for ln in err.splitlines()
        if ln.startswith("sensor: packets=") and ln.endswith("(final)")
    ]
    assert len(final) == 1, err
    m = re.match(r"sensor: packets=(\d+) pps=(\d+) .*losses\[(.*?)\]", final[0])
    assert m, final[0]
    assert int(m.group(1)) == _manifest_packets("wikipedia") and m.group(3) == "none"
    assert "0 unacknowledged at exit" in err
    # telemetry occupancy: live entries of the default tables, no partial windows
    occ = re.search(r"telemetry\[hosts=(\d+)/(\d+) pairs=(\d+)/(\d+) partial=(\d+)\]", final[0])
    assert occ, final[0]
    cfg = TelemetryConfig()
    hosts, hcap, pairs, pcap, partial = map(int, occ.groups())
    assert (hcap, pcap, partial) == (cfg.host_capacity, cfg.pair_capacity, 0)
    assert 0 < hosts <= hcap and 0 < pairs <= pcap
