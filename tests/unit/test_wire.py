"""Bus framing: round trips for every record type, and hostile input never escapes as
anything but ``FrameRejected`` with a known reason."""

from __future__ import annotations

import random

import msgpack
import numpy as np
import pytest

from netwarden.bus import wire
from netwarden.errors import FrameError, FrameRejected
from netwarden.records.schema import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    padding_runs,
    record_bytes,
    record_view,
)
from sensor.runner import split_batches


def _records(record_type: str, n: int, seed: int = 0) -> np.ndarray:
    """Records filled with random bytes: the bus must carry any bit pattern unchanged."""
    dt = RECORD_TYPES[record_type]
    raw = np.random.default_rng(seed).integers(0, 256, n * dt.itemsize, dtype=np.uint8)
    return raw.view(dt)


def _frames(record_type: str = "flow", nrec: int = 5, **over: object) -> list[bytes]:
    recs = _records(record_type, nrec)
    h = wire.records_header(recs, record_type, sensor_id="s1", session=7, seq=3, base=1)
    frames = wire.encode(h, recs)
    if over:
        m = msgpack.unpackb(frames[0])
        m.update(over)
        frames[0] = msgpack.packb(m)
    return [bytes(f) for f in frames]


@pytest.mark.parametrize("record_type", sorted(RECORD_TYPES))
@pytest.mark.parametrize("n", [0, 1, 300])
def test_round_trip_every_record_type(record_type: str, n: int) -> None:
    recs = _records(record_type, n, seed=n)
    h = wire.records_header(
        recs,
        record_type,
        sensor_id="edge-1",
        session=99,
        seq=12,
        base=10,
        drops={"kernel_drops": 4, "bus_dropped_records": 0},
    )
    batch = wire.decode([bytes(f) for f in wire.encode(h, recs)])
    assert batch.header.sensor_id == "edge-1" and batch.seq == 12 and batch.header.base == 10
    assert batch.record_type == record_type and batch.count == n
    assert batch.records.dtype == RECORD_TYPES[record_type]
    # Every field's bits arrive unchanged; alignment padding arrives zeroed.
    assert batch.records.tobytes() == bytes(record_bytes(recs))
    for name in recs.dtype.names:
        assert batch.records[name].tobytes() == recs[name].tobytes()
    assert dict(batch.drops) == {"kernel_drops": 4, "bus_dropped_records": 0}
    assert batch.header.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("record_type", sorted(RECORD_TYPES))
def test_record_view_is_record_bytes_without_a_copy(record_type: str) -> None:
    recs = _records(record_type, 50, seed=3)
    want = bytes(record_bytes(recs))
    part = recs[10:40]  # a slice of a buffer handed over, as the outbox sends them
    view = record_view(part)
    assert (
        isinstance(view, memoryview)
        and bytes(view) == want[10 * recs.itemsize : 40 * recs.itemsize]
    )
    assert np.shares_memory(np.asarray(view), recs)  # the records' own memory, no copy
    ro = recs.copy()
    ro.flags.writeable = False  # not ours to zero: copied instead
    assert bytes(record_view(ro)) == want and not np.shares_memory(np.asarray(record_view(ro)), ro)


def test_split_batches_copies_only_across_parts() -> None:
    recs = np.arange(3300, dtype=np.int64).view(np.dtype([("x", "<i8")]))
    parts = [recs[:1000], recs[1000:1100], recs[1100:3300]]
    out, tail = split_batches(parts, 1024, keep_tail=True)
    # 1000 records (at least half a batch) go as they are; the 100 after them are joined
    # with the next part's head; the last 252 wait for more
    assert [len(c) for c in out] == [1000, 1024, 1024] and [len(t) for t in tail] == [252]
    assert np.array_equal(np.concatenate(out + tail)["x"], recs["x"])  # order kept
    assert np.shares_memory(out[0], recs) and np.shares_memory(out[2], recs)  # views
    assert not np.shares_memory(out[1], recs)  # spans two parts: joined
    out, tail = split_batches(parts, 1024, keep_tail=False)
    assert [len(c) for c in out] == [1000, 1024, 1024, 252] and tail == []
    out, tail = split_batches([recs[:10], recs[10:20], recs[20:1100]], 1024, keep_tail=True)
    assert [len(c) for c in out] == [1024] and [len(t) for t in tail] == [76]
    assert np.array_equal(out[0]["x"], recs["x"][:1024])
    assert all(len(c) <= 1024 for c in out)


def test_time_span_comes_from_the_records() -> None:
    recs = np.zeros(3, RECORD_TYPES["flow"])
    recs["ts_first_ns"] = [30, 10, 20]
    recs["ts_last_ns"] = [35, 50, 25]
    h = wire.records_header(recs, "flow", sensor_id="s", session=1, seq=1, base=1)
    assert (h.ts_first_ns, h.ts_last_ns) == (10, 50)


def test_heartbeat_round_trip() -> None:
    h = wire.Header(
        sensor_id="s", session=1, seq=0, base=5, kind=wire.HEARTBEAT, next_seq=9, heartbeat_s=0.25
    )
    b = wire.decode(wire.encode(h))
    assert b.header.kind == wire.HEARTBEAT and b.header.next_seq == 9
    assert b.header.heartbeat_s == 0.25 and len(b.records) == 0


