"""Record identity: every record names its sensor and engine run, and flow uids stay unique
across fanout workers, sensor restarts and sensors, although every engine numbers its flows
from 1."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from netwarden.errors import ConfigError
from netwarden.records.identity import (
    MAX_WORKERS,
    record_uids,
    sensor_hash,
    session_id,
    uid,
)
from sensor.engine.config import EngineConfig
from sensor.runner import PcapSource, SensorLoop, make_pipeline
from tests.conftest import ZEEK_CORPUS

TRACE = ZEEK_CORPUS / "wikipedia" / "trace.pcap"
EPOCH_US = 1_700_000_000_000_000


def _run(backend: object, sensor: str, worker: int, epoch_us: int) -> dict[str, np.ndarray]:
    """One engine run over the trace, as a sensor (or one of its fanout workers) makes it."""
    config = replace(EngineConfig(), sensor=sensor_hash(sensor),
                     session=session_id(worker, epoch_us))  # fmt: skip
    pipe = make_pipeline(config, backend=backend)
    out: dict[str, list[np.ndarray]] = {}
    for kind, recs in SensorLoop(PcapSource(backend, [str(TRACE)]), pipe).records():
        out.setdefault(kind, []).append(recs)
    return {kind: np.concatenate(parts) for kind, parts in out.items()}


def test_uids_are_unique_across_workers_restarts_and_sensors(backend: object) -> None:
    if not TRACE.is_file():
        pytest.skip(f"corpus trace {TRACE} not present")
    runs = {
        "worker 0": ("nw-a", 0, EPOCH_US),
        "worker 1": ("nw-a", 1, EPOCH_US),  # same capture, the other fanout worker
        "restart": ("nw-a", 0, EPOCH_US + 1),  # the same sensor a microsecond later
        "other sensor": ("nw-b", 0, EPOCH_US),  # another sensor started at the same time
    }
    seen: dict[str, str] = {}
    flow_ids = None
    for name, (sensor, worker, epoch) in runs.items():
        recs = _run(backend, sensor, worker, epoch)
        flows = recs["flow"]
        # Every engine numbers its flows alike: the worst case for uniqueness.
        ids = sorted(int(i) for i in flows["flow_id"])
        assert flow_ids is None or ids == flow_ids
        flow_ids = ids
        # Every record names its sensor and run: flows, ARP, host and pair records.
        assert {"flow", "host", "pair"} <= set(recs)
        for kind, arr in recs.items():
            assert set(arr["sensor"].tolist()) == {sensor_hash(sensor)}, kind
            assert set(arr["session"].tolist()) == {session_id(worker, epoch)}, kind
        uids = record_uids(flows)
        assert len(set(uids)) == len(set(ids)) > 20  # one uid per flow
        for u in uids:
            assert seen.setdefault(u, name) == name, f"{u} of {name} also in {seen[u]}"
    assert len(seen) == len(runs) * len(set(flow_ids or []))


def test_compiled_and_reference_engines_stamp_the_same_identity() -> None:
    from tests.conftest import c_backend_missing

    if (why := c_backend_missing()) or not TRACE.is_file():
        pytest.skip(why or f"corpus trace {TRACE} not present")
    from sensor.engine import load_backend

    c = _run(load_backend("c"), "nw-a", 3, EPOCH_US)
    py = _run(load_backend("py"), "nw-a", 3, EPOCH_US)
    for kind, key in (("flow", "flow_id"), ("arp", "ts_ns")):
        assert (kind in c) == (kind in py)
        if kind in c:
            a, b = c[kind], py[kind]
            # field by field, as the parity tests compare (padding bytes are not records)
            a, b = a[np.argsort(a[key], kind="stable")], b[np.argsort(b[key], kind="stable")]
            for field in ("sensor", "session", key):
                assert np.array_equal(a[field], b[field]), (kind, field)
    assert record_uids(c["flow"]) == record_uids(py["flow"])


def test_uid_looks_like_zeek_and_depends_on_every_part() -> None:
    base = uid(sensor_hash("nw-a"), session_id(0, EPOCH_US), 1)
    assert base.startswith("C") and len(base) == 18 and base[1:].isalnum()
    assert base == uid(sensor_hash("nw-a"), session_id(0, EPOCH_US), 1)  # deterministic
    others = {
        uid(sensor_hash("nw-b"), session_id(0, EPOCH_US), 1),
        uid(sensor_hash("nw-a"), session_id(1, EPOCH_US), 1),
        uid(sensor_hash("nw-a"), session_id(0, EPOCH_US + 1), 1),
        uid(sensor_hash("nw-a"), session_id(0, EPOCH_US), 2),
    }
    assert base not in others and len(others) == 4


def test_identity_values_are_checked() -> None:
    with pytest.raises(ValueError):
        session_id(MAX_WORKERS)
    with pytest.raises(ConfigError):
        EngineConfig(sensor=-1)
    with pytest.raises(ConfigError):
        EngineConfig(session=1 << 64)
    assert sensor_hash("nw-a") != sensor_hash("nw-b") and sensor_hash("") != 0


def test_archive_finds_flows_by_uid_across_sensors_and_restarts(
    backend: object, tmp_path: object
) -> None:
    from controller.ingest.archive import RecordArchive

    if not TRACE.is_file():
        pytest.skip(f"corpus trace {TRACE} not present")
    archive = RecordArchive(tmp_path)  # type: ignore[arg-type]
    a = _run(backend, "nw-a", 0, EPOCH_US)["flow"]
    restarted = _run(backend, "nw-a", 0, EPOCH_US + 1)["flow"]
    b = _run(backend, "nw-b", 0, EPOCH_US)["flow"]
    archive.append("flow", "nw-a", a)
    archive.append("flow", "nw-a", restarted)
    archive.append("flow", "nw-b", b)
    wanted = record_uids(restarted)[:5]
    found = archive.find_flows(wanted)
    assert record_uids(found) == wanted  # the restarted run's flows, not the same flow ids
    assert set(found["session"].tolist()) == {session_id(0, EPOCH_US + 1)}
    assert not len(archive.find_flows([]))
