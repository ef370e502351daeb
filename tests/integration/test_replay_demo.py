"""`netwarden replay` on the project's generated demo capture, end to end through the CLI.

The generator (pcaps/generate.py) is the ground truth: it knows which host scans and
sweeps, which client sends the long random DNS names, and how many TCP sessions it wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate


@pytest.mark.parametrize("backend", ["py", "c"])
def test_replay_reports_flows_telemetry_and_the_scanner(demo_pcap: Path, backend: str) -> None:
    if backend == "c" and not hasattr(pytest.importorskip("sensor._fastpath"), "FlowEngine"):
        pytest.skip("compiled flow engine (sensor._fastpath.FlowEngine) is not built")
    proc = subprocess.run(
        [sys.executable, "-m", "netwarden", "replay", "--json", "--backend", backend,
         str(demo_pcap)],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines[-1]["type"] == "summary"  # alerts first, one JSON object per line
    s = lines[-1]
    scanner = generate.SCANNER[1]
    # Every scanned port (1..1024) is its own flow; closed ports answer RST -> REJ.
    assert s["flows"]["by_state"].get("REJ", 0) >= 1024 - 3
    assert s["flows"]["tunnelled"] >= 1  # the GRE-carried ping
    assert s["arp"]["requests"] == len(generate.CLIENTS)
    assert s["dns"]["longest_label"] >= 52 and s["dns"]["max_entropy"] > 4.0
    flagged = {(n["host"], n["indicator"]) for n in s["notable"]}
    assert any(h == scanner and "ports" in ind for h, ind in flagged), flagged
    assert any(h == scanner and "hosts it contacted" in ind for h, ind in flagged), flagged
    benign = {ip for _, ip in generate.CLIENTS}
    assert not any(h in benign and "ports" in ind for h, ind in flagged), flagged
    assert s["traffic"]["decode_errors"] == 0


def test_replay_missing_file_is_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "netwarden", "replay", str(tmp_path / "nope.pcap")],
        check=False, capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "nope.pcap" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
