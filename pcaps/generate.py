"""Generate the demo capture: a few minutes of a small office network, with a port scan,
a ping sweep, a DNS burst and a tunnelled flow mixed in. Deterministic (fixed seed and
start time), so the demo prints the same results on every machine.

    python pcaps/generate.py pcaps/demo.pcap
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from scapy.all import (  # type: ignore[import-untyped]
    ARP,
    DNS,
    DNSQR,
    DNSRR,
    GRE,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    Raw,
    wrpcap,
)

START = 1_764_000_000.0  # fixed epoch so output is reproducible
GW_MAC, GW_IP = "02:00:00:00:00:01", "192.168.10.1"
DNS_IP = "192.168.10.53"
CLIENTS = [(f"02:00:00:00:01:{i:02x}", f"192.168.10.{20 + i}") for i in range(6)]
SCANNER = ("02:00:00:00:66:66", "192.168.10.66")
SERVERS = ["93.184.216.34", "151.101.1.69", "140.82.112.3", "104.16.132.229"]
SERVER_MAC = "02:00:00:00:00:02"
BRUTEFORCER = "203.0.113.66"  # guesses SSH passwords on SSH_SERVER
SSH_SERVER = CLIENTS[3]
FLOOD_VICTIM = CLIENTS[0]  # receives a spoofed SYN flood on port 80
#: (kind, attacker or None when spoofed, victim) of every attack the capture plants
PLANTED = [
    ("port_scan", SCANNER[1], CLIENTS[2][1]),
    ("host_sweep", SCANNER[1], "192.168.10.0/24"),
    ("dns_tunneling", CLIENTS[5][1], DNS_IP),
    ("ssh_bruteforce", BRUTEFORCER, SSH_SERVER[1]),
    ("syn_flood", None, FLOOD_VICTIM[1]),
]


class Capture:
    def __init__(self) -> None:
        self.packets: list = []

    def add(self, t: float, pkt) -> None:
        pkt.time = START + t
        self.packets.append(pkt)

    def write(self, path: Path) -> None:
        self.packets.sort(key=lambda p: float(p.time))
        wrpcap(str(path), self.packets)


def tcp_session(
    cap: Capture,
    rng: random.Random,
    t: float,
    cmac: str,
    cip: str,
    sip: str,
    dport: int,
    requests: int,
) -> None:
    """A full TCP connection: handshake, request/response exchanges, FIN teardown."""
    sport = rng.randint(32768, 60999)
    cs, ss = rng.randint(0, 2**32 - 1), rng.randint(0, 2**32 - 1)
    c = Ether(src=cmac, dst=GW_MAC) / IP(src=cip, dst=sip)
    s = Ether(src=GW_MAC, dst=cmac) / IP(src=sip, dst=cip)
    rtt = rng.uniform(0.01, 0.08)
    cap.add(t, c / TCP(sport=sport, dport=dport, flags="S", seq=cs))
    cap.add(t + rtt, s / TCP(sport=dport, dport=sport, flags="SA", seq=ss, ack=cs + 1))
    t += rtt + 0.001
    cs += 1
    ss += 1
    cap.add(t, c / TCP(sport=sport, dport=dport, flags="A", seq=cs, ack=ss))
    for _ in range(requests):
        req = b"GET /" + bytes(rng.choice(b"abcdefgh") for _ in range(12)) + b" HTTP/1.1\r\n\r\n"
        cap.add(t, c / TCP(sport=sport, dport=dport, flags="PA", seq=cs, ack=ss) / Raw(req))
        cs += len(req)
        t += rtt
        for _ in range(rng.randint(1, 4)):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(200, 1400)))
            cap.add(t, s / TCP(sport=dport, dport=sport, flags="PA", seq=ss, ack=cs) / Raw(body))
            ss += len(body)
            t += 0.0005
        cap.add(t, c / TCP(sport=sport, dport=dport, flags="A", seq=cs, ack=ss))
        t += rng.uniform(0.2, 2.0)
    cap.add(t, c / TCP(sport=sport, dport=dport, flags="FA", seq=cs, ack=ss))
    cap.add(t + rtt, s / TCP(sport=dport, dport=sport, flags="FA", seq=ss, ack=cs + 1))
    cap.add(t + rtt + 0.001, c / TCP(sport=sport, dport=dport, flags="A", seq=cs + 1, ack=ss + 1))


def dns_lookup(
    cap: Capture,
    rng: random.Random,
    t: float,
    cmac: str,
    cip: str,
    name: str,
    answer: str | None = "93.184.216.34",
    qtype: str = "A",
) -> None:
    sport = rng.randint(32768, 60999)
    qid = rng.randint(0, 65535)
    q = (
        Ether(src=cmac, dst=GW_MAC)
        / IP(src=cip, dst=DNS_IP)
        / UDP(sport=sport, dport=53)
        / DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    )
    cap.add(t, q)
    if answer is None:
        r = DNS(id=qid, qr=1, rd=1, ra=1, rcode=3, qd=DNSQR(qname=name, qtype=qtype))
    else:
        r = DNS(
            id=qid,
            qr=1,
            rd=1,
            ra=1,
            qd=DNSQR(qname=name, qtype=qtype),
            an=DNSRR(rrname=name, type="A", rdata=answer, ttl=300),
        )
    cap.add(
        t + rng.uniform(0.002, 0.03),
        Ether(src=GW_MAC, dst=cmac) / IP(src=DNS_IP, dst=cip) / UDP(sport=53, dport=sport) / r,
    )


def ssh_guess(cap: Capture, rng: random.Random, t: float, cip: str, smac: str, sip: str) -> None:
    """One failed SSH login: handshake, banners, a key exchange, a refused password, close."""
    sport = rng.randint(32768, 60999)
    cs, ss = rng.randint(0, 2**32 - 1), rng.randint(0, 2**32 - 1)
    c = Ether(src=GW_MAC, dst=smac) / IP(src=cip, dst=sip)
    s = Ether(src=smac, dst=GW_MAC) / IP(src=sip, dst=cip)
    cap.add(t, c / TCP(sport=sport, dport=22, flags="S", seq=cs))
    cap.add(t + 0.01, s / TCP(sport=22, dport=sport, flags="SA", seq=ss, ack=cs + 1))
    cs, ss, t = cs + 1, ss + 1, t + 0.011
    cap.add(t, c / TCP(sport=sport, dport=22, flags="A", seq=cs, ack=ss))
    for client, server in (
        (b"SSH-2.0-libssh\r\n", b"SSH-2.0-OpenSSH_9.2\r\n"),
        (b"k" * 600, b"K" * 900),
        (b"p" * 96, b"f" * 48),
    ):
        cap.add(t, c / TCP(sport=sport, dport=22, flags="PA", seq=cs, ack=ss) / Raw(client))
        cs += len(client)
        cap.add(t + 0.01, s / TCP(sport=22, dport=sport, flags="PA", seq=ss, ack=cs) / Raw(server))
        ss += len(server)
        t += 0.3
    cap.add(t, c / TCP(sport=sport, dport=22, flags="FA", seq=cs, ack=ss))
    cap.add(t + 0.01, s / TCP(sport=22, dport=sport, flags="FA", seq=ss, ack=cs + 1))
    cap.add(t + 0.011, c / TCP(sport=sport, dport=22, flags="A", seq=cs + 1, ack=ss + 1))


def build(seed: int = 7) -> Capture:
    rng = random.Random(seed)
    cap = Capture()
    # ARP: clients resolve the gateway.
    for i, (mac, ip) in enumerate(CLIENTS):
        t = 0.1 * i
        cap.add(
            t, Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip, pdst=GW_IP)
        )
        cap.add(
            t + 0.0003,
            Ether(src=GW_MAC, dst=mac) / ARP(op=2, hwsrc=GW_MAC, psrc=GW_IP, hwdst=mac, pdst=ip),
        )
    # Ordinary browsing: DNS then HTTP(S) sessions, spread over ~3 minutes.
    names = [
        "example.com",
        "news.example.org",
        "cdn.example.net",
        "mail.example.com",
        "git.example.io",
        "docs.example.org",
    ]
    for _ in range(40):
        mac, ip = rng.choice(CLIENTS)
        t = rng.uniform(1, 170)
        dns_lookup(cap, rng, t, mac, ip, rng.choice(names), rng.choice(SERVERS))
        tcp_session(
            cap,
            rng,
            t + 0.05,
            mac,
            ip,
            rng.choice(SERVERS),
            rng.choice([80, 443]),
            rng.randint(1, 4),
        )
    dns_lookup(cap, rng, 50.0, *CLIENTS[1], "nosuchhost.example.com", None)
    # NTP-like UDP and a ping to the gateway.
    for mac, ip in CLIENTS[:3]:
        t = rng.uniform(5, 60)
        u = Ether(src=mac, dst=GW_MAC) / IP(src=ip, dst=GW_IP)
        cap.add(t, u / UDP(sport=123, dport=123) / Raw(b"\x23" + b"\x00" * 47))
        cap.add(
            t + 0.001,
            Ether(src=GW_MAC, dst=mac)
            / IP(src=GW_IP, dst=ip)
            / UDP(sport=123, dport=123)
            / Raw(b"\x24" + b"\x00" * 47),
        )
        for k in range(3):
            cap.add(t + 1 + k, u / ICMP(type=8, id=7, seq=k) / Raw(b"x" * 56))
            cap.add(
                t + 1 + k + 0.0004,
                Ether(src=GW_MAC, dst=mac)
                / IP(src=GW_IP, dst=ip)
                / ICMP(type=0, id=7, seq=k)
                / Raw(b"x" * 56),
            )
    # A VLAN-tagged management session and a GRE-tunnelled flow between two sites.
    mac, ip = CLIENTS[4]
    vl = Ether(src=mac, dst=GW_MAC) / Dot1Q(vlan=20) / IP(src=ip, dst="10.20.0.5")
    vr = Ether(src=GW_MAC, dst=mac) / Dot1Q(vlan=20) / IP(src="10.20.0.5", dst=ip)
    cap.add(80.0, vl / UDP(sport=40000, dport=161) / Raw(b"\x30\x26" + b"\x00" * 36))
    cap.add(80.002, vr / UDP(sport=161, dport=40000) / Raw(b"\x30\x30" + b"\x00" * 46))
    outer_l = Ether(src=GW_MAC, dst=SERVER_MAC) / IP(src="198.51.100.1", dst="203.0.113.9") / GRE()
    outer_r = Ether(src=SERVER_MAC, dst=GW_MAC) / IP(src="203.0.113.9", dst="198.51.100.1") / GRE()
    for k in range(4):
        cap.add(90 + k, outer_l / IP(src="10.1.0.2", dst="10.2.0.7") / ICMP(type=8, id=9, seq=k))
        cap.add(
            90 + k + 0.02, outer_r / IP(src="10.2.0.7", dst="10.1.0.2") / ICMP(type=0, id=9, seq=k)
        )
    # Attack 1: a SYN port scan of one server (1..1024), closed ports answer RST.
    smac, sip = SCANNER
    target = CLIENTS[2][1]
    open_ports = {22, 80, 443}
    t = 120.0
    for port in range(1, 1025):
        sport = 40000 + (port % 7)
        cap.add(
            t,
            Ether(src=smac, dst=CLIENTS[2][0])
            / IP(src=sip, dst=target)
            / TCP(sport=sport, dport=port, flags="S", seq=1000 + port),
        )
        back = Ether(src=CLIENTS[2][0], dst=smac) / IP(src=target, dst=sip)
        if port in open_ports:
            cap.add(
                t + 0.0002, back / TCP(sport=port, dport=sport, flags="SA", seq=5, ack=1001 + port)
            )
            cap.add(
                t + 0.0004,
                Ether(src=smac, dst=CLIENTS[2][0])
                / IP(src=sip, dst=target)
                / TCP(sport=sport, dport=port, flags="R", seq=1001 + port),
            )
        else:
            cap.add(
                t + 0.0002, back / TCP(sport=port, dport=sport, flags="RA", seq=0, ack=1001 + port)
            )
        t += 0.002
    # Attack 2: a ping sweep of the /24 from the same host.
    t = 130.0
    for host in range(1, 255):
        cap.add(
            t,
            Ether(src=smac, dst="ff:ff:ff:ff:ff:ff")
            / IP(src=sip, dst=f"192.168.10.{host}")
            / ICMP(type=8, id=99, seq=host),
        )
        t += 0.004
    # Attack 3: DNS tunnelling-like burst: long random labels, TXT queries.
    mac, ip = CLIENTS[5]
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    for k in range(60):
        label = "".join(rng.choice(alphabet) for _ in range(52))
        dns_lookup(cap, rng, 140 + k * 0.5, mac, ip, f"{label}.t.exfil-demo.net", "10.0.0.1", "TXT")
    # Attacks 4 and 5 draw from their own generator, so the capture above stays the same.
    rng2 = random.Random(seed + 1)
    # Attack 4: SSH password guessing from outside, one failed login every 4 s.
    for k in range(12):
        ssh_guess(cap, rng2, 150 + 4 * k, BRUTEFORCER, *SSH_SERVER)
    # Attack 5: a spoofed SYN flood at a client's port 80: 3,000 SYNs in one second.
    vmac, vip = FLOOD_VICTIM
    for k in range(3000):
        src = f"{rng2.randint(11, 223)}.{rng2.randint(0, 255)}.{rng2.randint(0, 255)}.{rng2.randint(1, 254)}"
        cap.add(
            175 + k / 3000,
            Ether(src=GW_MAC, dst=vmac)
            / IP(src=src, dst=vip)
            / TCP(sport=rng2.randint(1024, 65535), dport=80, flags="S", seq=rng2.getrandbits(32)),
        )
    return cap


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "pcaps/demo.pcap")
    out.parent.mkdir(parents=True, exist_ok=True)
    cap = build()
    cap.write(out)
    print(f"wrote {out} ({len(cap.packets)} packets)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
