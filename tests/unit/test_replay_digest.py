"""The replay summary reads host and pair records as they stream by (TelemetryDigest): the
same summary as from every record kept, without holding them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netwarden.records.schema import HOST_DTYPE
from sensor.export.replay_summary import INDICATORS, TelemetryDigest, _run, replay
from tests.conftest import CORPUS

SCAN = Path(CORPUS) / "attacks" / "port_scan" / "synscan_nmap_1000ports.pcap"


@pytest.fixture(scope="module")
def scan() -> str:
    if not SCAN.is_file():
        pytest.skip("corpus capture not present")
    return str(SCAN)


def _every_record(scan: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A replay's summary, and every record it made (through ``tap``), by type."""
    parts: dict[str, list[np.ndarray]] = {}
    summary, _ = replay(
        [scan], tap=lambda kind, recs: parts.setdefault(kind, []).append(recs.copy())
    )
    return summary, {kind: np.concatenate(p) for kind, p in parts.items()}


def test_summary_from_the_stream_equals_the_summary_from_every_record(scan: str) -> None:
    streamed, _ = replay([scan])
    full, kept = _every_record(scan)
    assert streamed == full
    hosts = kept["host"]
    tel = streamed["telemetry"]
    assert tel["host_records"] == len(hosts) and tel["pair_records"] == len(kept["pair"])
    assert tel["hosts"] == len({bytes(a) for a in hosts["addr"]})
    assert any(n["indicator"].startswith("distinct destination ports") for n in streamed["notable"])


def test_a_replay_without_an_archive_keeps_no_host_or_pair_record(scan: str) -> None:
    digest = TelemetryDigest()
    parts, *_ = _run([scan], None, 1.0, digest=digest)
    assert set(parts) <= {"flow", "arp"} and parts["flow"]
    assert digest.host_records > 0 and digest.pair_records > 0
    # only the windows at an indicator's floor are held, in record order
    for field, _, floor in INDICATORS:
        rows = digest.over_floor(field)
        assert rows.dtype == HOST_DTYPE and bool(np.all(rows[field] >= floor))
        assert np.all(np.diff(rows["ts_start_ns"]) >= 0)


def test_an_archiving_replay_streams_every_record_and_keeps_none(scan: str, tmp_path: Path) -> None:
    """``netwarden replay --state-dir`` archives through ``tap`` as records are made: every
    record of every kind arrives there, and the replay itself holds no host or pair record."""
    from controller.ingest.archive import RecordArchive
    from netwarden.commands.replay import _ArchiveStream

    _, kept = _every_record(scan)
    seen: dict[str, list[np.ndarray]] = {}
    digest = TelemetryDigest()
    archive = _ArchiveStream(tmp_path)
    batches = [0]

    def tap(kind: str, recs: np.ndarray) -> None:
        seen.setdefault(kind, []).append(recs.copy())
        batches[0] += 1
        archive.add(kind, recs)

    parts, *_ = _run([scan], None, 1.0, digest=digest, tap=tap)
    archive.close()
    assert "host" not in parts and "pair" not in parts
    assert batches[0] > 4  # streamed batch by batch, not handed over at the end
    stored = RecordArchive(tmp_path / "archive")
    for kind in ("flow", "host", "pair"):
        want = kept[kind]
        assert len(want) > 0
        got = np.concatenate(seen[kind])
        on_disk = stored.read(kind)
        for name in want.dtype.names:
            assert np.array_equal(got[name], want[name]), (kind, name)
            assert np.array_equal(on_disk[name], want[name]), (kind, name)
