"""Link-layer and L2-shim decoders, with frames crafted by scapy."""

from __future__ import annotations

import struct

import pytest

pytest.importorskip("scapy")
from scapy.all import (
    IP,
    LLC,
    PPP,
    SNAP,
    TCP,
    UDP,
    Dot1AD,
    Dot1Q,
    Dot11,
    Ether,
    IPv6,
    PPPoE,
    RadioTap,
    raw,
)

from tests.conftest import addr, run_engine

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def _ip_udp() -> bytes:
    return raw(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=40000, dport=9999) / b"hello")


def _ip6_tcp() -> bytes:
    return raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40001, dport=9998, flags="S"))


def _one_flow(recs):
    assert len(recs) == 1, recs
    return recs[0]


def _check_udp(rec) -> None:
    assert addr(rec, "orig") == "10.1.0.1" and addr(rec, "resp") == "10.1.0.2"
    assert (int(rec["orig_port"]), int(rec["resp_port"]), int(rec["proto"])) == (40000, 9999, 17)
    assert int(rec["orig_ip_bytes"]) == len(_ip_udp())
    assert int(rec["orig_bytes"]) == 5


def test_ethernet_padding_uses_ip_length(backend) -> None:
    frame = (
        raw(Ether(src=MAC_A, dst=MAC_B, type=0x0800) / _ip_udp()) + b"\x00" * 20
    )  # trailer/padding
    rec = _one_flow(run_engine(backend, [frame])[0])
    _check_udp(rec)
    assert bytes(rec["orig_mac"]) == bytes.fromhex(MAC_A.replace(":", ""))


def test_vlan(backend) -> None:
    frame = raw(Ether() / Dot1Q(vlan=42, type=0x0800) / _ip_udp())
    rec = _one_flow(run_engine(backend, [frame])[0])
    _check_udp(rec)
    assert int(rec["vlan"]) == 42 and int(rec["inner_vlan"]) == 0


@pytest.mark.parametrize("outer_type", [0x88A8, 0x9100, 0x8100])
def test_qinq(backend, outer_type: int) -> None:
    frame = raw(
        Ether(type=outer_type)
        / Dot1AD(vlan=100, type=0x8100)
        / Dot1Q(vlan=7, type=0x0800)
        / _ip_udp()
    )
    rec = _one_flow(run_engine(backend, [frame])[0])
    _check_udp(rec)
    assert (int(rec["vlan"]), int(rec["inner_vlan"])) == (100, 7)


def test_vlan_is_part_of_the_key(backend) -> None:
    a = raw(Ether() / Dot1Q(vlan=1, type=0x0800) / _ip_udp())
    b = raw(Ether() / Dot1Q(vlan=2, type=0x0800) / _ip_udp())
    recs = run_engine(backend, [a, b])[0]
    assert sorted(int(r["vlan"]) for r in recs) == [1, 2]


@pytest.mark.parametrize("inner", ["v4", "v6"])
def test_mpls_label_stack(backend, inner: str) -> None:
    payload = _ip_udp() if inner == "v4" else _ip6_tcp()
    labels = struct.pack(">II", 16 << 12 | 64, 17 << 12 | 1 << 8 | 64)  # second is bottom of stack
    frame = raw(Ether(type=0x8847)) + labels + payload
    rec = _one_flow(run_engine(backend, [frame])[0])
    assert int(rec["ip_version"]) == (4 if inner == "v4" else 6)
    assert int(rec["orig_ip_bytes"]) == len(payload)


def test_pppoe_session(backend) -> None:
    frame = raw(Ether() / PPPoE(sessionid=5) / PPP(proto=0x0021) / _ip_udp())
    _check_udp(_one_flow(run_engine(backend, [frame])[0]))


def test_pppoe_ipv6(backend) -> None:
    frame = raw(Ether() / PPPoE(sessionid=5) / PPP(proto=0x0057) / _ip6_tcp())
    rec = _one_flow(run_engine(backend, [frame])[0])
    assert addr(rec, "orig") == "2001:db8::1" and int(rec["resp_port"]) == 9998


def test_pbb(backend) -> None:
    itag = struct.pack(">I", 0x00012345)
    inner = (
        bytes.fromhex(MAC_B.replace(":", "")) + bytes.fromhex(MAC_A.replace(":", "")) + b"\x08\x00"
    )
    frame = raw(Ether(type=0x88E7)) + itag + inner + _ip_udp()
    rec = _one_flow(run_engine(backend, [frame])[0])
    _check_udp(rec)
    assert bytes(rec["orig_mac"]) == bytes.fromhex(MAC_A.replace(":", ""))


def test_cisco_fabricpath(backend) -> None:
    fp = raw(Ether(type=0x8903)) + b"\x00\x00"  # outer header + FTag/TTL
    frame = fp + raw(Ether(src=MAC_A, dst=MAC_B, type=0x0800) / _ip_udp())
    _check_udp(_one_flow(run_engine(backend, [frame])[0]))


