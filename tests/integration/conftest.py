"""Fixtures shared by the namespace tests."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path

import netns as nslab
import pytest

from controller.app import Controller
from controller.config import ControllerConfig, SafetyConfig
from controller.response.policy import Guard, Protected


@pytest.fixture(scope="module")
def lab() -> Iterator[nslab.Lab]:
    """Client and server namespaces with the echo service running on the server; at the end,
    proves the root namespace's ruleset was not touched."""
    reason = nslab.skip_reason("nft")
    if reason:
        pytest.skip(reason)
    before = nslab.root_ruleset()
    with nslab.Lab() as lab:
        lab.start_echo()
        yield lab
    assert nslab.root_ruleset() == before, "root namespace ruleset changed"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Controller]:
    """A dry-run controller on ``tmp_path`` serving its control socket from a thread
    (192.0.2.1 is its gateway)."""
    cfg = ControllerConfig(
        state_dir=tmp_path, tick_s=0.2, safety=SafetyConfig(discover_local=False)
    )
    guard = Guard(fixed=[Protected(ipaddress.ip_network("192.0.2.1/32"), "gateway")])
    ctl = Controller(cfg, guard=guard)  # enforce = dryrun, the default
    ctl.start()
    t = threading.Thread(target=ctl.run, kwargs={"install_signals": False})
    t.start()
    yield ctl
    ctl.stop()
    t.join(timeout=30)
    ctl.close()
