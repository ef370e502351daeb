"""The crafted capture (tests/hunt/traffic.py) replayed once into a state dir, and a helper
running ``netwarden`` in-process and parsing its JSON lines."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from netwarden.cli import main
from tests.hunt import traffic


def run_nw(*args: str) -> tuple[int, str, str]:
    """``netwarden ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def json_lines(*args: str) -> list[dict[str, Any]]:
    rc, out, err = run_nw(*args, "--json")
    assert rc == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines and all("type" in x for x in lines)
    return lines


@pytest.fixture(scope="session")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """State dir of a replay of the crafted six hours."""
    d = tmp_path_factory.mktemp("hunt")
    pcap = traffic.write(d / "crafted.pcap")
    state = d / "state"
    rc, _out, err = run_nw("replay", "--json", "--state-dir", str(state), str(pcap))
    assert rc == 0, err
    return state
