"""The demo capture replayed into a state dir, as the incident and operator CLI tests use it.

``replay_demo(dir)`` writes ``demo.pcap`` (pcaps/generate.py), a config that lets policy act on
the demo's outside scanner, and replays it with ``--state-dir`` as ``make demo`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "pcaps"))
import generate
import pytest

#: the demo's outside scanner (the address policy acts on)
SCANNER = generate.SCANNER[1]

CONFIG = """
[safety]
discover_local = false
[policy]
detectors = { port_scan = 3, host_sweep = 3 }
internal_networks = ["10.0.0.0/8"]  # the demo LAN (192.168.10.0/24) is treated as outside
[copilot]
lang = "en"
"""


def nw(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``netwarden ARGS`` in a subprocess; asserts success unless ``check`` is false."""
    proc = subprocess.run(
        [sys.executable, "-m", "netwarden", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def replay_demo(d: Path) -> dict[str, Any]:
    """Replay the demo into ``d/state``; the paths and the replay's --json lines."""
    pcap = d / "demo.pcap"
    generate.build().write(pcap)
    cfg = d / "nw.toml"
    cfg.write_text(CONFIG)
    state = d / "state"
    out = nw("replay", "--json", "--state-dir", str(state), "--config", str(cfg), str(pcap))
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    return {"pcap": pcap, "cfg": cfg, "state": state, "lines": lines, "dir": d}


def demo_fixture(name: str) -> Any:
    """A module-scoped fixture: the demo replayed into a fresh directory named ``name``."""

    @pytest.fixture(scope="module")
    def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        return replay_demo(tmp_path_factory.mktemp(name))

    return demo
