"""The hunts on crafted traffic (tests/hunt/traffic.py) replayed with ``--state-dir``:
each finds what was planted, ranked above the benign look-alikes; counts agree with the
archive read independently by ``pyarrow.dataset``."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tests.hunt.conftest import json_lines, run_nw
from tests.hunt.traffic import PLANTED


def flows_table(state: Path) -> pa.Table:
    d = ds.dataset(state / "archive", format="parquet", partitioning="hive")
    return d.to_table(filter=pc.field("type") == "flow")


def rows(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [x for x in lines if x["type"] == kind]


def test_archive_is_a_hive_dataset_with_every_record_type(crafted: Path) -> None:
    d = ds.dataset(crafted / "archive", format="parquet", partitioning="hive")
    t = d.to_table(columns=["type", "date", "hour", "sensor"])
    assert set(t.column("type").to_pylist()) >= {"flow", "host", "pair"}
    assert set(t.column("sensor").to_pylist()) == {"replay"}
    flows = flows_table(crafted)
    # every flow lies in the hour its partition names
    ts = flows.column("ts").to_pylist()
    for when, day, hour in zip(ts, flows.column("date").to_pylist(),
                               flows.column("hour").to_pylist(), strict=True):  # fmt: skip
        assert (when.date(), when.hour) == (date.fromisoformat(str(day)), int(hour))
    assert all(p.suffix == ".parquet" for p in (crafted / "archive").rglob("part-*"))
    # a few files per partition, not one per batch
    parts = {p.parent for p in (crafted / "archive").rglob("*.parquet")}
    assert len(list((crafted / "archive").rglob("*.parquet"))) <= 2 * len(parts)


def test_planted_beacon_ranks_first_among_periodic_polling(crafted: Path) -> None:
    got = rows(json_lines("hunt", "beacons", "--state-dir", str(crafted)), "beacon")
    pairs = [(r["src"], r["dst"]) for r in got]
    assert pairs[0] == PLANTED["beacon"]
    polling = [pairs.index(p) for p in PLANTED["polling"]]  # scored, and below
    assert min(polling) > 0
    top = got[0]
    assert top["score"] > max(got[i]["score"] for i in polling)
    assert 115 <= top["interval_s"] <= 125 and top["reasons"]
    assert sum(top["per_hour"]) == top["conns"] and min(top["per_hour"][:-1]) >= 25
    assert got == sorted(got, key=lambda r: -r["score"])


def test_slow_scan_is_found_across_hours(crafted: Path) -> None:
    got = rows(json_lines("hunt", "scans", "--state-dir", str(crafted)), "scan")
    assert got[0]["src"] == PLANTED["slow_scanner"]
    assert got[0]["span_h"] >= 5 and got[0]["hours"] >= 5
    assert got[0]["failed_share"] == 1.0
    clients = {c for c, _ in PLANTED["polling"]}
    assert all(r["score"] < got[0]["score"] for r in got if r["src"] in clients)
    # over the last hour alone the scan is thin (it is slow): the long window adds it up
    lastly = json_lines("hunt", "scans", "--since", "1h", "--state-dir", str(crafted))
    hour = [r for r in rows(lastly, "scan") if r["src"] == PLANTED["slow_scanner"]]
    assert not hour or hour[0]["targets"] * 4 < got[0]["targets"]


def test_dns_tunnel_candidate_first(crafted: Path) -> None:
    got = rows(json_lines("hunt", "dns", "--state-dir", str(crafted)), "dns_candidate")
    client, domain = PLANTED["dns_tunnel"]
    assert (got[0]["src"], got[0]["domain"]) == (client, domain)
    assert got[0]["null_txt_share"] == 1.0 and got[0]["subdomains"] >= 50
    assert all(r["score"] < got[0]["score"] for r in got[1:])


def test_rare_destinations_and_long_connections(crafted: Path) -> None:
    got = rows(json_lines("hunt", "rare-destinations", "--state-dir", str(crafted)),
               "rare_destination")  # fmt: skip
    by_dst = {r["dst"]: r for r in got}
    assert by_dst[PLANTED["rare_service"][1]]["sources"] == 1
    assert by_dst[PLANTED["beacon"][1]]["sources"] == 1
    assert by_dst[PLANTED["polling"][0][1]]["sources"] > 1
    assert got[0]["prevalence"] <= got[-1]["prevalence"]
    longest = rows(json_lines("hunt", "long-connections", "--state-dir", str(crafted)),
                   "long_connection")  # fmt: skip
    client, server, port, seconds = PLANTED["long"]
    assert (longest[0]["src"], longest[0]["dst"], longest[0]["port"]) == (client, server, port)
    assert longest[0]["duration_s"] >= seconds * 0.95


def test_talkers_agree_with_the_archive(crafted: Path) -> None:
    got = rows(json_lines("hunt", "talkers", "--state-dir", str(crafted)), "talker")
    last: dict[str, dict[str, Any]] = {}  # one row per connection: its last record
    for r in sorted(flows_table(crafted).to_pylist(), key=lambda r: r["ts_last"]):
        last[r["uid"]] = r
    total: dict[str, int] = {}
    for r in last.values():
        for h in (r["orig_h"], r["resp_h"]):
            total[h] = total.get(h, 0) + r["orig_ip_bytes"] + r["resp_ip_bytes"]
    want = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(r["host"], r["bytes"]) for r in got[:5]] == want


def test_host_shows_flows_peers_and_alerts(crafted: Path) -> None:
    src, dst = PLANTED["beacon"]
    lines = json_lines("hunt", "host", src, "--state-dir", str(crafted))
    t = flows_table(crafted)
    mine = t.filter(pc.or_(pc.equal(t["orig_h"], src), pc.equal(t["resp_h"], src)))
    assert rows(lines, "host")[0]["conns"] == len(set(mine.column("uid").to_pylist()))
    assert dst in {r["peer"] for r in rows(lines, "peer")}
    with sqlite3.connect(crafted / "netwarden.db") as db:
        want = {r[0] for r in db.execute("SELECT id FROM alerts WHERE attacker = ?", (src,))}
    assert want and {r["id"] for r in rows(lines, "alert")} == want


def test_alert_evidence_names_archived_flows_by_uid(crafted: Path) -> None:
    """The flow uids an alert gives as evidence are the uids of archived flow records (the
    ones ``netwarden flows`` and every hunt show), so an analyst can pivot from one to the
    other."""
    sd = ("--state-dir", str(crafted))
    alerts = [r for r in json_lines("hunt", "sql", "SELECT kind, evidence FROM alerts", *sd)
              if r["type"] == "row"]  # fmt: skip
    cited = {u for r in alerts for u in json.loads(r["evidence"]).get("flow_uids", [])}
    assert len(cited) >= 3, alerts
    listed = ", ".join(f"'{u}'" for u in sorted(cited))
    found = json_lines("hunt", "sql", f"SELECT uid FROM flows WHERE uid IN ({listed})", *sd)
    assert {r["uid"] for r in found if r["type"] == "row"} == cited


def test_incident_context_is_its_hosts_from_an_hour_before(crafted: Path) -> None:
    with sqlite3.connect(crafted / "netwarden.db") as db:
        iid, opened, updated = db.execute(
            "SELECT id, opened_at, updated_at FROM incidents ORDER BY seq LIMIT 1"
        ).fetchone()
    got = rows(json_lines("hunt", "incident", iid, "--limit", "100000", "--state-dir",
                          str(crafted)), "incident_flow")  # fmt: skip
    lo = datetime.fromtimestamp(opened - 3600, tz=UTC)
    hi = datetime.fromtimestamp(updated + 300, tz=UTC)
    assert got
    for r in got:
        when = datetime.fromisoformat(r["ts"])
        assert lo <= when <= hi and r["incident_id"] == iid
    rc, _out, err = run_nw("hunt", "incident", "INC-999", "--state-dir", str(crafted))
    assert rc != 0 and "no incident" in err and len(err.strip().splitlines()) == 1


def test_sql_is_read_only_over_the_views(crafted: Path) -> None:
    got = json_lines("hunt", "sql", "SELECT count(*) AS n FROM flows", "--state-dir",
                     str(crafted))  # fmt: skip
    assert rows(got, "row")[0]["n"] == flows_table(crafted).num_rows
    for view in ("hosts", "pairs", "arp", "alerts", "incidents", "conns", "incident_flows"):
        assert rows(json_lines("hunt", "sql", f"SELECT count(*) AS n FROM {view}",
                               "--state-dir", str(crafted)), "row")  # fmt: skip
    for bad in ("DROP VIEW flows", "SELECT 1; SELECT 2", "COPY flows TO 'x.csv'",
                "CREATE TABLE x AS SELECT 1", "SELEKT 1", "SET enable_external_access = true",
                "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'"):  # fmt: skip
        rc, out, err = run_nw("hunt", "sql", bad, "--state-dir", str(crafted))
        assert rc != 0 and not out and err.count("error:") == 1 and "Traceback" not in err
    assert not (Path("x.csv")).exists()


@pytest.mark.parametrize(
    "args",
    [
        ["beacons"],
        ["scans"],
        ["dns"],
        ["talkers"],
        ["rare-destinations"],
        ["long-connections"],
        ["host", PLANTED["beacon"][0]],
    ],
)
def test_tables_fit_80_columns(crafted: Path, args: list[str]) -> None:
    rc, out, err = run_nw("hunt", *args, "--state-dir", str(crafted))
    assert rc == 0, err
    assert out.strip() and max(len(line) for line in out.splitlines()) <= 80
