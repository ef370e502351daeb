"""``make demo``: the generated demo capture's planted attacks (``generate.PLANTED``) each
come out of ``netwarden replay`` as an alert naming the right host, and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate


def test_demo_shows_every_planted_attack(demo_pcap: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "netwarden", "replay", "--json", str(demo_pcap)],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    alerts = [a for a in map(json.loads, proc.stdout.splitlines()) if a["type"] == "alert"]
    got = {(a["kind"], a["attacker"], v) for a in alerts for v in a["victims"]}
    for kind, attacker, victim in generate.PLANTED:
        assert (kind, attacker, victim) in got, (kind, attacker, victim, sorted(got))
    assert len(alerts) == len(generate.PLANTED), [a["summary"] for a in alerts]
    human = subprocess.run(
        [sys.executable, "-m", "netwarden", "replay", str(demo_pcap)],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert human.returncode == 0 and f"Alerts ({len(generate.PLANTED)})" in human.stdout
