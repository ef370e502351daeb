"""IPv4 options, IPv6 extension headers, fragment reassembly, ICMP pairing, unknown
transports, ARP records, DNS summaries and checksum validation."""

from __future__ import annotations

import pytest

pytest.importorskip("scapy")
from scapy.all import (
    ARP,
    DNS,
    DNSQR,
    DNSRR,
    ICMP,
    IP,
    SCTP,
    TCP,
    UDP,
    Ether,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPOption_RR,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment,
    fragment6,
    raw,
)

from netwarden.records.schema import DNS_QTYPE_BITS, ConnState, FlowFlags, PktEvent
from sensor.engine.config import EngineConfig
from tests.conftest import addr, run_engine

E = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")


def test_ipv4_options(backend) -> None:
    pkt = (
        IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_RR(routers=["1.2.3.4"])])
        / UDP(sport=40000, dport=9999)
        / b"abc"
    )
    rec = run_engine(backend, [raw(E / pkt)])[0][0]
    assert int(rec["resp_port"]) == 9999 and int(rec["orig_ip_bytes"]) == len(raw(pkt))
    assert int(rec["orig_bytes"]) == 3


def test_ipv6_extension_headers(backend) -> None:
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(addresses=[])
        / TCP(sport=40000, dport=9999, flags="S")
    )
    rec = run_engine(backend, [raw(E / pkt)])[0][0]
    assert (int(rec["proto"]), int(rec["orig_port"]), int(rec["resp_port"])) == (6, 40000, 9999)
    assert int(rec["orig_ip_bytes"]) == len(raw(pkt))
    assert int(rec["conn_state"]) == ConnState.S0


@pytest.mark.parametrize("version", [4, 6])
def test_esp_makes_no_flow(backend, version: int) -> None:
    """Zeek ends analysis at ESP: no connection, for IPv4 and IPv6 alike."""
    esp = b"\x00\x00\x01\x00" + b"\x00" * 20
    ip = (
        IP(src="10.0.0.1", dst="10.0.0.2", proto=50)
        if version == 4
        else IPv6(src="2001:db8::1", dst="2001:db8::2", nh=50)
    )
    recs, _, st, _ = run_engine(backend, [raw(E / ip / esp)])
    assert len(recs) == 0 and st["decode_errors"] == 0


def test_ipv4_fragments_reassembled_as_one_packet(backend) -> None:
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", id=77) / UDP(sport=40000, dport=9999) / (b"x" * 3000)
    frags = fragment(pkt, fragsize=1000)
    assert len(frags) > 2
    order = [frags[-1], *frags[:-1]]  # out of order: last fragment first
    recs, _, st, _ = run_engine(backend, [raw(E / f) for f in order])
    assert len(recs) == 1
    rec = recs[0]
    assert int(rec["orig_pkts"]) == 1
    assert int(rec["orig_ip_bytes"]) == 20 + 8 + 3000
    assert int(rec["orig_bytes"]) == 3000
    assert int(rec["flags"]) & FlowFlags.FRAGMENTED
    assert st["frag_reassembled"] == 1


def test_ipv6_fragments_reassembled(backend) -> None:
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(id=5)
        / UDP(sport=40000, dport=9999)
        / (b"y" * 2500)
    )
    frags = fragment6(pkt, 1000)
    assert len(frags) > 2
    recs = run_engine(backend, [raw(E / f) for f in frags])[0]
    assert len(recs) == 1 and int(recs[0]["orig_pkts"]) == 1
    assert int(recs[0]["orig_ip_bytes"]) == 40 + 8 + 2500


def test_incomplete_fragments_time_out_without_a_flow(backend) -> None:
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", id=78) / UDP(sport=40000, dport=9999) / (b"x" * 3000)
    frags = fragment(pkt, fragsize=1000)
    t0 = 10**18
    late = raw(E / IP(src="10.0.0.9", dst="10.0.0.2") / UDP(sport=1, dport=2))
    frames = [(t0, raw(E / frags[0])), (t0 + 1, raw(E / frags[1])), (t0 + 120 * 10**9, late)]
    recs, _, st, _ = run_engine(backend, frames, config=EngineConfig(frag_timeout=30))
    assert len(recs) == 1 and addr(recs[0], "orig") == "10.0.0.9"
    assert st["frags_pending"] == 0


