"""Prometheus metrics: a controller (``--listen --metrics``) fed by a sensor (``--metrics``)
replaying the demo capture; both endpoints on 127.0.0.1 scraped and parsed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate

from netwarden.errors import ConfigError
from netwarden.metrics import parse_hostport
from tests.integration.controller_proc import ControllerProcess

SCANNER = generate.SCANNER[1]
CONFIG = """
[safety]
discover_local = false
[policy]
detectors = { port_scan = 3, host_sweep = 3 }
internal_networks = ["10.0.0.0/8"]
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(hostport: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, keyed by (sample name, sorted labels)."""
    text = urllib.request.urlopen(f"http://{hostport}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_controller_and_sensor_metrics(tmp_path: Path) -> None:
    cap = generate.build()
    pcap = tmp_path / "demo.pcap"
    cap.write(pcap)
    span = float(cap.packets[-1].time) - float(cap.packets[0].time)
    cfg = tmp_path / "nw.toml"
    cfg.write_text(CONFIG)
    endpoint = f"tcp://127.0.0.1:{_port()}"
    cm, sm = f"127.0.0.1:{_port()}", f"127.0.0.1:{_port()}"
    ctl = ControllerProcess(tmp_path / "state", cfg, "--enforce", "dryrun", "--listen", endpoint, "--no-archive",
                            "--metrics", cm)  # fmt: skip
    sensor = None
    try:
        # paced so the whole capture takes ~4 s: the sensor's endpoint is scraped while it runs
        sensor = subprocess.Popen([sys.executable, "-m", "netwarden", "sensor", "--pcap", str(pcap), "--connect",
                                   endpoint, "--sensor-id", "s-met", "--batch", "64", "--metrics", sm,
                                   "--replay-speed", str(span / 4)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
        seen: dict[Any, float] = {}
        deadline = time.monotonic() + 60
        while sensor.poll() is None and time.monotonic() < deadline:
            try:
                seen = scrape(sm)
            except OSError:
                pass
            time.sleep(0.3)
        assert sensor.wait(timeout=60) == 0, sensor.stderr.read()  # type: ignore[union-attr]
        assert seen, "the sensor's metrics endpoint was never reachable"
        assert seen[("netwarden_sensor_packets_total", ())] > 0
        assert seen[("netwarden_sensor_records_total", (("state", "sent"),))] > 0
        causes = {
            dict(lbl)["cause"] for (name, lbl) in seen if name == "netwarden_sensor_drops_total"
        }
        assert {"kernel_drops", "decode_errors", "bus_dropped_records"} <= causes
        # the controller: records by type, bus lag, alerts by kind, incidents, bans, latency
        deadline = time.monotonic() + 30
        m: dict[Any, float] = {}
        while time.monotonic() < deadline:
            m = scrape(cm)
            if m.get(("netwarden_bans_active", ()), 0) >= 1 and m.get(
                ("netwarden_alerts_total", (("kind", "port_scan"),))
            ):
                break
            time.sleep(0.5)
        assert m[("netwarden_controller_records_total", (("type", "flow"),))] > 0
        assert ("netwarden_bus_lag_seconds", (("sensor", "s-met"),)) in m
        assert m[("netwarden_controller_queue_depth", ())] >= 0
        assert m[("netwarden_alerts_total", (("kind", "port_scan"),))] >= 1
        assert sum(v for (n, _l), v in m.items() if n == "netwarden_incidents_open") >= 1
        assert m[("netwarden_bans_active", ())] >= 1
        assert m[("netwarden_enforcement_dry_run", (("backend", "dryrun"),))] == 1
        assert m[("netwarden_decision_to_kernel_seconds_count", ())] >= 1
        assert m[("netwarden_decision_to_kernel_seconds_bucket", (("le", "+Inf"),))] >= 1
        assert all(name.startswith("netwarden_") for name, _ in m)
    finally:
        if sensor is not None and sensor.poll() is None:
            sensor.kill()
        assert ctl.stop() == 0


@pytest.mark.parametrize(
    "bad", ["9620", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "example.org:9620"]
)
def test_metrics_address_is_checked(bad: str) -> None:
    with pytest.raises(ConfigError, match="--metrics"):
        parse_hostport(bad)
    assert parse_hostport("[::1]:9620") == ("::1", 9620)
