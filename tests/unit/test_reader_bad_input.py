"""Both capture readers agree on bad input (issue 9): the same error class, message and
offset, and the same packets delivered before it, for every format fault; ``/dev/zero``
reads as an empty file in both (the pure-Python reader grew to GBs on it), and the
pcapng interface limit is the same. Runs in a child with a memory limit."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, c_backend_missing

ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + b"\x45" + b"\0" * 40


def pcap_header(linktype: int = 1) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


def rec(data: bytes, incl: int | None = None) -> bytes:
    n = len(data) if incl is None else incl
    return struct.pack("<IIII", 1_700_000_000, 0, n, len(data)) + data


def block(btype: int, body: bytes, blen: int | None = None) -> bytes:
    n = 12 + len(body) if blen is None else blen
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int = 1) -> bytes:
    return block(1, struct.pack("<HHI", linktype, 0, 65535))


def epb(data: bytes, ifid: int = 0, incl: int | None = None, hi: int = 0) -> bytes:
    n = len(data) if incl is None else incl
    pad = data + b"\0" * (-len(data) % 4)
    return block(6, struct.pack("<IIIII", ifid, hi, 0, n, len(data)) + pad)


GOOD = [rec(ETH) for _ in range(3)]
CASES: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "three-bytes": lambda: b"\xd4\xc3\xb2",
    "bad-magic": lambda: b"\x00" * 64,
    "short-pcap-header": lambda: pcap_header()[:20],
    "unsupported-linktype": lambda: pcap_header(linktype=147),
    "truncated-record-header": lambda: pcap_header() + b"".join(GOOD) + b"\0" * 10,
    "huge-caplen": lambda: pcap_header() + b"".join(GOOD) + struct.pack("<IIII", 0, 0, 1 << 20, 60),
    "truncated-record": lambda: pcap_header() + b"".join(GOOD) + rec(ETH)[:-5],
    "ng-truncated-block-header": lambda: SHB + idb() + epb(ETH) + b"\0" * 8,
    "ng-bad-bom": lambda: block(0x0A0D0D0A, struct.pack("<IHHq", 0x12345678, 1, 0, -1)),
    "ng-invalid-length": lambda: SHB + idb() + epb(ETH) + struct.pack("<II", 6, 13) + b"\0" * 16,
    "ng-truncated-block": lambda: SHB + idb() + epb(ETH) + epb(ETH)[:-8],
    "ng-short-idb": lambda: SHB + block(1, b"\0" * 4),
    "ng-too-many-interfaces": lambda: SHB + idb() * 4097 + epb(ETH),
    "ng-4096-interfaces-ok": lambda: SHB + idb() * 4096 + epb(ETH, ifid=4095),
    "ng-undeclared-interface": lambda: SHB + idb() + epb(ETH) + epb(ETH, ifid=3),
    "ng-short-epb": lambda: SHB + idb() + block(6, b"\0" * 16),
    "ng-short-opb": lambda: SHB + idb() + block(2, b"\0" * 16),
    "ng-data-exceeds-block": lambda: SHB + idb() + epb(ETH) + epb(ETH, incl=400),
    "ng-spb-before-interface": lambda: (
        SHB + block(3, struct.pack("<I", 60) + ETH + b"\0" * (-len(ETH) % 4))
    ),
    "ng-timestamp-out-of-range": lambda: (
        SHB
        + idb()
        + epb(ETH)
        + block(
            1, struct.pack("<HHI", 1, 0, 65535) + struct.pack("<HHq", 14, 8, 1 << 62) + b"\0" * 4
        )
        + epb(ETH, ifid=1)
    ),  # if_tsoffset of 2**62 s does not fit int64 nanoseconds
}

CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from sensor.engine import load_backend
out = {}
for name in ("py", "c"):
    mod = load_backend(name)
    res = {}
    for path in sys.argv[1:]:
        n = 0
        try:
            for b in mod.PcapReader(path).batches(2):
                n += b.count
            res[path] = {"packets": n, "error": None}
        except BaseException as exc:
            res[path] = {"packets": n, "error": type(exc).__name__ + ": " + str(exc),
                         "offset": getattr(exc, "offset", None)}
    out[name] = res
print(json.dumps(out))
"""


@pytest.mark.skipif(c_backend_missing() is not None, reason="compiled backend missing")
def test_both_readers_agree_on_bad_input(tmp_path: Path) -> None:
    paths = []
    for name, make in CASES.items():
        p = tmp_path / f"{name}.pcap"
        p.write_bytes(make())
        paths.append(str(p))
    paths.append("/dev/zero")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True, text=True,
                          check=False, cwd=REPO, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    diff = {p: (out["py"][p], out["c"][p]) for p in paths if out["py"][p] != out["c"][p]}
    assert not diff, json.dumps(diff, indent=1)[:3000]
    for p in paths:  # every case here is a format fault except the 4096 interfaces
        got = out["c"][p]
        if p.endswith("ng-4096-interfaces-ok.pcap"):
            assert got == {"packets": 1, "error": None}
        else:
            assert got["error"] and got["error"].startswith(
                ("CaptureFormatError", "UnsupportedLinkType")
            ), (p, got)
    assert "file too short" in out["py"]["/dev/zero"]["error"]
    assert (
        "too many pcapng interfaces"
        in out["py"][str(tmp_path / "ng-too-many-interfaces.pcap")]["error"]
    )
