"""``netwarden top`` on a replay's state dir, checked against oracles read from the capture
itself: IP bytes per host from a plain pcap reader here (not the engine), flows opened from
the Zeek conn.log of ``netwarden flows``, alerts from ``netwarden alerts``.
The live case (a running controller fed by a sensor) is in test_status.py."""

from __future__ import annotations

import ipaddress
import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.demo_state import nw, replay_demo
from tests.golden.test_zeek_oracle import read_conn_log
from tests.jsonl import jsonl


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return replay_demo(tmp_path_factory.mktemp("top_demo"))


def ip_bytes(path: Path) -> tuple[Counter[str], Counter[str]]:
    """(IPv4 bytes sent, received) per address: total-length fields of an Ethernet pcap."""
    sent: Counter[str] = Counter()
    recv: Counter[str] = Counter()
    data = path.read_bytes()
    e = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    assert struct.unpack(e + "I", data[20:24])[0] == 1  # Ethernet
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack(e + "I", data[pos + 8 : pos + 12])[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        off, etype = 14, struct.unpack(">H", frame[12:14])[0]
        while etype in (0x8100, 0x88A8):
            etype, off = struct.unpack(">H", frame[off + 2 : off + 4])[0], off + 4
        if etype != 0x0800:
            continue
        total = struct.unpack(">H", frame[off + 2 : off + 4])[0]
        sent[str(ipaddress.IPv4Address(frame[off + 12 : off + 16]))] += total
        recv[str(ipaddress.IPv4Address(frame[off + 16 : off + 20]))] += total
    return sent, recv


def _top(demo: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    out = nw("top", "--json", "--since", "0", "--state-dir", str(demo["state"]), *args).stdout
    return [json.loads(x) for x in out.splitlines()]


def test_top_by_bytes_matches_the_capture(demo: dict[str, Any]) -> None:
    sent, recv = ip_bytes(demo["pcap"])
    total = sent + recv
    rows = _top(demo, "--by", "bytes", "-n", "6")
    assert len(rows) == 6 and all(r["type"] == "talker" for r in rows)
    assert [r["addr"] for r in rows] == [a for a, _ in total.most_common(6)]
    for r in rows:
        assert (r["bytes_out"], r["bytes_in"]) == (sent[r["addr"]], recv[r["addr"]])
        assert r["bytes"] == total[r["addr"]]


def test_top_by_flows_and_by_alerts(demo: dict[str, Any]) -> None:
    opened = Counter(
        r["id.orig_h"]
        for r in read_conn_log(nw("flows", "--format", "zeek", str(demo["pcap"])).stdout)
    )
    rows = _top(demo, "--by", "flows", "-n", "4")
    assert [(r["addr"], r["flows_out"]) for r in rows] == opened.most_common(4)
    alerts = jsonl(nw("alerts", "--json", "--state-dir", str(demo["state"])).stdout, "alert")
    named = Counter(a["attacker"] for a in alerts if a["attacker"])
    named.update(v for a in alerts for v in a["victims"])
    by_alerts = _top(demo, "--by", "alerts", "-n", "50")
    assert by_alerts[0]["alerts"] == max(named.values())
    assert {r["addr"]: r["alerts"] for r in by_alerts if r["alerts"]} == dict(named)


def test_top_table_fits_80_columns_and_a_short_span(demo: dict[str, Any]) -> None:
    st = ["--state-dir", str(demo["state"])]
    text = nw("top", "-n", "5", *st).stdout
    lines = text.splitlines()
    assert lines[0].startswith("Top talkers by bytes, ") and "(stored, " in lines[0]
    assert max(len(x) for x in lines) <= 80
    best = _top(demo, "-n", "1")[0]
    assert best["addr"] in text.split() and f"{best['flows_out']}" in text
    # the default span is the last 5 minutes of the archived traffic; 10 s of it is less
    short = [json.loads(x) for x in nw("top", "--json", "--since", "10s", *st).stdout.splitlines()]
    assert short and sum(r["bytes"] for r in short) < sum(
        r["bytes"] for r in _top(demo, "-n", "1000")
    )
    bad = nw("top", "-n", "0", *st, check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == "netwarden top: error: -n must be >= 1"
