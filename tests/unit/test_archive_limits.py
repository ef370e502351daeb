"""The archive's bounds against one hostile or broken sensor (issue 9): a batch with
spread or far-future timestamps makes a bounded number of directories (and every record
still reads back by time range), and the disk use is capped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from controller.ingest.archive import RecordArchive
from controller.ingest.archive_layout import MAX_HOURS_PER_BATCH, OVERFLOW
from netwarden.errors import StoreError
from netwarden.records.schema import FLOW_DTYPE

HOUR_NS = 3600 * 10**9
NOW_H = time.time_ns() // HOUR_NS * HOUR_NS
MAX_US = (2**63 - 1) // 1000 * 1000  # archived times keep microseconds
MIN_US = -(2**63) // 1000 * 1000 + 1000


def flows(ts: np.ndarray | list[int]) -> np.ndarray:
    r = np.zeros(len(ts), FLOW_DTYPE)
    r["ts_first_ns"] = ts
    r["flow_id"] = np.arange(1, len(ts) + 1)
    r["ip_version"] = 4
    return r


def dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir()]


def hours_of(root: Path) -> set[tuple[str, str]]:
    return {(p.parent.parent.name, p.parent.name) for p in root.rglob("sensor=*")}


def overflow() -> tuple[str, str]:
    return f"date={OVERFLOW[0]}", f"hour={OVERFLOW[1]}"


def test_spread_timestamps_make_few_directories(tmp_path: Path) -> None:
    # one batch, 20,000 records one hour apart (made 20,000 hour directories), plus
    # timestamps at the ends of the int64 range
    ts = NOW_H - np.arange(20_000, dtype=np.int64) * HOUR_NS
    ts = np.concatenate([ts, np.array([MAX_US, MIN_US, NOW_H + 400 * 24 * HOUR_NS], np.int64)])
    a = RecordArchive(tmp_path)
    a.append("flow", "s1", flows(ts))
    a.close()
    hours = hours_of(tmp_path)
    assert len(hours) <= MAX_HOURS_PER_BATCH + 1 and overflow() in hours
    # type dir + per hour: a date dir (at most), an hour dir, a sensor dir
    assert len(dirs(tmp_path)) <= 1 + 3 * (MAX_HOURS_PER_BATCH + 1)
    # nothing is lost, and time-range reads still find records wherever they were put
    got = sorted(a.read("flow")["ts_first_ns"].tolist())
    assert got == sorted(ts.tolist())
    far = a.read("flow", NOW_H - 15_000 * HOUR_NS, NOW_H - 14_999 * HOUR_NS)
    assert far["ts_first_ns"].tolist() == [NOW_H - 15_000 * HOUR_NS]
    future = a.read("flow", NOW_H + 399 * 24 * HOUR_NS, None)
    assert MAX_US in future["ts_first_ns"].tolist()


def test_many_batches_cannot_exceed_the_partition_bound(tmp_path: Path) -> None:
    from controller.ingest import archive_layout

    a = RecordArchive(tmp_path)
    bound = archive_layout.MAX_HOUR_PARTITIONS
    archive_layout.MAX_HOUR_PARTITIONS = 100
    try:
        for k in range(10):  # 10 batches of 60 new hours each
            ts = NOW_H - (np.arange(60, dtype=np.int64) + 60 * k) * HOUR_NS
            a.append("flow", "s1", flows(ts))
        a.close()
    finally:
        archive_layout.MAX_HOUR_PARTITIONS = bound
    assert len(hours_of(tmp_path)) <= 101 and len(a.read("flow")) == 600


def test_a_normal_batch_keeps_its_hour_partitions(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path)
    a.append("flow", "s1", flows([NOW_H - 2 * HOUR_NS, NOW_H - HOUR_NS, NOW_H + 5000]))
    a.close()
    hours = hours_of(tmp_path)
    assert len(hours) == 3 and overflow() not in hours


def test_overflow_files_are_pruned_by_age(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path, retention_hours=1)
    a.append("flow", "s1", flows([NOW_H + 400 * 24 * HOUR_NS]))
    a.close()
    (f,) = list(tmp_path.rglob("*.parquet"))
    assert (f.parents[2].name, f.parents[1].name) == overflow()
    assert a.prune() == 0
    old = time.time() - 7200
    os.utime(f, (old, old))
    assert a.prune() == 1 and not f.exists()


def test_disk_use_is_capped(tmp_path: Path) -> None:
    cap = 1 << 20
    a = RecordArchive(tmp_path, max_bytes=cap)
    batch = flows([NOW_H + 1000] * 500)  # ~250 KB
    written = 0
    with pytest.raises(StoreError, match="archive is full"):
        for _ in range(100):  # 25 MB offered: filled 3.8 GB in 40 s before
            a.append("flow", "s1", batch)
            written += 1
    assert 1 <= written < 100 and a.refused_full == 1
    a.close()
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*.parquet"))
    assert on_disk + 4096 * len(dirs(tmp_path)) <= cap
    assert len(a.read("flow")) == 500 * written
    # a fresh archive object over the same directory counts what is there
    b = RecordArchive(tmp_path, max_bytes=on_disk + 4096 * len(dirs(tmp_path)) + 10)
    with pytest.raises(StoreError, match="archive is full"):
        b.append("flow", "s1", batch)
