"""Fixtures: a capture-time clock and a dry-run controller on a temporary state dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.app import Controller
from tests.incidents.helpers import Clock, make_controller


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctl(tmp_path: Path, clock: Clock) -> Iterator[Controller]:
    c = make_controller(
        tmp_path / "state",
        clock,
        detectors={"ssh_bruteforce": 3, "port_scan": 3, "c2_beaconing": 3},
    )
    yield c
    c.close()
