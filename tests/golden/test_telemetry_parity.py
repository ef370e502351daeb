"""Parity: compiled and reference per-host telemetry give identical records and counters on
every corpus capture, with the default tables and with tables small enough to evict.

The compiled flow engine fills the per-packet summaries once per capture (its own parity with
the reference engine is ``test_parity.py``); both telemetry backends then read the same
summaries batch by batch, with network time advanced after each batch as the sensor loop
does. Host and pair records are compared field by field in emission order, and the
counters (occupancy, evictions, expiries) must be equal. The reference is slow (~30 us a
packet, more when every packet evicts), so a capture is read up to ``MAX_PACKETS``: all but
the two largest captures whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netwarden.errors import CaptureError, CaptureFormatError
from netwarden.records.schema import PKTSUM_DTYPE
from sensor.engine import load_backend
from sensor.engine.config import EngineConfig
from sensor.telemetry import HostTelemetry, TelemetryConfig
from tests.golden.test_parity import corpus_captures

BATCH = 512
MAX_PACKETS = 20_000
SMALL = TelemetryConfig(host_capacity=64, pair_capacity=128, idle_timeout=30.0)


def _engine() -> Any:
    try:
        engine = load_backend("c")
        from sensor.telemetry import _telemetry  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"compiled backends not built ({exc}); run `make build`")
    return engine


def summaries(path: Path) -> list[tuple[np.ndarray, int]]:
    """(packet summaries, network time after the batch) per batch of the capture."""
    engine_mod = _engine()
    eng = engine_mod.FlowEngine(EngineConfig())
    out = []
    seen = 0
    try:
        for batch in engine_mod.PcapReader(str(path)).batches(max_packets=BATCH):
            ps = np.zeros(batch.count, PKTSUM_DTYPE)
            eng.feed(batch, ps)
            out.append((ps, int(batch.ts_ns[batch.count - 1])))
            seen += batch.count
            if seen >= MAX_PACKETS:
                break
    except (CaptureError, CaptureFormatError):
        pass  # a truncated or odd capture: what was read still counts
    return out


def telemetry(backend: str, batches: list[tuple[np.ndarray, int]], cfg: TelemetryConfig) -> Any:
    t = HostTelemetry(cfg, backend=backend)
    recs: dict[str, list[np.ndarray]] = {"host": [], "pair": []}
    for ps, now in batches:
        t.update(ps, len(ps))
        t.advance(now)
        for kind, r in t.drain():
            recs[kind].append(r)
    t.flush()
    for kind, r in t.drain():
        recs[kind].append(r)
    return t.stats(), {k: np.concatenate(v) if v else None for k, v in recs.items()}


def _first_difference(a: np.ndarray, b: np.ndarray) -> str:
    for i in range(min(len(a), len(b))):
        bad = [f for f in a.dtype.names if not np.array_equal(a[i][f], b[i][f])]
        if bad:
            return f"record {i}: " + ", ".join(f"{f}: {a[i][f]} != {b[i][f]}" for f in bad[:6])
    return f"lengths {len(a)} != {len(b)}"


@pytest.mark.parametrize("path", corpus_captures())
def test_telemetry_backends_agree_on_corpus(path: Path) -> None:
    batches = summaries(path)
    for cfg in (TelemetryConfig(), SMALL):
        st_py, py = telemetry("py", batches, cfg)
        st_c, c = telemetry("c", batches, cfg)
        assert st_py == st_c, (cfg, st_py, st_c)
        for kind in ("host", "pair"):
            a, b = py[kind], c[kind]
            assert (a is None) == (b is None), kind
            if a is None:
                continue
            same = len(a) == len(b) and all(np.array_equal(a[f], b[f]) for f in a.dtype.names)
            assert same, f"{kind} ({cfg.host_capacity} hosts): {_first_difference(a, b)}"
