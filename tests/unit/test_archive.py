"""The controller's record archive: append, read back by time range, crash tail, retention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.ingest.archive import RecordArchive
from netwarden.errors import ConfigError, StoreError
from netwarden.records.schema import FLOW_DTYPE, HOST_DTYPE

HOUR_NS = 3600 * 10**9
T0 = 1_764_000_000 * 10**9 - (1_764_000_000 * 10**9) % HOUR_NS  # start of an hour


def flows(ts: list[int]) -> np.ndarray:
    r = np.zeros(len(ts), FLOW_DTYPE)
    r["ts_first_ns"] = ts
    r["flow_id"] = np.arange(1, len(ts) + 1)
    return r


def test_roundtrip_across_hour_buckets(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path)
    recs = flows([T0 + 5, T0 + HOUR_NS - 1, T0 + HOUR_NS, T0 + 3 * HOUR_NS + 7])
    a.append("flow", "s1", recs)
    a.append("flow", "s2", flows([T0 + 10]))
    assert a.records_written == 5
    got = a.read("flow")
    assert sorted(got["ts_first_ns"].tolist()) == sorted([*recs["ts_first_ns"].tolist(), T0 + 10])
    # A range read returns only records whose first timestamp falls inside it.
    mid = a.read("flow", T0 + HOUR_NS, T0 + 2 * HOUR_NS)
    assert mid["ts_first_ns"].tolist() == [T0 + HOUR_NS]
    # Records come back byte-identical.
    one = a.read("flow", T0 + 3 * HOUR_NS, None)
    assert one.tobytes() == recs[3:].tobytes()
    buckets = {p.parent.name for p in tmp_path.rglob("*.rec")}
    assert len(buckets) == 3


def test_partial_record_left_by_a_crash_is_ignored_and_cut(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path)
    a.append("flow", "s1", flows([T0 + 1, T0 + 2]))
    (path,) = list(tmp_path.rglob("s1.rec"))
    with open(path, "ab") as f:
        f.write(b"\x01" * 100)  # half-written record
    assert len(a.read("flow")) == 2
    a.append("flow", "s1", flows([T0 + 3]))
    got = a.read("flow")
    assert got["ts_first_ns"].tolist() == [T0 + 1, T0 + 2, T0 + 3]


def test_other_record_types_and_wrong_dtype(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path)
    h = np.zeros(3, HOST_DTYPE)
    h["ts_start_ns"] = T0 + 1
    a.append("host", "s", h)
    assert len(a.read("host")) == 3
    assert len(a.read("flow")) == 0
    with pytest.raises(StoreError):
        a.append("flow", "s", h)


def test_retention_drops_old_hours_only(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path, retention_hours=2)
    a.append("flow", "s", flows([T0, T0 + 5 * HOUR_NS]))
    now = (T0 + 5 * HOUR_NS) / 1e9 + 60
    assert a.prune(now=now) == 1
    assert a.read("flow")["ts_first_ns"].tolist() == [T0 + 5 * HOUR_NS]
    with pytest.raises(ConfigError):
        RecordArchive(tmp_path, retention_hours=0)


def test_sensor_id_cannot_escape_the_archive(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path / "arch")
    a.append("flow", "../../etc/evil", flows([T0]))
    assert all((tmp_path / "arch") in p.parents for p in tmp_path.rglob("*.rec"))
