"""Append-only record archive: every batch the controller receives, kept for hunting.

Layout under ``root`` (the state dir's ``archive/``)::

    v<schema>-<dtype hash>/<record type>/<YYYYmmddTHH>/<sensor id>.rec

A ``.rec`` file is raw records of one dtype back to back (exactly the bytes that came off
the wire), so reading a time range is ``np.fromfile`` over a few hour buckets and a query
never parses anything per record. The directory name pins the layout: records written by
another schema version are never misread, and old versions stay readable by code that
knows their dtype. A crash can leave a partial record at a file's end; readers ignore it.
Retention drops whole hour buckets.

Bounds against a hostile or broken sensor: the archive's disk use is capped
(``max_bytes``, counting directories too; a write that does not fit raises ``StoreError``
and nothing is written), and a batch makes at most ``MAX_HOURS_PER_BATCH`` hour buckets:
records of its other hours, and records more than a day in the future, go to the one
``unbucketed`` directory (read like any bucket, filtered by timestamp; pruned by age of
the file). One batch with spread timestamps cannot create thousands of directories.

Cost: one ``write`` per batch; no index beyond the hour buckets (queries filter with numpy).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from netwarden.bus.wire import record_hash
from netwarden.errors import ConfigError, StoreError
from netwarden.records.identity import record_uids
from netwarden.records.schema import RECORD_TYPES, SCHEMA_VERSION, record_bytes

_BUCKET_FMT = "%Y%m%dT%H"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_HOUR_NS = 3_600_000_000_000
#: hour buckets one batch may create; its other records go to UNBUCKETED
MAX_HOURS_PER_BATCH = 64
#: records this far ahead of the receive time are not given an hour bucket
FUTURE_SLACK_NS = 24 * _HOUR_NS
UNBUCKETED = "unbucketed"
#: default cap on the archive's disk use
DEFAULT_MAX_BYTES = 4 << 30
#: what one directory is charged against the cap
_DIR_BYTES = 4096


def _time_field(dt: np.dtype) -> str:
    """The field that places a record in time (flows: first packet; windows: start)."""
    return next(f for f in ("ts_first_ns", "ts_start_ns", "ts_ns") if f in (dt.names or ()))


def _bucket(ts_ns: int) -> str:
    """The hour bucket of ``ts_ns``, floored in integer nanoseconds (as ``append`` does)."""
    hour_start = max(ts_ns, 0) // _HOUR_NS * 3600
    return datetime.fromtimestamp(hour_start, tz=UTC).strftime(_BUCKET_FMT)


def _bucket_start(name: str) -> float:
    return datetime.strptime(name, _BUCKET_FMT).replace(tzinfo=UTC).timestamp()


class RecordArchive:
    def __init__(
        self,
        root: str | os.PathLike[str],
        retention_hours: float = 24 * 7,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if not retention_hours > 0:
            raise ConfigError(f"archive retention must be > 0 hours, got {retention_hours!r}")
        if not max_bytes > 0:
            raise ConfigError(f"archive size cap must be > 0 bytes, got {max_bytes!r}")
        self.root = Path(root)
        self.retention_hours = retention_hours
        self.max_bytes = max_bytes
        self.records_written = 0
        self.bytes_written = 0
        self.refused_full = 0  # batches not archived because the cap was reached
        self.disk_bytes = _disk_use(self.root)

    def _type_dir(self, kind: str) -> Path:
        return self.root / f"v{SCHEMA_VERSION}-{record_hash(kind)}" / kind

    def append(self, kind: str, sensor_id: str, records: np.ndarray) -> None:
        """Append records of ``kind`` (already validated against the schema by the bus)."""
        if kind not in RECORD_TYPES or records.dtype != RECORD_TYPES[kind]:
            raise StoreError(f"archive: records are not of the current {kind!r} dtype")
        if not len(records):
            return
        # Hours as integers: a batch of flows spanning hours (long-lived flows) is split
        # with numpy, not by formatting a bucket name per record.
        hours = np.maximum(records[_time_field(records.dtype)], 0) // _HOUR_NS
        first, last = int(hours.min()), int(hours.max())
        if first == last and first * _HOUR_NS <= time.time_ns() + FUTURE_SLACK_NS:
            parts = [(_bucket(first * _HOUR_NS), records)]
        else:
            parts = _split(records, hours)
        need = sum(len(r) * r.dtype.itemsize for _, r in parts)
        need += _DIR_BYTES * sum(not (self._type_dir(kind) / b).is_dir() for b, _ in parts)
        if self.disk_bytes + need > self.max_bytes:
            self.refused_full += 1
            raise StoreError(
                f"archive is full ({self.disk_bytes} of {self.max_bytes} bytes used): "
                f"{len(records)} {kind} records from {sensor_id!r} not archived"
            )
        for bucket, part in parts:
            self._write(kind, bucket, sensor_id, part)

    def _write(self, kind: str, bucket: str, sensor_id: str, records: np.ndarray) -> None:
        d = self._type_dir(kind) / bucket
        if not d.is_dir():
            d.mkdir(parents=True, exist_ok=True)
            self.disk_bytes += _DIR_BYTES
        data = record_bytes(records)  # padding zeroed: same records, same file bytes
        path = d / f"{_SAFE.sub('_', sensor_id) or 'sensor'}.rec"
        try:
            with open(path, "ab") as f:
                pos = f.tell()
                rem = pos % records.dtype.itemsize
                if rem:  # a crash left a partial record: cut it so records stay aligned
                    f.truncate(pos - rem)
                f.write(data)
        except OSError as exc:
            raise StoreError(f"archive: cannot write {path}: {exc}") from None
        self.disk_bytes += len(data) - rem
        self.records_written += len(records)
        self.bytes_written += len(data)

    def read(self, kind: str, start_ns: int | None = None, end_ns: int | None = None) -> np.ndarray:
        """All archived records of ``kind`` whose first timestamp is in [start, end)."""
        dt = RECORD_TYPES[kind]
        arrays = []
        for path in self._iter_files(kind, start_ns, end_ns):
            n = path.stat().st_size // dt.itemsize
            if n:
                arrays.append(np.fromfile(path, dtype=dt, count=n))
        if not arrays:
            return np.zeros(0, dt)
        recs = np.concatenate(arrays)
        ts_field = _time_field(dt)
        mask = np.ones(len(recs), bool)
        if start_ns is not None:
            mask &= recs[ts_field] >= start_ns
        if end_ns is not None:
            mask &= recs[ts_field] < end_ns
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
        """The records of ``kind`` in the newest hour bucket: where the traffic is now."""
        d = self._type_dir(kind)
        names = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
        names = [n for n in names if n != UNBUCKETED]
        if not names:
            return np.zeros(0, RECORD_TYPES[kind])
        return self.read(kind, int(_bucket_start(names[-1]) * 1e9))

    def _iter_files(self, kind: str, start_ns: int | None, end_ns: int | None) -> Iterator[Path]:
        d = self._type_dir(kind)
        if not d.is_dir():
            return
        lo = _bucket(start_ns) if start_ns is not None else ""
        hi = _bucket(end_ns) if end_ns is not None else "~"
        for bucket in sorted(p for p in d.iterdir() if p.is_dir()):
            if lo <= bucket.name <= hi or bucket.name == UNBUCKETED:
                yield from sorted(bucket.glob("*.rec"))

    def prune(self, now: float | None = None) -> int:
        """Remove hour buckets older than the retention; returns how many were removed."""
        cutoff = (time.time() if now is None else now) - self.retention_hours * 3600
        removed = 0
        if not self.root.is_dir():
            return 0
        for bucket in self.root.glob("v*/*/*"):
            if bucket.name == UNBUCKETED:  # by the age of each file
                for f in bucket.glob("*.rec"):
                    try:
                        if f.stat().st_mtime < cutoff:
                            f.unlink()
                            removed += 1
                    except OSError:
                        pass
                continue
            try:
                end = _bucket_start(bucket.name) + 3600
            except ValueError:
                continue
            if end < cutoff:
                shutil.rmtree(bucket, ignore_errors=True)
                removed += 1
        self.disk_bytes = _disk_use(self.root)
        return removed


def _split(records: np.ndarray, hours: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(bucket, records) parts of a batch: the ``MAX_HOURS_PER_BATCH`` hours holding the
    most records get their hour bucket; the rest, and hours more than a day ahead of now,
    go to ``UNBUCKETED``."""
    uniq, counts = np.unique(hours, return_counts=True)
    future = (time.time_ns() + FUTURE_SLACK_NS) // _HOUR_NS
    ok = uniq <= future
    if int(ok.sum()) > MAX_HOURS_PER_BATCH:
        order = np.argsort(-counts[ok], kind="stable")[:MAX_HOURS_PER_BATCH]
        keep = uniq[ok][order]
    else:
        keep = uniq[ok]
    out = [(_bucket(int(h) * _HOUR_NS), records[hours == h]) for h in np.sort(keep)]
    rest = ~np.isin(hours, keep)
    if rest.any():
        out.append((UNBUCKETED, records[rest]))
    return out


def _disk_use(root: Path) -> int:
    """Bytes the archive holds: its files plus a charge per directory."""
    total = 0
    if not root.is_dir():
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        total += _DIR_BYTES * len(dirnames)
        for name in filenames:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
