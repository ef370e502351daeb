"""Shared fixtures: corpus locations and backend parametrisation (ids ``py`` / ``c``)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NETWARDEN_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
ZEEK_CORPUS = CORPUS / "zeek"
MALFORMED_CORPUS = CORPUS / "malformed"


def c_backend_missing() -> str | None:
    """Why the compiled backend cannot be tested, or None when it can."""
    try:
        mod = importlib.import_module("sensor._fastpath")
    except ImportError as exc:
        return f"sensor._fastpath not built ({exc})"
    if not hasattr(mod, "FlowEngine"):
        return "sensor._fastpath has no FlowEngine yet"
    return None


BACKEND_PARAMS = [
    pytest.param("py", id="py"),
    pytest.param(
        "c",
        id="c",
        marks=pytest.mark.skipif(c_backend_missing() is not None, reason=str(c_backend_missing())),
    ),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend(backend_name: str, request: pytest.FixtureRequest):
    """The backend module. Tests marked ``@pytest.mark.semantics(n)`` exercise rules added
    in reference revision ``n`` (``sensor.engine.reference.fastpath.SEMANTICS_REVISION``); the compiled
    twin is skipped for them until it declares that revision."""
    from sensor.engine import load_backend

    mod = load_backend(backend_name)
    marker = request.node.get_closest_marker("semantics")
    if marker is not None and backend_name == "c":
        have = getattr(mod, "SEMANTICS_REVISION", 0)
        if have < marker.args[0]:
            pytest.skip(
                f"compiled twin implements semantics revision {have}, test needs {marker.args[0]}"
            )
    return mod


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "semantics(n): needs reference semantics revision n")


@pytest.fixture(scope="session")
def demo_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo capture ``make demo`` replays, generated once per run (pcaps/generate.py)."""
    import sys

    sys.path.insert(0, str(REPO / "pcaps"))
    import generate

    path = tmp_path_factory.mktemp("demo") / "demo.pcap"
    generate.build().write(path)
    return path


@pytest.fixture(scope="session")
def zeek_corpus() -> Path:
    if not (ZEEK_CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"Zeek corpus not found at {ZEEK_CORPUS} (set NETWARDEN_SHARED)")
    return ZEEK_CORPUS


@pytest.fixture(scope="session")
def malformed_corpus() -> Path:
    if not (MALFORMED_CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"malformed corpus not found at {MALFORMED_CORPUS} (set NETWARDEN_SHARED)")
    return MALFORMED_CORPUS


def run_engine(
    mod,
    frames,
    linktype: int = 1,
    config=None,
    t0_ns: int = 1_600_000_000 * 10**9,
    step_ns: int = 1_000_000,
    pktsum: bool = False,
):
    """Feed crafted frames (bytes, or (ts_ns, bytes) pairs) through a backend's engine and
    flush. Returns (flow records, ARP records, stats, pktsum rows or None)."""
    import numpy as np

    from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE, PKTSUM_DTYPE
    from sensor.capture.batch import PacketBatch
    from sensor.engine.config import EngineConfig

    pkts = []
    for i, fr in enumerate(frames):
        if isinstance(fr, tuple):
            pkts.append((int(fr[0]), bytes(fr[1])))
        else:
            pkts.append((t0_ns + i * step_ns, bytes(fr)))
    eng = mod.FlowEngine(config or EngineConfig())
    batch = PacketBatch.from_packets(pkts, linktype=linktype)
    ps = np.zeros(batch.count, PKTSUM_DTYPE) if pktsum else None
    eng.feed(batch, ps)
    eng.flush()
    flows = np.zeros(max(16, len(pkts) * 2), FLOW_DTYPE)
    n = eng.drain_flows(flows)
    arps = np.zeros(max(16, len(pkts)), ARP_DTYPE)
    m = eng.drain_arp(arps)
    return flows[:n], arps[:m], eng.stats(), ps


def addr(rec, which: str) -> str:
    from netwarden.records.schema import addr_to_str

    return addr_to_str(rec[which + "_addr"], int(rec["ip_version"]))
