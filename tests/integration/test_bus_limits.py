"""The collector's bounds against hostile peers (issue 9): made-up sensor ids cannot lock a
real sensor out, forged sequence numbers do not turn into absurd loss counters, queued
bytes per peer are bounded, an oversized message is counted as such, and IPv6 endpoints
work on both ends."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq

from netwarden.bus import limits as bus_limits
from netwarden.bus import wire
from netwarden.bus.collector import Collector
from netwarden.bus.publisher import Publisher
from netwarden.records.schema import RECORD_TYPES


def _port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _heartbeat(
    sensor_id: str, *, session: int = 7, base: int = 1, next_seq: int = 1, acked: int = 0
) -> list[bytes]:
    h = wire.Header(sensor_id=sensor_id, session=session, seq=0, base=base, acked=acked,
                    kind=wire.HEARTBEAT, next_seq=next_seq)  # fmt: skip
    return [bytes(f) for f in wire.encode(h)]


def _until(c: Collector, pred: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c.poll(50)
        if pred():
            return
    raise AssertionError(f"condition not reached; stats: {c.stats()!r}")


@pytest.fixture()
def dealer() -> zmq.Socket:
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.IPV6, 1)
    yield s
    s.close(0)
    ctx.term()


def _flows(n: int) -> np.ndarray:
    r = np.zeros(n, RECORD_TYPES["flow"])
    r["ts_first_ns"] = time.time_ns()
    r["ts_last_ns"] = r["ts_first_ns"]
    return r


def test_fake_sensor_ids_do_not_lock_out_a_real_sensor(
    dealer: zmq.Socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus_limits, "EVICT_SILENT_S", 0.5)  # a real deployment: 10 s
    endpoint = f"tcp://127.0.0.1:{_port()}"
    with Collector(endpoint) as c:
        dealer.connect(endpoint)
        for i in range(5000):
            dealer.send_multipart(_heartbeat(f"fake-{i}"))
        # 4096 fit; the rest are refused while the table is full of fresh entries (or,
        # when the flood is slow, replace fakes that already fell silent)
        _until(c, lambda: c.stats()["heartbeats"] + c.stats()["rejected"]["sensor_limit"] >= 5000)
        assert c.stats()["sensors"] == c.max_sensors
        time.sleep(0.6)  # the fakes fall silent; a real sensor arrives
        pub = Publisher(endpoint, sensor_id="real", heartbeat_s=0.2)
        try:
            pub.send("flow", _flows(3))
            _until(
                c,
                lambda: (
                    c.sensors().get("real") is not None
                    and c.sensors()["real"].received_records == 3
                ),
            )
        finally:
            pub.close(timeout=5.0)
        assert c.stats()["sensors"] <= c.max_sensors
        assert c.stats()["sensors_evicted"] >= 1


def test_full_table_refuses_while_every_entry_is_live_and_evicts_by_rule() -> None:
    @dataclass
    class E:
        key: str
        stopped: bool
        last_seen_mono: float

    now = 1000.0
    fresh = {"a": E("", False, now), "b": E("", False, now - 1)}
    assert bus_limits.evictable(fresh, now, newcomer_authenticated=False) is None
    # an authenticated newcomer displaces the longest-silent unauthenticated entry
    assert bus_limits.evictable(fresh, now, newcomer_authenticated=True) == "b"
    # authenticated entries are never displaced by unauthenticated newcomers
    keyed = {"k": E("KEY", False, now - 999)}
    assert bus_limits.evictable(keyed, now, newcomer_authenticated=False) is None
    assert bus_limits.evictable(keyed, now, newcomer_authenticated=True) == "k"
    # silent or stopped entries go first
    mixed = {"live": E("", False, now), "bye": E("", True, now)}
    assert bus_limits.evictable(mixed, now, newcomer_authenticated=False) == "bye"
    assert bus_limits.expired({"x": E("", False, now - 4000), "y": E("", False, now)}, now) == ["x"]


def test_idle_sensors_expire(dealer: zmq.Socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus_limits, "EXPIRE_SILENT_S", 0.3)
    endpoint = f"tcp://127.0.0.1:{_port()}"
    with Collector(endpoint) as c:
        dealer.connect(endpoint)
        dealer.send_multipart(_heartbeat("idle"))
        _until(c, lambda: "idle" in c.sensors())
        time.sleep(0.5)
        _until(c, lambda: "idle" not in c.sensors())
        assert c.stats()["sensors_expired"] == 1


@pytest.mark.parametrize(
    "forged",
    [
        {"base": 2**64 - 1, "next_seq": 2**64 - 1},  # showed "lost 18446744073709551614"
        {"base": 2**40, "next_seq": 2**40, "acked": 0},
        {"base": 5, "next_seq": 2},  # next below base: no real sensor sends that
    ],
)
def test_forged_sequence_numbers_do_not_count_as_loss(
    dealer: zmq.Socket, forged: dict[str, int]
) -> None:
    endpoint = f"tcp://127.0.0.1:{_port()}"
    with Collector(endpoint) as c:
        dealer.connect(endpoint)
        dealer.send_multipart(_heartbeat("s1"))  # a known sensor, session 7
        _until(c, lambda: "s1" in c.sensors())
        dealer.send_multipart(_heartbeat("s1", **forged))  # same session, absurd numbers
        dealer.send_multipart(_heartbeat("s2", session=9, **forged))  # a new sensor
        _until(c, lambda: c.stats()["rejected"]["implausible"] == 2)
        st = c.sensors()["s1"]
        assert st.lost_messages == 0 and st.gaps == 0 and st.next_seq == 1
        assert "s2" not in c.sensors()
        assert c.stats()["lost_messages"] == 0
        # the real sensor's numbers still work afterwards
        dealer.send_multipart(_heartbeat("s1", base=3, next_seq=3))
        _until(c, lambda: c.sensors()["s1"].lost_messages == 2)


def test_queued_bytes_per_peer_are_bounded() -> None:
    with Collector("inproc://q", max_message_bytes=16 << 20) as c:
        hwm = c.socket.getsockopt(zmq.RCVHWM)
        frame = c.socket.getsockopt(zmq.MAXMSGSIZE)
        assert hwm * frame <= bus_limits.MAX_QUEUED_BYTES_PER_PEER  # was 1000 x 16 MiB
    with Collector(
        "inproc://q2", max_message_bytes=1 << 20, max_queued_bytes_per_peer=8 << 20
    ) as c:
        assert c.socket.getsockopt(zmq.RCVHWM) * c.socket.getsockopt(zmq.MAXMSGSIZE) <= 8 << 20


def test_oversized_message_is_counted_as_oversized(dealer: zmq.Socket) -> None:
    endpoint = f"tcp://127.0.0.1:{_port()}"
    limit = 1 << 20
    with Collector(endpoint, max_message_bytes=limit) as c:
        dealer.connect(endpoint)
        h = wire.records_header(_flows(1), "flow", sensor_id="big", session=1, seq=1, base=1)
        dealer.send_multipart(
            [wire.encode_header(h), b"\0" * (limit + limit // 16)]
        )  # 17/16 of the limit
        _until(c, lambda: c.stats()["rejected"]["oversized"] == 1)
        assert c.stats()["received_messages"] == 0
        # the peer is still connected: a good message afterwards is taken
        dealer.send_multipart(_heartbeat("big"))
        _until(c, lambda: "big" in c.sensors())


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_endpoint_binds_and_a_sensor_delivers() -> None:
    port = _port(socket.AF_INET6, "::1")
    endpoint = f"tcp://[::1]:{port}"
    with Collector(endpoint) as c:  # raised "cannot bind" (IPv6 off on the socket)
        assert c.endpoint.startswith("tcp://[::1]:")
        pub = Publisher(endpoint, sensor_id="v6", heartbeat_s=0.2)
        try:
            pub.send("flow", _flows(2))
            _until(
                c,
                lambda: (
                    c.sensors().get("v6") is not None and c.sensors()["v6"].received_records == 2
                ),
            )
        finally:
            pub.close(timeout=5.0)
        assert c.sensors()["v6"].peer_address == "::1"


def test_one_curve_key_cannot_fill_the_sensor_table(tmp_path: Path) -> None:
    import os

    import zmq.auth

    from netwarden.bus.collector import MAX_IDS_PER_KEY, CurveServerKeys

    ctl = tmp_path / "keys"
    (ctl / "authorized").mkdir(parents=True)
    zmq.auth.create_certificates(str(ctl), "server")
    server_public, _ = zmq.auth.load_certificate(str(ctl / "server.key"))
    clients = []
    for name in ("compromised", "honest"):
        pub, sec = zmq.auth.create_certificates(str(tmp_path), name)
        os.replace(pub, ctl / "authorized" / f"{name}.key")
        clients.append(zmq.auth.load_certificate(sec))
    endpoint = f"tcp://127.0.0.1:{_port()}"
    ctx = zmq.Context()
    socks = []
    try:
        with Collector(
            endpoint, curve=CurveServerKeys.from_dir(ctl), max_sensors=MAX_IDS_PER_KEY + 8
        ) as c:
            for public, secret in clients:
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.curve_publickey, s.curve_secretkey, s.curve_serverkey = (
                    public,
                    secret,
                    server_public,
                )
                s.connect(endpoint)
                socks.append(s)
            for i in range(MAX_IDS_PER_KEY + 50):  # made-up ids from one authorised key
                socks[0].send_multipart(_heartbeat(f"fake-{i}"))
            _until(c, lambda: c.stats()["rejected"]["sensor_limit"] == 50)
            assert c.stats()["sensors"] == MAX_IDS_PER_KEY
            socks[1].send_multipart(_heartbeat("honest"))  # another key still gets in
            _until(c, lambda: "honest" in c.sensors())
    finally:
        for s in socks:
            s.close(0)
        ctx.term()
