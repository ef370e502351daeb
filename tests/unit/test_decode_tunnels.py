"""Tunnel decapsulation: inner flows are their own records with tunnel_type and parent_id.
UDP tunnels (VXLAN, Geneve, GTP-U, Teredo, AYIYA) are flows themselves and parent their
inner flows; GRE/ERSPAN and IP-in-IP outer packets make no flow (Zeek's rules)."""

from __future__ import annotations

import struct

import pytest

pytest.importorskip("scapy")
from scapy.all import GRE, ICMP, IP, TCP, UDP, Ether, IPv6, raw

from netwarden.records.schema import TunnelType
from sensor.engine.config import EngineConfig
from tests.conftest import addr, run_engine


def inner_v4() -> bytes:
    return raw(IP(src="192.168.7.1", dst="192.168.7.2") / TCP(sport=40000, dport=9999, flags="S"))


def inner_eth() -> bytes:
    return raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x0800)) + inner_v4()


def outer_udp(dport: int, payload: bytes, sport: int = 50000) -> bytes:
    return raw(
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=sport, dport=dport) / payload
    )


def outer_ip(proto: int, payload: bytes) -> bytes:
    return raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=proto) / payload)


def split(recs):
    inner = [r for r in recs if int(r["tunnel_type"]) != TunnelType.NONE]
    outer = [r for r in recs if int(r["tunnel_type"]) == TunnelType.NONE]
    return inner, outer


def check_inner(rec, ttype: TunnelType) -> None:
    assert int(rec["tunnel_type"]) == ttype
    assert int(rec["parent_id"]) != 0
    assert addr(rec, "orig") == "192.168.7.1" and int(rec["resp_port"]) == 9999
    assert int(rec["orig_ip_bytes"]) == len(inner_v4())


@pytest.mark.parametrize(
    "name,dport,header,ttype",
    [
        ("vxlan", 4789, struct.pack(">II", 0x08000000, 0x00000100), TunnelType.VXLAN),
        ("geneve", 6081, struct.pack(">BBHI", 0, 0, 0x6558, 0x00000100), TunnelType.GENEVE),
    ],
)
def test_udp_ethernet_tunnels(
    backend, name: str, dport: int, header: bytes, ttype: TunnelType
) -> None:
    recs = run_engine(backend, [outer_udp(dport, header + inner_eth())])[0]
    inner, outer = split(recs)
    assert len(inner) == 1 and len(outer) == 1, name
    check_inner(inner[0], ttype)
    assert int(inner[0]["parent_id"]) == int(outer[0]["flow_id"])
    assert int(outer[0]["resp_port"]) == dport


def test_geneve_with_options(backend) -> None:
    opt = struct.pack(">HBB", 0x0101, 0x01, 1) + b"\xaa\xbb\xcc\xdd"  # one 8-byte option
    header = struct.pack(">BBHI", 2, 0, 0x6558, 0x00000100) + opt
    inner, _outer = split(run_engine(backend, [outer_udp(6081, header + inner_eth())])[0])
    check_inner(inner[0], TunnelType.GENEVE)


@pytest.mark.parametrize("ext", [False, True])
def test_gtpu(backend, ext: bool) -> None:
    body = inner_v4()
    if ext:
        # E flag: seq/npdu/next-ext, then one PDU-session container extension (4 bytes).
        opt = struct.pack(">HBB", 0, 0, 0x85) + struct.pack(">BBBB", 1, 0x10, 0x01, 0x00)
        header = struct.pack(">BBHI", 0x34, 0xFF, len(opt) + len(body), 0x1234) + opt
    else:
        header = struct.pack(">BBHI", 0x30, 0xFF, len(body), 0x1234)
    inner, outer = split(run_engine(backend, [outer_udp(2152, header + body, sport=2152)])[0])
    assert len(outer) == 1
    check_inner(inner[0], TunnelType.GTPV1)
    assert int(inner[0]["parent_id"]) == int(outer[0]["flow_id"])


