"""Hunts over a state dir with nothing archived answer with empty results; bad input gets
one error line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwarden.hunt.db import HuntDB
from tests.hunt.conftest import run_nw


@pytest.mark.parametrize("hunt", ["beacons", "scans", "dns", "talkers", "rare-destinations",
                                  "long-connections"])  # fmt: skip
def test_an_empty_state_dir_has_empty_views(tmp_path: Path, hunt: str) -> None:
    rc, out, err = run_nw("hunt", hunt, "--state-dir", str(tmp_path), "--json")
    assert rc == 0, err
    assert all('"type": "query"' in line for line in out.splitlines())
    db = HuntDB(tmp_path)
    for view in ("flows", "conns", "hosts", "pairs", "arp", "alerts", "incidents"):
        assert db.rows(f"SELECT count(*) AS n FROM {view}")[0]["n"] == 0
    assert db.newest() is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["hunt", "talkers", "--state-dir", "/nonexistent/state"], "no state dir"),
        (["hunt", "host", "not-an-ip"], "not an IP address"),
        (["hunt", "host"], "needs ADDR"),
        (["hunt", "talkers", "extra"], "takes no argument"),
        (["hunt", "talkers", "--since", "soonish"], "--since"),
        (["hunt", "talkers", "--limit", "0"], "--limit"),
        (["posture", "--since", "later"], "--since"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, args: list[str], says: str) -> None:
    if "--state-dir" not in args:
        args = [*args, "--state-dir", str(tmp_path)]
    rc, out, err = run_nw(*args)
    assert rc != 0 and not out
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
