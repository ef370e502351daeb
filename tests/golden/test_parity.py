"""Parity: the compiled engine and the pure-Python reference emit identical records.

Both backends (``sensor.engine.load_backend("c"/"py")``) run the same driver over every
capture in the shared corpus (zeek, attacks, background, malformed) and over small
``genpcap.py`` captures; flow and ARP records are compared as whole structured arrays, in
emission order, and per-packet summaries batch by batch. On a mismatch the first differing
record is shown field by field.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netwarden.errors import CaptureError, CaptureFormatError
from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE, PKTSUM_DTYPE
from sensor.capture.batch import PacketBatch
from sensor.engine import load_backend
from sensor.engine.config import EngineConfig

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NETWARDEN_SHARED") or ROOT.parent / "shared")
CORPUS = SHARED / "corpus"
BATCH = 512  # small batches exercise batch boundaries, fragments and tunnels across them


def _c_backend() -> Any:
    try:
        mod = load_backend("c")
    except ImportError as exc:
        pytest.skip(f"compiled backend not built ({exc}); run `make build`")
    if not hasattr(mod, "FlowEngine"):
        pytest.skip("compiled module has no FlowEngine yet")
    return mod


def _py_backend() -> Any:
    try:
        mod = load_backend("py")
    except ImportError as exc:
        pytest.skip(f"reference backend missing ({exc})")
    if not hasattr(mod, "FlowEngine"):
        pytest.skip("reference module has no FlowEngine yet")
    return mod


def corpus_captures() -> list[Any]:
    files: list[Any] = []
    for sub in ("zeek", "attacks", "background", "malformed"):
        base = CORPUS / sub
        for p in sorted(base.rglob("*")):
            if p.suffix in (".pcap", ".pcapng", ".cap") and p.is_file():
                files.append(pytest.param(p, id=str(p.relative_to(CORPUS))))
    return files


class Run:
    """Everything one backend produced from one capture."""

    def __init__(self) -> None:
        self.flows: list[np.ndarray] = []
        self.arps: list[np.ndarray] = []
        self.pktsums: list[np.ndarray] = []
        self.error: tuple[str, int] | None = None
        self.stats: dict[str, Any] = {}

    def flow_array(self) -> np.ndarray:
        return np.concatenate(self.flows) if self.flows else np.zeros(0, FLOW_DTYPE)

    def arp_array(self) -> np.ndarray:
        return np.concatenate(self.arps) if self.arps else np.zeros(0, ARP_DTYPE)


def _drain(eng: Any, run: Run) -> None:
    out = np.zeros(97, FLOW_DTYPE)  # odd size: drains must resume where they stopped
    while n := eng.drain_flows(out):
        run.flows.append(out[:n].copy())
    arp = np.zeros(53, ARP_DTYPE)
    while n := eng.drain_arp(arp):
        run.arps.append(arp[:n].copy())


def run_backend(
    mod: Any, path: Path, limit: int | None = None, config: EngineConfig | None = None
) -> Run:
    run = Run()
    eng = mod.FlowEngine(config or EngineConfig())
    pktsum = np.zeros(BATCH, PKTSUM_DTYPE)
    seen = 0
    try:
        for batch in mod.PcapReader(str(path)).batches(BATCH):
            pktsum[:] = np.zeros(1, PKTSUM_DTYPE)
            eng.feed(batch, pktsum)
            run.pktsums.append(pktsum[: batch.count].copy())
            if batch.count:
                eng.advance(int(batch.ts_ns[: batch.count].max()))
            _drain(eng, run)
            seen += batch.count
            if limit is not None and seen >= limit:
                break
    except CaptureFormatError as exc:
        run.error = (type(exc).__name__, exc.offset)
    eng.flush()
    _drain(eng, run)
    run.stats = dict(eng.stats())
    return run


def first_difference(a: np.ndarray, b: np.ndarray, what: str) -> str:
    """A readable account of the first record where two structured arrays differ."""
    if len(a) != len(b):
        head = f"{what}: {len(a)} records (c) vs {len(b)} (py)"
    else:
        head = f"{what}: {len(a)} records"
    for i in range(min(len(a), len(b))):
        if a[i].tobytes() != b[i].tobytes():
            lines = [f"{head}; first difference at record {i}:"]
            for name in a.dtype.names:
                va, vb = a[i][name], b[i][name]
                same = np.array_equal(va, vb) or (
                    np.asarray(va).dtype.kind == "f" and np.array_equal(va, vb, equal_nan=True)
                )
                mark = "  " if same else "!="
                lines.append(f"  {mark} {name}: c={va!r} py={vb!r}")
            return "\n".join(lines)
    return head + "; the shorter is a prefix of the longer"


def assert_same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    # array_equal is the contract; identical bytes also pass (a NaN statistic equals itself).
    if len(a) == len(b) and (np.array_equal(a, b) or a.tobytes() == b.tobytes()):
        return
    pytest.fail(first_difference(a, b, what))


def _same_revision(c_mod: Any, py_mod: Any) -> None:
    """The reference declares which revision of its rules it implements, the compiled
    twin which one it mirrors (see tests/conftest.py); parity is only defined between the
    same revisions, so a reference that moved ahead skips rather than fails."""
    want = getattr(py_mod, "SEMANTICS_REVISION", 0)
    have = getattr(c_mod, "SEMANTICS_REVISION", 0)
    if have < want:
        pytest.skip(f"compiled twin mirrors semantics revision {have}, reference is at {want}")


def compare(path: Path, limit: int | None = None, config: EngineConfig | None = None) -> Run:
    c_mod, py_mod = _c_backend(), _py_backend()
    _same_revision(c_mod, py_mod)
    c_run = run_backend(c_mod, path, limit, config)
    py_run = run_backend(py_mod, path, limit, config)
    assert c_run.error == py_run.error, f"capture faults differ: {c_run.error} vs {py_run.error}"
    assert_same(c_run.flow_array(), py_run.flow_array(), "flows")
    assert_same(c_run.arp_array(), py_run.arp_array(), "arp")
    assert len(c_run.pktsums) == len(py_run.pktsums)
    for i, (a, b) in enumerate(zip(c_run.pktsums, py_run.pktsums)):
        assert_same(a, b, f"pktsum of batch {i}")
    for key in ("packets", "bytes", "decode_errors"):
        if key in py_run.stats:
            assert c_run.stats.get(key) == py_run.stats[key], f"stats[{key!r}] differs"
    return c_run


@pytest.mark.parametrize("path", corpus_captures())
def test_corpus_capture(path: Path) -> None:
    run = compare(path)
    if "malformed" not in path.parts:
        assert run.flow_array().size or run.arp_array().size, "no records from a real capture"


#: Non-default configurations reach code the defaults rarely do: eviction of the least
#: recently active flow, interim records, fragment-store overflow and timeouts, short
#: inactivity timeouts, checksum validation, and tunnels/DNS switched off.
CONFIGS = {
    "tight": EngineConfig(
        max_flows=16,
        active_timeout=2.0,
        max_frag_datagrams=2,
        frag_timeout=0.5,
        udp_timeout=5.0,
        tcp_timeout=10.0,
        icmp_timeout=3.0,
        other_timeout=2.0,
    ),
    "checksums": EngineConfig(validate_checksums=True),
    "no_tunnels_no_dns": EngineConfig(decode_tunnels=False, dns=False),
}


def config_cases() -> list[Any]:
    cases = []
    for p in corpus_captures():
        path = p.values[0]
        if "zeek" in path.parts or "attacks" in path.parts:
            for name in CONFIGS:
                cases.append(pytest.param(name, path, id=f"{name}:{p.id}"))
    return cases


@pytest.mark.parametrize("config_name, path", config_cases())
def test_corpus_capture_config(config_name: str, path: Path) -> None:
    run = compare(path, None, CONFIGS[config_name])
    assert run.stats["packets"] > 0


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gen = SHARED / "bench" / "genpcap.py"
    if not gen.exists():
        pytest.skip(f"{gen} not found (set NETWARDEN_SHARED)")
    out = tmp_path_factory.mktemp("gen") / "small.pcap"
    subprocess.run(
        [
            sys.executable,
            str(gen),
            "--packets",
            "30000",
            "--flows",
            "2000",
            "--seed",
            "7",
            "-o",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def test_generated_capture(generated: Path) -> None:
    run = compare(generated)
    assert run.flow_array().size > 1000


# --- readers on crafted captures ------------------------------------------------------------
# Every fault the readers must report, built byte by byte: both backends must yield the same
# packets and then raise the same exception type at the same file offset.

ETH_FRAME = bytes(range(60))


def _pcap(
    linktype: int = 1,
    records: list[tuple[int, int, bytes, int]] | None = None,
    magic: int = 0xA1B2C3D4,
    endian: str = "<",
) -> bytes:
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data, wire in records or []:
        out += struct.pack(endian + "IIII", sec, frac, len(data), wire) + data
    return out


def _block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def _shb(endian: str = "<") -> bytes:
    return _block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def _idb(linktype: int, options: bytes = b"", endian: str = "<") -> bytes:
    return _block(1, struct.pack(endian + "HHI", linktype, 0, 65535) + options, endian)


def _opt(code: int, value: bytes, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _epb(ifid: int, ticks: int, data: bytes, wire: int | None = None, endian: str = "<") -> bytes:
    head = struct.pack(
        endian + "IIIII",
        ifid,
        ticks >> 32,
        ticks & 0xFFFFFFFF,
        len(data),
        len(data) if wire is None else wire,
    )
    return _block(6, head + data, endian)


def _crafted() -> dict[str, bytes]:
    rec = [(1_600_000_000, 123_456, ETH_FRAME, 60), (1_600_000_001, 5, ETH_FRAME[:40], 1500)]
    opts = _opt(9, b"\x09") + _opt(14, struct.pack("<q", 100)) + _opt(0, b"")
    ng = _shb() + _idb(1, opts) + _idb(101, _opt(9, bytes([0x80 | 20])))
    ng += _epb(0, 1_600_000_000_123_456_789, ETH_FRAME) + _epb(1, 3 << 20, ETH_FRAME[14:])
    ng += _block(3, struct.pack("<I", 60) + ETH_FRAME)  # simple packet block
    ng += _block(2, struct.pack("<HHIIII", 0, 0, 0, 7, 60, 60) + ETH_FRAME)  # obsolete PB
    ng += _block(0x0BAD, b"skipped")  # unknown block types are skipped
    return {
        "empty": b"",
        "three_bytes": b"\xd4\xc3\xb2",
        "short_header": _pcap()[:20],
        "bad_magic": b"\x01\x02\x03\x04" + _pcap()[4:],
        "unsupported_link": _pcap(linktype=147, records=rec),
        "fcs_bits_in_link": _pcap(linktype=0x04000001, records=rec),
        "usec_le": _pcap(records=rec),
        "nsec_be": _pcap(records=rec, magic=0xA1B23C4D, endian=">"),
        "truncated_record_header": _pcap(records=rec) + b"\0" * 9,
        "truncated_record": _pcap(records=rec)[:-10],
        "oversized_caplen": _pcap(records=rec) + struct.pack("<IIII", 1, 0, 300_000, 300_000),
        "pcapng": ng,
        "pcapng_big_endian": _shb(">") + _idb(1, endian=">") + _epb(0, 77, ETH_FRAME, endian=">"),
        "pcapng_new_section": ng + _shb() + _epb(0, 1, ETH_FRAME),
        "pcapng_bad_length": ng + struct.pack("<II", 6, 30) + b"\0" * 22,
        "pcapng_truncated_block": ng + _epb(0, 1, ETH_FRAME)[:-8],
        "pcapng_spb_before_idb": _shb() + _block(3, struct.pack("<I", 60) + ETH_FRAME),
        "pcapng_idb_unsupported": _shb() + _idb(1) + _epb(0, 1, ETH_FRAME) + _idb(147),
        "pcapng_caplen_past_block": _shb()
        + _idb(1)
        + _block(6, struct.pack("<IIIII", 0, 0, 1, 500, 500) + ETH_FRAME),
    }


def _read_all(mod: Any, path: Path) -> tuple[list[tuple[bytes, int, int, int, int]], Any]:
    frames: list[tuple[bytes, int, int, int, int]] = []
    try:
        reader = mod.PcapReader(str(path))
        for b in reader.batches(3):
            buf = memoryview(b.buffer).cast("B")
            for i in range(b.count):
                o, n = int(b.offset[i]), int(b.caplen[i])
                frames.append(
                    (
                        bytes(buf[o : o + n]),
                        int(b.wirelen[i]),
                        int(b.ts_ns[i]),
                        int(b.linktype[i]),
                        int(b.iface[i]),
                    )
                )
    except CaptureError as exc:
        return frames, (type(exc).__name__, getattr(exc, "offset", None))
    return frames, None


@pytest.mark.parametrize("name", sorted(_crafted()))
def test_reader_faults_match(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(_crafted()[name])
    c_frames, c_err = _read_all(_c_backend(), path)
    py_frames, py_err = _read_all(_py_backend(), path)
    assert c_err == py_err
    assert c_frames == py_frames
    good = name in ("usec_le", "nsec_be", "fcs_bits_in_link", "pcapng", "pcapng_big_endian")
    assert (c_err is None) == good, c_err
    if good:
        assert len(c_frames) >= 1


def test_reader_open_faults(tmp_path: Path) -> None:
    """A missing file fails at construction, any other open error (a directory) when
    reading starts: the same points in both backends."""
    for mod in (_c_backend(), _py_backend()):
        with pytest.raises(CaptureError):
            mod.PcapReader(str(tmp_path / "absent.pcap"))
        reader = mod.PcapReader(str(tmp_path))
        with pytest.raises(CaptureError):
            list(reader.batches())


def test_compiled_reader_rejects_out_of_range_timestamp(tmp_path: Path) -> None:
    """A pcapng timestamp beyond the int64 nanosecond range (if_tsresol 0 = seconds) is a
    clean format error naming the block, after the packets before it. (The reference
    reader lets an OverflowError escape here; not a parity case.)"""
    good = _epb(0, 5, ETH_FRAME)
    data = _shb() + _idb(1, _opt(9, b"\x00")) + good
    bad_at = len(data)
    path = tmp_path / "ts_overflow.pcapng"
    path.write_bytes(data + _epb(0, 1 << 62, ETH_FRAME))
    frames, err = _read_all(_c_backend(), path)
    assert err == ("CaptureFormatError", bad_at)
    assert [f[2] for f in frames] == [5 * 1_000_000_000]


# --- seeded randomised parity ---------------------------------------------------------------
# Corner cases the corpus holds few of, generated deterministically: both backends must
# still agree record for record (the reference is the oracle).


def _run_batch(mod: Any, batch: PacketBatch, config: EngineConfig) -> Run:
    run = Run()
    eng = mod.FlowEngine(config)
    pktsum = np.zeros(batch.count, PKTSUM_DTYPE)
    eng.feed(batch, pktsum)
    run.pktsums.append(pktsum.copy())
    eng.advance(int(batch.ts_ns[: batch.count].max()) + 100 * 1_000_000_000)
    _drain(eng, run)
    eng.flush()
    _drain(eng, run)
    run.stats = dict(eng.stats())
    return run


def _assert_runs_equal(c_run: Run, py_run: Run, what: str) -> None:
    assert_same(c_run.flow_array(), py_run.flow_array(), f"{what}: flows")
    assert_same(c_run.arp_array(), py_run.arp_array(), f"{what}: arp")
    assert_same(c_run.pktsums[0], py_run.pktsums[0], f"{what}: pktsum")
    diff = {k: (c_run.stats.get(k), v) for k, v in py_run.stats.items() if c_run.stats.get(k) != v}
    assert not diff, f"{what}: stats differ {diff}"


def _ipv4_fragment(ident: int, src: bytes, off8: int, more: bool, payload: bytes) -> bytes:
    flags = (0x2000 if more else 0) | off8
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        ident,
        flags,
        64,
        17,
        0,
        src,
        bytes([10, 0, 1, 1]),
    )
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + hdr + payload


def _fragment_batch(rng: random.Random) -> PacketBatch:
    """Datagrams cut into fragments, some duplicated, overlapping, lost or reordered."""
    frames: list[tuple[int, bytes]] = []
    ts = 1_600_000_000 * 1_000_000_000
    for _ in range(rng.randint(1, 4)):
        n = rng.choice([16, 200, 1400, 3000])
        udp = struct.pack("!HHHH", rng.choice([53, 4789, 1234]), 999, n + 8, 0)
        udp += bytes(rng.randrange(256) for _ in range(n))
        ident, src = rng.randrange(4), bytes([10, 0, 0, rng.randrange(1, 3)])
        pieces: list[tuple[int, bytes, bool]] = []
        pos = 0
        while pos < len(udp):
            ln = rng.choice([0, 8, 16, 64, 512])
            pieces.append((pos, udp[pos : pos + ln], pos + ln < len(udp)))
            pos += max(ln, 8)
        pieces += [p for p in pieces if rng.random() < 0.2]  # duplicates
        pieces += [
            (o - 8, udp[o - 8 : o + len(d)], m) for o, d, m in pieces if o and rng.random() < 0.1
        ]
        if len(pieces) > 1 and rng.random() < 0.2:
            pieces.pop(rng.randrange(len(pieces)))  # a lost fragment
        if rng.random() < 0.5:
            rng.shuffle(pieces)
        for off, data, more in pieces:
            ts += rng.randint(0, 300_000_000)
            frames.append((ts, _ipv4_fragment(ident, src, off // 8, more, data)))
    return PacketBatch.from_packets(frames)


@pytest.mark.parametrize("seed", range(4))
def test_fragment_reassembly_parity(seed: int) -> None:
    c_mod, py_mod = _c_backend(), _py_backend()
    _same_revision(c_mod, py_mod)
    rng = random.Random(seed)
    reassembled = 0
    for i in range(60):
        batch = _fragment_batch(rng)
        cfg = EngineConfig(
            max_frag_datagrams=rng.choice([1, 2, 1024]), frag_timeout=rng.choice([0.5, 30.0])
        )
        py_run = _run_batch(py_mod, batch, cfg)
        _assert_runs_equal(_run_batch(c_mod, batch, cfg), py_run, f"seed {seed} round {i}")
        reassembled += py_run.stats["frag_reassembled"]
    assert reassembled > 0


@pytest.fixture(scope="module")
def corpus_packets() -> list[tuple[int, bytes, int]]:
    mod = _c_backend()
    out: list[tuple[int, bytes, int]] = []
    for p in corpus_captures():
        path = p.values[0]
        if "background" in path.parts:
            continue
        try:
            for b in mod.PcapReader(str(path)).batches(4096):
                buf = memoryview(b.buffer).cast("B")
                for i in range(b.count):
                    o, n = int(b.offset[i]), int(b.caplen[i])
                    out.append((int(b.ts_ns[i]), bytes(buf[o : o + n]), int(b.linktype[i])))
        except CaptureFormatError:
            pass
    return out


@pytest.mark.parametrize("seed", range(4))
def test_mutated_packets_parity(seed: int, corpus_packets: list[tuple[int, bytes, int]]) -> None:
    """Corpus packets with random bytes overwritten, truncated and re-timed (time may go
    backwards), under random table limits: no crash, and the same records."""
    c_mod, py_mod = _c_backend(), _py_backend()
    _same_revision(c_mod, py_mod)
    rng = random.Random(1000 + seed)
    flows = 0
    for i in range(80):
        linktype = rng.choice(corpus_packets)[2]
        pool = [p for p in rng.sample(corpus_packets, 300) if p[2] == linktype][:60]
        frames = []
        for ts, data, _ in pool or [rng.choice(corpus_packets)]:
            d = bytearray(data)
            for _ in range(rng.randint(0, 6)):
                if d:
                    d[rng.randrange(len(d))] = rng.randrange(256)
            if d and rng.random() < 0.3:
                d = d[: rng.randrange(len(d))]
            frames.append((ts + rng.randint(-(10**9), 10**10), bytes(d)))
        batch = PacketBatch.from_packets(frames, linktype=linktype)
        cfg = EngineConfig(
            max_flows=rng.choice([4, 64, 1 << 20]),
            active_timeout=rng.choice([0.0, 1.0, 1800.0]),
            max_frag_datagrams=rng.choice([1, 8, 1024]),
            validate_checksums=rng.random() < 0.3,
        )
        py_run = _run_batch(py_mod, batch, cfg)
        _assert_runs_equal(_run_batch(c_mod, batch, cfg), py_run, f"seed {seed} round {i}")
        flows += len(py_run.flow_array())
    assert flows > 0


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "uint8", "memoryview"])
def test_batch_buffer_kinds(kind: str) -> None:
    """A batch may carry any buffer-protocol object (sensor/capture/batch.py): the compiled engine
    reads bytes, bytearray, numpy and memoryview buffers alike, as the reference does."""
    c_mod, py_mod = _c_backend(), _py_backend()
    path = CORPUS / "zeek" / "wikipedia" / "trace.pcap"
    if not path.exists():
        pytest.skip(f"{path} not in the corpus")
    batches = list(py_mod.PcapReader(str(path)).batches(4096))
    for b in batches:
        raw = bytes(memoryview(b.buffer).cast("B"))
        b.buffer = {
            "bytes": raw,
            "bytearray": bytearray(raw),
            "uint8": np.frombuffer(raw, np.uint8),
            "memoryview": memoryview(raw),
        }[kind]
    runs = []
    for mod in (c_mod, py_mod):
        run = Run()
        eng = mod.FlowEngine(EngineConfig())
        for b in batches:
            eng.feed(b)
        eng.flush()
        _drain(eng, run)
        runs.append(run)
    assert_same(runs[0].flow_array(), runs[1].flow_array(), f"flows from a {kind} buffer")
    assert len(runs[0].flow_array()) > 0
