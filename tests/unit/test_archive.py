"""The controller's record archive (Parquet, hive partitions): append, read back by time
range, buffering and file counts, compaction, retention, raw archives migrated."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from controller.ingest.archive import RecordArchive
from netwarden.bus.wire import record_hash
from netwarden.errors import ConfigError, StoreError
from netwarden.records.schema import FLOW_DTYPE, HOST_DTYPE, SCHEMA_VERSION

HOUR_NS = 3600 * 10**9
T0 = 1_764_000_000 * 10**9 - (1_764_000_000 * 10**9) % HOUR_NS  # start of an hour
US = 1000  # archived times keep microseconds (as Zeek and libpcap)


def flows(ts: list[int]) -> np.ndarray:
    r = np.zeros(len(ts), FLOW_DTYPE)
    r["ts_first_ns"] = ts
    r["ts_last_ns"] = ts
    r["flow_id"] = np.arange(1, len(ts) + 1)
    r["ip_version"] = 4
    return r


def parquet(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def test_roundtrip_across_hour_partitions(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path)
    recs = flows([T0 + 5 * US, T0 + HOUR_NS - US, T0 + HOUR_NS, T0 + 3 * HOUR_NS + 7 * US])
    a.append("flow", "s1", recs)
    a.append("flow", "s2", flows([T0 + 10 * US]))
    assert len(a.read("flow")) == 5  # buffered records are read too
    a.flush()
    assert a.records_written == 5
    got = a.read("flow")
    assert sorted(got["ts_first_ns"].tolist()) == sorted(
        [*recs["ts_first_ns"].tolist(), T0 + 10 * US]
    )
    # A range read returns only records whose first timestamp falls inside it.
    mid = a.read("flow", T0 + HOUR_NS, T0 + 2 * HOUR_NS)
    assert mid["ts_first_ns"].tolist() == [T0 + HOUR_NS]
    # Records come back byte-identical.
    one = a.read("flow", T0 + 3 * HOUR_NS, None)
    assert one.tobytes() == recs[3:].tobytes()
    parts = {p.parent.relative_to(tmp_path).as_posix() for p in parquet(tmp_path)}
    assert parts == {
        "type=flow/date=2025-11-24/hour=16/sensor=s1",
        "type=flow/date=2025-11-24/hour=17/sensor=s1",
        "type=flow/date=2025-11-24/hour=19/sensor=s1",
        "type=flow/date=2025-11-24/hour=16/sensor=s2",
    }
    # the directory is a hive-partitioned Parquet dataset as it is
    t = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert t.num_rows == 5 and set(t.column("sensor").to_pylist()) == {"s1", "s2"}
    assert "sensor_hash" in t.column_names and set(t.column("hour").to_pylist()) == {16, 17, 19}


def test_batches_are_buffered_per_partition_and_compacted(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path, flush_rows=10, max_files=4, retention_hours=24 * 3650)
    for k in range(25):  # 25 batches of 3 records, one partition
        a.append("flow", "s1", flows([T0 + (3 * k + i) * US for i in range(3)]))
    assert a.files_written == 6  # a file per 4 batches (12 records >= 10), not 25 files
    assert len(parquet(tmp_path)) < 4 and a.compactions >= 1
    a.flush_due()  # nothing is due yet (60 s)
    a.close()
    assert len(a.read("flow")) == 75 and len(parquet(tmp_path)) <= 4
    assert sorted(a.read("flow")["flow_id"].tolist()) == sorted(list(range(1, 4)) * 25)
    # a file a crash left half-written is not part of the dataset, and goes after an hour
    stale = parquet(tmp_path)[0].parent / ".part-0-0-0.parquet.tmp"
    stale.write_bytes(b"PAR1 half")
    assert len(a.read("flow")) == 75
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    # ended hours are compacted to one file by the hourly prune
    a.prune(now=time.time())
    assert len(parquet(tmp_path)) == 1 and len(a.read("flow")) == 75
    assert not list(tmp_path.rglob(".*.tmp"))


def test_flush_by_age(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path, flush_s=0.0)
    a.append("flow", "s1", flows([T0]))
    assert not parquet(tmp_path)
    assert a.flush_due() == 1 and len(parquet(tmp_path)) == 1


def test_other_record_types_and_wrong_dtype(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path)
    h = np.zeros(3, HOST_DTYPE)
    h["ts_start_ns"] = T0 + 1 * US
    h["ip_version"] = 4
    a.append("host", "s", h)
    a.close()
    assert len(a.read("host")) == 3
    assert len(a.read("flow")) == 0
    assert all("type=host" in str(p) for p in parquet(tmp_path))
    with pytest.raises(StoreError):
        a.append("flow", "s", h)


def test_retention_drops_old_hours_only(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path, retention_hours=2)
    a.append("flow", "s", flows([T0, T0 + 5 * HOUR_NS]))
    a.close()
    now = (T0 + 5 * HOUR_NS) / 1e9 + 60
    assert a.prune(now=now) == 1
    assert a.read("flow")["ts_first_ns"].tolist() == [T0 + 5 * HOUR_NS]
    assert len({p.parent for p in parquet(tmp_path)}) == 1
    with pytest.raises(ConfigError):
        RecordArchive(tmp_path, retention_hours=0)


def test_sensor_id_cannot_escape_the_archive(tmp_path: Path) -> None:
    a = RecordArchive(tmp_path / "arch")
    a.append("flow", "../../etc/evil", flows([T0]))
    a.close()
    files = list(tmp_path.rglob("*.parquet"))
    assert files and all((tmp_path / "arch") in p.parents for p in files)


def test_raw_archive_is_migrated(tmp_path: Path) -> None:
    """The previous format (raw records by schema/type/hour/sensor) becomes Parquet when a
    writer first uses the archive; a partial record left by a crash is dropped, other
    schemas stay."""
    recs = flows([T0 + 1 * US, T0 + 2 * US, T0 + HOUR_NS])
    raw = tmp_path / f"v{SCHEMA_VERSION}-{record_hash('flow')}" / "flow"
    (raw / "20251124T16").mkdir(parents=True)
    (raw / "20251124T17").mkdir(parents=True)
    (raw / "20251124T16" / "nw-a.rec").write_bytes(recs[:2].tobytes() + b"\x01" * 100)
    (raw / "20251124T17" / "nw-b.rec").write_bytes(recs[2:].tobytes())
    old = tmp_path / "v1-0123456789abcdef" / "flow" / "20251124T16"
    old.mkdir(parents=True)
    (old / "nw-a.rec").write_bytes(b"\0" * 64)
    reader = RecordArchive(tmp_path)  # reading sees the raw records, and writes nothing
    assert reader.read("flow").tobytes() == recs.tobytes() and not parquet(tmp_path)
    a = RecordArchive(tmp_path)
    assert a.migrate() == 3 and a.migrate() == 3
    assert a.read("flow").tobytes() == recs.tobytes()
    assert not raw.exists() and (old / "nw-a.rec").exists()
    sensors = {p.parent.name for p in parquet(tmp_path)}
    assert sensors == {"sensor=nw-a", "sensor=nw-b"}
    assert RecordArchive(tmp_path).migrate() == 0  # once


def test_background_writer_keeps_records_readable(tmp_path: Path) -> None:
    """With the writer thread (the controller), flushed records are readable while on their
    way to disk, and all on disk after ``wait``/``close``; prune runs there too."""
    a = RecordArchive(tmp_path, flush_rows=10, retention_hours=24 * 3650)
    a.background()
    for k in range(20):
        a.append("flow", "s1", flows([T0 + (5 * k + i) * US for i in range(5)]))
        assert len(a.read("flow")) == 5 * (k + 1)
    a.flush()
    assert len(a.read("flow")) == 100
    a.wait()
    assert len(RecordArchive(tmp_path).read("flow")) == 100
    pruned = a.prune(now=T0 / 1e9 + 2 * 3600)
    assert not isinstance(pruned, int) and pruned.result() == 0
    a.close()
    assert len(parquet(tmp_path)) == 1 and len(RecordArchive(tmp_path).read("flow")) == 100
