"""Driver: capture files -> flow engine -> FLOW_DTYPE record arrays.

Used by ``netwarden flows``, replay and the sensor. Records read before a capture fault are
always delivered: ``iter_flow_records`` yields them (after flushing the engine) and only
then raises the ``CaptureFormatError``/``CaptureError`` that stopped reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import ModuleType

import numpy as np

from sensor.config import EngineConfig
from sensor.engine import load_backend
from sensor.schema import FLOW_DTYPE

DRAIN_CHUNK = 4096


def _drain(engine: object, out: np.ndarray) -> Iterator[np.ndarray]:
    while True:
        n = engine.drain_flows(out)  # type: ignore[attr-defined]
        if n == 0:
            return
        yield out[:n].copy()
        if n < len(out):
            return


def iter_flow_records(
    paths: Iterable[str],
    backend: str | ModuleType | None = None,
    config: EngineConfig | None = None,
    max_packets: int = 4096,
) -> Iterator[np.ndarray]:
    """Yield arrays of finished flow records for the given capture files (one engine for
    all files, in order, as if they were one capture). On a fault, every record of packets
    read so far is yielded before the error propagates."""
    mod = backend if isinstance(backend, ModuleType) else load_backend(backend)
    engine = mod.FlowEngine(config or EngineConfig())
    out = np.zeros(DRAIN_CHUNK, FLOW_DTYPE)
    fault: BaseException | None = None
    try:
        for path in paths:
            reader = mod.PcapReader(path)
            for batch in reader.batches(max_packets):
                engine.feed(batch)
                yield from _drain(engine, out)
    except Exception as exc:  # noqa: BLE001 -- re-raised after the flush below
        fault = exc
    engine.flush()
    yield from _drain(engine, out)
    if fault is not None:
        raise fault
