"""Column-wise text of addresses, MACs and times (netwarden.records.render) against the
standard library's own rendering of the same values."""

from __future__ import annotations

import datetime as dt
import ipaddress

import numpy as np

from netwarden.records import arrow, render


def test_ip_text_and_binary_match_ipaddress() -> None:
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, (3000, 16), np.uint8)
    # Zero groups at random (every run length and position), IPv4-compatible and -mapped forms.
    groups = rng.random((len(raw), 8)) < 0.5
    raw[np.repeat(groups, 2, axis=1)] = 0
    raw[::7, :10] = 0
    raw[::14, 10:12] = 0xFF
    raw[::50] = 0
    is_v4 = rng.random(len(raw)) < 0.3
    is_v4[::3] = False  # keep the mapped rows above as IPv6 rows
    text, binary = arrow.addr_arrays(raw, is_v4)
    want = [
        str(ipaddress.IPv4Address(bytes(r[:4])) if v4 else ipaddress.IPv6Address(bytes(r)))
        for r, v4 in zip(raw, is_v4, strict=True)
    ]
    assert text.to_pylist() == want
    for b, r, v4 in zip(binary.to_pylist(), raw, is_v4, strict=True):
        mapped = ipaddress.IPv6Address(b).ipv4_mapped
        assert mapped == ipaddress.IPv4Address(bytes(r[:4])) if v4 else b == bytes(r)
    four = rng.integers(0, 256, (500, 4), np.uint8)
    assert render.ipv4_text(four).to_pylist() == [
        str(ipaddress.IPv4Address(bytes(r))) for r in four
    ]


def test_mac_text() -> None:
    raw = np.array([[0, 1, 0xAB, 0x10, 0xFF, 0x7E], [255] * 6], np.uint8)
    assert render.mac_text(raw).to_pylist() == ["00:01:ab:10:ff:7e", "ff:ff:ff:ff:ff:ff"]


def test_iso_text_matches_datetime() -> None:
    rng = np.random.default_rng(1)
    us = np.concatenate(
        [rng.integers(0, 253_402_300_799_999_999, 2000), [0, 951_782_400_000_000, 1]]
    )  # up to 9999-12-31, a leap day (2000-02-29)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    want = [
        (epoch + dt.timedelta(microseconds=int(u))).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for u in us
    ]
    assert render.iso_text(us).to_pylist() == want
