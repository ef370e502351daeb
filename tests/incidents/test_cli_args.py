"""Incident command arguments: --since forms, and one clear line for a missing state dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netwarden.commands.incidents import parse_since
from netwarden.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_since_accepts_epoch_iso_and_ages() -> None:
    now = 1_700_000_000.0
    assert parse_since(None) is None
    assert parse_since("1699990000", now) == 1_699_990_000.0
    assert parse_since("30m", now) == now - 1800 and parse_since("2h", now) == now - 7200
    assert parse_since("1.5d", now) == now - 1.5 * 86400
    assert (
        parse_since("2023-11-14T22:13:20Z", now) == now == parse_since("2023-11-14 22:13:20", now)
    )
    with pytest.raises(ConfigError, match="--since 'yesterday'"):
        parse_since("yesterday", now)


def test_missing_state_dir_is_one_line(tmp_path: Path) -> None:
    for cmd in (["incidents"], ["alerts"], ["incident", "show", "INC-1"], ["feedback", "INC-1", "--confirmed"],
                ["explain", "INC-1"]):  # fmt: skip
        p = subprocess.run([sys.executable, "-m", "netwarden", *cmd, "--state-dir", str(tmp_path / "none")],
                           capture_output=True, text=True, timeout=60, cwd=REPO, check=False)  # fmt: skip
        assert p.returncode == 1 and p.stdout == ""
        none = tmp_path / "none"
        want = f"netwarden {cmd[0]}: error: no NetWarden state in {none} (run a controller or `netwarden replay ... --state-dir {none}`)"
        assert p.stderr.splitlines() == [want]
