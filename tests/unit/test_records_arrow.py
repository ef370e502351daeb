"""Records <-> Arrow (netwarden.records.arrow): column conventions and exact round trips of
every kind, in memory and through Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netwarden.records import arrow
from netwarden.records.identity import record_uids
from netwarden.records.schema import (
    RECORD_TYPES,
    ConnState,
    EndReason,
    FlowFlags,
    TelemetryFlags,
    TunnelType,
)
from sensor.flows import iter_flow_records
from tests.conftest import BACKEND_PARAMS

# Fields whose values are codes or bit sets: random records draw them from valid values.
CODES = {
    "conn_state": [int(c) for c in ConnState],
    "tunnel_type": [int(t) for t in TunnelType],
    "end_reason": [int(e) for e in EndReason],
    "op": [1, 2],
    "ip_version": [4, 6],
}
BITS = {"flow": int(sum(FlowFlags)), "host": int(sum(TelemetryFlags)), "pair": 1}


def random_records(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """Records of ``kind`` with every byte random, then made valid where the schema says
    what a field holds (codes, flag bits, IPv4 in 4 bytes, ASCII text, microsecond times)."""
    rng = np.random.default_rng(seed)
    dt = RECORD_TYPES[kind]
    recs = np.frombuffer(rng.integers(0, 256, n * dt.itemsize, np.uint8).tobytes(), dt).copy()
    for name in dt.names or ():
        base = dt[name].base
        if name in CODES:
            recs[name] = rng.choice(CODES[name], n)
        elif name == "flags":
            recs[name] &= BITS[kind]
        elif name.endswith("_ns"):
            recs[name] = rng.integers(0, 2**62 // 1000, n) * 1000
        elif base.kind == "S":
            letters = np.frombuffer(b"ShADadFfRrTtWwIiq.-abcz0", "S1")
            lens = rng.integers(0, base.itemsize + 1, n)
            text = letters[rng.integers(0, len(letters), (n, base.itemsize))]
            text[np.arange(base.itemsize) >= lens[:, None]] = b""
            recs[name] = text.view(f"S{base.itemsize}").ravel()
        elif base.kind == "f":
            recs[name] = rng.normal(0, 1e3, recs[name].shape).astype(base)
    if "n_first" in recs.dtype.names:
        recs["n_first"] %= 17
        recs["first_sizes"][np.arange(16) >= recs["n_first"][:, None]] = 0
    if "ip_version" in recs.dtype.names:
        v4 = recs["ip_version"] == 4
        for name in ("orig_addr", "resp_addr", "addr", "src", "dst"):
            if name in recs.dtype.names:
                recs[name][v4, 4:] = 0
    return recs


def assert_same_records(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and len(got) == len(want)
    for name in want.dtype.names or ():
        assert np.array_equal(got[name], want[name], equal_nan=want[name].dtype.kind == "f"), name


@pytest.mark.parametrize("kind", arrow.KINDS)
def test_round_trip_of_every_kind_in_memory_and_through_parquet(kind: str, tmp_path: Path) -> None:
    recs = random_records(kind, 500, seed=len(kind))
    table = arrow.to_arrow(kind, recs)
    assert table.schema == arrow.schema(kind)
    assert_same_records(arrow.to_records(kind, table), recs)
    pq.write_table(table, tmp_path / f"{kind}.parquet")
    back = pq.read_table(tmp_path / f"{kind}.parquet")
    assert back.schema == arrow.schema(kind)
    assert_same_records(arrow.to_records(kind, back), recs)
    # Batches, slices and the empty array take the same path.
    assert_same_records(arrow.to_records(kind, arrow.to_batch(kind, recs[7:9])), recs[7:9])
    assert arrow.to_arrow(kind, recs[:0]).num_rows == 0


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_corpus_flows_round_trip_through_parquet(
    zeek_corpus: Path, backend_name: str, tmp_path: Path
) -> None:
    """Real flow records of every corpus capture: Parquet read back equals them exactly,
    times at the microsecond precision of the Arrow form (some captures are pcapng with
    nanosecond stamps: those keep their microseconds)."""
    paths = sorted(p for p in zeek_corpus.glob("*/trace.pcap*"))
    recs = np.concatenate([r for p in paths for r in iter_flow_records([str(p)], backend_name)])
    assert len(recs) > 1000
    pq.write_table(arrow.to_arrow("flow", recs), tmp_path / "flows.parquet")
    table = pq.read_table(tmp_path / "flows.parquet")
    want = recs.copy()
    for name in ("ts_first_ns", "ts_last_ns"):
        want[name] = recs[name] // 1000 * 1000
    assert_same_records(arrow.to_records("flow", table), want)
    assert table.column("uid").to_pylist() == record_uids(recs)
    tunnelled = recs["parent_id"] != 0
    assert tunnelled.any() and (~tunnelled).any()
    parents = np.array(table.column("parent_uid").to_pylist(), object)
    assert list(parents[tunnelled]) == list(np.array(record_uids(recs, "parent_id"))[tunnelled])
    assert all(p is None for p in parents[~tunnelled])


def test_column_conventions() -> None:
    flow = arrow.schema("flow")
    for name in ("orig_h", "resp_h", "uid", "parent_uid", "proto", "conn_state", "history"):
        assert flow.field(name).type == pa.string(), name
    for name in ("orig_h_bin", "resp_h_bin"):
        assert flow.field(name).type == pa.binary(16)
    assert flow.field("ts").type == flow.field("ts_last").type == pa.timestamp("us", "UTC")
    assert flow.field("duration").type == pa.float64()
    assert flow.field("first_sizes").type == pa.list_(pa.uint16())
    assert {"orig_syn", "resp_rst", "orig_pkts", "resp_bytes", "interim"} <= set(flow.names)
    host, pair, arp = arrow.schema("host"), arrow.schema("pair"), arrow.schema("arp")
    assert {"host_h", "host_h_bin", "ts_start", "out_rate_100ms", "in_size_std_60s"} <= set(
        host.names
    )
    assert {"src_h", "dst_h_bin", "ts_start", "rate_1s", "evicted"} <= set(pair.names)
    assert {"ts", "sender_h", "target_h_bin", "sender_mac", "op"} <= set(arp.names)
    # Kinds that never leave the sensor have no Arrow form.
    with pytest.raises(ValueError):
        arrow.schema("pktsum")


@pytest.mark.parametrize("kind", arrow.KINDS)
def test_projection_is_a_selection_of_the_full_batch(kind: str) -> None:
    recs = random_records(kind, 50, seed=3)
    full = arrow.to_batch(kind, recs)
    names = arrow.schema(kind).names
    assert [n for c in arrow._columns(kind) for n in c.names] == names
    subset = names[1::3]
    assert arrow.to_batch(kind, recs, subset).equals(full.select(subset))


def test_rows_to_a_table_as_from_pylist_without_pandas() -> None:
    """``arrowbuf.table_from_rows`` (the hunts' alert, incident, ban and audit tables) gives
    what ``pa.Table.from_pylist`` gives, nulls, empty lists and non-ASCII text included."""
    import subprocess
    import sys

    from netwarden.hunt.state_tables import ALERTS, AUDIT, BANS, INCIDENTS
    from netwarden.records.arrowbuf import table_from_rows

    rows = [
        {"id": "A-1", "victims": ["10.0.0.1", "fé80::1"], "detected_at": 1_700_000_000_123_456,
         "score": 71.5, "confidence": None, "kind": "port_scan", "alert_count": 3, "seq": 1},
        {"id": None, "victims": None, "detected_at": None, "score": None, "attackers": []},
        {"id": "", "victims": [], "detected_at": 0, "score": 0.0, "risk": 99.0, "seq": None},
    ]  # fmt: skip
    for schema in (ALERTS, INCIDENTS, BANS, AUDIT):
        got = table_from_rows(rows, schema)
        got.validate(full=True)
        assert got.equals(pa.Table.from_pylist(rows, schema=schema)), schema
        assert table_from_rows([], schema).equals(schema.empty_table())
    code = (
        "import sys\nfrom netwarden.hunt.state_tables import ALERTS\n"
        "from netwarden.records.arrowbuf import table_from_rows\n"
        "table_from_rows([{'id': 'A-1', 'victims': ['x'], 'detected_at': 1}], ALERTS)\n"
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
