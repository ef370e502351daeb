"""A small, fast writer of real Ethernet/IPv4 TCP and UDP packets (valid checksums) into
a classic pcap: hours of crafted traffic in well under a second (scapy takes ~30 ms per
TCP session, too slow for thousands of them in a unit test)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MSS = 1400
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def ipv4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                      _ip(src), _ip(dst))  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", _sum(hdr)) + hdr[12:]
    return MAC_B + MAC_A + b"\x08\x00" + hdr + l4


def _l4_sum(src: str, dst: str, proto: int, seg: bytes) -> int:
    return _sum(_ip(src) + _ip(dst) + struct.pack("!BBH", 0, proto, len(seg)) + seg)


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int,
        payload: bytes = b"") -> bytes:  # fmt: skip
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535, 0, 0) + payload  # fmt: skip
    c = _l4_sum(src, dst, 6, seg)
    return ipv4(src, dst, 6, seg[:16] + struct.pack("!H", c) + seg[18:])


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _l4_sum(src, dst, 17, seg) or 0xFFFF
    return ipv4(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:])


def dns_query(qid: int, name: str, qtype: int, response: bool = False) -> bytes:
    flags = 0x8183 if response else 0x0100  # a response: NXDOMAIN
    q = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


class Pcap:
    def __init__(self, start: float, seed: int = 1) -> None:
        self.start = start
        self.rng = random.Random(seed)
        self.packets: list[tuple[float, bytes]] = []

    def add(self, t: float, frame: bytes) -> None:
        self.packets.append((self.start + t, frame))

    def session(self, t: float, client: str, server: str, port: int, sent: int,
                received: int, rtt: float = 0.02) -> None:  # fmt: skip
        """A whole TCP connection: handshake, ``sent`` bytes up, ``received`` down, FINs."""
        sp = self.rng.randint(32768, 60999)
        cs, ss = self.rng.getrandbits(32), self.rng.getrandbits(32)
        self.add(t, tcp(client, server, sp, port, SYN, cs, 0))
        self.add(t + rtt, tcp(server, client, port, sp, SYN | ACK, ss, cs + 1))
        t += rtt + 0.001
        cs, ss = cs + 1, ss + 1
        self.add(t, tcp(client, server, sp, port, ACK, cs, ss))
        for off in range(0, sent, MSS):
            n = min(MSS, sent - off)
            self.add(t + 0.001, tcp(client, server, sp, port, PSH | ACK, cs, ss, b"q" * n))
            cs += n
        for off in range(0, received, MSS):
            n = min(MSS, received - off)
            self.add(t + rtt, tcp(server, client, port, sp, PSH | ACK, ss, cs, b"r" * n))
            ss += n
            t += 0.0005
        t += 2 * rtt
        self.add(t, tcp(client, server, sp, port, FIN | ACK, cs, ss))
        self.add(t + rtt, tcp(server, client, port, sp, FIN | ACK, ss, cs + 1))
        self.add(t + rtt + 0.001, tcp(client, server, sp, port, ACK, cs + 1, ss + 1))

    def long_session(self, t: float, client: str, server: str, port: int, seconds: float,
                     every: float = 60.0) -> None:  # fmt: skip
        """A connection kept open ``seconds``: a small exchange every ``every`` seconds."""
        sp = self.rng.randint(32768, 60999)
        cs, ss = self.rng.getrandbits(32), self.rng.getrandbits(32)
        self.add(t, tcp(client, server, sp, port, SYN, cs, 0))
        self.add(t + 0.02, tcp(server, client, port, sp, SYN | ACK, ss, cs + 1))
        cs, ss = cs + 1, ss + 1
        end = t + seconds
        while t < end:
            t += every
            self.add(t, tcp(client, server, sp, port, PSH | ACK, cs, ss, b"k" * 48))
            cs += 48
            self.add(t + 0.02, tcp(server, client, port, sp, PSH | ACK, ss, cs, b"K" * 48))
            ss += 48
        self.add(t + 0.1, tcp(client, server, sp, port, FIN | ACK, cs, ss))
        self.add(t + 0.12, tcp(server, client, port, sp, FIN | ACK, ss, cs + 1))
        self.add(t + 0.13, tcp(client, server, sp, port, ACK, cs + 1, ss + 1))

    def probe(self, t: float, src: str, dst: str, port: int, refused: bool) -> None:
        """One SYN; a refusing host answers RST."""
        sp = self.rng.randint(40000, 60000)
        self.add(t, tcp(src, dst, sp, port, SYN, 7, 0))
        if refused:
            self.add(t + 0.001, tcp(dst, src, port, sp, RST | ACK, 0, 8))

    def lookup(self, t: float, client: str, resolver: str, name: str, qtype: int = 1) -> None:
        sp, qid = self.rng.randint(32768, 60999), self.rng.randint(0, 65535)
        self.add(t, udp(client, resolver, sp, 53, dns_query(qid, name, qtype)))
        self.add(t + 0.01, udp(resolver, client, 53, sp, dns_query(qid, name, qtype, True)))

    def write(self, path: Path) -> Path:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for ts, frame in sorted(self.packets, key=lambda p: p[0]):
            sec = int(ts)
            usec = min(round((ts - sec) * 1e6), 999_999)
            out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
        path.write_bytes(b"".join(out))
        return path
