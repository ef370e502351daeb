"""The previous archive format, raw records, migrated to the Parquet archive.

Before the Parquet archive, a state dir's ``archive/`` held raw records::

    v<schema>-<dtype hash>/<record type>/<YYYYmmddTHH>/<sensor id>.rec

(the bytes of one dtype back to back; a crash could leave a partial record at the end).
``migrate_raw`` runs when a writer first uses a ``RecordArchive`` (``migrate``: the
controller at start, a replay, the first ``append``): every ``.rec`` file written by the
current schema (same version and dtype hash) is read, appended to the Parquet archive under
its sensor id, written, and removed. Until then readers see those records too (``read``),
and reading never writes. Files of another schema cannot be decoded by this
version; they are left in place (and logged) and ``prune_raw`` removes them once they are
older than the retention.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from controller.ingest.archive_layout import remove_older
from netwarden.bus.wire import record_hash
from netwarden.errors import StoreError
from netwarden.records.schema import RECORD_TYPES, SCHEMA_VERSION

if TYPE_CHECKING:
    from controller.ingest.archive import RecordArchive

log = logging.getLogger("netwarden.archive")


def raw_files(root: Path) -> list[Path]:
    return sorted(root.glob("v*-*/*/*/*.rec")) if root.is_dir() else []


def current_raw(root: Path) -> tuple[list[tuple[str, Path]], set[str]]:
    """(record type, file) of the raw files this version can decode, and the version
    directories of those it cannot."""
    current = {f"v{SCHEMA_VERSION}-{record_hash(kind)}": kind for kind in RECORD_TYPES}
    found, other = [], set()
    for path in raw_files(root):
        kind = current.get(path.parents[2].name)
        if kind is None or path.parents[1].name != kind:
            other.add(path.parents[2].name)
        else:
            found.append((kind, path))
    return found, other


def read_raw(kind: str, path: Path) -> np.ndarray:
    """A raw file's whole records (a partial one a crash left at the end is ignored)."""
    dt = RECORD_TYPES[kind]
    return np.fromfile(path, dtype=dt, count=path.stat().st_size // dt.itemsize)


def migrate_raw(archive: RecordArchive) -> int:
    """Move the raw records of the current schema into ``archive``; returns how many."""
    found, other = current_raw(archive.root)
    moved = 0
    for kind, path in found:
        recs = read_raw(kind, path)
        try:
            archive.append(kind, path.stem, recs)
            archive.flush()
        except StoreError as exc:
            log.warning("archive: raw records in %s not migrated: %s", path, exc)
            return moved
        path.unlink()
        moved += len(recs)
    for d in sorted({p.parents[2] for _k, p in found}):
        if not any(d.rglob("*.rec")):
            shutil.rmtree(d, ignore_errors=True)
    if other:
        log.warning(
            "archive: raw records of another schema (%s) cannot be read by this version; "
            "they stay until the retention removes them",
            ", ".join(sorted(other)),
        )
    if moved:
        log.info("archive: migrated %d raw records to Parquet", moved)
    return moved


def prune_raw(root: Path, cutoff: float) -> int:
    """Remove raw files (of another schema) last written before ``cutoff``."""
    return remove_older(raw_files(root), cutoff)
