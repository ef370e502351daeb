"""Capture readers: classic pcap (both byte orders, usec/nsec), pcapng (either byte order,
several interfaces with their own link type and timestamp resolution, SPB, unknown blocks),
and faults (truncation, garbage, oversize records) that keep every packet before them."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

pytest.importorskip("scapy")
from scapy.all import IP, UDP, Ether, raw

from netwarden.errors import CaptureError, CaptureFormatError, UnsupportedLinkType

T0 = 1_600_000_000


def udp(i: int) -> bytes:
    return raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000 + i, dport=9999) / b"p")


def eth(i: int) -> bytes:
    return raw(Ether(type=0x0800)) + udp(i)


def pcap_bytes(frames: list[bytes], bo: str = "<", nsec: bool = False, linktype: int = 1) -> bytes:
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, fr in enumerate(frames):
        frac = (i * 1500) if not nsec else (i * 1500 * 1000 + 7)
        out += struct.pack(bo + "IIII", T0 + i, frac, len(fr), len(fr)) + fr
    return out


def block(bo: str, btype: int, body: bytes) -> bytes:
    pad = (-len(body)) % 4
    ln = 12 + len(body) + pad
    return struct.pack(bo + "II", btype, ln) + body + b"\0" * pad + struct.pack(bo + "I", ln)


def shb(bo: str) -> bytes:
    return block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(bo: str, linktype: int, tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = (
            struct.pack(bo + "HH", 9, 1)
            + bytes([tsresol])
            + b"\0\0\0"
            + struct.pack(bo + "HH", 0, 0)
        )
    return block(bo, 1, struct.pack(bo + "HHI", linktype, 0, 0) + opts)


def epb(bo: str, ifid: int, ticks: int, data: bytes) -> bytes:
    return block(
        bo,
        6,
        struct.pack(bo + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
        + data,
    )


def read_all(mod, path: Path) -> tuple[list[tuple[int, int, int, bytes]], BaseException | None]:
    pkts = []
    err = None
    try:
        for b in mod.PcapReader(str(path)).batches(3):
            buf = (
                bytes(memoryview(b.buffer).cast("B"))
                if not isinstance(b.buffer, bytes)
                else b.buffer
            )
            for i in range(b.count):
                o = int(b.offset[i])
                pkts.append(
                    (
                        int(b.ts_ns[i]),
                        int(b.linktype[i]),
                        int(b.iface[i]),
                        buf[o : o + int(b.caplen[i])],
                    )
                )
    except CaptureError as exc:
        err = exc
    return pkts, err


@pytest.mark.parametrize("bo", ["<", ">"])
@pytest.mark.parametrize("nsec", [False, True])
def test_classic_pcap_variants(backend, tmp_path: Path, bo: str, nsec: bool) -> None:
    frames = [eth(i) for i in range(7)]
    p = tmp_path / "t.pcap"
    p.write_bytes(pcap_bytes(frames, bo, nsec))
    pkts, err = read_all(backend, p)
    assert err is None
    assert [x[3] for x in pkts] == frames
    expect_ts = [
        (T0 + i) * 10**9 + ((i * 1500 * 1000 + 7) if nsec else i * 1500 * 1000) for i in range(7)
    ]
    assert [x[0] for x in pkts] == expect_ts


@pytest.mark.parametrize("bo", ["<", ">"])
def test_pcapng_multi_interface(backend, tmp_path: Path, bo: str) -> None:
    data = shb(bo) + idb(bo, 1) + idb(bo, 101, tsresol=9)  # if0 Ethernet usec, if1 raw IP nsec
    data += block(bo, 0x0BAD, b"unknown block body")  # skipped
    data += epb(bo, 0, (T0 * 10**6) + 5, eth(0))
    data += epb(bo, 1, (T0 * 10**9) + 123, udp(1))
    p = tmp_path / "t.pcapng"
    p.write_bytes(data)
    pkts, err = read_all(backend, p)
    assert err is None
    assert [(x[1], x[2]) for x in pkts] == [(1, 0), (101, 1)]
    assert [x[0] for x in pkts] == [T0 * 10**9 + 5000, T0 * 10**9 + 123]
    assert pkts[1][3] == udp(1)


def test_pcapng_simple_packet_block(backend, tmp_path: Path) -> None:
    fr = eth(3)
    data = shb("<") + idb("<", 1) + block("<", 3, struct.pack("<I", len(fr)) + fr)
    p = tmp_path / "s.pcapng"
    p.write_bytes(data)
    pkts, err = read_all(backend, p)
    assert err is None and [x[3] for x in pkts] == [fr]


def test_truncated_pcap_keeps_earlier_packets(backend, tmp_path: Path) -> None:
    frames = [eth(i) for i in range(5)]
    data = pcap_bytes(frames)
    cut = len(data) - 10  # inside the last record
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:cut])
    pkts, err = read_all(backend, p)
    assert len(pkts) == 4
    assert isinstance(err, CaptureFormatError) and err.path == str(p)
    assert err.offset == len(pcap_bytes(frames[:4]))  # the record that failed


def test_oversized_record_is_a_format_error(backend, tmp_path: Path) -> None:
    data = pcap_bytes([eth(0)]) + struct.pack("<IIII", T0, 0, 10**9, 10**9) + b"x" * 64
    p = tmp_path / "big.pcap"
    p.write_bytes(data)
    pkts, err = read_all(backend, p)
    assert len(pkts) == 1 and isinstance(err, CaptureFormatError)


def test_garbage_is_a_format_error(backend, tmp_path: Path) -> None:
    p = tmp_path / "junk.pcap"
    p.write_bytes(b"this is not a capture file at all")
    pkts, err = read_all(backend, p)
    assert pkts == [] and isinstance(err, CaptureFormatError) and err.offset == 0


def test_unsupported_link_type(backend, tmp_path: Path) -> None:
    p = tmp_path / "lt.pcap"
    p.write_bytes(pcap_bytes([b"\x00" * 20], linktype=147))
    _, err = read_all(backend, p)
    assert isinstance(err, UnsupportedLinkType)


def test_missing_file(backend, tmp_path: Path) -> None:
    with pytest.raises(CaptureError):
        for _ in backend.PcapReader(str(tmp_path / "nope.pcap")).batches():
            pass
