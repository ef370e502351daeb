"""Flows of capture files as Arrow: ``netwarden.read_flows`` and ``netwarden.iter_flow_batches``.

    import netwarden
    table = netwarden.read_flows("x.pcap", udp_timeout=30)   # a pyarrow.Table
    df = table.to_pandas()                                    # if pandas is installed
    for batch in netwarden.iter_flow_batches(["a.pcap", "b.pcap"]):   # big files
        ...

Columns are those of ``netwarden.records.arrow.schema("flow")``. Keyword arguments are
``EngineConfig`` fields (``tcp_timeout``, ``udp_timeout``, ``validate_checksums`` ...) plus
``backend`` (``"c"`` or ``"py"``). Files are read in order as one capture.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from sensor.engine.config import EngineConfig

#: Rows per record batch: big enough that per-batch costs vanish, small enough to stream.
BATCH_ROWS = 1 << 16

Paths = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def _paths(paths: Paths) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def engine_config(options: dict[str, Any]) -> EngineConfig:
    """``EngineConfig`` from keyword options; an unknown name is a ``ConfigError``."""
    from netwarden.errors import ConfigError
    from sensor.engine.config import EngineConfig

    known = {f.name for f in fields(EngineConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown engine option {unknown[0]!r} (options: {', '.join(sorted(known))})"
        )
    return EngineConfig(**options)


def rebatch(arrays: Iterable[np.ndarray], rows: int = BATCH_ROWS) -> Iterator[np.ndarray]:
    """Record arrays regrouped into arrays of ``rows`` records (the last may be smaller;
    none is empty). What was gathered is yielded before an error propagates."""
    import numpy as np

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        if len(parts) == 1:
            return parts[0]
        # As bytes: concatenating structured arrays field by field is far slower.
        raw = np.concatenate([np.ascontiguousarray(p).view(np.uint8) for p in parts])
        return raw.view(parts[0].dtype)

    pending: list[np.ndarray] = []
    count = 0
    it = iter(arrays)
    while True:
        try:
            a = next(it)
        except StopIteration:
            break
        except Exception:
            if pending:
                yield joined(pending)
            raise
        if not len(a):
            continue
        pending.append(a)
        count += len(a)
        if count >= rows:
            full = joined(pending)
            cut = count - count % rows
            for lo in range(0, cut, rows):
                yield full[lo : lo + rows]
            pending = [full[cut:]] if cut < count else []
            count -= cut
    if pending:
        yield joined(pending)


def iter_flow_batches(
    paths: Paths, *, backend: str | None = None, batch_rows: int = BATCH_ROWS, **options: Any
) -> Iterator[pa.RecordBatch]:
    """Flow records of capture files as Arrow record batches of about ``batch_rows`` rows.

    A missing or foreign file raises ``CaptureError`` before any batch; a fault inside a
    file raises it after the batches of every flow read before it."""
    from netwarden.commands.capture_options import check_capture_files
    from netwarden.records.arrow import to_batch
    from sensor.flows import iter_flow_records

    files = _paths(paths)
    config = engine_config(options)
    check_capture_files(files)
    for recs in rebatch(iter_flow_records(files, backend=backend, config=config), batch_rows):
        yield to_batch("flow", recs)


def read_flows(paths: Paths, *, backend: str | None = None, **options: Any) -> pa.Table:
    """All flow records of capture files as one ``pyarrow.Table`` (see the module doc)."""
    import pyarrow as pa

    from netwarden.records.arrow import schema

    batches = list(iter_flow_batches(paths, backend=backend, **options))
    return pa.Table.from_batches(batches, schema=schema("flow"))
