"""Robustness: every file of tcpdump's malformed/fuzzed corpus reads to the end or stops
with a clean CaptureFormatError; no other exception, no hang, no memory growth.

The work runs in a child process (one per backend) so a crash or hang in either engine
fails this test instead of taking pytest down; each file is guarded by ``signal.alarm``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKEND_PARAMS, REPO

PER_FILE_SECONDS = 20
RSS_GROWTH_LIMIT_KB = 64 * 1024  # second pass over the whole set must not keep growing

CHILD = r"""
import json, resource, signal, sys
import numpy as np
from netwarden.errors import CaptureFormatError
from sensor.engine.config import EngineConfig
from sensor.engine import load_backend
from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE, PKTSUM_DTYPE

backend, limit, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
mod = load_backend(backend)
flows = np.zeros(1024, FLOW_DTYPE)
arps = np.zeros(1024, ARP_DTYPE)

class Hang(Exception):
    pass

def alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)

def one(path):
    eng = mod.FlowEngine(EngineConfig())
    status = "ok"
    try:
        for batch in mod.PcapReader(path).batches(256):
            ps = np.zeros(batch.count, PKTSUM_DTYPE)
            eng.feed(batch, ps)
            while eng.drain_flows(flows) == len(flows):
                pass
            while eng.drain_arp(arps) == len(arps):
                pass
    except CaptureFormatError as exc:
        status = "format_error"
        if not (exc.path == path and exc.offset >= 0):
            status = "format_error_without_location"
    eng.flush()
    n = 0
    while True:
        k = eng.drain_flows(flows)
        n += k
        if k < len(flows):
            break
    st = eng.stats()
    return status, n, st.get("flows_live", 0)

def rss_kb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

results = {}
rss = []
for rnd in range(2):
    for path in files:
        signal.alarm(limit)
        try:
            status, n, live = one(path)
        except Hang:
            status, n, live = "hang", 0, 0
        except BaseException as exc:
            status, n, live = "exception %s: %s" % (type(exc).__name__, exc), 0, 0
        finally:
            signal.alarm(0)
        results[path] = {"status": status, "flows": n, "live_after_flush": live}
    rss.append(rss_kb())
print(json.dumps({"results": results, "rss": rss}))
"""


def _files(corpus: Path) -> list[Path]:
    with open(corpus / "MANIFEST.tsv", newline="") as fh:
        names = [row["file"] for row in csv.DictReader(fh, delimiter="\t")]
    return [corpus / n for n in names]


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_malformed_corpus(malformed_corpus: Path, backend_name: str) -> None:
    files = _files(malformed_corpus)
    assert len(files) == 300, "the malformed corpus should hold 300 captures"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, backend_name, str(PER_FILE_SECONDS), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
        timeout=PER_FILE_SECONDS * 2 * len(files),
    )
    assert proc.returncode == 0, f"child crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {p: r for p, r in report["results"].items() if r["status"] not in ("ok", "format_error")}
    assert not bad, f"{len(bad)} files failed: {dict(list(bad.items())[:5])}"
    leaked = {p: r for p, r in report["results"].items() if r["live_after_flush"]}
    assert not leaked, f"flows left in the table after flush: {list(leaked)[:5]}"
    first, second = report["rss"]
    assert second - first < RSS_GROWTH_LIMIT_KB, f"RSS grew {second - first} kB on a second pass"
    # libpcap reads every one of these files to the end, so should we.
    clean = sum(1 for r in report["results"].values() if r["status"] == "ok")
    assert clean == len(files), f"only {clean}/{len(files)} files read to the end"
