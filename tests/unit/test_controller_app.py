"""The controller's composition root and its seams: one registry of operations, a stage
plugged into ingest reaching policy, close hooks, the loop surviving a failing callback."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from controller.app import Controller
from controller.config import ControllerConfig, PolicyConfig, SafetyConfig
from controller.detection import Detection
from controller.loop import Loop
from controller.ops.registry import Operations
from netwarden.errors import ConfigError, ControlError


def _controller(tmp_path: Path) -> Controller:
    cfg = ControllerConfig(
        state_dir=tmp_path / "st",
        tick_s=0.2,
        safety=SafetyConfig(discover_local=False),
        policy=PolicyConfig(detectors={"trivial": 3}),
    )
    return Controller(cfg)


def test_one_registry_serves_every_operation(tmp_path: Path) -> None:
    ctl = _controller(tmp_path)
    ctl.start(control=False)
    try:
        assert {
            "ping",
            "ban",
            "unban",
            "bans",
            "kernel-bans",
            "allow-add",
            "allow-remove",
            "allow-list",
            "approvals",
            "approve",
            "deny",
            "detect",
            "audit",
            "verify",
        } <= set(ctl.ops.names())
        ctl.add_op("hello", lambda args, actor: {"hi": args.get("name"), "by": actor})
        assert ctl.handle("hello", {"name": "x"}, "operator:t") == {"hi": "x", "by": "operator:t"}
        with pytest.raises(ConfigError, match="registered twice"):
            ctl.add_op("ban", lambda _a, _b: None)
        with pytest.raises(ControlError, match="unknown operation 'nope'"):
            ctl.handle("nope", {}, "operator:t")
        assert ctl.handle("verify", {}, "operator:t")["ok"] is True
    finally:
        ctl.close()


def test_a_stage_plugged_into_ingest_reaches_policy(tmp_path: Path) -> None:
    from netwarden.bus.publisher import Publisher
    from netwarden.records.schema import FLOW_DTYPE

    ctl = _controller(tmp_path)
    seen: dict[str, list[int]] = {"early": [], "late": []}
    ctl.add_stage("early", lambda b: seen["early"].append(b.count))  # before ingest exists
    ctl.start()
    endpoint = f"ipc://{tmp_path}/bus"
    ingest = ctl.attach_ingest([endpoint])

    def late(batch: object) -> None:  # after: a trivial detector acting on what it saw
        seen["late"].append(batch.count)  # type: ignore[attr-defined]
        ctl.submit_detection(
            Detection.make("trivial", "203.0.113.77", ["198.51.100.1"], 99, 1.0, "stage-test")
        )

    ctl.add_stage("late", late)
    closed: list[str] = []
    ctl.at_close(lambda: closed.append("first"))
    ctl.at_close(lambda: closed.append("second"))
    t = threading.Thread(target=ctl.run, kwargs={"install_signals": False})
    t.start()
    pub = Publisher(endpoint, sensor_id="stage-test", heartbeat_s=0.2)
    try:
        pub.send("flow", np.zeros(7, FLOW_DTYPE))
        deadline = time.monotonic() + 20
        while not seen["late"]:
            assert time.monotonic() < deadline, "the batch never reached the stages"
            time.sleep(0.05)
    finally:
        pub.close(timeout=1)
        ctl.stop()
        t.join(timeout=30)
    assert seen == {"early": [7], "late": [7]}
    assert ingest.status()["records"] == {"flow": 7} and ingest.consumer_errors == {}
    assert [str(b.addr) for b in ctl.store.active_bans(ctl.clock())] == ["203.0.113.77"]
    ctl.close()
    assert closed == ["second", "first"]


def test_allow_add_lifts_covered_bans_through_the_one_lifting_path(tmp_path: Path) -> None:
    ctl = _controller(tmp_path)
    ctl.start(control=False)
    try:
        ctl.ban("203.0.113.30", 600, "x", "operator:alice")
        ctl.allow_add("203.0.113.0/27", "partner", "operator:alice")
        unbans = [e for e in ctl.audit.entries() if e["event"] == "unban"]
        assert [(e["subject"], e["detail"]["why"]) for e in unbans] == [
            ("203.0.113.30", "203.0.113.30/32 is allow-listed (203.0.113.0/27)")
        ]
    finally:
        ctl.close()


def test_the_loop_survives_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    loop = Loop()
    calls: list[str] = []

    def bad() -> None:
        calls.append("bad")
        raise RuntimeError("boom")

    loop.add_periodic(0.0, bad)
    loop.add_periodic(0.0, lambda: calls.append("good"))
    loop.run_once(max_wait_s=0.0)
    loop.run_once(max_wait_s=0.0)
    loop.close()
    assert calls == ["bad", "good", "bad", "good"]
    assert "periodic callback failed" in caplog.text


def test_operations_table_alone() -> None:
    ops = Operations()
    ops.add("echo", lambda args, actor: (args, actor))
    assert ops("echo", {"a": 1}, "me") == ({"a": 1}, "me") and ops.names() == ["echo"]
