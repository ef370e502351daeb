"""Nothing learnt from the bus grants immunity from blocking (issue 9, critical 1).

A banned host that can reach the bus port sends one valid heartbeat: its ban must stay,
the kernel allow-list must not gain it, and new bans on it must still work. A sensor
authenticated by an authorised CURVE key is protected. A non-loopback ``--listen`` without
CURVE is refused unless ``--no-curve`` (then a loud warning).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from controller.app import Controller
from controller.bus_trust import check_listen, is_local_endpoint
from controller.config import ControllerConfig, SafetyConfig
from controller.ingest.ingest import Ingest
from controller.response.enforce.dryrun import DryRunEnforcer
from netwarden.bus import wire
from netwarden.bus.collector import Collector, CurveServerKeys
from netwarden.errors import ConfigError, PolicyRefused
from tests.conftest import REPO

ATTACKER = "127.0.0.1"  # the only address a loopback peer can come from


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _empty_batch(sensor_id: str) -> list[bytes]:
    """One valid data message with no records (the ~150-byte header of the attack)."""
    records = np.zeros(0, wire.RECORD_TYPES["flow"])
    h = wire.records_header(records, "flow", sensor_id=sensor_id, session=7, seq=1, base=1)
    return [bytes(f) for f in wire.encode(h, records)]


def _controller(tmp_path: Path) -> Controller:
    cfg = ControllerConfig(state_dir=tmp_path / "state", safety=SafetyConfig(discover_local=False))
    ctl = Controller(cfg, enforcer=DryRunEnforcer(tmp_path / "state"))
    ctl.start(control=False)
    return ctl


def _pump_until(
    ingest: Ingest, collector: Collector, sensor_id: str, timeout: float = 10.0
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ingest.pump() and sensor_id in collector.sensors():
            return
        time.sleep(0.02)
    raise AssertionError(f"{sensor_id} never heard from")


def _kernel(ctl: Controller) -> set[str]:
    return {str(b.addr) for b in ctl.enforcer.list_bans()}


def test_an_unauthenticated_peer_cannot_lift_its_ban(tmp_path: Path) -> None:
    ctl = _controller(tmp_path)
    endpoint = f"tcp://127.0.0.1:{_port()}"
    collector = Collector(endpoint)
    ingest = Ingest(collector)
    ingest.attach(ctl)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        ctl.ban(ATTACKER, 600, "scanner", "operator:test")
        dealer.connect(endpoint)
        dealer.send_multipart(_empty_batch("i-am-a-sensor"))  # one ~150-byte header
        _pump_until(ingest, collector, "i-am-a-sensor")
        assert collector.sensors()["i-am-a-sensor"].peer_address == ATTACKER
        # still banned, in the store and the kernel; not allow-listed; new bans still work
        assert ATTACKER in _kernel(ctl)
        assert [str(b.addr) for b in ctl.store.active_bans(time.time())] == [ATTACKER]
        assert ipaddress.ip_network(ATTACKER) not in ctl.enforcer.list_allow()
        assert all(p.why != "sensor" for p in ctl.guard.fixed)
        ctl.unban(ATTACKER, "operator:test")
        ctl.ban(ATTACKER, 60, "again", "operator:test")
        assert ATTACKER in _kernel(ctl)
    finally:
        dealer.close(0)
        ctx.term()
        collector.close()
        ctl.close()


def _keys(tmp_path: Path) -> tuple[Path, bytes, bytes, bytes]:
    ctl_dir = tmp_path / "keys"
    (ctl_dir / "authorized").mkdir(parents=True)
    zmq.auth.create_certificates(str(ctl_dir), "server")
    sensor_pub, sensor_sec = zmq.auth.create_certificates(str(tmp_path), "sensor")
    os.replace(sensor_pub, ctl_dir / "authorized" / "sensor.key")
    server_public, _ = zmq.auth.load_certificate(str(ctl_dir / "server.key"))
    public, secret = zmq.auth.load_certificate(sensor_sec)
    assert secret is not None
    return ctl_dir, server_public, public, secret


def test_a_curve_authenticated_sensor_is_protected(tmp_path: Path) -> None:
    ctl = _controller(tmp_path)
    ctl_dir, server_public, public, secret = _keys(tmp_path)
    endpoint = f"tcp://127.0.0.1:{_port()}"
    collector = Collector(endpoint, curve=CurveServerKeys.from_dir(ctl_dir))
    ingest = Ingest(collector)
    ingest.attach(ctl)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.curve_publickey, dealer.curve_secretkey, dealer.curve_serverkey = (
        public,
        secret,
        server_public,
    )
    try:
        ctl.ban(ATTACKER, 600, "before it was known as a sensor", "operator:test")
        dealer.connect(endpoint)
        dealer.send_multipart(_empty_batch("real-sensor"))
        _pump_until(ingest, collector, "real-sensor")
        assert ATTACKER not in _kernel(ctl)
        assert ipaddress.ip_network(ATTACKER) in ctl.enforcer.list_allow()
        with pytest.raises(PolicyRefused, match="sensor"):
            ctl.ban(ATTACKER, 60, "again", "operator:test")
    finally:
        dealer.close(0)
        ctx.term()
        collector.close()
        ctl.close()


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.9.9.9:5555", True),
        ("tcp://[::1]:5555", True),
        ("tcp://localhost:5555", True),
        ("ipc:///tmp/x.sock", True),
        ("inproc://x", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://[::]:5555", False),
        ("tcp://192.0.2.1:5555", False),
        ("tcp://eth0:5555", False),
    ],
)
def test_which_endpoints_need_curve(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local
    if local:
        check_listen([endpoint], curve=False, no_curve=False, command="t")
    else:
        with pytest.raises(ConfigError, match="CURVE"):
            check_listen([endpoint], curve=False, no_curve=False, command="t")
        check_listen([endpoint], curve=True, no_curve=False, command="t")


def _netwarden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netwarden", *args], capture_output=True, text=True,
                          check=False, cwd=REPO, timeout=60)  # fmt: skip


@pytest.mark.parametrize("command", ["controller", "collect"])
def test_cli_refuses_an_open_bus_without_curve(tmp_path: Path, command: str) -> None:
    extra = (
        ["--enforce", "dryrun", "--state-dir", str(tmp_path / "s")]
        if command == "controller"
        else []
    )
    proc = _netwarden(command, *extra, "--listen", f"tcp://0.0.0.0:{_port()}")
    assert proc.returncode != 0
    assert "--no-curve" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists(), "refused before writing anything"
    if command == "collect":  # with --no-curve it runs, and says loudly what that means
        ok = _netwarden(
            command, "--listen", f"tcp://0.0.0.0:{_port()}", "--no-curve", "--duration", "0.2"
        )
        assert ok.returncode == 0, ok.stderr
        assert "WITHOUT authentication" in ok.stderr