def test_teredo(backend) -> None:
    v6 = raw(
        IPv6(src="2001:0:4136:e378::1", dst="2001:db8::2") / UDP(sport=40000, dport=9999) / b"x"
    )
    origin = b"\x00\x00" + b"\x12\x34" + b"\x01\x02\x03\x04"
    recs = run_engine(backend, [outer_udp(3544, origin + v6)])[0]
    inner, _outer = split(recs)
    assert len(inner) == 1 and int(inner[0]["tunnel_type"]) == TunnelType.TEREDO
    assert int(inner[0]["ip_version"]) == 6 and int(inner[0]["orig_ip_bytes"]) == len(v6)


def test_ayiya(backend) -> None:
    v6 = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=40000, dport=9999) / b"x")
    # id len 2^4=16 bytes, sig len 5*4=20 bytes, opcode forward (1), next header IPv6.
    hdr = bytes([0x41, 0x52, 0x11, 41]) + struct.pack(">I", 0) + b"\x00" * 16 + b"\x00" * 20
    inner, _outer = split(run_engine(backend, [outer_udp(5072, hdr + v6)])[0])
    assert len(inner) == 1 and int(inner[0]["tunnel_type"]) == TunnelType.AYIYA


def test_gre_ip(backend) -> None:
    recs = run_engine(backend, [outer_ip(47, raw(GRE(proto=0x0800)) + inner_v4())])[0]
    inner, outer = split(recs)
    assert len(outer) == 0, "GRE outer packets make no flow"
    check_inner(inner[0], TunnelType.GRE)


def test_gre_key_and_sequence(backend) -> None:
    gre = raw(GRE(proto=0x0800, key_present=1, key=7, seqnum_present=1, sequence_number=9))
    check_inner(
        split(run_engine(backend, [outer_ip(47, gre + inner_v4())])[0])[0][0], TunnelType.GRE
    )


def test_gre_transparent_ethernet(backend) -> None:
    recs = run_engine(backend, [outer_ip(47, raw(GRE(proto=0x6558)) + inner_eth())])[0]
    check_inner(split(recs)[0][0], TunnelType.GRE)


def test_erspan_type1(backend) -> None:
    recs = run_engine(backend, [outer_ip(47, raw(GRE(proto=0x88BE)) + inner_eth())])[0]
    check_inner(split(recs)[0][0], TunnelType.GRE)


def test_erspan_type2(backend) -> None:
    gre = raw(GRE(proto=0x88BE, seqnum_present=1, sequence_number=1))
    erspan = struct.pack(">II", 0x10010000, 0)  # version 1 (type II), session 1
    recs = run_engine(backend, [outer_ip(47, gre + erspan + inner_eth())])[0]
    check_inner(split(recs)[0][0], TunnelType.GRE)


@pytest.mark.parametrize("subheader", [False, True])
def test_erspan_type3(backend, subheader: bool) -> None:
    gre = raw(GRE(proto=0x22EB, seqnum_present=1, sequence_number=1))
    erspan = struct.pack(">III", 0x20010000, 0, 1 if subheader else 0) + (
        b"\x00" * 8 if subheader else b""
    )
    recs = run_engine(backend, [outer_ip(47, gre + erspan + inner_eth())])[0]
    check_inner(split(recs)[0][0], TunnelType.GRE)


def test_pptp_enhanced_gre(backend) -> None:
    body = b"\xff\x03\x00\x21" + inner_v4()
    gre = struct.pack(">HHHH", 0x3001, 0x880B, len(body), 5) + struct.pack(">I", 1)  # K, S, v1
    recs = run_engine(backend, [outer_ip(47, gre + body)])[0]
    check_inner(split(recs)[0][0], TunnelType.GRE)


