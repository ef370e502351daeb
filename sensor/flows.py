"""Driver: capture files -> flow engine -> FLOW_DTYPE record arrays.

Used by ``netwarden flows`` and the tests. Records read before a capture fault are
always delivered: ``iter_flow_records`` yields them (after flushing the engine) and only
then raises the ``CaptureFormatError``/``CaptureError`` that stopped reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import ModuleType

import numpy as np

from sensor.engine import load_backend
from sensor.engine.config import EngineConfig
from sensor.pipeline import FlowSource, Pipeline
from sensor.runner import PcapSource, SensorLoop


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
    # FlowSource drains ARP records too, so the engine's ARP queue never piles up here.
    pipe = Pipeline([FlowSource(mod.FlowEngine(config or EngineConfig()))])
    loop = SensorLoop(PcapSource(mod, list(paths), max_packets=max_packets), pipe)
    return (recs for kind, recs in loop.records() if kind == "flow")