def _reason(frames: list[bytes], **kw: int) -> str:
    with pytest.raises(FrameRejected) as ei:
        wire.decode(frames, **kw)
    assert isinstance(ei.value, FrameError)
    assert ei.value.reason in wire.REJECT_REASONS
    return ei.value.reason


def test_rejects_name_their_reason() -> None:
    good = _frames()
    assert _reason(_frames(v=SCHEMA_VERSION + 1)) == "schema_version"
    assert _reason(_frames(w=wire.WIRE_VERSION + 1)) == "wire_version"
    assert _reason(_frames(t="no-such-type")) == "record_type"
    assert _reason(_frames(h="0" * 16)) == "dtype_hash"
    assert _reason(_frames(n=6)) == "size"
    assert _reason([good[0], good[1][:-1]]) == "size"
    assert _reason([good[0]]) == "size"
    assert _reason([b"\xc1" + good[0][1:], good[1]]) == "malformed"
    assert _reason([msgpack.packb([1, 2, 3]), good[1]]) == "malformed"
    assert _reason([good[0], good[1], b"x"]) == "malformed"
    assert _reason([]) == "malformed"
    assert _reason(_frames(s="")) == "malformed"
    assert _reason(_frames(q=-1)) == "malformed"
    assert _reason(_frames(q=0)) == "malformed"
    assert _reason(_frames(d={"x": "not a count"})) == "malformed"
    assert _reason(good, max_message_bytes=len(good[1])) == "oversized"
    assert _reason([b"\x80" + b"\x00" * wire.MAX_HEADER_BYTES, good[1]]) == "oversized"


def test_type_confusion_in_header_is_malformed() -> None:
    # Booleans and floats where ints belong, bytes where strings belong.
    for over in ({"q": True}, {"q": 1.5}, {"s": b"bytes"}, {"n": None}, {"hb": -1}):
        assert _reason(_frames(**over)) == "malformed", over


def test_random_garbage_never_crashes_the_decoder() -> None:
    rng = random.Random(1234)
    good = _frames(nrec=3)
    seen: set[str] = set()
    for i in range(3000):
        mode = i % 4
        if mode == 0:  # pure noise
            frames = [rng.randbytes(rng.randrange(0, 200)) for _ in range(rng.randrange(0, 4))]
        elif mode == 1:  # truncated header
            frames = [good[0][: rng.randrange(0, len(good[0]))], good[1]]
        elif mode == 2:  # bit flips in the header
            hdr = bytearray(good[0])
            for _ in range(rng.randrange(1, 4)):
                hdr[rng.randrange(len(hdr))] ^= 1 << rng.randrange(8)
            frames = [bytes(hdr), good[1]]
        else:  # truncated or extended body
            cut = rng.randrange(0, 2 * len(good[1]))
            frames = [good[0], (good[1] * 2)[:cut]]
        try:
            batch = wire.decode(frames)
        except FrameRejected as exc:
            seen.add(exc.reason)
            continue
        # Whatever got through is self-consistent.
        assert batch.records.nbytes == batch.count * batch.records.dtype.itemsize
    assert {"malformed", "size"} <= seen


def test_header_feeding_byte_by_byte_prefixes_are_rejected() -> None:
    good = _frames()
    for cut in range(len(good[0])):
        assert _reason([good[0][:cut], good[1]]) in wire.REJECT_REASONS


def test_goodbye_carries_no_records() -> None:
    h = wire.Header(sensor_id="s", session=1, seq=0, base=4, kind=wire.BYE, next_seq=4)
    assert wire.decode(wire.encode(h)).header.kind == wire.BYE
    assert _reason([wire.encode_header(h), b"\0" * 8]) == "malformed"


def test_ack_codec_round_trip_and_garbage() -> None:
    assert wire.decode_ack(wire.encode_ack(7, 41)) == (7, 41, None)
    assert wire.decode_ack(wire.encode_ack(7, 41, resend=True)) == (7, 41, 42)
    rng = random.Random(99)
    for raw in [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"ack": "x", "ss": 1}),
        msgpack.packb({"ack": 1}),
    ] + [rng.randbytes(rng.randrange(1, 40)) for _ in range(500)]:
        try:
            session, ack, _ = wire.decode_ack(raw)
        except FrameRejected as exc:
            assert exc.reason == "malformed"
        else:
            assert type(session) is int and type(ack) is int


@pytest.mark.parametrize(
    "endpoint", ["tcp://127.0.0.1:99999", "tcp://host:0", "tcp://host", "udp://x:1", "nonsense"]
)
def test_endpoint_typos_are_refused(endpoint: str) -> None:
    from netwarden.errors import ConfigError

    with pytest.raises(ConfigError):
        wire.check_endpoint(endpoint)


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:5555", "tcp://*:5555", "tcp://[::1]:5555", "tcp://h:*", "ipc:///run/nw.sock"],
)
def test_good_endpoints_pass(endpoint: str) -> None:
    assert wire.check_endpoint(endpoint) == endpoint


