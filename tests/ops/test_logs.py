"""``--log-json``: a controller fed by a sensor logs JSON lines whose stable event names
(``netwarden.logs.EVENTS``) tell its story: listen, sensor joined and stopped, stop."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate

from netwarden.logs import EVENTS, JsonFormatter, event
from tests.integration.controller_proc import ControllerProcess


def test_controller_json_log_has_stable_events(tmp_path: Path) -> None:
    pcap = tmp_path / "demo.pcap"
    generate.build().write(pcap)
    cfg = tmp_path / "nw.toml"
    cfg.write_text("[safety]\ndiscover_local = false\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    ctl = ControllerProcess(tmp_path / "state", cfg, "--log-json", "--enforce", "dryrun", "--listen", endpoint,
                            "--no-archive")  # fmt: skip
    try:
        sensor = subprocess.run([sys.executable, "-m", "netwarden", "sensor", "--pcap", str(pcap), "--connect",
                                 endpoint, "--sensor-id", "s-json"],
                                capture_output=True, text=True, timeout=300, cwd=REPO, check=False)  # fmt: skip
        assert sensor.returncode == 0, sensor.stderr
    finally:
        assert ctl.stop() == 0
    assert ctl.proc.stderr is not None
    lines = [json.loads(x) for x in ctl.proc.stderr.read().splitlines()]  # every line is JSON
    by_event = {x["event"]: x for x in lines}
    assert (
        by_event["controller.listen"]["endpoints"] == [endpoint]
        and by_event["controller.listen"]["curve"] is False
    )
    assert by_event["sensor.joined"]["sensor"] == "s-json"
    assert (
        by_event["sensor.stopped"]["sensor"] == "s-json"
        and by_event["sensor.stopped"]["undelivered"] == 0
    )
    order = [x["event"] for x in lines if x["event"] in EVENTS]
    assert (
        order.index("controller.listen")
        < order.index("sensor.joined")
        < order.index("sensor.stopped")
    )
    assert order[-2:] == ["controller.stopping", "controller.stopped"]
    for x in lines:
        assert {"ts", "time", "level", "logger", "event", "msg"} <= set(x)
        assert x["time"].endswith("+00:00") and x["level"] in {"info", "warning", "error", "debug"}


def test_json_formatter_without_event_and_with_exception() -> None:
    rec = logging.makeLogRecord(
        {"name": "netwarden.x", "levelname": "WARNING", "msg": "a %s", "args": ("b",)}
    )
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["event"] == "netwarden.x.log" and doc["msg"] == "a b"
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.makeLogRecord({"name": "n", "levelname": "ERROR", "msg": "m", "exc_info": sys.exc_info(),
                                     **event("sensor.down", sensor="s1", silent_s=3.5)})  # fmt: skip
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["event"] == "sensor.down" and doc["sensor"] == "s1" and doc["silent_s"] == 3.5
    assert "ValueError: boom" in doc["exception"]