def test_vntag(backend) -> None:
    frame = raw(Ether(type=0x8926)) + b"\x80\x01\x00\x02" + b"\x08\x00" + _ip_udp()
    _check_udp(_one_flow(run_engine(backend, [frame])[0]))


def test_llc_snap(backend) -> None:
    body = raw(LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800)) + _ip_udp()
    frame = raw(Ether(type=len(body))) + body
    _check_udp(_one_flow(run_engine(backend, [frame])[0]))


def test_sll(backend) -> None:
    hdr = struct.pack(">HHH8sH", 0, 1, 6, bytes.fromhex("020000000001") + b"\0\0", 0x0800)
    _check_udp(_one_flow(run_engine(backend, [hdr + _ip_udp()], linktype=113)[0]))


def test_sll2(backend) -> None:
    hdr = struct.pack(">HHIHBB8s", 0x0800, 0, 3, 1, 0, 6, bytes.fromhex("020000000001") + b"\0\0")
    _check_udp(_one_flow(run_engine(backend, [hdr + _ip_udp()], linktype=276)[0]))


@pytest.mark.parametrize("linktype", [101, 12, 14, 228])
def test_raw_ipv4(backend, linktype: int) -> None:
    _check_udp(_one_flow(run_engine(backend, [_ip_udp()], linktype=linktype)[0]))


def test_raw_ipv6(backend) -> None:
    rec = _one_flow(run_engine(backend, [_ip6_tcp()], linktype=229)[0])
    assert int(rec["ip_version"]) == 6


@pytest.mark.parametrize("fam", [struct.pack("<I", 2), struct.pack(">I", 2)])
def test_null_loopback_either_byte_order(backend, fam: bytes) -> None:
    _check_udp(_one_flow(run_engine(backend, [fam + _ip_udp()], linktype=0)[0]))


@pytest.mark.parametrize("fam", [24, 28, 30])
def test_null_loopback_ipv6_families(backend, fam: int) -> None:
    rec = _one_flow(run_engine(backend, [struct.pack("<I", fam) + _ip6_tcp()], linktype=0)[0])
    assert int(rec["ip_version"]) == 6


def test_loop_network_order(backend) -> None:
    _check_udp(_one_flow(run_engine(backend, [struct.pack(">I", 2) + _ip_udp()], linktype=108)[0]))


@pytest.mark.parametrize(
    "linktype,prefix", [(9, b"\xff\x03\x00\x21"), (9, b"\x00\x21"), (50, b"\xff\x03\x00\x21")]
)
def test_ppp(backend, linktype: int, prefix: bytes) -> None:
    _check_udp(_one_flow(run_engine(backend, [prefix + _ip_udp()], linktype=linktype)[0]))


def test_radiotap_80211_data(backend) -> None:
    frame = (
        raw(
            RadioTap()
            / Dot11(type=2, subtype=0, FCfield=1, addr1=MAC_B, addr2=MAC_A, addr3=MAC_B)
            / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
            / SNAP(OUI=0, code=0x0800)
        )
        + _ip_udp()
    )
    _check_udp(_one_flow(run_engine(backend, [frame], linktype=127)[0]))


def test_radiotap_qos_data(backend) -> None:
    dot11 = (
        raw(Dot11(type=2, subtype=8, FCfield=0, addr1=MAC_B, addr2=MAC_A, addr3=MAC_B))
        + b"\x00\x00"
    )
    frame = (
        raw(RadioTap())
        + dot11
        + raw(LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800))
        + _ip_udp()
    )
    _check_udp(_one_flow(run_engine(backend, [frame], linktype=127)[0]))


def test_radiotap_management_frame_is_not_ip(backend) -> None:
    frame = (
        raw(RadioTap() / Dot11(type=0, subtype=8, addr1=MAC_B, addr2=MAC_A, addr3=MAC_B))
        + b"\x00" * 12
    )
    recs, _, st, _ = run_engine(backend, [frame], linktype=127)
    assert len(recs) == 0 and st["packets"] == 1


def test_fddi_llc_snap(backend) -> None:
    fddi = b"\x50" + bytes.fromhex(MAC_B.replace(":", "")) + bytes.fromhex(MAC_A.replace(":", ""))
    frame = fddi + raw(LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800)) + _ip_udp()
    _check_udp(_one_flow(run_engine(backend, [frame], linktype=10)[0]))


def test_non_ip_ethertype_is_counted_not_an_error(backend) -> None:
    frame = raw(Ether(type=0x88CC)) + b"\x00" * 40  # LLDP
    recs, _, st, _ = run_engine(backend, [frame])
    assert len(recs) == 0 and st["decode_errors"] == 0
