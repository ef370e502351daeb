"""The sensor -> controller bus over real ZeroMQ sockets (tcp loopback and ipc), with sensors
and collectors in separate processes where crashes and restarts matter.

Records are synthetic FLOW_DTYPE rows whose ``flow_id`` encodes (sensor, index), so what
arrived can be checked one by one against what was sent. Waiting loops have generous
deadlines and only decide when to stop waiting; nothing asserts on time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth

from netwarden.bus import wire
from netwarden.bus.collector import Collector, CurveServerKeys
from netwarden.bus.publisher import CurveClientKeys, Publisher
from netwarden.records.schema import FLOW_DTYPE, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # upper bound for any wait; a healthy run takes a fraction of it

# A sensor process: sends n batches of `size` flow records, ids (index << 32 | seq-in-run),
# then closes (waiting for every ack) and prints its publisher stats as JSON.
SENSOR_CHILD = r"""
import json, sys, time
import numpy as np
from netwarden.bus.publisher import Publisher, CurveClientKeys
from netwarden.records.schema import FLOW_DTYPE
cfg = json.loads(sys.argv[1])
curve = CurveClientKeys.from_dir(cfg["curve"]) if cfg.get("curve") else None
pub = Publisher(cfg["endpoint"], sensor_id=cfg["sensor_id"], curve=curve,
                heartbeat_s=cfg.get("heartbeat_s", 0.2), resend_after_s=0.5)
recs = np.zeros(cfg["size"], FLOW_DTYPE)
n = 0
for b in range(cfg["batches"]):
    recs["flow_id"] = (cfg["index"] << 32) | np.arange(n, n + cfg["size"], dtype=np.uint64)
    recs["ts_first_ns"] = recs["ts_last_ns"] = time.time_ns()
    pub.send("flow", recs)
    n += cfg["size"]
    time.sleep(cfg.get("pace_s", 0.0))
if cfg.get("hang"):
    print(json.dumps({"ready": True}), flush=True)
    time.sleep(3600)
