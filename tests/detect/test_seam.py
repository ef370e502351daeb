"""The detector seam end to end with a trivial detector (``trivial_plugin``): in-process
through ``netwarden replay`` (capture time) and behind the collector of a running
``netwarden controller --listen`` fed by a ``netwarden sensor`` over real ZeroMQ sockets
(wall time), where the alert reaches policy."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from controller.detect import Alert, DetectionStack
from controller.detect.stack import dumps_state, loads_state
from netwarden.records.schema import FLOW_DTYPE

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate

from controller.detect.stack import REGISTRY
from tests.detect.trivial_plugin import THRESHOLD, ManyFlows

PLUGIN = "tests.detect.trivial_plugin"
# importing the plugin registered it; the other tests run the built-in detectors only
REGISTRY.pop(ManyFlows.name, None)


@pytest.fixture(scope="module")
def demo_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.pcap"
    generate.build().write(path)
    return path


def _flows(orig: str, n: int, t0_ns: int) -> np.ndarray:
    f = np.zeros(n, FLOW_DTYPE)
    f["ip_version"] = 4
    f["orig_addr"][:, :4] = [int(x) for x in orig.split(".")]
    f["resp_addr"][:, :4] = [10, 0, 0, 1]
    f["ts_first_ns"] = t0_ns + np.arange(n) * 1_000_000
    f["ts_last_ns"] = f["ts_first_ns"]
    f["flow_id"] = np.arange(1, n + 1)
    return f


def test_stack_fans_out_dedups_and_persists(tmp_path: Path) -> None:
    stack = DetectionStack([ManyFlows()], state_dir=tmp_path)
    stack.observe("flow", _flows("10.9.9.9", THRESHOLD - 1, 10**18))
    assert stack.advance(10**18 + 10**9) == []
    stack.observe("flow", _flows("10.9.9.9", 1, 10**18 + 2 * 10**9))
    stack.observe("pktsum", np.zeros(3))  # not a record type for detectors: ignored
    (a,) = stack.advance(10**18 + 3 * 10**9)
    assert (a.kind, a.attacker, a.victims) == ("test_many_flows", "10.9.9.9", ["10.0.0.1"])
    assert a.detected_at == pytest.approx(1e9 + 3) and a.first_seen == pytest.approx(1e9)
    j = a.to_json()
    assert j["type"] == "alert" and Alert.from_json(j).to_json() == j
    det = a.to_detection()
    assert det is not None and str(det.attacker) == "10.9.9.9/32" and det.score == 50
    # the same alert raised again within the window is dropped by the stack
    again = Alert(**{**{k: getattr(a, k) for k in a.__dataclass_fields__}, "detected_at": 1e9 + 9})
    assert stack._fresh(again) is False and stack.suppressed == 1
    stack.save()
    fresh = DetectionStack([ManyFlows()], state_dir=tmp_path)
    assert fresh.detectors[0].counts == stack.detectors[0].counts  # type: ignore[attr-defined]


def test_an_alert_protects_its_attacker_in_every_detector() -> None:
    class Quiet(ManyFlows):
        name = "quiet"

        def advance(self, now_ns: int) -> list[Alert]:
            return []

    quiet = Quiet()
    stack = DetectionStack([ManyFlows(), quiet])
    stack.observe("flow", _flows("10.1.1.1", THRESHOLD, 10**18))
    assert [a.attacker for a in stack.advance(10**18 + 10**9)] == ["10.1.1.1"]
    # the quiet detector raised nothing, yet will not learn the attacker as normal
    assert "10.1.1.1" in quiet._protected and len(quiet.protected_keys()) == 1


def test_spoofed_alert_goes_to_no_ban() -> None:
    a = Alert("syn_flood", None, ["10.10.10.10"], 80, 0.9, 1.0, 2.0, "T1498.001", {}, "x", "d", "1")
    assert a.to_detection() is None and a.to_json()["attacker"] is None


def test_state_codec_keeps_arrays_and_types() -> None:
    arr = np.arange(6, dtype="<f4").reshape(2, 3)
    rec = np.zeros(2, FLOW_DTYPE)
    back = loads_state(dumps_state({"a": arr, "r": rec, "n": np.int64(3), "s": {2, 1}}))
    assert np.array_equal(back["a"], arr) and back["a"].dtype == arr.dtype
    assert back["r"].dtype == FLOW_DTYPE and back["n"] == 3 and back["s"] == [1, 2]


def test_failing_detector_is_isolated() -> None:
    class Broken(ManyFlows):
        name = "broken"

        def observe(self, record_type: str, batch: np.ndarray) -> None:
            raise RuntimeError("boom")

    stack = DetectionStack([Broken(), ManyFlows()])
    stack.observe("flow", _flows("10.1.1.1", THRESHOLD, 10**18))
    assert [a.attacker for a in stack.advance(10**18 + 10**9)] == ["10.1.1.1"]
    assert stack.errors["broken"] == 1


def test_replay_json_runs_the_seam(demo_pcap: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "netwarden", "replay", "--json", "--detectors", "test_many_flows",
         "--detector-plugin", PLUGIN, str(demo_pcap)],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines[-1]["type"] == "summary" and all(x["type"] == "alert" for x in lines[:-1])
    alerts = lines[:-1]
    assert generate.SCANNER[1] in {a["attacker"] for a in alerts}
    for a in alerts:
        assert a["detector"] == "test_many_flows" and a["first_seen"] <= a["detected_at"]
        # capture time, not wall time: the demo capture starts at generate.START
        assert generate.START <= a["detected_at"] < generate.START + 3600
    human = subprocess.run(
        [sys.executable, "-m", "netwarden", "replay", "--detectors", "test_many_flows",
         "--detector-plugin", PLUGIN, str(demo_pcap)],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert human.returncode == 0, human.stderr
    assert "test_many_flows" in human.stdout and generate.SCANNER[1] in human.stdout


def test_controller_runs_every_detector_over_zeromq(tmp_path: Path, demo_pcap: Path) -> None:
    from controller.ops.server import request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    state = tmp_path / "state"
    cfg = tmp_path / "controller.toml"
    cfg.write_text("[safety]\ndiscover_local = false\n")
    ctl = subprocess.Popen(
        [sys.executable, "-m", "netwarden", "controller", "--enforce", "dryrun", "--state-dir",
         str(state), "--config", str(cfg), "--listen", endpoint, "--no-archive",
         "--detector-plugin", PLUGIN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert ctl.stdout is not None
        assert "controller ready" in ctl.stdout.readline()
        sensor = subprocess.run(
            [sys.executable, "-m", "netwarden", "sensor", "--pcap", str(demo_pcap), "--connect",
             endpoint, "--sensor-id", "s-demo", "--batch", "64"],
            check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
        )  # fmt: skip
        assert sensor.returncode == 0, sensor.stderr
        deadline = time.monotonic() + 30
        got: dict = {}
        want = {(k, a, v) for k, a, v in generate.PLANTED} | {
            ("test_many_flows", generate.SCANNER[1], generate.CLIENTS[2][1])
        }
        seen: set = set()
        while time.monotonic() < deadline and not want <= seen:
            got = request(state, "alerts")["result"]
            seen = {(r["kind"], r["attacker"], v) for r in got["recent"] for v in r["victims"]}
            time.sleep(0.3)
        assert want <= seen, (want - seen, got)
        scan = [r for r in got["recent"] if r["attacker"] == generate.SCANNER[1]]
        # alerts go through triage: the scanner's incident is contained through policy
        assert scan[0]["type"] == "alert" and any(
            r["decision"] is not None for r in scan
        )  # policy saw it
        # the spoofed flood names no attacker: it goes to no ban decision
        flood = [r for r in got["recent"] if r["kind"] == "syn_flood"]
        assert flood[0]["attacker"] is None and flood[0]["decision"] is None
        assert got["submitted"] >= 1 and got["status"]["records"]["flow"] > 0
        audit = request(state, "audit", limit=200)["result"]
        assert any(e["event"] == "decision" and e["subject"].startswith(generate.SCANNER[1])
                   for e in audit), audit  # fmt: skip
    finally:
        ctl.send_signal(signal.SIGTERM)
        try:
            ctl.wait(timeout=30)
        finally:
            if ctl.poll() is None:
                ctl.kill()
    assert ctl.returncode == 0
    # the detector's state was saved at shutdown (baselines survive restarts)
    assert (state / "detect" / "test_many_flows.state").is_file()