def test_icmp_echo_pairs_into_one_flow(backend) -> None:
    req = raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=1) / b"ping")
    rep = raw(E / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=1) / b"ping")
    recs = run_engine(backend, [req, rep, req, rep])[0]
    assert len(recs) == 1
    r = recs[0]
    assert (int(r["orig_port"]), int(r["resp_port"])) == (8, 0)
    assert (int(r["orig_pkts"]), int(r["resp_pkts"])) == (2, 2)
    assert int(r["orig_bytes"]) == 2 * 4  # ICMP payload after the 8-byte header
    assert int(r["conn_state"]) == ConnState.OTH


def test_icmpv6_echo_and_neighbour_solicitation(backend) -> None:
    req = raw(E / IPv6(src="fe80::1", dst="fe80::2") / ICMPv6EchoRequest())
    rep = raw(E / IPv6(src="fe80::2", dst="fe80::1") / ICMPv6EchoReply())
    ns = raw(E / IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fe80::2"))
    recs = run_engine(backend, [req, rep, ns])[0]
    ports = sorted(
        (int(r["orig_port"]), int(r["resp_port"]), int(r["orig_pkts"]), int(r["resp_pkts"]))
        for r in recs
    )
    assert ports == [(128, 129, 1, 1), (135, 136, 1, 0)]


def test_icmp_unreachable_is_one_way_type_and_code(backend) -> None:
    inner = raw(IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=40000, dport=9999))
    un = raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3, code=3) / inner)
    recs, _, _, ps = run_engine(backend, [un], pktsum=True)
    assert (int(recs[0]["orig_port"]), int(recs[0]["resp_port"])) == (3, 3)
    assert int(ps[0]["events"]) & PktEvent.ICMP_UNREACH


def test_unknown_transport_has_zero_ports(backend) -> None:
    pkt = IP(src="10.0.0.1", dst="10.0.0.2") / SCTP(sport=1, dport=2)
    recs = run_engine(backend, [raw(E / pkt), raw(E / pkt)])[0]
    r = recs[0]
    assert (int(r["proto"]), int(r["orig_port"]), int(r["resp_port"]), int(r["orig_pkts"])) == (
        132,
        0,
        0,
        2,
    )


def test_arp_records(backend) -> None:
    req = raw(
        Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc="02:00:00:00:00:0a", psrc="10.0.0.1", pdst="10.0.0.2")
    )
    forged = raw(
        Ether(src="02:00:00:00:00:0c", dst="02:00:00:00:00:0a")
        / ARP(
            op=2,
            hwsrc="02:00:00:00:00:0b",
            psrc="10.0.0.2",
            hwdst="02:00:00:00:00:0a",
            pdst="10.0.0.1",
        )
    )
    flows, arps, _st, ps = run_engine(backend, [req, forged], pktsum=True)
    assert len(flows) == 0 and len(arps) == 2
    assert [int(a["op"]) for a in arps] == [1, 2]
    assert bytes(arps[0]["sender_ip"]) == bytes([10, 0, 0, 1]) and bytes(
        arps[0]["target_ip"]
    ) == bytes([10, 0, 0, 2])
    assert bytes(arps[1]["sender_mac"]).hex() == "02000000000b"
    assert bytes(arps[1]["eth_src"]).hex() == "02000000000c"  # differs from sender: forged
    assert int(ps[0]["events"]) & PktEvent.ARP and int(ps[1]["sport"]) == 2