left = pub.close(timeout=cfg.get("close_timeout", 30.0))
st = pub.stats()
st["unacked_at_close"] = left
print(json.dumps(st), flush=True)
"""

# A collector process: appends every received flow_id to a file (flushed before the next
# poll acknowledges it) until SIGTERM.
COLLECTOR_CHILD = r"""
import signal, sys
from netwarden.bus.collector import Collector
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
c = Collector(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as out:
    print("ready", flush=True)
    while not stop:
        for b in c.poll(50):
            out.write(b.records["flow_id"].tobytes())
c.close()
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _sensor(endpoint: str, sensor_id: str, index: int, **cfg: object) -> subprocess.Popen[str]:
    cfg = {"endpoint": endpoint, "sensor_id": sensor_id, "index": index,
           "batches": 50, "size": 200, **cfg}  # fmt: skip
    return _spawn(SENSOR_CHILD, json.dumps(cfg))


def _sensor_result(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _free_tcp() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _poll_until(
    c: Collector, done: Callable[[], bool], sink: list[wire.Batch] | None = None
) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting; collector stats {c.stats()}"
        got = c.poll(50)
        if sink is not None:
            sink.extend(got)


def _ids(batches: list[wire.Batch]) -> np.ndarray:
    if not batches:
        return np.zeros(0, np.uint64)
    return np.concatenate([b.records["flow_id"] for b in batches])


def _expected_ids(index: int, total: int) -> np.ndarray:
    return (np.uint64(index) << np.uint64(32)) | np.arange(total, dtype=np.uint64)


def test_three_sensor_processes_deliver_every_record(tmp_path: Path) -> None:
    with Collector(f"ipc://{tmp_path}/bus.sock") as c:
        procs = [_sensor(c.endpoint, f"sensor-{i}", i, batches=40, size=257) for i in range(3)]
        got: list[wire.Batch] = []
        _poll_until(c, lambda: all(p.poll() is not None for p in procs), got)
        results = [_sensor_result(p) for p in procs]
        # Each said goodbye after its last acknowledged batch: down, but stopped cleanly.
        _poll_until(c, lambda: all(st.stopped for st in c.sensors().values()))
        status = c.sensors()
        stats = c.stats()
    for i, res in enumerate(results):
        assert res["unacked_at_close"] == 0 and res["bus_dropped_records"] == 0
        mine = [b for b in got if b.sensor_id == f"sensor-{i}"]
        ids = _ids(mine)
        # Sent == received, each record exactly once, in order.
        assert res["records"] == len(ids) == status[f"sensor-{i}"].received_records
        assert np.array_equal(ids, _expected_ids(i, res["records"]))
        assert [b.seq for b in mine] == list(range(1, len(mine) + 1))
        assert status[f"sensor-{i}"].gaps == 0 and status[f"sensor-{i}"].lost_messages == 0
        assert not status[f"sensor-{i}"].up
    assert stats["rejected_total"] == 0 and stats["sensors"] == 3


def test_collector_killed_and_restarted_mid_stream_loses_nothing(tmp_path: Path) -> None:
    endpoint = _free_tcp()
    received = tmp_path / "received.u64"
    first = _spawn(COLLECTOR_CHILD, endpoint, str(received))
    assert first.stdout is not None and first.stdout.readline().strip() == "ready"
    sensor = _sensor(endpoint, "edge", 5, batches=300, size=128, pace_s=0.005)
    # Mid-stream: the first collector has stored some records, the sensor is still sending.
    deadline = time.monotonic() + WAIT_S
    while received.stat().st_size < 20 * 128 * 8:
        assert time.monotonic() < deadline and sensor.poll() is None
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    stored_by_first = received.stat().st_size // 8
    second = _spawn(COLLECTOR_CHILD, endpoint, str(received))
    try:
        result = _sensor_result(sensor)  # close() returns once everything is acknowledged
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=WAIT_S)
    ids = np.fromfile(received, dtype=np.uint64)
    sent = _expected_ids(5, result["records"])
    lost = np.setdiff1d(sent, ids)
    assert 0 < stored_by_first < result["records"]
    assert result["unacked_at_close"] == 0 and result["bus_dropped_records"] == 0
    assert lost.size == 0, f"{lost.size} records lost across the collector restart"
    assert result["reconnects"] >= 1
    # Redelivery is bounded by what was in flight, never the whole stream.
    assert ids.size - sent.size <= 64 * 128


def test_buffer_overflow_while_collector_is_down_is_a_counted_gap() -> None:
    endpoint = _free_tcp()
    recs = np.zeros(1000, FLOW_DTYPE)  # ~0.5 MB a batch
    pub = Publisher(
        endpoint,
        sensor_id="small-buffer",
        heartbeat_s=0.1,
        resend_after_s=0.3,
        buffer_bytes=2 << 20,
        max_message_bytes=1 << 20,
    )
    try:
        got: list[wire.Batch] = []
        with Collector(endpoint) as c:
            for i in range(3):
                recs["flow_id"] = i
                pub.send("flow", recs)
            _poll_until(c, lambda: pub.stats()["acked_seq"] == 3, got)
        # Collector gone: 10 more batches into a buffer that holds 4 of them.
        for i in range(3, 13):
            recs["flow_id"] = i
            pub.send("flow", recs)
        dropped = pub.stats()["bus_dropped_batches"]
        assert dropped == 6
        with Collector(endpoint) as c:
            _poll_until(c, lambda: pub.stats()["buffered_messages"] == 0, got)
            st = c.sensors()["small-buffer"]
        assert st.drops["bus_dropped_records"] == dropped * len(recs)
        # Every message is accounted for: delivered or reported lost in one gap. (A message
        # evicted from the buffer may still have reached the wire before the collector
        # went away, so lost <= dropped.)
        seen = sorted({int(b.records["flow_id"][0]) for b in got})
        assert st.gaps == 1 and 1 <= st.lost_messages <= dropped
        assert len(seen) + st.lost_messages == 13
        assert seen[:3] == [0, 1, 2] and seen[-4:] == [9, 10, 11, 12]
    finally:
        pub.close(timeout=0)


def _raw_sender(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def _data(
    seq: int, base: int, n: int = 4, session: int = 1, sensor_id: str = "raw", **over: object
) -> list[bytes]:
    recs = np.zeros(n, FLOW_DTYPE)
    recs["flow_id"] = seq
    h = wire.records_header(recs, "flow", sensor_id=sensor_id, session=session, seq=seq, base=base)
    frames = [bytes(f) for f in wire.encode(h, recs)]
    if over:
        m = msgpack.unpackb(frames[0])
        m.update(over)
        frames[0] = msgpack.packb(m)
    return frames


def test_sequence_gaps_duplicates_and_restarts_are_detected(tmp_path: Path) -> None:
    ctx = zmq.Context()
    with Collector(f"ipc://{tmp_path}/c.sock") as c:
        s = _raw_sender(ctx, c.endpoint)
        got: list[wire.Batch] = []
        for frames in (
            _data(1, 1), _data(2, 1),
            _data(6, 6),  # 3..5 never sent and the sensor holds nothing below 6: a gap
            _data(6, 6),  # resent copy: duplicate
            _data(9, 7),  # ahead of 7: out of order, discarded until resent
            _data(7, 7), _data(8, 7),
            _data(1, 1, session=2),  # new session: a restart, not a gap
        ):  # fmt: skip
            s.send_multipart(frames)
        _poll_until(c, lambda: c.stats()["received_messages"] == 6, got)
        st = c.sensors()["raw"]
        assert [b.seq for b in got] == [1, 2, 6, 7, 8, 1]
        assert (st.gaps, st.lost_messages, st.duplicates, st.out_of_order, st.restarts) == (
            1, 3, 1, 1, 1)  # fmt: skip
        s.close(0)
    ctx.term()


def test_silent_sensor_is_marked_down_then_up_again() -> None:
    endpoint = _free_tcp()
    with Collector(endpoint) as c:
        sensor = _sensor(endpoint, "quiet", 1, batches=1, size=1, heartbeat_s=0.1, hang=True)
        try:
            assert sensor.stdout is not None and "ready" in sensor.stdout.readline()
            _poll_until(c, lambda: "quiet" in c.sensors() and c.sensors()["quiet"].up)
            sensor.send_signal(signal.SIGSTOP)  # alive, connected, silent
            _poll_until(c, lambda: not c.sensors()["quiet"].up)
            assert c.stats()["sensors_up"] == 0
            beats = c.sensors()["quiet"].heartbeats
            sensor.send_signal(signal.SIGCONT)
            # It sends no new data after its one batch: its heartbeats bring it back.
            _poll_until(c, lambda: c.sensors()["quiet"].heartbeats > beats)
            assert c.sensors()["quiet"].up
            assert c.sensors()["quiet"].received_messages == 1
        finally:
            sensor.kill()
            sensor.communicate()


def test_hostile_frames_are_rejected_and_counted_without_stopping_the_collector() -> None:
    endpoint = _free_tcp()
    limit = 256 << 10
    ctx = zmq.Context()
    with Collector(endpoint, max_message_bytes=limit) as c:
        s = _raw_sender(ctx, endpoint)
        good = _data(1, 1)
        hostile = {
            "malformed": [b"\x93\x01\x02", good[1]],  # a msgpack array, not a map
            "schema_version": _data(1, 1, v=SCHEMA_VERSION + 1),
            "dtype_hash": _data(1, 1, h="deadbeefdeadbeef"),
            "record_type": _data(1, 1, t="nope"),
            "size": [good[0], good[1][:-3]],
            # Within ZeroMQ's per-frame limit, over the message limit in total.
            "oversized": [good[0], b"\0" * (limit - 16)],
        }
        for frames in hostile.values():
            s.send_multipart(frames)
        s.send_multipart([b"\xc1garbage"])
        s.send_multipart(good)
        got: list[wire.Batch] = []
        _poll_until(c, lambda: len(got) == 1, got)
        rejected = c.stats()["rejected"]
        for reason in hostile:
            assert rejected[reason] >= 1, reason
        assert rejected["malformed"] == 2
        assert got[0].seq == 1 and got[0].sensor_id == "raw"

        # A frame well beyond the limit (ZeroMQ's MAXMSGSIZE, 1.25 x) never reaches the
        # decoder: ZeroMQ cuts that peer off. (Just over the limit is counted as oversized.)
        big = _raw_sender(ctx, endpoint)
        big.send_multipart([good[0], b"\0" * (2 * limit + 1)])
        _poll_until(c, lambda: c.stats()["disconnects"] >= 1)
        s.send_multipart(_data(2, 1))
        _poll_until(c, lambda: len(got) == 2, got)
        assert got[1].seq == 2
        s.close(0)
        big.close(0)
    ctx.term()


@pytest.fixture()
def curve_dirs(tmp_path: Path) -> dict[str, Path]:
    """Key directories written by `netwarden keygen`: the controller's (server.key_secret +
    authorized/), two authorised sensors and one unknown sensor."""
    dirs = {name: tmp_path / name for name in ("ctl", "known", "other", "unknown")}
    for name, d in dirs.items():
        stem = "server" if name == "ctl" else "sensor"
        subprocess.run([sys.executable, "-m", "netwarden", "keygen", str(d), "--name", stem],
                       cwd=ROOT, env=_env(), check=True, capture_output=True)  # fmt: skip
    (dirs["ctl"] / "authorized").mkdir()
    for name in ("known", "other"):
        (dirs["ctl"] / "authorized" / f"{name}.key").write_bytes(
            (dirs[name] / "sensor.key").read_bytes()
        )
    for name in ("known", "other", "unknown"):
        (dirs[name] / "server.key").write_bytes((dirs["ctl"] / "server.key").read_bytes())
    return dirs


def test_curve_collector_refuses_unknown_sensor_and_accepts_known(
    curve_dirs: dict[str, Path],
) -> None:
    endpoint = _free_tcp()
    with Collector(endpoint, curve=CurveServerKeys.from_dir(curve_dirs["ctl"])) as c:
        intruder = _sensor(
            endpoint,
            "intruder",
            2,
            batches=5,
            size=10,
            curve=str(curve_dirs["unknown"]),
            close_timeout=1.0,
        )
        friend = _sensor(endpoint, "friend", 3, batches=5, size=10, curve=str(curve_dirs["known"]))
        got: list[wire.Batch] = []
        _poll_until(c, lambda: intruder.poll() is not None and friend.poll() is not None, got)
        bad, good = _sensor_result(intruder), _sensor_result(friend)
        # An authorised key cannot take over another sensor's id.
        impostor = _sensor(
            endpoint,
            "friend",
            4,
            batches=2,
            size=10,
            curve=str(curve_dirs["other"]),
            close_timeout=1.0,
        )
        _poll_until(c, lambda: impostor.poll() is not None, got)
        fake = _sensor_result(impostor)
        stats = c.stats()
        friend_status = c.sensors()["friend"]
    assert stats["auth_refused"] >= 1
    assert {b.sensor_id for b in got} == {"friend"}
    assert np.array_equal(_ids(got), _expected_ids(3, good["records"]))
    assert good["records"] == 50 and good["unacked_at_close"] == 0
    assert bad["unacked_at_close"] == bad["records"] == 50
    assert fake["unacked_at_close"] == fake["records"] == 20
    assert stats["rejected"]["impersonation"] >= 1
    known_public, _ = zmq.auth.load_certificate(curve_dirs["known"] / "sensor.key")
    assert friend_status.key == known_public.decode()


def test_curve_keys_are_checked_when_loaded(tmp_path: Path) -> None:
    from netwarden.errors import ConfigError

    with pytest.raises(ConfigError, match="server.key_secret"):
        CurveServerKeys.from_dir(tmp_path)
    with pytest.raises(ConfigError, match="sensor.key_secret"):
        CurveClientKeys.from_dir(tmp_path)


# ---- the commands -----------------------------------------------------------------------------

CORPUS = Path(os.environ.get("NETWARDEN_CORPUS", ROOT.parent / "shared" / "corpus"))
TRACE = CORPUS / "zeek" / "ssh_many" / "trace.pcap"


def _backend_or_skip() -> object:
    from sensor.engine import load_backend

    try:
        backend = load_backend()
    except ImportError as exc:
        pytest.skip(f"no flow engine backend importable yet: {exc}")
    if not hasattr(backend, "FlowEngine"):
        pytest.skip("flow engine backend has no FlowEngine yet")
    if not TRACE.is_file():
        pytest.skip(f"corpus trace {TRACE} not present")
    return backend


def _engine_flows(backend: object, sensor: int = 0, session: int = 0) -> np.ndarray:
    """The oracle for the bus path: the engine's own output on the file, no bus involved
    (with the record identity the sensor stamped)."""
    from sensor.engine.config import EngineConfig

    eng = backend.FlowEngine(EngineConfig(sensor=sensor, session=session))  # type: ignore[attr-defined]
    out, buf = [], np.zeros(4096, FLOW_DTYPE)
    for batch in backend.PcapReader(str(TRACE)).batches(max_packets=4096):  # type: ignore[attr-defined]
        eng.feed(batch)
        eng.advance(int(batch.ts_ns[batch.count - 1]))
    eng.flush()
    while n := eng.drain_flows(buf):
        out.append(buf[:n].copy())
    return np.concatenate(out) if out else np.zeros(0, FLOW_DTYPE)


def _netwarden(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "netwarden", *args], cwd=ROOT,
                            env={**_env(), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_sensor_pcap_command_publishes_exactly_the_engines_flows(
    tmp_path: Path, backend_name: str, backend: object
) -> None:
    if not TRACE.is_file():
        pytest.skip(f"corpus trace {TRACE} not present")
    expected = _engine_flows(backend)
    assert len(expected)
    with Collector(f"ipc://{tmp_path}/s.sock") as c:
        proc = _netwarden(
            "sensor",
            "--pcap",
            str(TRACE),
            "--connect",
            c.endpoint,
            "--sensor-id",
            "cli",
            "--batch",
            "7",
            "--stats-interval",
            "0",
            env={"NETWARDEN_BACKEND": backend_name},
        )
        got: list[wire.Batch] = []
        _poll_until(c, lambda: proc.poll() is not None, got)
        _, err = proc.communicate(timeout=WAIT_S)
        st = c.sensors()["cli"]
    assert proc.returncode == 0, err
    flows = [b for b in got if b.record_type == "flow"]
    assert all(b.count <= 7 for b in got)
    received = np.concatenate([b.records for b in flows])
    # The records name the sensor and this run (netwarden.records.identity).
    from netwarden.records.identity import sensor_hash

    assert set(received["sensor"].tolist()) == {sensor_hash("cli")}
    assert len(set(received["session"].tolist())) == 1
    expected = _engine_flows(backend, sensor_hash("cli"), int(received["session"][0]))
    key = lambda a: a[np.argsort(a["flow_id"], kind="stable")].tobytes()
    assert key(received) == key(expected)
    assert st.records_by_type["flow"] == len(expected) and st.gaps == 0
    assert "0 unacknowledged at exit" in err


def test_flow_uids_stay_unique_across_sensor_restarts_and_sensors(tmp_path: Path) -> None:
    """The same file published by one sensor twice (a restart) and by a second sensor: the
    engines number flows alike, yet every flow's uid is distinct and names its sensor."""
    _backend_or_skip()
    from netwarden.records.identity import record_uids, sensor_hash

    runs = []
    with Collector(f"ipc://{tmp_path}/s.sock") as c:
        for sensor_id in ("nw-a", "nw-a", "nw-b"):
            proc = _netwarden("sensor", "--pcap", str(TRACE), "--connect", c.endpoint,
                              "--sensor-id", sensor_id, "--stats-interval", "0")  # fmt: skip
            got: list[wire.Batch] = []
            _poll_until(c, lambda: proc.poll() is not None, got)  # noqa: B023
            _, err = proc.communicate(timeout=WAIT_S)
            assert proc.returncode == 0, err
            flows = np.concatenate([b.records for b in got if b.record_type == "flow"])
            assert set(flows["sensor"].tolist()) == {sensor_hash(sensor_id)}
            runs.append(flows)
    assert len({int(f["session"][0]) for f in runs}) == 3  # one session per run
    assert np.array_equal(np.sort(runs[0]["flow_id"]), np.sort(runs[1]["flow_id"]))
    uids = [u for f in runs for u in record_uids(f)]
    assert len(set(uids)) == len(uids) == 3 * len(runs[0])


def test_sensor_stops_on_sigterm_and_flushes_live_flows(tmp_path: Path) -> None:
    _backend_or_skip()
    from netwarden.records.schema import EndReason

    with Collector(f"ipc://{tmp_path}/s.sock") as c:
        # Real-time replay of a 10-hour capture: it will be mid-file when stopped.
        proc = _netwarden(
            "sensor",
            "--pcap",
            str(TRACE),
            "--connect",
            c.endpoint,
            "--sensor-id",
            "paced",
            "--replay-speed",
            "1",
            "--batch",
            "1",
            "--stats-interval",
            "0",
        )
        got: list[wire.Batch] = []
        _poll_until(c, lambda: len(got) > 0, got)  # mid-stream: records are flowing
        proc.send_signal(signal.SIGTERM)
        _poll_until(c, lambda: proc.poll() is not None, got)
        _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    flows = np.concatenate([b.records for b in got if b.record_type == "flow"])
    # Live flows were ended by the shutdown flush and still reached the collector.
    assert (flows["end_reason"] == EndReason.EOF).any()
    assert "0 unacknowledged at exit" in err


def test_collect_command_prints_batches_and_status(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/collect.sock"
    # The sensor may start first: it connects and delivers once the collector binds.
    pub = Publisher(endpoint, sensor_id="dbg", heartbeat_s=0.2)
    try:
        recs = np.zeros(11, FLOW_DTYPE)
        for _ in range(3):
            pub.send("flow", recs)
        proc = _netwarden(
            "collect", "--listen", endpoint, "--json", "--count", "3", "--status-interval", "0"
        )
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        pub.close(timeout=0)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert {x["type"] for x in lines} == {"batch", "collector"}
    batches = [x["batch"] for x in lines if x["type"] == "batch"]
    assert [(b["sensor_id"], b["seq"], b["type"], b["count"]) for b in batches] == [
        ("dbg", i, "flow", 11) for i in (1, 2, 3)
    ]
    status = lines[-1]
    assert status["type"] == "collector" and status["sensors"]["dbg"]["received_records"] == 33
    assert status["stats"]["rejected_total"] == 0


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    first = subprocess.run(
        [sys.executable, "-m", "netwarden", "keygen", str(tmp_path)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    again = subprocess.run(
        [sys.executable, "-m", "netwarden", "keygen", str(tmp_path)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 0 and again.returncode == 1 and "exists" in again.stderr
    assert (tmp_path / "sensor.key_secret").stat().st_mode & 0o077 == 0
    keys = CurveClientKeys.__dataclass_fields__  # the loader needs server.key as well
    assert "server_public" in keys


def test_collector_fd_drives_a_selector_loop(tmp_path: Path) -> None:
    """The controller daemon's loop: a selector on ``fileno()`` plus a periodic drain."""
    import selectors

    with Collector(f"ipc://{tmp_path}/sel.sock", max_per_poll=3) as c:
        pub = Publisher(c.endpoint, sensor_id="sel", heartbeat_s=0.2)
        try:
            recs = np.zeros(50, FLOW_DTYPE)
            for i in range(40):
                recs["flow_id"] = np.arange(i * 50, (i + 1) * 50)
                pub.send("flow", recs)
            sel = selectors.DefaultSelector()
            sel.register(c.fileno(), selectors.EVENT_READ)
            got: list[wire.Batch] = []
            deadline = time.monotonic() + WAIT_S
            while pub.stats()["buffered_messages"]:
                assert time.monotonic() < deadline, c.stats()
                sel.select(timeout=1.0)  # wakes on traffic; the timeout is the periodic call
                got.extend(c.drain())
            sel.close()
        finally:
            pub.close(timeout=0)
    assert np.array_equal(_ids(got), np.arange(40 * 50, dtype=np.uint64))


def test_offline_sender_waits_for_room_instead_of_evicting() -> None:
    endpoint = _free_tcp()
    recs = np.zeros(1000, FLOW_DTYPE)
    pub = Publisher(endpoint, sensor_id="offline", buffer_bytes=1 << 20, max_message_bytes=1 << 20)
    try:
        pub.send("flow", recs)
        pub.send("flow", recs)  # two batches fill the 1 MiB buffer
        # No collector yet: no room appears, and nothing was evicted.
        assert not pub.wait_for_room(recs.nbytes, 0.2)
        assert pub.stats()["bus_dropped_records"] == 0
        with Collector(endpoint) as c:
            got: list[wire.Batch] = []
            deadline = time.monotonic() + WAIT_S
            while not pub.wait_for_room(recs.nbytes, 0.05):
                assert time.monotonic() < deadline
                got.extend(c.poll(20))
            pub.send("flow", recs)
            _poll_until(c, lambda: pub.stats()["buffered_messages"] == 0, got)
        assert sum(b.count for b in got) == 3 * len(recs)
        assert pub.stats()["bus_dropped_records"] == 0
    finally:
        pub.close(timeout=0)


@pytest.mark.kernel
def test_live_sensor_command_publishes_the_files_flows(tmp_path: Path) -> None:
    """`netwarden sensor --iface` in a namespace, fed by tcpreplay, delivers over the bus the
    flows the engine finds in the file (5-tuple, packets and IP bytes each way)."""
    import shutil
    import threading
    from collections import Counter

    if os.geteuid() != 0:
        pytest.skip("live capture needs root (AF_PACKET, netns)")
    if missing := [t for t in ("ip", "tcpreplay") if shutil.which(t) is None]:
        pytest.skip(f"missing tools: {missing}")
    try:
        import sensor.capture._ring  # noqa: F401
    except ImportError:
        pytest.skip("sensor.capture._ring is not built (make build)")
    backend = _backend_or_skip()
    from netns_live import VethPair  # tests/integration helper (namespaces + veth)

    def keys(flows: np.ndarray) -> Counter[tuple[object, ...]]:
        cols = ("proto", "orig_port", "resp_port", "orig_pkts", "resp_pkts", "orig_ip_bytes",
                "resp_ip_bytes")  # fmt: skip
        return Counter(
            (bytes(f["orig_addr"]), bytes(f["resp_addr"]), *(int(f[c]) for c in cols))
            for f in flows
        )

    with VethPair() as veth, Collector(f"ipc://{tmp_path}/live.sock") as c:
        proc = subprocess.Popen(
            veth.prefix(veth.ns_b) + [
                sys.executable, "-m", "netwarden", "sensor", "--iface", veth.IF_B,
                "--connect", c.endpoint, "--sensor-id", "live", "--batch", "5",
            ],
            cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        assert proc.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        got: list[wire.Batch] = []
        try:
            # Capture is up once the live loop prints its first stats line.
            _poll_until(c, lambda: bool(lines) or proc.poll() is not None, got)
            assert proc.poll() is None, "".join(lines)
            replay = subprocess.run(
                veth.prefix(veth.ns_a) + ["tcpreplay", "-i", veth.IF_A, "--pps=20000", str(TRACE)],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert replay.returncode == 0, replay.stderr
            proc.send_signal(signal.SIGTERM)  # clean stop: drain, flush live flows, publish
            _poll_until(c, lambda: proc.poll() is not None, got)
            _poll_until(c, lambda: c.sensors()["live"].stopped, got)
            status = c.sensors()["live"]
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.join(timeout=5)
    assert proc.returncode == 0, "".join(lines)
    assert got and all(b.count <= 5 for b in got)
    flows = [b.records for b in got if b.record_type == "flow"]
    live = keys(np.concatenate(flows)) if flows else Counter()
    ref = keys(_engine_flows(backend))
    assert sum(ref.values()) > 0 and live == ref
    assert status.drops.get("kernel_drops", 0) == 0 and status.gaps == 0


def test_sensor_stopping_with_unsent_data_is_counted_lost(tmp_path: Path) -> None:
    with Collector(f"ipc://{tmp_path}/bye.sock") as c:
        # One message in flight at a time, and the collector does not poll (no acks): the
        # other four never leave the sensor before it stops.
        pub = Publisher(c.endpoint, sensor_id="hasty", window=1)
        recs = np.zeros(10, FLOW_DTYPE)
        for _ in range(5):
            pub.send("flow", recs)
        deadline = time.monotonic() + WAIT_S
        while pub.stats()["messages_sent"] < 1:  # connected, first message on the wire
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert pub.close(timeout=0.5) == 50  # none acknowledged
        got: list[wire.Batch] = []
        _poll_until(c, lambda: "hasty" in c.sensors() and c.sensors()["hasty"].stopped, got)
        st = c.sensors()["hasty"]
    assert [b.seq for b in got] == [1]
    assert st.lost_messages == 4 and not st.up


def test_reject_log_is_one_clear_line_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = zmq.Context()
    caplog.set_level(logging.WARNING, logger="netwarden.collector")
    with Collector(f"ipc://{tmp_path}/log.sock", log_interval_s=0.2) as c:
        s = _raw_sender(ctx, c.endpoint)
        for _ in range(50):
            s.send_multipart(_data(1, 1, v=SCHEMA_VERSION + 9))
        _poll_until(c, lambda: c.stats()["rejected"]["schema_version"] == 50)
        lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert 1 <= len(lines) < 50
        assert "schema_version" in lines[0] and f"schema version {SCHEMA_VERSION + 9}" in lines[0]

        # Once the interval has passed, the next line says how many were held back.
        def suppressed_reported() -> bool:
            s.send_multipart(_data(1, 1, v=SCHEMA_VERSION + 9))
            time.sleep(0.05)
            return any("similar suppressed" in r.getMessage() for r in caplog.records)

        _poll_until(c, suppressed_reported)
        s.close(0)
    ctx.term()


def test_the_controller_acknowledges_a_batch_once_handled(tmp_path: Path) -> None:
    """Ingest acknowledges what it handled at the end of each pump: the sensor's last
    message is settled without waiting for more traffic to wake the controller."""
    from controller.ingest.ingest import Ingest

    with Collector(f"ipc://{tmp_path}/ack.sock") as c:
        ingest = Ingest(c)
        got: list[wire.Batch] = []
        ingest.add_consumer("test", got.append)
        pub = Publisher(c.endpoint, sensor_id="ack", heartbeat_s=3600.0)
        try:
            pub.send("flow", np.zeros(10, FLOW_DTYPE))
            deadline = time.monotonic() + WAIT_S
            while not got:  # pump until the batch is handled, then no more
                assert time.monotonic() < deadline
                ingest.pump()
                time.sleep(0.01)
            assert pub.flush(timeout=WAIT_S)  # no pump since: the ack left with the batch
            assert c.stats()["acks_sent"] >= 1
        finally:
            pub.close(timeout=0)
    assert sum(b.count for b in got) == 10


def test_a_busy_collector_is_read_on_fd_wake_ups_alone(tmp_path: Path) -> None:
    """The controller's loop wakes on the collector's edge-triggered fd, which does not fire
    again for messages already queued: after sending acks (a send can take in what arrived
    without a new edge) ingest looks again, and when its bounded pump stops with messages
    left it asks the loop for another turn at once. A sensor that keeps sending while
    detection is slow is read to the end without the periodic pump: no turn of the loop
    ends with messages queued and nothing read."""
    import threading

    from controller.ingest.ingest import Ingest
    from controller.loop import Loop

    n_msgs, per = 300, 20
    with Collector(f"ipc://{tmp_path}/edge.sock", max_per_poll=2) as c:
        loop = Loop()
        ingest = Ingest(c)
        ingest._controller = loop  # the reader alone: no periodic pump to hide a stall
        loop.add_reader(c.fileno(), ingest.pump)
        got: list[wire.Batch] = []

        def detect(b: wire.Batch) -> None:  # slow: messages queue up meanwhile
            got.append(b)
            time.sleep(0.002)

        ingest.add_consumer("test", detect)
        pub = Publisher(c.endpoint, sensor_id="edge", heartbeat_s=3600.0)

        def send() -> None:
            for i in range(n_msgs):
                recs = np.zeros(per, FLOW_DTYPE)
                recs["flow_id"] = np.arange(i * per, (i + 1) * per)
                pub.send("flow", recs)
                time.sleep(0.0005)

        sender = threading.Thread(target=send)
        try:
            sender.start()
            deadline = time.monotonic() + WAIT_S
            while sum(b.count for b in got) < n_msgs * per:
                assert time.monotonic() < deadline
                before = len(got)
                loop.run_once(max_wait_s=5.0)
                assert len(got) > before or not c.readable(), f"stalled at {before} batches"
            sender.join()
            while pub.stats()["buffered_messages"]:  # the last acks, sent as handled
                assert time.monotonic() < deadline
                time.sleep(0.01)
        finally:
            pub.close(timeout=0)
            loop.close()
    assert np.array_equal(_ids(got), np.arange(n_msgs * per, dtype=np.uint64))
