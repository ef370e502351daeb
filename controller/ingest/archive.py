"""The record archive: every batch the controller receives, as Parquet, kept for hunting.

Files are Parquet (zstd) in hive partitions (``archive_layout``)::

    type=<kind>/date=<YYYY-MM-DD>/hour=<HH>/sensor=<sensor id>/part-<n>.parquet

so DuckDB (``netwarden hunt``), Spark, Trino or DuckDB on object storage read the directory
as a dataset as it is (docs/hunting.md). Columns are the records' Arrow form
(``netwarden.records.arrow``, the one records -> Arrow conversion).

Bounded file counts: records are buffered per partition and written when a partition holds
``flush_rows`` records, its oldest buffered record is ``flush_s`` old or it got nothing for
``idle_s`` (``flush_due``, on the controller's tick), when a sensor says goodbye (the
ingest calls ``flush``), when ``MAX_PENDING_ROWS`` are buffered in all, and at ``close``.
A partition that reaches ``max_files`` files is compacted into one, and ``prune`` compacts
every partition of an hour that has ended. Each file is written under a hidden name and
renamed into place, so a reader never sees half a file. What is still buffered is lost by
a crash (at most ``flush_s`` of records); ``read`` includes it.

Bounds against a hostile or broken sensor: the disk use is capped (``max_bytes``, counting
directories too; a batch whose estimated size does not fit raises ``StoreError`` and
nothing of it is kept), and spread timestamps cannot create thousands of directories
(``archive_layout.split_hours``). Retention drops whole hour partitions; the overflow
partition's files go by their age.

An archive of the previous raw format (``v<schema>-<hash>/<kind>/<hour>/<sensor>.rec``)
is migrated to Parquet by the first writer (``migrate``, ``archive_migrate``); readers see
its records until then, without writing anything.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from controller.ingest import archive_layout as layout
from netwarden.errors import ConfigError, NetWardenError, StoreError
from netwarden.records.identity import record_uids
from netwarden.records.schema import RECORD_TYPES

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("netwarden.archive")

#: default cap on the archive's disk use
DEFAULT_MAX_BYTES = 4 << 30
#: what one directory is charged against the cap
DIR_BYTES = 4096
#: the records of one partition go to a file when this many are buffered
FLUSH_ROWS = 65_536
#: ... or when the oldest of them has waited this long (seconds)
FLUSH_S = 60.0
#: ... or when nothing was added to it for this long (seconds): sparse traffic is on disk soon
IDLE_S = 5.0
#: all partitions are written when this many records are buffered in all
MAX_PENDING_ROWS = 262_144
#: a partition with this many files is compacted into one
MAX_FILES = 16
COMPRESSION = "zstd"

Key = tuple[str, str, str, str]  # type, date, hour, sensor


@dataclass
class _Pending:
    since: float  # monotonic time of the oldest buffered batch
    last: float  # ... of the newest
    parts: list[np.ndarray] = field(default_factory=list)
    rows: int = 0


class RecordArchive:
    def __init__(
        self,
        root: str | os.PathLike[str],
        retention_hours: float = 24 * 7,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        flush_rows: int = FLUSH_ROWS,
        flush_s: float = FLUSH_S,
        idle_s: float = IDLE_S,
        max_files: int = MAX_FILES,
    ) -> None:
        if not retention_hours > 0:
            raise ConfigError(f"archive retention must be > 0 hours, got {retention_hours!r}")
        if not max_bytes > 0:
            raise ConfigError(f"archive size cap must be > 0 bytes, got {max_bytes!r}")
        self.root = Path(root)
        self.retention_hours = retention_hours
        self.max_bytes = max_bytes
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.idle_s = idle_s
        self.max_files = max(2, max_files)
        self.records_written = 0
        self.bytes_written = 0
        self.files_written = 0
        self.compactions = 0
        self.refused_full = 0  # batches not archived because the cap was reached
        self._pending: dict[Key, _Pending] = {}
        self._pending_rows = 0
        self._pending_estimate = 0
        #: compressed bytes per raw record byte, learnt from the files written (1 at first)
        self._ratio = 1.0
        self._seq = itertools.count()
        self._hours: dict[str, set[tuple[str, str]]] = {}
        self.disk_bytes = _disk_use(self.root)
        self.migrated: int | None = None  # raw records migrated (None: not tried yet)
        #: the writer thread (``background``): files are built and written off the loop
        self._writer: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[str, np.ndarray]] = {}  # handed to the writer

    def background(self) -> None:
        """Build and write files on one writer thread from now on (the controller: turning
        64 k records into Parquet takes about a second, which its event loop must not wait
        for); ``close`` waits for it. Reads include records on their way to disk."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="archive-writer")

    def wait(self) -> None:
        """Return once everything handed to the writer thread is on disk."""
        if self._writer is not None:
            self._writer.submit(lambda: None).result()

    def migrate(self) -> int:
        """Convert a raw archive of the previous format here (``archive_migrate``), once."""
        if self.migrated is None:
            from controller.ingest.archive_migrate import migrate_raw

            self.migrated = 0  # appends made by the migration itself do not recurse
            self.migrated = migrate_raw(self)
            self.wait()
            if self.migrated:
                self.disk_bytes = _disk_use(self.root)
        return self.migrated

    # --- writing ------------------------------------------------------------------------
    def append(self, kind: str, sensor_id: str, records: np.ndarray) -> None:
        """Buffer records of ``kind`` (already validated against the schema by the bus)."""
        if kind not in RECORD_TYPES or records.dtype != RECORD_TYPES[kind]:
            raise StoreError(f"archive: records are not of the current {kind!r} dtype")
        if not len(records):
            return
        self.migrate()
        hours = np.maximum(records[layout.time_field(records.dtype)], 0) // layout.HOUR_NS
        known = self._known_hours(kind)
        parts = layout.split_hours(hours, time.time_ns(), known)
        sensor = layout.sensor_dir_name(sensor_id)
        keys = [(kind, d, h, sensor) for (d, h), _ in parts]
        new_dirs = sum(k not in self._pending and not self._dir(k).is_dir() for k in keys)
        need = int(records.nbytes * self._ratio) + DIR_BYTES * 3 * new_dirs
        if self.disk_bytes + self._pending_estimate + need > self.max_bytes:
            self.refused_full += 1
            raise StoreError(
                f"archive is full ({self.disk_bytes} of {self.max_bytes} bytes used): "
                f"{len(records)} {kind} records from {sensor_id!r} not archived"
            )
        now = time.monotonic()
        for key, (hk, mask) in zip(keys, parts, strict=True):
            known.add(hk)
            part = records[mask] if len(parts) > 1 else records
            pend = self._pending.setdefault(key, _Pending(now, now))
            pend.last = now
            pend.parts.append(part.copy())
            pend.rows += len(part)
            self._pending_rows += len(part)
            if pend.rows >= self.flush_rows:
                self._flush_key(key)
        self._pending_estimate += need
        if self._pending_rows >= MAX_PENDING_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write every buffered record."""
        for key in list(self._pending):
            self._flush_key(key)
        self._pending_estimate = 0

    def flush_due(self) -> int:
        """Write the partitions whose oldest buffered records waited ``flush_s``, or that got
        nothing for ``idle_s``; returns how many were written (on the controller's tick)."""
        now = time.monotonic()
        due = [k for k, p in self._pending.items()
               if p.since <= now - self.flush_s or p.last <= now - self.idle_s]  # fmt: skip
        for key in due:
            self._flush_key(key)
        if not self._pending:
            self._pending_estimate = 0
        return len(due)

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _flush_key(self, key: Key) -> None:
        pend = self._pending.pop(key)
        self._pending_rows -= pend.rows
        recs = pend.parts[0] if len(pend.parts) == 1 else np.concatenate(pend.parts)
        self._pending_estimate = max(0, self._pending_estimate - int(recs.nbytes * self._ratio))
        if self._writer is None:
            self._write(key, recs)
            return
        token = next(self._seq)
        with self._lock:
            self._inflight[token] = (key[0], recs)
        self._writer.submit(self._write_logged, token, key, recs)

    def _write_logged(self, token: int, key: Key, records: np.ndarray) -> None:
        """``_write`` on the writer thread: a failure is logged (and counted) there."""
        try:
            self._write(key, records, token)
        except (NetWardenError, OSError) as exc:
            log.warning("archive: %s", exc)
        finally:
            with self._lock:
                self._inflight.pop(token, None)

    def _write(self, key: Key, records: np.ndarray, token: int | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from netwarden.records import arrow

        sink = pa.BufferOutputStream()
        pq.write_table(
            _file_columns(arrow.to_arrow(key[0], records)), sink, compression=COMPRESSION
        )
        data = sink.getvalue()
        d = self._dir(key)
        new_dirs = 0 if d.is_dir() else 3
        if self.disk_bytes + data.size + DIR_BYTES * new_dirs > self.max_bytes:
            self.refused_full += 1
            raise StoreError(
                f"archive is full ({self.disk_bytes} of {self.max_bytes} bytes used): "
                f"{len(records)} buffered {key[0]} records of {key[3]!r} dropped"
            )
        self._ratio = min(1.0, max(0.02, 0.5 * self._ratio + 0.5 * data.size / records.nbytes))
        try:
            with self._lock:  # on disk and no longer in flight at once, for readers
                self._put_file(d, data)
                if token is not None:
                    self._inflight.pop(token, None)
        except OSError as exc:
            raise StoreError(f"archive: cannot write in {d}: {exc}") from None
        self.disk_bytes += data.size + DIR_BYTES * new_dirs
        self.records_written += len(records)
        self.bytes_written += data.size
        self.files_written += 1
        if len(_files(d)) >= self.max_files:
            self.compact_partition(d)

    def _put_file(self, d: Path, data: object) -> Path:
        """Write ``data`` as a new file of partition ``d``: hidden name, then rename."""
        d.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}.parquet"
        tmp = d / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(memoryview(data))  # type: ignore[arg-type]
        os.replace(tmp, d / name)
        return d / name

    def compact_partition(self, d: Path) -> bool:
        """Merge the files of partition ``d`` into one (written, then the old ones removed;
        a reader listing the directory in between may see the rows twice)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        olds = _files(d)
        if len(olds) < 2:
            return False
        sink = pa.BufferOutputStream()
        writer: pq.ParquetWriter | None = None
        for f in olds:
            pf = pq.ParquetFile(f)
            if writer is None:
                writer = pq.ParquetWriter(sink, pf.schema_arrow, compression=COMPRESSION)
            for batch in pf.iter_batches():
                writer.write_batch(batch)
        assert writer is not None
        writer.close()
        data = sink.getvalue()
        before = sum(f.stat().st_size for f in olds)
        try:
            with self._lock:  # readers see the old files or the new one, never both
                self._put_file(d, data)
                for f in olds:
                    f.unlink()
        except OSError as exc:
            raise StoreError(f"archive: cannot compact {d}: {exc}") from None
        self.disk_bytes += data.size - before
        self.compactions += 1
        return True

    # --- reading ------------------------------------------------------------------------
    def read(self, kind: str, start_ns: int | None = None, end_ns: int | None = None) -> np.ndarray:
        """All archived records of ``kind`` (buffered ones too) whose time is in [start, end)."""
        import pyarrow.parquet as pq

        from netwarden.records import arrow

        dt = RECORD_TYPES[kind]
        with self._lock:  # files and records in flight to them, as one state
            arrays = [
                arrow.to_records(kind, _record_columns(pq.read_table(f)))
                for f in self.files(kind, start_ns, end_ns)
            ]
            arrays.extend(r for k, r in self._inflight.values() if k == kind)
        for key, pend in self._pending.items():
            if key[0] == kind:
                arrays.extend(pend.parts)
        if self.migrated is None:  # a raw archive not migrated yet: read as it is
            from controller.ingest.archive_migrate import current_raw, read_raw

            arrays.extend(read_raw(k, p) for k, p in current_raw(self.root)[0] if k == kind)
        if not arrays:
            return np.zeros(0, dt)
        recs = np.concatenate(arrays)
        ts = recs[layout.time_field(dt)]
        mask = np.ones(len(recs), bool)
        if start_ns is not None:
            mask &= ts >= start_ns
        if end_ns is not None:
            mask &= ts < end_ns
        return recs[mask]

    def find_flows(
        self, uids: Iterable[str], start_ns: int | None = None, end_ns: int | None = None
    ) -> np.ndarray:
        """The flow records named by ``uids`` (``netwarden.records.identity``: the uids of
        Zeek logs, alerts and incidents; unique across sensors, restarts and fanout workers),
        interim records included, in archive order."""
        wanted = set(uids)
        recs = self.read("flow", start_ns, end_ns)
        if not wanted or not len(recs):
            return recs[:0]
        return recs[np.fromiter((u in wanted for u in record_uids(recs)), bool, len(recs))]

    def newest(self, kind: str) -> np.ndarray:
        """The records of ``kind`` in the newest hour partition: where the traffic is now."""
        hours = sorted(k for k in self._known_hours(kind) if k != layout.OVERFLOW)
        pending = [
            (k[1], k[2]) for k in self._pending if k[0] == kind and (k[1], k[2]) != layout.OVERFLOW
        ]
        latest = max(hours[-1:] + pending, default=None)
        if latest is None:
            return np.zeros(0, RECORD_TYPES[kind])
        return self.read(kind, int(layout.key_start(*latest) * 1e9))

    def files(
        self, kind: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> list[Path]:
        """The Parquet files of ``kind`` that may hold records in [start, end), in order."""
        lo = -np.inf if start_ns is None else start_ns / 1e9 - 3600
        hi = np.inf if end_ns is None else end_ns / 1e9
        out = []
        for d, (_k, date, hour, _s) in self._partitions(kind):
            t = layout.key_start(date, hour)
            if (date, hour) == layout.OVERFLOW or lo < t < hi:
                out.extend(_files(d))
        return out

    def _partitions(self, kind: str | None = None) -> Iterator[tuple[Path, Key]]:
        pattern = f"type={kind or '*'}/date=*/hour=*/sensor=*"
        for d in sorted(self.root.glob(pattern)):
            key = layout.parse_partition(d, self.root)
            if key is not None and d.is_dir():
                yield d, key

    def _dir(self, key: Key) -> Path:
        return layout.partition_dir(self.root, *key)

    def _known_hours(self, kind: str) -> set[tuple[str, str]]:
        if kind not in self._hours:
            self._hours[kind] = {(k[1], k[2]) for _d, k in self._partitions(kind)}
        return self._hours[kind]

    # --- retention ----------------------------------------------------------------------
    def prune(self, now: float | None = None) -> int | Future[int]:
        """Remove hour partitions older than the retention (overflow files by their age),
        compact the partitions of ended hours; returns how many partitions or files were
        removed (on the writer thread when there is one: then its future)."""
        if self._writer is not None:
            return self._writer.submit(self._prune, now)
        return self._prune(now)

    def _prune(self, now: float | None) -> int:
        now = time.time() if now is None else now
        cutoff = now - self.retention_hours * 3600
        removed = 0
        for d, (kind, date, hour, _s) in list(self._partitions()):
            if (date, hour) == layout.OVERFLOW:
                removed += layout.remove_older(_files(d), cutoff)
                continue
            end = layout.key_start(date, hour) + 3600
            if end < cutoff:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
            elif end < now:
                self.compact_partition(d)
        from controller.ingest.archive_migrate import prune_raw

        removed += prune_raw(self.root, cutoff)
        # files a crash left half-written (never renamed into place), an hour on
        layout.remove_older(list(self.root.glob("type=*/*/*/*/.part-*.tmp")), now - 3600)
        _remove_empty_dirs(self.root)
        self._hours.clear()
        self.disk_bytes = _disk_use(self.root)
        return removed


#: record columns renamed in the files: a column may not share a partition key's name
#: (Spark refuses such a dataset), and ``sensor`` is one (the sensor id; the column is its hash)
RENAMED = {"sensor": "sensor_hash"}


def _file_columns(table: pa.Table) -> pa.Table:
    return table.rename_columns([RENAMED.get(n, n) for n in table.column_names])


def _record_columns(table: pa.Table) -> pa.Table:
    back = {v: k for k, v in RENAMED.items()}
    return table.rename_columns([back.get(n, n) for n in table.column_names])


def _files(d: Path) -> list[Path]:
    return sorted(d.glob("part-*.parquet"))


def _remove_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
        p = Path(dirpath)
        if p != root and not any(p.iterdir()):
            try:
                p.rmdir()
            except OSError:
                pass


def _disk_use(root: Path) -> int:
    """Bytes the archive holds: its files plus a charge per directory."""
    total = 0
    if not root.is_dir():
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        total += DIR_BYTES * len(dirnames)
        for name in filenames:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
