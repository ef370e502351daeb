"""``netwarden tune``: thresholds learnt on a benign capture meet the target on it, are
written to a config ``config check`` accepts, and change what detection raises.

The "benign" capture with alerts is an authorised scanner (an operator's own nightly
vulnerability scan): its scan is normal on that network, so the operator tunes it away and
sees on the labelled set what that costs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from netwarden.config_check import check_data
from netwarden.quality.labels import BENIGN
from tests.quality.helpers import ATTACKS, run_cli, smallest, write_labels


def _alerts(capsys: pytest.CaptureFixture[str], capture: Path, *extra: str) -> list[dict]:
    rc, lines, _ = run_cli(capsys, "replay", str(capture), "--json", *extra)
    assert rc == 0
    return [x for x in lines if x["type"] == "alert"]


def test_tune_writes_thresholds_that_change_detection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = smallest("port_scan")[0]
    capture = ATTACKS / scan["file"]
    before = _alerts(capsys, capture)
    assert any(a["kind"] == "port_scan" for a in before)  # the scanner alerts by default

    labelled = write_labels(tmp_path / "labels.tsv", [*smallest(n=3), *smallest(BENIGN)])
    cfg = tmp_path / "netwarden.toml"
    cfg.write_text("[policy]\ndefault_level = 1\n")
    plot = tmp_path / "tradeoff.svg"
    argv = ["tune", str(capture), "--labels", str(labelled), str(ATTACKS),
            "--target-per-day", "1", "--json"]  # fmt: skip
    rc, lines, _ = run_cli(capsys, *argv, "--write", str(cfg), "--plot", str(plot))
    summary = lines[-1]
    assert rc == 0 and summary["type"] == "tuning" and summary["met"]
    th = summary["thresholds"]
    assert th.get("port_scan", 0) >= max(a["score"] for a in before if a["kind"] == "port_scan")
    assert summary["checked_per_hour"] * 24 <= 1  # the target, on the capture it learnt from
    curve = [x for x in lines if x["type"] == "curve"]
    assert curve[0]["alerts_per_hour"] > curve[-1]["alerts_per_hour"]
    assert "<svg" in plot.read_text()

    # written with a comment saying where it came from, the rest of the file kept
    text = cfg.read_text()
    assert "default_level = 1" in text and "netwarden tune" in text and capture.name in text
    assert tomllib.loads(text)["detect"]["thresholds"] == th
    rc, _, err = run_cli(capsys, "config", "check", str(cfg))
    assert rc == 0, err

    # the detectors read it: the same capture now raises no scan alert
    after = _alerts(capsys, capture, "--config", str(cfg))
    assert not [a for a in after if a["kind"] == "port_scan"]
    assert all(a["score"] >= th.get(a["kind"], 0) for a in after)

    # deterministic: a second run proposes the same and rewrites the same file
    rc, again, _ = run_cli(capsys, *argv, "--write", str(cfg))
    assert again[-1]["thresholds"] == th and cfg.read_text() == text


def test_quiet_capture_needs_no_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = ATTACKS / smallest(BENIGN)[0]["file"]
    rc, lines, _ = run_cli(capsys, "tune", str(quiet), "--json", "--target-per-day", "0")
    assert rc == 0 and lines[-1]["thresholds"] == {} and lines[-1]["met"]


def test_config_check_names_bad_thresholds() -> None:
    probs = check_data({"detect": {"thresholds": {"port_scna": 50}}})
    assert [p.key for p in probs] == ["detect.thresholds.port_scna"]
    probs = check_data({"detect": {"thresholds": {"port_scan": 150}}})
    assert probs and "0..100" in probs[0].message
    assert not check_data({"detect": {"thresholds": {"ssh_bruteforce": 70}}})
