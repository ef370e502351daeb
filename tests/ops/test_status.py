"""``netwarden status`` on a replay's state dir (no controller) and on a running controller
fed by a sensor replaying the demo capture: text and --json checked for content."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.demo_state import REPO, SCANNER, demo_fixture, nw
from tests.integration.controller_proc import ControllerProcess
from tests.jsonl import one

demo = demo_fixture("ops_demo")


def test_status_of_a_replay_state_dir(demo: dict[str, Any]) -> None:
    st = one(nw("status", "--json", "--state-dir", str(demo["state"])).stdout, "status")
    assert st["controller"]["running"] is False and st["sensors"] == {}
    assert st["enforcement"] == {"backend": "dryrun", "dry_run": True,
                                 "dry_run_file": str(demo["state"] / "dryrun.jsonl")}  # fmt: skip
    scan = [i for i in st["incidents"]["list"] if SCANNER in i["attackers"]]
    assert scan and "port_scan" in scan[0]["kinds"]
    assert (
        st["incidents"]["open"]
        == len(st["incidents"]["list"])
        == sum(st["incidents"]["by_priority"].values())
    )
    # the replay's level-3 decision banned the scanner (dry run), active as of the replay's end
    assert [b["addr"] for b in st["bans"]] == [SCANNER]
    text = nw("status", "--state-dir", str(demo["state"])).stdout
    lines = text.splitlines()
    assert lines[0] == "!!! DRY RUN: nothing is enforced (backend dryrun) !!!"
    assert lines[1].endswith(f"would-be bans are written to {demo['state'] / 'dryrun.jsonl'}")
    assert "Controller: not running; enforcement backend last used: dryrun" in text
    assert f"Open incidents: {st['incidents']['open']}  (P1 " in text
    assert scan[0]["id"] in text
    assert "Active bans: 1, would block (dry run)" in text and SCANNER in text
    assert "Pending approvals: 0" in text
    wide = [
        x for x in lines if len(x) > 80 and str(demo["state"]) not in x
    ]  # only paths may be longer
    assert not wide, wide


def _top_on_a_terminal(state: Path) -> int:
    """``netwarden top`` on a pty beside a running controller: how many times it drew its
    title before Ctrl-C (it exits 130)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "netwarden", "top", "--interval", "0.2", "--state-dir",
                             str(state)], stdin=slave, stdout=slave, stderr=slave, cwd=REPO)  # fmt: skip
    os.close(slave)
    seen, deadline = b"", time.monotonic() + 60
    while seen.count(b"Top talkers by bytes") < 3 and time.monotonic() < deadline:
        if select.select([master], [], [], 1.0)[0]:
            seen += os.read(master, 65536)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    os.close(master)
    return seen.count(b"Top talkers by bytes")


def test_status_of_a_missing_state_dir_is_one_line(tmp_path: Path) -> None:
    out = nw("status", "--state-dir", str(tmp_path / "nope"), check=False)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no NetWarden state in" in out.stderr


def test_status_of_a_running_controller_fed_by_a_sensor(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    state = tmp_path / "fed"
    ctl = ControllerProcess(state, demo["cfg"], "--enforce", "dryrun", "--listen", endpoint)
    try:
        sensor = subprocess.run([sys.executable, "-m", "netwarden", "sensor", "--pcap", str(demo["pcap"]), "--connect",
                                 endpoint, "--sensor-id", "s-ops", "--batch", "64"],
                                check=False, capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
        assert sensor.returncode == 0, sensor.stderr
        st: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = one(nw("status", "--json", "--state-dir", str(state)).stdout, "status")
            if (
                any(SCANNER in i["attackers"] for i in st["incidents"]["list"])
                and st["controller"]["records_per_s"]
            ):
                break
            time.sleep(0.5)
        c = st["controller"]
        assert c["running"] is True and c["records"] > 0 and c["records_per_s"] > 0
        assert c["endpoint"] and c["bus_lag_s"] is not None
        assert (
            c["queue_depth"] >= 0 and c["queue_depth_max_60s"] >= 1
        )  # the sensor's batches waited
        assert (
            st["sensors"]["s-ops"]["state"] == "stopped" and st["sensors"]["s-ops"]["records"] > 0
        )
        assert st["enforcement"]["backend"] == "dryrun" and st["enforcement"]["dry_run"] is True
        assert any(SCANNER in i["attackers"] for i in st["incidents"]["list"])
        assert SCANNER in [b["addr"] for b in st["bans"]]
        text = nw("status", "--state-dir", str(state)).stdout
        assert text.startswith("!!! DRY RUN") and "Controller: running (pid " in text
        assert "s-ops" in text and "stopped" in text and "records/s" in text
        assert "  queue depth " in text
        assert not [x for x in text.splitlines() if len(x) > 80 and str(state) not in x]
        # top talkers from the telemetry the sensor sent: the scanner opened the most flows
        top = [json.loads(x) for x in nw("top", "--json", "--by", "flows", "-n", "3",
                                         "--state-dir", str(state)).stdout.splitlines()]  # fmt: skip
        assert top[0]["addr"] == SCANNER and top[0]["alerts"] >= 1 and top[0]["bytes"] > 0
        live = nw("top", "--by", "flows", "--state-dir", str(state)).stdout
        assert "(live, " in live.splitlines()[0] and SCANNER in live
        frames = _top_on_a_terminal(state)
        assert frames >= 2  # redrawn every --interval until Ctrl-C
    finally:
        assert ctl.stop() == 0
