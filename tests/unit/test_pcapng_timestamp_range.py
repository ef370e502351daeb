"""A pcapng timestamp that does not fit int64 nanoseconds is a clean format error naming
the block, after every earlier packet was delivered, in both backends."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from netwarden.errors import CaptureFormatError


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _pcapng(ticks: list[int], tsresol_exp: int) -> tuple[bytes, list[int]]:
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = struct.pack("<HHB3x", 9, 1, tsresol_exp) + struct.pack("<HH", 0, 0)  # if_tsresol
    idb = _block(1, struct.pack("<HHI", 101, 0, 65535) + opts)  # raw IP
    frame = bytes.fromhex("450000140001000040ff0000c0000201c0000202")  # IPv4, proto 255
    out, starts = shb + idb, []
    for t in ticks:
        starts.append(len(out))
        out += _block(
            6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(frame), len(frame)) + frame
        )
    return out, starts


def test_out_of_range_timestamp_is_a_format_error(tmp_path: Path, backend) -> None:
    data, starts = _pcapng([1_700_000_000, 1_700_000_001, (1 << 63) + 5], tsresol_exp=0)
    path = tmp_path / "big_ts.pcapng"
    path.write_bytes(data)
    got = 0
    with pytest.raises(CaptureFormatError) as err:
        for batch in backend.PcapReader(str(path)).batches(4096):
            got += batch.count
            assert batch.ts_ns[: batch.count].tolist()[:2] == [
                1_700_000_000 * 10**9,
                1_700_000_001 * 10**9,
            ]
    assert got == 2
    assert err.value.offset == starts[2]
    assert "timestamp" in str(err.value)
