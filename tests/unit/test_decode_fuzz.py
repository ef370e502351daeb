"""Mutation fuzzing of the decoders: corpus packets with random byte flips, truncations and
splices, under every supported link type, must never raise (or crash the compiled twin).
Runs in a child process so a crash fails the test instead of killing pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import BACKEND_PARAMS, REPO, ZEEK_CORPUS

CHILD = r"""
import json, random, sys
import numpy as np
from sensor.capture.batch import PacketBatch
from sensor.engine.config import EngineConfig
from sensor.engine import load_backend
from netwarden.records.schema import FLOW_DTYPE, ARP_DTYPE, PKTSUM_DTYPE

backend, seed, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
mod = load_backend(backend)
rng = random.Random(seed)
frames = []
for p in paths:
    for b in mod.PcapReader(p).batches(4096):
        buf = bytes(memoryview(b.buffer).cast("B")) if not isinstance(b.buffer, bytes) else b.buffer
        for i in range(b.count):
            o = int(b.offset[i])
            frames.append(buf[o:o + int(b.caplen[i])])
# Every link type once; Ethernet (the corpus' own framing) five more times.
linktypes = [0, 1, 9, 10, 12, 14, 50, 101, 105, 108, 113, 127, 228, 229, 276] + [1] * 5
out = np.zeros(4096, FLOW_DTYPE)
arp = np.zeros(4096, ARP_DTYPE)
n = 0
for lt in linktypes:
    eng = mod.FlowEngine(EngineConfig(validate_checksums=(lt % 2 == 0), max_flows=512))
    pkts = []
    for k in range(1000):
        f = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 6)):
            if f:
                f[rng.randrange(len(f))] = rng.randrange(256)
        if f and rng.random() < 0.3:
            del f[rng.randrange(len(f)):]
        if rng.random() < 0.2:
            f += rng.choice(frames)[: rng.randrange(64)]
        pkts.append((10**18 + k * 10**7, bytes(f)))
    batch = PacketBatch.from_packets(pkts, linktype=lt)
    eng.feed(batch, np.zeros(batch.count, PKTSUM_DTYPE))
    eng.advance(10**18 + 10**12)
    eng.flush()
    while eng.drain_flows(out) == len(out):
        pass
    eng.drain_arp(arp)
    assert eng.stats()["flows_live"] == 0
    n += len(pkts)
print(json.dumps({"packets": n}))
"""


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_mutated_packets_never_raise(backend_name: str) -> None:
    traces = sorted(ZEEK_CORPUS.glob("*/trace.pcap*"))
    if not traces:
        pytest.skip(f"Zeek corpus not found at {ZEEK_CORPUS}")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for seed in (1, 2, 3):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, backend_name, str(seed), *map(str, traces)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, f"seed {seed}: rc {proc.returncode}: {proc.stderr[-3000:]}"
        assert json.loads(proc.stdout.strip().splitlines()[-1])["packets"] == 20 * 1000
