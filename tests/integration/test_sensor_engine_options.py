"""``netwarden sensor --pcap`` honours the flow engine options (timeouts, checksum
validation) exactly as ``netwarden flows`` does: the flows a real collector receives equal
the flows the file command writes with the same options, and the options change them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, ZEEK_CORPUS

WAIT_S = 60
CASES = {
    "timeouts": ("ssh_many", ["--tcp-timeout", "1", "--udp-timeout", "1"]),
    "checksums": ("bad_checksum", ["--validate-checksums"]),
}


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _file_flows(pcap: Path, options: list[str]) -> Counter:
    proc = subprocess.run([sys.executable, "-m", "netwarden", "flows", "--format", "json", *options,
                           str(pcap)], capture_output=True, text=True, check=True, cwd=REPO, env=_env())  # fmt: skip
    return Counter(
        (f["ip_proto"], f["orig_p"], f["resp_p"], f["orig_pkts"], f["resp_pkts"],
         f["orig_ip_bytes"], f["resp_ip_bytes"], f["history"])
        for f in map(json.loads, proc.stdout.splitlines())
    )  # fmt: skip


def _bus_flows(recs: np.ndarray) -> Counter:
    return Counter(
        (int(r["proto"]), int(r["orig_port"]), int(r["resp_port"]), int(r["orig_pkts"]),
         int(r["resp_pkts"]), int(r["orig_ip_bytes"]), int(r["resp_ip_bytes"]),
         bytes(r["history"]).rstrip(b"\0").decode())
        for r in recs
    )  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_sensor_pcap_uses_the_engine_options(tmp_path: Path, case: str) -> None:
    from netwarden.bus.collector import Collector

    name, options = CASES[case]
    pcap = ZEEK_CORPUS / name / "trace.pcap"
    if not pcap.exists():
        pytest.skip(f"{pcap} missing (set NETWARDEN_SHARED)")
    got = []
    with Collector(f"ipc://{tmp_path}/c.sock") as c:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netwarden", "sensor", "--pcap", str(pcap), "--connect",
             c.endpoint, "--sensor-id", case, "--stats-interval", "0", "--no-telemetry", *options],
            cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        while proc.poll() is None:  # the sensor waits for acknowledgements: keep collecting
            assert time.monotonic() < deadline, "sensor did not finish"
            got.extend(b for b in c.poll(50) if b.record_type == "flow")
        got.extend(b for b in c.poll(50) if b.record_type == "flow")
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert proc.returncode == 0, err
    received = _bus_flows(np.concatenate([b.records for b in got]))
    want = _file_flows(pcap, options)
    assert received == want
    assert want != _file_flows(pcap, [])  # the options matter for this capture
