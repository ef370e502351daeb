"""A capture truncated while it is being read (issue 9): the mmap'd reader must not die
with SIGBUS; it stops with a clear ``CaptureFormatError`` and the flows of the packets
read so far are kept. Runs in a child process so a SIGBUS fails the test instead of
killing pytest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKEND_PARAMS, REPO

CHILD = r"""
import json, os, struct, sys
import numpy as np
from netwarden.errors import CaptureFormatError
from sensor.engine.config import EngineConfig
from sensor.engine import load_backend
from netwarden.records.schema import FLOW_DTYPE, PKTSUM_DTYPE

backend, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
# 60,000 UDP packets on 3,000 flows, ~6 MB: many pages past the first batches
pkts = []
for i in range(60000):
    sport = 1024 + i % 3000
    payload = b"x" * 40
    udp = struct.pack("!HHHH", sport, 53, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
    pkts.append(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000, len(eth), len(eth)) + eth)
with open(path, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    f.write(b"".join(pkts))
size = os.path.getsize(path)

mod = load_backend(backend)
eng = mod.FlowEngine(EngineConfig())
flows = np.zeros(4096, FLOW_DTYPE)
status, fed = "ok", 0
it = mod.PcapReader(path).batches(1024)
try:
    for i, batch in enumerate(it):
        if i == 2:
            # truncate well before this batch's own packet bytes, then decode it: the
            # bytes it points at are gone (the fault happens in the decoder, not the reader)
            os.truncate(path, size // 20 if mode == "under-batch" else size // 2)
        eng.feed(batch, np.zeros(batch.count, PKTSUM_DTYPE))
        fed += batch.count
        while eng.drain_flows(flows) == len(flows):
            pass
except CaptureFormatError as exc:
    status = str(exc)
eng.flush()
n = 0
while True:
    k = eng.drain_flows(flows)
    n += k
    if k < len(flows):
        break
print(json.dumps({"status": status, "fed": fed, "flows": n}))
"""


@pytest.mark.parametrize("mode", ["between-batches", "under-batch"])
@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_truncated_while_reading_is_a_clean_error(
    tmp_path: Path, backend_name: str, mode: str
) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", CHILD, backend_name, str(tmp_path / "t.pcap"), mode],
                          capture_output=True, text=True, check=False, cwd=REPO, env=env, timeout=300)  # fmt: skip
    assert proc.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["fed"] >= 2048 and out["flows"] > 0, out  # what was read is kept
    if "py" not in backend_name:  # the pure-Python reader holds the whole file already
        assert "shrank" in out["status"] and "while being read" in out["status"], out
        assert out["fed"] < 60000
