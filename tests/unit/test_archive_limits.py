"""The archive's bounds against one hostile or broken sensor (issue 9): a batch with
spread or far-future timestamps makes a bounded number of directories (and every record
still reads back by time range), and the disk use is capped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from controller.ingest.archive import MAX_HOURS_PER_BATCH, UNBUCKETED, RecordArchive
from netwarden.errors import StoreError
from netwarden.records.schema import FLOW_DTYPE

HOUR_NS = 3600 * 10**9
NOW_H = time.time_ns() // HOUR_NS * HOUR_NS


def flows(ts: np.ndarray | list[int]) -> np.ndarray:
    r = np.zeros(len(ts), FLOW_DTYPE)
    r["ts_first_ns"] = ts
    r["flow_id"] = np.arange(1, len(ts) + 1)
    return r


def dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir()]


def test_spread_timestamps_make_few_directories(tmp_path: Path) -> None:
    # one batch, 20,000 records one hour apart (made 20,000 hour directories), plus
    # timestamps at the ends of the int64 range
    ts = NOW_H - np.arange(20_000, dtype=np.int64) * HOUR_NS
    ts = np.concatenate(
        [ts, np.array([2**63 - 1, -(2**63), NOW_H + 400 * 24 * HOUR_NS], dtype=np.int64)]
    )
    a = RecordArchive(tmp_path)
    a.append("flow", "s1", flows(ts))
    buckets = {p.parent.name for p in tmp_path.rglob("*.rec")}
    assert len(buckets) <= MAX_HOURS_PER_BATCH + 1 and UNBUCKETED in buckets
    assert len(dirs(tmp_path)) <= MAX_HOURS_PER_BATCH + 3
    # nothing is lost, and time-range reads still find records wherever they were put
    assert sorted(a.read("flow")["ts_first_ns"].tolist()) == sorted(ts.tolist())
    far = a.read("flow", NOW_H - 15_000 * HOUR_NS, NOW_H - 14_999 * HOUR_NS)
    assert far["ts_first_ns"].tolist() == [NOW_H - 15_000 * HOUR_NS]
    future = a.read("flow", NOW_H + 399 * 24 * HOUR_NS, None)
    assert 2**63 - 1 in future["ts_first_ns"].tolist()


def test_a_normal_batch_keeps_its_hour_buckets(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path)
    a.append("flow", "s1", flows([NOW_H - 2 * HOUR_NS, NOW_H - HOUR_NS, NOW_H + 5]))
    buckets = {p.parent.name for p in tmp_path.rglob("*.rec")}
    assert len(buckets) == 3 and UNBUCKETED not in buckets


def test_unbucketed_files_are_pruned_by_age(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path, retention_hours=1)
    a.append("flow", "s1", flows([NOW_H + 400 * 24 * HOUR_NS]))
    (f,) = list(tmp_path.rglob("*.rec"))
    assert f.parent.name == UNBUCKETED
    assert a.prune() == 0
    old = time.time() - 7200
    os.utime(f, (old, old))
    assert a.prune() == 1 and not f.exists()


def test_disk_use_is_capped(tmp_path: Path) -> None:
    cap = 1 << 20
    a = RecordArchive(tmp_path, max_bytes=cap)
    batch = flows([NOW_H + 1] * 500)  # ~250 KB
    written = 0
    with pytest.raises(StoreError, match="archive is full"):
        for _ in range(100):  # 25 MB offered: filled 3.8 GB in 40 s before
            a.append("flow", "s1", batch)
            written += 1
    assert 1 <= written < 100 and a.refused_full == 1
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*.rec"))
    assert on_disk + 4096 * len(dirs(tmp_path)) <= cap
    assert len(a.read("flow")) == 500 * written
    # a fresh archive object over the same directory counts what is there
    b = RecordArchive(tmp_path, max_bytes=cap)
    with pytest.raises(StoreError, match="archive is full"):
        b.append("flow", "s1", batch)
