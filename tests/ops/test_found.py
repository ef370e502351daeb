"""What a new user ran into (issue: "Found when tried as a new user would"), each fixed:
dry-run wording of ban/bans, controller lifecycle logs, the sensor's final lines, flows and
replay on a missing or non-capture file, detect's kinds, level-1 recommendations shown in
approvals, audit columns at 80 columns, bounded distinct-host estimates, and conversations
ranked by flows as well as bytes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate

from tests.integration.controller_proc import ControllerProcess
from tests.jsonl import jsonl

SCANNER = generate.SCANNER[1]
V6 = "2001:db8:ffff:ffff:ffff:ffff:ffff:1234"


def nw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netwarden", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, check=False, env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("found") / "demo.pcap"
    generate.build().write(p)
    return p


@pytest.fixture
def controller(tmp_path: Path) -> Any:
    cfg = tmp_path / "nw.toml"
    cfg.write_text(
        "[safety]\ndiscover_local = false\n"
    )  # default_level 1: detections are recommendations
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    ctl = ControllerProcess(
        tmp_path / "state", cfg, "--enforce", "dryrun", "--listen", endpoint, "--no-archive"
    )
    ctl.endpoint = endpoint  # type: ignore[attr-defined]
    try:
        yield ctl
    finally:
        ctl.kill()


def test_dry_run_ban_and_bans_say_nothing_is_enforced(controller: Any) -> None:
    st = ["--state-dir", str(controller.state)]
    out = nw("ban", V6, "--ttl", "600", "--reason", "try", *st)
    assert out.returncode == 0, out.stderr
    journal = controller.state / "dryrun.jsonl"
    assert out.stdout.startswith(f"DRY RUN: ban on {V6} for 600s recorded but NOT enforced")
    assert str(journal) in out.stdout and "banned" not in out.stdout
    assert V6 in journal.read_text()
    text = nw("bans", *st, env={"COLUMNS": "80"}).stdout
    assert "DRY RUN: not enforced" in text and V6 in text  # the whole address, on one line
    assert jsonl(nw("bans", "--json", *st).stdout, "ban")[0]["addr"] == V6


def test_detect_lists_kinds_and_recommendations_reach_approvals(controller: Any) -> None:
    st = ["--state-dir", str(controller.state)]
    bad = nw(
        "detect",
        "--kind",
        "portscan",
        "--attacker",
        "198.51.100.7",
        "--score",
        "90",
        "--confidence",
        "0.9",
        *st,
    )
    assert bad.returncode == 2 and "unknown kind 'portscan'" in bad.stderr
    assert "port_scan" in bad.stderr and "ssh_bruteforce" in bad.stderr
    assert "port_scan" in nw("detect", "--help").stdout
    ok = nw("detect", "--kind", "port_scan", "--attacker", V6, "--score", "90", "--confidence", "0.9",
            "--evidence", "INC-9", *st)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.startswith("recommend:"), ok.stdout + ok.stderr
    decision = re.search(r"decision (d-[0-9a-f]+)", ok.stdout).group(1)  # type: ignore[union-attr]
    text = nw("approvals", *st, env={"COLUMNS": "80"}).stdout
    assert "0 pending approvals" in text and "1 recommendations (level 1: nothing was done" in text
    assert decision in text and V6 in text and "INC-9" in text
    audit = nw("audit", *st, env={"COLUMNS": "80"}).stdout
    assert max(len(x) for x in audit.splitlines()) <= 80
    assert V6 in audit and "detector:port_scan" in audit  # neither cut nor wrapped


def test_controller_logs_listen_sensors_and_stop(controller: Any, pcap: Path) -> None:
    sensor = nw(
        "sensor", "--pcap", str(pcap), "--connect", controller.endpoint, "--sensor-id", "s-log"
    )
    assert sensor.returncode == 0, sensor.stderr
    # the sensor's last lines agree: what was sent, then what was acknowledged
    final = next(
        x
        for x in sensor.stderr.splitlines()
        if x.startswith("sensor: packets=") and x.endswith("(final)")
    )
    sent = int(re.search(r"bus: sent=(\d+) awaiting_ack=\d+ ", final).group(1))  # type: ignore[union-attr]
    bus = re.search(r"sensor: bus: (\d+) records in \d+ messages, (\d+) acknowledged, 0 unacknowledged at exit",
                    sensor.stderr)  # fmt: skip
    assert bus and int(bus.group(1)) == sent == int(bus.group(2)), sensor.stderr
    assert "acked_seq" not in sensor.stderr
    assert controller.stop() == 0
    err = controller.proc.stderr.read()
    assert re.search(r"listening for sensors on tcp://127\.0\.0\.1:\d+ \(no CURVE\)", err), err
    assert "sensor s-log joined" in err and "sensor s-log stopped (clean shutdown)" in err
    assert (
        "stopping (signal received); kernel bans stay in place" in err
        and "controller stopped" in err
    )


@pytest.mark.parametrize("what", ["missing", "text"])
def test_flows_and_replay_refuse_a_non_capture_and_write_nothing(tmp_path: Path, what: str) -> None:
    src = tmp_path / "notes.txt"
    if what == "text":
        src.write_text("this is not a capture\n")
    out_file = tmp_path / "conn.log"
    flows = nw("flows", str(src), "-o", str(out_file))
    assert flows.returncode == 1 and flows.stdout == "" and not out_file.exists()
    assert flows.stderr.count("\n") == 1 and str(src) in flows.stderr
    assert nw("flows", str(src)).stdout == ""  # no Zeek header, no #close
    replay = nw("replay", str(src))
    assert replay.returncode == 1 and replay.stdout == "" and replay.stderr.count("\n") == 1
    expect = "no such file" if what == "missing" else "not a pcap or pcapng capture file"
    assert expect in flows.stderr and expect in replay.stderr


def test_replay_estimates_are_bounded_and_pairs_rank_by_flows(pcap: Path) -> None:
    summary = json.loads(nw("replay", "--json", str(pcap)).stdout.splitlines()[-1])
    flows = [json.loads(x) for x in nw("flows", "--format", "json", str(pcap)).stdout.splitlines()]
    for n in summary["notable"]:
        if n["indicator"].startswith("distinct hosts it contacted"):
            assert n["peak"] <= len({f["resp_h"] for f in flows if f["orig_h"] == n["host"]})
        if n["indicator"].startswith("distinct sources sending to it"):
            assert n["peak"] <= len({f["orig_h"] for f in flows if f["resp_h"] == n["host"]})
    scan_hosts = [
        n
        for n in summary["notable"]
        if n["host"] == SCANNER and "hosts it contacted" in n["indicator"]
    ]
    assert scan_hosts and scan_hosts[0]["peak"] <= 254  # a sweep of one /24
    top = summary["flows"]["top_pairs"]
    assert top[0]["orig"] == SCANNER and top[0]["flows"] == max(p["flows"] for p in top)
    assert top[0]["flows"] == sum(
        1 for f in flows if f["orig_h"] == SCANNER and f["resp_h"] == top[0]["resp"]
    )
    assert SCANNER not in {
        c["orig"].rsplit(":", 1)[0] for c in summary["flows"]["top"]
    }  # bytes alone miss it
    text = nw("replay", str(pcap)).stdout
    assert "Top host pairs by flows" in text


def test_distinct_bound_counts_what_the_flows_name() -> None:
    from netwarden.records.schema import FLOW_DTYPE
    from sensor.export.replay_summary import _distinct_bound

    f = np.zeros(4, FLOW_DTYPE)
    a, b = np.zeros(16, np.uint8), np.zeros(16, np.uint8)
    a[:4], b[:4] = (10, 0, 0, 1), (10, 0, 0, 2)
    f["orig_addr"][:3] = a
    f["orig_addr"][3] = b
    for i, last in enumerate((5, 6, 6, 1)):
        f["resp_addr"][i][:4] = (10, 0, 1, last)
        f["resp_port"][i] = 22 if i else 80
    assert _distinct_bound(f, "out_dst_hosts", a) == 2
    assert _distinct_bound(f, "out_dst_ports", a) == 2
    assert _distinct_bound(f, "in_src_hosts", f["resp_addr"][1]) == 1
    assert _distinct_bound(f, "out_dst_hosts", np.full(16, 9, np.uint8)) == 0
