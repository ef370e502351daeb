"""Hours of real benign traffic (``corpus/background``) learnt continuously as a live
controller would: at most one alert per capture-hour and none above low priority; then an
attack replayed after a benign capture (one stream, baseline learnt first) is still
detected and attributed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.detect.harness import (
    judge,
    read_labels,
    record_events,
    replay_run,
    run_captures,
    shift_pcap,
)

BACKGROUND = CORPUS / "background"
ATTACKS = CORPUS / "attacks"
LOW_PRIORITY = 40.0  # score below which an alert is low priority


def _captures() -> list[Path]:
    return sorted(BACKGROUND.glob("*.pcap")) if BACKGROUND.is_dir() else []


def _first_ts(path: Path) -> float:
    from sensor.engine import load_backend

    for batch in load_backend("c").PcapReader(str(path)).batches(64):
        if batch.count:
            return float(batch.ts_ns[: batch.count].min()) / 1e9
    return 0.0


def _last_ts(path: Path) -> float:
    from sensor.engine import load_backend

    last = 0
    for batch in load_backend("c").PcapReader(str(path)).batches(4096):
        if batch.count:
            last = max(last, int(batch.ts_ns[: batch.count].max()))
    return last / 1e9


@pytest.mark.slow
@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.stem)
def test_background_is_quiet(path: Path) -> None:
    run = replay_run([path])  # recorded once: the attack-after-benign tests learn from it
    assert not run.errors
    hours = run.hours  # the capture's span, at least one hour
    summary = [f"{a.kind} {a.attacker} {a.victims[:2]} score {a.score:.0f}" for a in run.alerts]
    assert len(run.alerts) <= hours, summary
    assert all(a.score < LOW_PRIORITY for a in run.alerts), summary


def _attack_labels() -> list[dict[str, str]]:
    labels = ATTACKS / "LABELS.tsv"
    if not labels.is_file():
        return []
    return [r for r in read_labels(labels) if r["class"] != "benign"]


@pytest.mark.slow
@pytest.mark.parametrize("label", _attack_labels(), ids=lambda r: Path(r["file"]).stem)
def test_attack_after_benign_baseline(label: dict[str, str], tmp_path: Path) -> None:
    warm = BACKGROUND / "m57_office_9h.pcap"
    attack = ATTACKS / label["file"]
    if not warm.is_file() or not attack.is_file():
        pytest.skip("corpus missing")
    # the attack starts a minute after the benign day ends, as it would on that network
    moved = tmp_path / attack.name
    shift_pcap(attack, moved, _last_ts(warm) + 60)
    # the detectors learn the benign day first (its records, recorded once), then the
    # attack arrives through a sensor pipeline into the same stack
    run = run_captures([moved], warm=record_events(str(warm)))
    alert, why = judge(label, run)
    assert alert is not None and why == "ok", why