def test_dns_summary(backend) -> None:
    q1 = raw(
        E
        / IP(src="10.0.0.1", dst="10.0.0.53")
        / UDP(sport=40000, dport=53)
        / DNS(id=1, qd=DNSQR(qname="a.example.com", qtype="A"))
    )
    r1 = raw(
        E
        / IP(src="10.0.0.53", dst="10.0.0.1")
        / UDP(sport=53, dport=40000)
        / DNS(
            id=1,
            qr=1,
            qd=DNSQR(qname="a.example.com"),
            an=DNSRR(rrname="a.example.com", rdata="1.2.3.4"),
        )
    )
    q2 = raw(
        E
        / IP(src="10.0.0.1", dst="10.0.0.53")
        / UDP(sport=40000, dport=53)
        / DNS(id=2, qd=DNSQR(qname="xkcd1234qwerty.example.com", qtype="TXT"))
    )
    r2 = raw(
        E
        / IP(src="10.0.0.53", dst="10.0.0.1")
        / UDP(sport=53, dport=40000)
        / DNS(id=2, qr=1, rcode=3, qd=DNSQR(qname="xkcd1234qwerty.example.com", qtype="TXT"))
    )
    recs, _, _, ps = run_engine(backend, [q1, r1, q2, r2], pktsum=True)
    r = recs[0]
    assert (int(r["dns_queries"]), int(r["dns_responses"]), int(r["dns_answers"])) == (2, 2, 1)
    assert int(r["dns_distinct_names"]) == 2 and int(r["dns_nxdomain"]) == 1
    assert int(r["dns_qtype_mask"]) == (1 << DNS_QTYPE_BITS[1]) | (1 << DNS_QTYPE_BITS[16])
    assert int(r["dns_rcode_mask"]) == (1 << 0) | (1 << 3)
    assert bytes(r["dns_qname"]).rstrip(b"\0") == b"a.example.com"
    assert int(r["dns_longest_label"]) == len("xkcd1234qwerty")
    assert int(r["dns_max_name_len"]) == len("xkcd1234qwerty.example.com")
    assert 3.0 < float(r["dns_label_entropy_max"]) < 4.0
    assert (
        int(ps[0]["events"]) & PktEvent.DNS_QUERY and int(ps[1]["events"]) & PktEvent.DNS_RESPONSE
    )


def test_dns_compression_pointer_loop_is_harmless(backend) -> None:
    hdr = bytes.fromhex("abcd01000001000000000000")
    loop = b"\xc0\x0c"  # the name points at itself
    pkt = raw(
        E
        / IP(src="10.0.0.1", dst="10.0.0.53")
        / UDP(sport=40000, dport=53)
        / (hdr + loop + b"\x00\x01\x00\x01")
    )
    recs = run_engine(backend, [pkt])[0]
    assert len(recs) == 1 and int(recs[0]["dns_queries"]) == 0


def test_dns_over_tcp(backend) -> None:
    msg = raw(DNS(id=3, qd=DNSQR(qname="t.example.org", qtype="AAAA")))
    seg = raw(
        E
        / IP(src="10.0.0.1", dst="10.0.0.53")
        / TCP(sport=40000, dport=53, flags="PA", seq=1, ack=1)
        / (len(msg).to_bytes(2, "big") + msg)
    )
    r = run_engine(backend, [seg])[0][0]
    assert int(r["dns_queries"]) == 1 and int(r["dns_qtype_mask"]) == 1 << DNS_QTYPE_BITS[28]


@pytest.mark.parametrize("validate", [False, True])
def test_checksum_validation_option(backend, validate: bool) -> None:
    good = raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=9999) / b"ok")
    bad = raw(
        E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=9999, chksum=0x1234) / b"ok"
    )
    recs, _, st, _ = run_engine(
        backend, [good, bad], config=EngineConfig(validate_checksums=validate)
    )
    assert int(recs[0]["orig_pkts"]) == (1 if validate else 2)
    assert st["checksum_errors"] == (1 if validate else 0)


def test_dns_response_first_flips_roles(backend) -> None:
    """NetBIOS name service 137 -> 137: a response seen first flips (Zeek's DNS analyzer);
    the flip does not move the UDP byte slot, so the new originator owns those bytes."""
    resp = raw(
        E
        / IP(src="10.0.0.9", dst="10.0.0.1")
        / UDP(sport=137, dport=137)
        / DNS(id=7, qr=1, qd=DNSQR(qname="HOST"), an=DNSRR(rrname="HOST", rdata="10.0.0.9"))
    )
    r = run_engine(backend, [resp])[0][0]
    assert addr(r, "orig") == "10.0.0.1" and addr(r, "resp") == "10.0.0.9"
    assert bytes(r["history"]).rstrip(b"\0") == b"D^"
    assert (int(r["orig_pkts"]), int(r["resp_pkts"])) == (1, 0)
    assert int(r["conn_state"]) == ConnState.S0


def test_dns_response_to_multicast_does_not_flip(backend) -> None:
    resp = raw(
        E
        / IP(src="10.0.0.9", dst="224.0.0.251")
        / UDP(sport=5353, dport=5353)
        / DNS(id=0, qr=1, an=DNSRR(rrname="h.local", rdata="10.0.0.9"))
    )
    r = run_engine(backend, [resp])[0][0]
    assert addr(r, "orig") == "10.0.0.9" and bytes(r["history"]).rstrip(b"\0") == b"D"
