"""Capture filters compiled by libpcap: they accept and reject what tcpdump would."""

from __future__ import annotations

import os
import socket

import pytest
from scapy.all import ARP, IP, TCP, UDP, Dot1Q, Ether, IPv6

from netwarden.errors import ConfigError
from sensor.capture.bpf import BpfProgram, compile_filter

FRAMES = {
    "tcp22": bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=22)),
    "tcp80": bytes(Ether() / IP(src="10.0.0.3", dst="10.0.0.2") / TCP(sport=80, dport=5555)),
    "udp53": bytes(Ether() / IP(src="10.0.0.1", dst="192.0.2.53") / UDP(dport=53)),
    "arp": bytes(Ether() / ARP(psrc="192.168.5.5", pdst="192.168.5.9")),
    "v6tcp22": bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=22)),
    "vlan_tcp22": bytes(Ether() / Dot1Q(vlan=7) / IP() / TCP(dport=22)),
}


@pytest.mark.parametrize(
    "expr, accepted",
    [
        ("tcp port 22", {"tcp22", "v6tcp22"}),
        ("udp and dst port 53", {"udp53"}),
        ("arp", {"arp"}),
        ("host 10.0.0.1", {"tcp22", "udp53"}),
        ("net 10.0.0.0/24 and not port 22", {"tcp80", "udp53"}),
        ("ip6", {"v6tcp22"}),
        ("vlan 7 and tcp port 22", {"vlan_tcp22"}),
        ("tcp[tcpflags] & tcp-syn != 0", {"tcp22", "tcp80"}),  # IPv4 only, as in tcpdump
    ],
)
def test_filter_matches_like_tcpdump(expr: str, accepted: set[str]) -> None:
    prog = compile_filter(expr)
    assert isinstance(prog, BpfProgram) and prog.count >= 1
    assert len(prog.instructions) == 8 * prog.count
    got = {name for name, frame in FRAMES.items() if prog.matches(frame)}
    assert got == accepted


@pytest.mark.parametrize("expr", ["tcp port", "hots 10.0.0.1", "port 99999", "", "   "])
def test_bad_expression_is_a_config_error(expr: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_filter(expr)
    assert "filter" in str(err.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="attaching to an AF_PACKET socket needs root")
def test_program_attaches_to_a_packet_socket() -> None:
    prog = compile_filter("tcp port 22")
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        prog.attach(sock)  # the kernel verifies the program; a bad one raises OSError