@pytest.mark.parametrize("proto,payload", [(4, "v4"), (41, "v6")])
def test_ip_in_ip(backend, proto: int, payload: str) -> None:
    inner = (
        inner_v4()
        if payload == "v4"
        else raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40000, dport=9999))
    )
    recs = run_engine(backend, [outer_ip(proto, inner)])[0]
    ins, outs = split(recs)
    assert len(outs) == 0 and len(ins) == 1
    assert int(ins[0]["tunnel_type"]) == TunnelType.IP and int(ins[0]["parent_id"]) != 0


def test_same_tunnel_same_parent_and_inner_flow_spans_parents(backend) -> None:
    """Both directions of an inner flow in two different outer UDP flows: one inner flow."""
    hdr = struct.pack(">II", 0x08000000, 0x00000100)
    req = raw(Ether(type=0x0800)) + raw(
        IP(src="192.168.7.1", dst="192.168.7.2") / ICMP(type=8, id=1)
    )
    rep = raw(Ether(type=0x0800)) + raw(
        IP(src="192.168.7.2", dst="192.168.7.1") / ICMP(type=0, id=1)
    )
    a = outer_udp(4789, hdr + req, sport=1111)
    b = raw(
        Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=2222, dport=4789) / (hdr + rep)
    )
    inner, outer = split(run_engine(backend, [a, b])[0])
    assert len(outer) == 2 and len(inner) == 1
    assert (int(inner[0]["orig_pkts"]), int(inner[0]["resp_pkts"])) == (1, 1)
    assert (int(inner[0]["orig_port"]), int(inner[0]["resp_port"])) == (8, 0)


def test_tunnels_can_be_disabled(backend) -> None:
    recs = run_engine(
        backend,
        [outer_udp(4789, struct.pack(">II", 0x08000000, 0x100) + inner_eth())],
        config=EngineConfig(decode_tunnels=False),
    )[0]
    assert len(recs) == 1 and int(recs[0]["tunnel_type"]) == TunnelType.NONE


def test_teredo_and_ayiya_detected_on_other_ports(backend) -> None:
    """Zeek tries AYIYA and Teredo detection when no tunnel owns the responder port."""
    v6 = raw(
        IPv6(src="2001:0:4136:e378::1", dst="2001:db8::2") / UDP(sport=40000, dport=9999) / b"x"
    )
    origin = b"\x00\x00" + b"\x12\x34" + b"\x01\x02\x03\x04"
    ayiya = bytes([0x41, 0x52, 0x11, 41]) + struct.pack(">I", 0) + b"\x00" * 36 + v6
    recs = run_engine(backend, [outer_udp(33333, origin + v6), outer_udp(44444, ayiya)])[0]
    kinds = sorted(int(r["tunnel_type"]) for r in split(recs)[0])
    assert kinds == sorted([TunnelType.TEREDO, TunnelType.AYIYA])


def test_bad_tunnel_header_stops_decapsulation_for_the_flow(backend) -> None:
    bad = outer_udp(4789, b"\x00" * 8 + inner_eth())  # VXLAN 'I' flag missing
    good = outer_udp(4789, struct.pack(">II", 0x08000000, 0x100) + inner_eth())
    recs = run_engine(backend, [bad, good])[0]
    inner, outer = split(recs)
    assert len(inner) == 0 and len(outer) == 1 and int(outer[0]["orig_pkts"]) == 2


def test_gtp_signalling_is_not_a_violation(backend) -> None:
    echo = struct.pack(">BBHIHBB", 0x32, 0x01, 4, 0, 1, 0, 0)  # echo request with sequence
    body = inner_v4()
    gpdu = struct.pack(">BBHI", 0x30, 0xFF, len(body), 0x1234) + body
    recs = run_engine(backend, [outer_udp(2152, echo), outer_udp(2152, gpdu)])[0]
    inner, _outer = split(recs)
    assert len(inner) == 1


