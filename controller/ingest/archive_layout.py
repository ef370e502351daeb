"""Where the Parquet archive puts a record: hive partitions and their bounds.

Layout under the archive root (``STATE_DIR/archive``)::

    type=<record type>/date=<YYYY-MM-DD>/hour=<HH>/sensor=<sensor id>/part-<n>.parquet

``date``/``hour`` are the UTC hour of the record's time (flows: first packet; telemetry
windows: window start; ARP: the packet). Records whose hour cannot get a partition of its
own (a batch spread over more than ``MAX_HOURS_PER_BATCH`` hours, more than
``MAX_HOUR_PARTITIONS`` hours in the archive, a time more than ``FUTURE_SLACK_NS`` ahead of
the receive time, or before 1970) go to the overflow partition ``OVERFLOW``
(``date=1970-01-01/hour=00``): query engines read it like any other partition, and time
filters on the record's own time column find its records; only pruning by ``date``/``hour``
alone would skip them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
HOUR_NS = 3_600_000_000_000
#: hour partitions one batch may create; its other records go to OVERFLOW
MAX_HOURS_PER_BATCH = 64
#: (date, hour) partitions one record type may hold (~12 weeks); beyond: OVERFLOW
MAX_HOUR_PARTITIONS = 2048
#: records this far ahead of the receive time are not given an hour partition
FUTURE_SLACK_NS = 24 * HOUR_NS
#: the (date, hour) of records without an hour partition of their own
OVERFLOW = ("1970-01-01", "00")


def time_field(dt: np.dtype) -> str:
    """The field that places a record in time (flows: first packet; windows: start)."""
    return next(f for f in ("ts_first_ns", "ts_start_ns", "ts_ns") if f in (dt.names or ()))


def hour_key(hour: int) -> tuple[str, str]:
    """``(date, hour)`` partition values of an hour number (hours since the epoch)."""
    t = datetime.fromtimestamp(max(hour, 0) * 3600, tz=UTC)
    return t.strftime("%Y-%m-%d"), t.strftime("%H")


def key_start(date: str, hour: str) -> float:
    """Epoch seconds at which a (date, hour) partition starts."""
    return datetime.strptime(f"{date}T{hour}", "%Y-%m-%dT%H").replace(tzinfo=UTC).timestamp()


def sensor_dir_name(sensor_id: str) -> str:
    """A sensor id as a partition value: no path separators, never empty."""
    return _SAFE.sub("_", sensor_id) or "sensor"


def partition_dir(root: Path, kind: str, date: str, hour: str, sensor: str) -> Path:
    return root / f"type={kind}" / f"date={date}" / f"hour={hour}" / f"sensor={sensor}"


def parse_partition(path: Path, root: Path) -> tuple[str, str, str, str] | None:
    """(type, date, hour, sensor) of a partition directory, or None if it is not one."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if len(parts) != 4:
        return None
    names = ("type", "date", "hour", "sensor")
    values = []
    for name, part in zip(names, parts, strict=True):
        key, sep, value = part.partition("=")
        if key != name or not sep:
            return None
        values.append(value)
    return values[0], values[1], values[2], values[3]


def split_hours(
    hours: np.ndarray, now_ns: int, known: set[tuple[str, str]]
) -> list[tuple[tuple[str, str], np.ndarray]]:
    """``((date, hour), row mask)`` parts of a batch whose records fall in ``hours``:
    the ``MAX_HOURS_PER_BATCH`` hours holding the most records get their own partition
    (unless the archive already holds ``MAX_HOUR_PARTITIONS`` others, ``known``); the rest,
    future hours and hours before 1970 go to ``OVERFLOW``."""
    uniq, counts = np.unique(hours, return_counts=True)
    future = (now_ns + FUTURE_SLACK_NS) // HOUR_NS
    ok = (uniq <= future) & (uniq >= 0)
    order = np.argsort(-counts[ok], kind="stable")[:MAX_HOURS_PER_BATCH]
    room = MAX_HOUR_PARTITIONS - len(known)
    keep = []
    for h in uniq[ok][order]:
        key = hour_key(int(h))
        if key in known or room > 0:
            room -= key not in known
            keep.append(int(h))
    out = [(hour_key(h), hours == h) for h in sorted(keep)]
    rest = ~np.isin(hours, keep)
    if rest.any():
        out.append((OVERFLOW, rest))
    return out


def remove_older(paths: list[Path], cutoff: float) -> int:
    """Remove the files last written before ``cutoff``; returns how many."""
    n = 0
    for f in paths:
        try:
            if f.stat().st_mtime < cutoff:
                f.unlink()
                n += 1
        except OSError:
            pass
    return n
