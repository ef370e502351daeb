"""Throwaway namespaces for enforcement tests: a client and a server joined by a veth.

``Lab()`` creates ``nwe<tag>c`` (client, the "attacker") and ``nwe<tag>s`` (server, where the
firewall under test runs), uniquely named so tests can run side by side, with::

    client c0: 10.77.0.1/24, 10.77.0.3/24, fd77::1/64, fd77::3/64
    server s0: 10.77.0.2/24,               fd77::2/64
    server default routes via 10.77.0.254 / fd77::fe (onlink: a gateway to protect)

``Lab(routed=True)`` adds ``nwe<tag>b`` (backend) behind the server, which then forwards:
a gateway setup for the forward hook.

``lab.start_echo()`` runs a TCP+UDP echo service on the server (port 7777, v4 and v6);
``lab.probe(src, dst)`` sends ICMP, TCP and UDP from the client with Python sockets bound
to ``src`` and reports which got an answer. ``close()`` deletes both namespaces (and so
the veth and every firewall object inside them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PORT = 7777

CLIENT_V4, CLIENT2_V4, SERVER_V4, GATEWAY_V4 = "10.77.0.1", "10.77.0.3", "10.77.0.2", "10.77.0.254"
CLIENT_V6, CLIENT2_V6, SERVER_V6, GATEWAY_V6 = "fd77::1", "fd77::3", "fd77::2", "fd77::fe"
#: with ``Lab(routed=True)``: a third namespace behind the server, which forwards
BACKEND_V4, BACKEND_V6 = "10.78.0.2", "fd78::2"


def skip_reason(*tools: str) -> str | None:
    """Why kernel tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and firewall changes)"
    missing = [t for t in ("ip", *tools) if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return None


def sh(*cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, input=input, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def root_ruleset() -> str:
    """The root namespace's nftables ruleset (to prove tests never touch it)."""
    return sh("nft", "-j", "list", "ruleset").stdout


_ECHO = r"""
import socket, threading, sys
def tcp(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, PORT)); s.listen(64)
    while True:
        c, _ = s.accept()
        try: c.sendall(b"ok")
        finally: c.close()
def udp(fam, addr):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, PORT))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
for f, a in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for fn in (tcp, udp): threading.Thread(target=fn, args=(f, a), daemon=True).start()
print("ready", flush=True); sys.stdin.read()
"""

_PROBE = r"""
import json, os, socket, struct, sys, time
src, dst, timeout, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
v6 = ":" in dst; fam = socket.AF_INET6 if v6 else socket.AF_INET
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def icmp():
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    s = socket.socket(fam, socket.SOCK_RAW, proto); s.bind((src, 0)); s.settimeout(timeout)
    ident = os.getpid() & 0xffff
    typ = 128 if v6 else 8
    hdr = struct.pack("!BBHHH", typ, 0, 0, ident, 1) + b"netwarden"
    if not v6: hdr = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    s.sendto(hdr, (dst, 0)); end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            data, _ = s.recvfrom(2048)
            if not v6: data = data[(data[0] & 15) * 4:]
            if data[0] == (129 if v6 else 0) and struct.unpack("!H", data[4:6])[0] == ident: return True
    except OSError: return False
    return False
def tcp():
    s = socket.socket(fam, socket.SOCK_STREAM); s.bind((src, 0)); s.settimeout(timeout)
    try: s.connect((dst, PORT)); return s.recv(2) == b"ok"
    except OSError: return False
    finally: s.close()
def udp():
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((src, 0)); s.settimeout(timeout)
    got = 0
    for i in range(count):
        s.sendto(b"p%d" % i, (dst, PORT))
    end = time.monotonic() + timeout
    try:
        while got < count and time.monotonic() < end:
            s.recvfrom(2048); got += 1
    except OSError: pass
    return got
if count > 1:
    u = udp(); out = {"udp_replies": u, "udp": u > 0}
else:  # the three in parallel: a blocked probe costs one timeout, not three
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(3) as ex:
        fi, ft, fu = ex.submit(icmp), ex.submit(tcp), ex.submit(udp)
        out = {"icmp": fi.result(), "tcp": ft.result(), "udp": fu.result() > 0}
print(json.dumps(out))
""".replace("PORT", str(PORT))


class Lab:
    def __init__(self, routed: bool = False) -> None:
        tag = uuid.uuid4().hex[:8]
        self.client = f"nwe{tag}c"
        self.server = f"nwe{tag}s"
        self.backend = f"nwe{tag}b"
        self._echoes: list[subprocess.Popen[str]] = []
        self._made: list[str] = []
        try:
            for ns in (self.client, self.server):
                sh("ip", "netns", "add", ns)
                self._made.append(ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh(
                "ip",
                "link",
                "add",
                "c0",
                "netns",
                self.client,
                "type",
                "veth",
                "peer",
                "name",
                "s0",
                "netns",
                self.server,
            )
            for ns, dev, addrs in (
                (
                    self.client,
                    "c0",
                    (f"{CLIENT_V4}/24", f"{CLIENT2_V4}/24", f"{CLIENT_V6}/64", f"{CLIENT2_V6}/64"),
                ),
                (self.server, "s0", (f"{SERVER_V4}/24", f"{SERVER_V6}/64")),
            ):
                for a in addrs:
                    sh(
                        "ip",
                        "-n",
                        ns,
                        "addr",
                        "add",
                        a,
                        "dev",
                        dev,
                        *(("nodad",) if ":" in a else ()),
                    )
                sh("ip", "-n", ns, "link", "set", dev, "up")
            sh(
                "ip",
                "-n",
                self.server,
                "route",
                "add",
                "default",
                "via",
                GATEWAY_V4,
                "dev",
                "s0",
                "onlink",
            )
            sh(
                "ip",
                "-n",
                self.server,
                "-6",
                "route",
                "add",
                "default",
                "via",
                GATEWAY_V6,
                "dev",
                "s0",
                "onlink",
            )
            if routed:
                self._add_backend()
        except BaseException:
            self.close()
            raise

    def _add_backend(self) -> None:
        """server s1 (10.78.0.1, fd78::1) <-> backend b0 (10.78.0.2, fd78::2); server routes."""
        sh("ip", "netns", "add", self.backend)
        self._made.append(self.backend)
        sh("ip", "-n", self.backend, "link", "set", "lo", "up")
        sh(
            "ip",
            "link",
            "add",
            "s1",
            "netns",
            self.server,
            "type",
            "veth",
            "peer",
            "name",
            "b0",
            "netns",
            self.backend,
        )
        for ns, dev, addrs in (
            (self.server, "s1", ("10.78.0.1/24", "fd78::1/64")),
            (self.backend, "b0", (f"{BACKEND_V4}/24", f"{BACKEND_V6}/64")),
        ):
            for a in addrs:
                sh("ip", "-n", ns, "addr", "add", a, "dev", dev, *(("nodad",) if ":" in a else ()))
            sh("ip", "-n", ns, "link", "set", dev, "up")
        self.exec(
            self.server, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"
        )
        sh("ip", "-n", self.client, "route", "add", "10.78.0.0/24", "via", SERVER_V4)
        sh("ip", "-n", self.client, "-6", "route", "add", "fd78::/64", "via", SERVER_V6)
        sh("ip", "-n", self.backend, "route", "add", "default", "via", "10.78.0.1")
        sh("ip", "-n", self.backend, "-6", "route", "add", "default", "via", "fd78::1")

    def exec(
        self, ns: str, *cmd: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *cmd, check=check, input=input)

    def start_echo(self, ns: str | None = None) -> None:
        """The echo service, on the server (default) or another namespace of the lab."""
        echo = subprocess.Popen(
            ["ip", "netns", "exec", ns or self.server, PYTHON, "-c", f"PORT={PORT}\n" + _ECHO],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._echoes.append(echo)
        assert echo.stdout is not None
        assert echo.stdout.readline().strip() == "ready"

    def probe(self, src: str, dst: str, timeout: float = 0.6) -> dict[str, bool]:
        """ICMP echo, TCP connect+read, UDP echo from ``src`` to ``dst``: answered?"""
        out = self.exec(self.client, PYTHON, "-c", _PROBE, src, dst, str(timeout), "1").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def passes(self, src: str, dst: str, within: float = 5.0) -> bool:
        """Does ``src`` reach ``dst`` (ICMP, TCP and UDP all answered)? Polled for up to
        ``within`` seconds: after a ban is lifted the kernel may first have to resolve the
        neighbour again (IPv6 solicitations retry every second), which a single 0.6 s probe
        on a loaded box can miss. A block is still asserted with one probe (``blocked``)."""
        return self.wait_until(lambda: passes(self.probe(src, dst)), timeout=within)

    def udp_burst(self, src: str, dst: str, count: int, timeout: float = 1.0) -> int:
        out = self.exec(
            self.client, PYTHON, "-c", _PROBE, src, dst, str(timeout), str(count)
        ).stdout
        return int(json.loads(out)["udp_replies"])

    def wait_until(self, predicate, timeout: float = 20.0, interval: float = 0.3) -> bool:  # type: ignore[no-untyped-def]
        """Poll (generous bound, not a timing assertion)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())

    def close(self) -> None:
        for echo in self._echoes:
            echo.kill()
            echo.wait()
        self._echoes = []
        for ns in self._made:
            sh("ip", "netns", "del", ns, check=False)
        self._made = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def blocked(result: dict[str, bool]) -> bool:
    return not (result["icmp"] or result["tcp"] or result["udp"])


def passes(result: dict[str, bool]) -> bool:
    return result["icmp"] and result["tcp"] and result["udp"]


#: the commands each kernel enforcement backend needs
ENFORCER_TOOLS = {"nftables": ("nft",), "iptables": ("iptables", "ip6tables", "ipset")}


def enforcer(backend: str, netns: str, hook: object = None):  # type: ignore[no-untyped-def]
    """A kernel enforcer (``nftables`` or ``iptables``) bound to namespace ``netns``; no setup."""
    args = () if hook is None else (hook,)
    if backend == "nftables":
        from controller.response.enforce.nftables import NftablesEnforcer

        return NftablesEnforcer(*args, netns=netns)  # type: ignore[arg-type]
    from controller.response.enforce.iptables import IptablesEnforcer

    return IptablesEnforcer(*args, netns=netns)  # type: ignore[arg-type]
