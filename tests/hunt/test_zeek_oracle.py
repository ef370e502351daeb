"""``talkers``, ``long-connections`` and ``rare-destinations`` on traces of the Zeek corpus, against Zeek's own
conn.log for the same trace (the flow engine matches it row for row): the hunts' sums and
rankings are those of the oracle, computed here from conn.log."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from netwarden.hunt.db import default_internal
from tests.conftest import ZEEK_CORPUS
from tests.hunt.conftest import json_lines, run_nw

TRACES = ["wikipedia", "cisco_fabric_path", "pop3_rej", "ssh_many"]


def conn_log(path: Path) -> list[dict[str, str]]:
    fields: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def trace(name: str) -> Path:
    found = sorted((ZEEK_CORPUS / name).glob("trace.pcap*")) or [None]
    return found[0] or pytest.skip(f"no trace for {name} in {ZEEK_CORPUS}")


@pytest.mark.parametrize("name", TRACES)
def test_talkers_and_long_connections_match_zeek(name: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    rc, _out, err = run_nw("replay", "--json", "--state-dir", str(state), str(trace(name)))
    assert rc == 0, err
    rows = conn_log(ZEEK_CORPUS / name / "conn.log")
    total: dict[str, int] = {}
    for r in rows:
        b = int(r["orig_ip_bytes"]) + int(r["resp_ip_bytes"])
        for h in {r["id.orig_h"], r["id.resp_h"]}:
            total[h] = total.get(h, 0) + b
    want = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    got: list[dict[str, Any]] = [
        x for x in json_lines("hunt", "talkers", "--limit", "5", "--state-dir", str(state))
        if x["type"] == "talker"
    ]  # fmt: skip
    assert [(x["host"], x["bytes"]) for x in got] == want
    durations = sorted((float(r["duration"]) for r in rows if r["duration"] not in ("-", "")),
                       reverse=True)[:5]  # fmt: skip
    longest = [
        x["duration_s"]
        for x in json_lines("hunt", "long-connections", "--limit", "5", "--state-dir", str(state))
        if x["type"] == "long_connection"
    ]
    positive = [d for d in durations if d > 0]
    assert longest == pytest.approx(positive, abs=0.051)
    # rare destinations: per external responder, the internal originators and connections
    inside = default_internal()

    def internal(a: str) -> bool:
        ip = ipaddress.ip_address(a)
        return any(ip.version == n.version and ip in n for n in inside)

    out = [r for r in rows if internal(r["id.orig_h"]) and not internal(r["id.resp_h"])]
    want_rare = {d: ({r["id.orig_h"] for r in out if r["id.resp_h"] == d},
                     sum(r["id.resp_h"] == d for r in out)) for d in {r["id.resp_h"] for r in out}}  # fmt: skip
    rare = [x for x in json_lines("hunt", "rare-destinations", "--limit", "10000",
                                  "--state-dir", str(state)) if x["type"] == "rare_destination"]  # fmt: skip
    assert {x["dst"]: (x["sources"], x["conns"]) for x in rare} == {
        d: (len(srcs), n) for d, (srcs, n) in want_rare.items()
    }
