"""A crafted capture of six hours of a small network, for the hunts and the posture report.

Planted behaviour the hunts must find, beside benign behaviour that looks alike:

- a beacon: one client checks in with an outside host every 120 s (+-2 s), same request;
- benign periodic polling: an update check every 300 s (+-30 %) with requests of varying
  size, a page auto-refreshing every 60 s during one hour only, a sync every 600 s (+-40 %);
- a slow scan: one probe every ~3 minutes for six hours, to other hosts' ports;
- DNS tunnelling: TXT queries for long random labels under one domain, beside ordinary
  lookups;
- a telnet login to an internal server, an SSH server answering an outside client, a
  service that starts answering only in the last two hours, a rare outbound service (IRC),
  an SSH connection held open two hours.

``PLANTED`` names who did what, for the tests to read.
"""

from __future__ import annotations

from pathlib import Path

from tests.hunt.packets import Pcap

START = 1_764_000_000.0
HOURS = 6
END = HOURS * 3600.0
RESOLVER = "192.168.10.53"
WEB = ["93.184.216.34", "151.101.1.69", "140.82.112.3", "104.16.132.229"]


def host(i: int) -> str:
    return f"192.168.10.{i}"


PLANTED = {
    "beacon": (host(21), "198.51.100.77"),
    "polling": [(host(22), WEB[0]), (host(23), WEB[1]), (host(24), WEB[2])],
    "slow_scanner": host(66),
    "dns_tunnel": (host(26), "exfil-demo.net"),
    "telnet": (host(25), host(40), 23),
    "exposed": ("203.0.113.50", host(41), 22),
    "new_listener": (host(27), host(42), 8081),
    "rare_service": (host(28), "45.33.32.156", 6667),
    "long": (host(29), "185.199.108.153", 22, 2 * 3600.0),
}


def _periodic(cap: Pcap, src: str, dst: str, port: int, span: tuple[float, float],
              every: float, jitter: float, sent: tuple[int, int]) -> None:  # fmt: skip
    t = span[0]
    while t < span[1]:
        cap.session(t, src, dst, port, cap.rng.randint(*sent), cap.rng.randint(200, 4000))
        t += every * (1 + cap.rng.uniform(-jitter, jitter))


def build(seed: int = 13) -> Pcap:
    cap = Pcap(START, seed)
    rng = cap.rng
    src, dst = PLANTED["beacon"]
    t = 30.0
    while t < END:  # the beacon: every 120 s +- 2 s, the same request, small replies
        cap.session(t, src, dst, 443, 310, rng.randint(90, 120))
        t += 120 + rng.uniform(-2, 2)
    _periodic(cap, host(22), WEB[0], 443, (60, END), 300, 0.3, (200, 2000))
    _periodic(cap, host(23), WEB[1], 80, (2 * 3600, 3 * 3600), 60, 0.05, (400, 400))
    _periodic(cap, host(24), WEB[2], 443, (100, END), 600, 0.4, (300, 1500))
    for _ in range(80):  # ordinary browsing
        c = host(rng.choice([22, 23, 24, 29]))
        when = rng.uniform(0, END)
        cap.lookup(when, c, RESOLVER, rng.choice(["example.com", "docs.example.org"]))
        cap.session(when + 0.05, c, rng.choice(WEB), 443, rng.randint(300, 900),
                    rng.randint(2000, 90000))  # fmt: skip
    t = 90.0
    while t < END:  # the slow scan: a probe every ~3 min; half the hosts refuse
        target = rng.randint(100, 250)
        cap.probe(t, PLANTED["slow_scanner"], host(target), rng.randint(1, 10000), target % 2 == 1)
        t += 180 * (1 + rng.uniform(-0.2, 0.2))
    client, domain = PLANTED["dns_tunnel"]
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    for k in range(80):  # DNS tunnelling: long random labels, TXT (16)
        label = "".join(rng.choice(alphabet) for _ in range(40))
        cap.lookup(600 + k * 37.0, client, RESOLVER, f"{label}.t.{domain}", 16)
    client, server, port = PLANTED["telnet"]
    cap.session(1800, client, server, port, 60, 900)
    outside, server, port = PLANTED["exposed"]
    cap.session(2400, outside, server, port, 1200, 2400)
    client, server, port = PLANTED["new_listener"]
    for k in range(5):
        cap.session(END - 7000 + 600 * k, client, server, port, 200, 5000)
    client, server, port = PLANTED["rare_service"]
    cap.session(5000, client, server, port, 500, 3000)
    client, server, port, seconds = PLANTED["long"]
    cap.long_session(3000, client, server, port, seconds)
    return cap


def write(path: Path) -> Path:
    return build().write(path)