@pytest.mark.semantics(3)
def test_gre_in_udp(backend) -> None:
    """RFC 8086 GRE-in-UDP on port 4754: the outer UDP flow parents the inner flow."""
    recs = run_engine(backend, [outer_udp(4754, raw(GRE(proto=0x0800)) + inner_v4())])[0]
    inner, outer = split(recs)
    assert len(outer) == 1 and len(inner) == 1
    check_inner(inner[0], TunnelType.GRE)
    assert int(inner[0]["parent_id"]) == int(outer[0]["flow_id"])


def _dot11_qos(amsdu: bool) -> bytes:
    fc = bytes([0x88, 0x02])  # QoS data, from-DS
    addrs = bytes.fromhex("020000000002020000000003020000000001")
    return fc + b"\x00\x00" + addrs + b"\x00\x00" + bytes([0x80 if amsdu else 0x00, 0x00])


@pytest.mark.semantics(3)
def test_aruba_gre_80211_amsdu(backend) -> None:
    """Aruba GRE (proto 0x8200) carries 802.11; an A-MSDU frame holds several packets."""
    snap = bytes.fromhex("aaaa03000000") + b"\x08\x00"
    subs = b""
    for i in range(2):
        body = snap + raw(
            IP(src="192.168.7.1", dst="192.168.7.2") / UDP(sport=40000 + i, dport=9999) / b"abc"
        )
        sub = bytes.fromhex("020000000002020000000001") + len(body).to_bytes(2, "big") + body
        subs += sub + b"\x00" * (len(body) % 4)
    frame = raw(GRE(proto=0x8200)) + _dot11_qos(True) + subs
    recs = run_engine(backend, [outer_ip(47, frame)])[0]
    inner, outer = split(recs)
    assert len(outer) == 0
    assert sorted(int(r["orig_port"]) for r in inner) == [40000, 40001]
    assert all(int(r["tunnel_type"]) == TunnelType.GRE for r in inner)


@pytest.mark.semantics(3)
def test_aruba_gre_80211_single(backend) -> None:
    body = bytes.fromhex("aaaa03000000") + b"\x08\x00" + inner_v4()
    frame = raw(GRE(proto=0x9000)) + _dot11_qos(False) + body
    check_inner(split(run_engine(backend, [outer_ip(47, frame)])[0])[0][0], TunnelType.GRE)


@pytest.mark.semantics(6)
def test_inner_flow_switching_tunnels_gets_x(backend) -> None:
    """Zeek counts encapsulation changes per inner connection; past 5 the history gets X."""
    hdr = struct.pack(">II", 0x08000000, 0x00000100)
    req = raw(Ether(type=0x0800)) + raw(
        IP(src="192.168.7.1", dst="192.168.7.2") / ICMP(type=8, id=1)
    )
    frames = [outer_udp(4789, hdr + req, sport=1000 + (i % 2)) for i in range(8)]
    inner, outer = split(run_engine(backend, frames)[0])
    assert len(outer) == 2 and len(inner) == 1
    assert bytes(inner[0]["history"]).rstrip(b"\0") == b"X"
    steady = [outer_udp(4789, hdr + req, sport=1000) for _ in range(8)]
    inner, _ = split(run_engine(backend, steady)[0])
    assert bytes(inner[0]["history"]).rstrip(b"\0") == b""


@pytest.mark.semantics(6)
def test_gre_tunnel_id_is_direction_free(backend) -> None:
    fwd = outer_ip(47, raw(GRE(proto=0x0800)) + inner_v4())
    back_inner = raw(
        IP(src="192.168.7.2", dst="192.168.7.1") / TCP(sport=9999, dport=40000, flags="SA")
    )
    back = raw(
        Ether()
        / IP(src="10.0.0.2", dst="10.0.0.1", proto=47)
        / (raw(GRE(proto=0x0800)) + back_inner)
    )
    inner, _ = split(run_engine(backend, [fwd, back])[0])
    assert len(inner) == 1 and (int(inner[0]["orig_pkts"]), int(inner[0]["resp_pkts"])) == (1, 1)
    assert bytes(inner[0]["history"]).rstrip(b"\0") == b"Sh"  # no tunnel change, no X