def _corpus_records() -> dict[str, np.ndarray]:
    """Flow, ARP, host and pair records of a real capture, from the sensor's own sources."""
    from netwarden.records.schema import PKTSUM_DTYPE
    from sensor.engine import load_backend
    from sensor.engine.config import EngineConfig
    from sensor.pipeline import FlowSource, TelemetrySource
    from tests.conftest import ZEEK_CORPUS

    pcap = ZEEK_CORPUS / "wikipedia" / "trace.pcap"
    if not pcap.is_file():
        pytest.skip(f"corpus trace {pcap} is missing (set NETWARDEN_SHARED)")
    mod = load_backend()
    sources = [FlowSource(mod.FlowEngine(EngineConfig())), TelemetrySource(1.0)]
    parts: dict[str, list[np.ndarray]] = {}
    for batch in mod.PcapReader(str(pcap)).batches(4096):
        pktsum = np.zeros(batch.count, PKTSUM_DTYPE)
        for src in sources:
            src.feed(batch, pktsum)
    for src in sources:
        src.finish()
        for kind, recs in src.drain():
            parts.setdefault(kind, []).append(recs)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _with_dirty_padding(fresh: np.ndarray) -> np.ndarray:
    """The same field values in memory whose padding holds leftovers (as np.empty,
    np.concatenate and reused buffers leave it)."""
    dirty = np.full(fresh.nbytes, 0xA5, np.uint8).view(fresh.dtype)
    for name in fresh.dtype.names:
        dirty[name] = fresh[name]
    return dirty


@pytest.mark.parametrize("record_type", ["flow", "arp", "host", "pair"])
def test_concatenated_records_encode_like_fresh_ones(record_type: str, tmp_path) -> None:
    from controller.ingest.archive import RecordArchive

    recs = _corpus_records().get(record_type)
    if recs is None or not len(recs):
        pytest.fail(f"the corpus trace gave no {record_type} records")
    # Built fresh: a zeroed array, fields assigned (padding zero by construction).
    fresh = np.zeros(len(recs), recs.dtype)
    for name in recs.dtype.names:
        fresh[name] = recs[name]
    half = len(recs) // 2
    # np.concatenate builds its result field by field over fresh memory, so what lands in
    # the padding is not defined; records with leftovers in their padding make it certain.
    joined = np.concatenate([fresh[:half], fresh[half:]])
    dirty = _with_dirty_padding(fresh)
    if padding_runs(recs.dtype):  # the test means something only if the bytes differ
        assert dirty.tobytes() != fresh.tobytes()

    def record_frames(r: np.ndarray) -> list[bytes]:
        h = wire.records_header(r, record_type, sensor_id="s1", session=1, seq=1, base=1)
        return [bytes(f) for f in wire.encode(h, r)[1:]]  # the header carries a send time

    for other in (joined, dirty):
        assert record_frames(other) == record_frames(fresh) == [fresh.tobytes()]
        assert bytes(record_bytes(other)) == fresh.tobytes()
    # The archive writes the same files for both, and reads the same records back.
    for name, r in (("a", dirty), ("b", fresh)):
        archive = RecordArchive(tmp_path / name)
        archive.append(record_type, "s1", r)
        archive.close()
    files = [sorted((tmp_path / n).rglob("*.parquet")) for n in ("a", "b")]
    assert [p.read_bytes() for p in files[0]] == [p.read_bytes() for p in files[1]]
    assert files[0]
    assert len(RecordArchive(tmp_path / "a").read(record_type)) == len(fresh)


def test_padding_runs_match_the_layout() -> None:
    for dt in RECORD_TYPES.values():
        covered = np.zeros(dt.itemsize, bool)
        for name in dt.names:
            fdt, off = dt.fields[name][:2]
            covered[off : off + fdt.itemsize] = True
        free = [i for off, n in padding_runs(dt) for i in range(off, off + n)]
        assert free == np.flatnonzero(~covered).tolist()


def test_monitor_events_are_read_from_a_real_monitor_socket() -> None:
    import socket
    import subprocess
    import sys

    import zmq

    with socket.socket() as s:  # a port nobody listens on: the connect attempt is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PUSH)
        mon = sock.get_monitor_socket(zmq.EVENT_CONNECT_DELAYED)
        sock.connect(f"tcp://127.0.0.1:{port}")
        assert mon.poll(5000)
        ev = wire.monitor_event(mon.recv_multipart())
        assert ev.event == zmq.EVENT_CONNECT_DELAYED
        assert ev.endpoint == f"tcp://127.0.0.1:{port}".encode()
        sock.close(0)
        mon.close(0)
    finally:
        ctx.term()
    with pytest.raises(ValueError, match="not a socket monitor event"):
        wire.monitor_event([b"\x01\x00", b"tcp://x"])
    with pytest.raises(ValueError, match="not a socket monitor event"):
        wire.monitor_event([b"\x01\x00\x00\x00\x00\x00"])
    # The sensor's imports stay clear of asyncio (pyzmq's monitor helper pulls it in).
    code = "import sys, netwarden.bus.publisher, netwarden.bus.collector; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
