"""A small routed network for the live closed loop, in throwaway namespaces.

::

    attacker  (198.51.100.10 scanner; .12 allow-listed; .254 the gateway's upstream router)
    attacker2 (198.51.100.11, SSH brute force)       ── bridge out0 ── gateway ── in0 ── server
    client    (198.51.100.20, benign, fetches a page)   198.51.100.1     10.79.0.1     10.79.0.2

The gateway forwards between its outside bridge ``out0`` and ``in0``; its default route
points at 198.51.100.254 (an upstream router to protect). The server runs sshd on port 22
and an HTTP server on 8080. Every process started here is recorded and killed by
``close()``, before the namespaces (and with them every veth and firewall object) are
deleted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Self

REPO = Path(__file__).resolve().parents[2]
GATEWAY_OUT, GATEWAY_IN = "198.51.100.1", "10.79.0.1"
SCANNER, BRUTE, ALLOWED, UPSTREAM, CLIENT = (
    "198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.254", "198.51.100.20",
)  # fmt: skip
SERVER = "10.79.0.2"
HTTP_PORT = 8080
TOOLS = ("ip", "nmap", "hydra", "curl", "ssh-keygen", "sshd")


def missing_tools() -> list[str]:
    found = {
        t: shutil.which(t) or (f"/usr/sbin/{t}" if os.path.exists(f"/usr/sbin/{t}") else None)
        for t in TOOLS
    }
    return [t for t, p in found.items() if p is None]


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class LoopLab:
    def __init__(self, workdir: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.work = workdir
        self.gw, self.atk, self.atk2, self.client, self.server = (f"nwl{tag}{s}" for s in "gabcs")
        self._made: list[str] = []
        self._procs: list[tuple[str, subprocess.Popen[str], IO[str] | None]] = []
        self.controller_ready = ""
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # --- topology -------------------------------------------------------------------------
    def _build(self) -> None:
        for ns in (self.gw, self.atk, self.atk2, self.client, self.server):
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
            self.run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        self.ip(self.gw, "link", "add", "out0", "type", "bridge")
        self.ip(self.gw, "addr", "add", f"{GATEWAY_OUT}/24", "dev", "out0")
        self.ip(self.gw, "link", "set", "out0", "up")
        outside = ((self.atk, "ga", (SCANNER, ALLOWED, UPSTREAM)), (self.atk2, "gb", (BRUTE,)),
                   (self.client, "gc", (CLIENT,)))  # fmt: skip
        for ns, port, addrs in outside:
            # made inside the gateway, one end moved: the root namespace never sees them
            self.ip(self.gw, "link", "add", port, "type", "veth", "peer", "name", "e0")
            self.ip(self.gw, "link", "set", "e0", "netns", ns)
            self.ip(self.gw, "link", "set", port, "master", "out0")
            self.ip(self.gw, "link", "set", port, "up")
            for a in addrs:
                self.ip(ns, "addr", "add", f"{a}/24", "dev", "e0")
            self.ip(ns, "link", "set", "e0", "up")
            self.ip(ns, "route", "add", "default", "via", GATEWAY_OUT, "src", addrs[0])
        self.ip(self.gw, "link", "add", "in0", "type", "veth", "peer", "name", "s0")
        self.ip(self.gw, "link", "set", "s0", "netns", self.server)
        self.ip(self.gw, "addr", "add", f"{GATEWAY_IN}/24", "dev", "in0")
        self.ip(self.gw, "link", "set", "in0", "up")
        self.ip(self.server, "addr", "add", f"{SERVER}/24", "dev", "s0")
        self.ip(self.server, "link", "set", "s0", "up")
        self.ip(self.server, "route", "add", "default", "via", GATEWAY_IN)
        self.ip(self.gw, "route", "add", "default", "via", UPSTREAM)
        self.run(self.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def ip(self, ns: str, *args: str) -> None:
        sh("ip", "-n", ns, *args)

    def run(
        self, ns: str, *cmd: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout)

    # --- processes ------------------------------------------------------------------------
    def spawn(self, name: str, ns: str, *cmd: str, stdout_pipe: bool = False,
              cwd: Path | None = None) -> subprocess.Popen[str]:  # fmt: skip
        """Start ``cmd`` in ``ns``; stderr (and stdout unless piped) go to ``work/name.log``
        (a full pipe must never stall a daemon under test)."""
        log = open(self.work / f"{name}.log", "w")  # noqa: SIM115 -- closed in close()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE if stdout_pipe else log, stderr=log,
            text=True, cwd=cwd or self.work, start_new_session=True,
        )  # fmt: skip
        self._procs.append((name, proc, log))
        return proc

    def log(self, name: str) -> str:
        p = self.work / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(
        self, proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15
    ) -> int | None:
        """Signal one process we started and wait (kill after ``timeout``)."""
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def start_server(self) -> None:
        """sshd (its own config and host key; no PAM, password login for nobody) and a web page."""
        www = self.work / "www"
        www.mkdir(exist_ok=True)
        para = "<p>" + "NetWarden closed loop test page. " * 30 + "</p>\n"
        (www / "index.html").write_text("<html><body>\n" + para * 4 + "</body></html>\n")
        key = self.work / "ssh_host_ed25519_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        cfg = self.work / "sshd_config"
        cfg.write_text(
            f"Port 22\nListenAddress {SERVER}\nHostKey {key}\nPidFile {self.work / 'sshd.pid'}\n"
            "UsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
            "StrictModes no\nMaxStartups 200:30:400\nMaxAuthTries 6\nLoginGraceTime 20\nLogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        self.spawn("sshd", self.server, sshd, "-D", "-e", "-f", str(cfg))
        self.spawn("http", self.server, sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", SERVER,
                   "--protocol", "HTTP/1.1", "--directory", str(www))  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ss = self.run(self.server, "ss", "-Hltn", check=False).stdout
            if f"{SERVER}:22 " in ss and f"{SERVER}:{HTTP_PORT} " in ss:
                return
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log('sshd')} {self.log('http')}")

    def start_client(self, connections: int, per_connection: int = 10, rate: int = 5) -> None:
        """The benign client: ``connections`` curl runs one after the other (bounded), each
        fetching the page ``per_connection`` times over one kept-alive connection at
        ``rate`` a second, like a browser; one HTTP status per fetch in ``client.log``
        (000 when it failed). Short single-fetch connections many times a second would
        look like guessing a web login to the brute force rule, and a big page fetched
        that often like exfiltration: neither is what a benign client does."""
        url = f"http://{SERVER}:{HTTP_PORT}/"
        fetches = " ".join(["-o /dev/null " + url] * per_connection)
        self.spawn("client", self.client, "bash", "-c",
                   f"for i in $(seq {connections}); do curl -s -w '%{{http_code}}\\n' --max-time 2 "
                   f"--rate {rate}/s {fetches}; done")  # fmt: skip

    def start_netwarden(
        self, config: str, state: Path, bus: str, *sensor_args: str
    ) -> subprocess.Popen[str]:
        """``netwarden controller`` in the gateway (``config`` is its TOML text) listening on
        ``bus``, then ``netwarden sensor --iface out0`` publishing to it with records sent
        as soon as they are made; returns the controller once it is ready."""
        cfg = self.work / "controller.toml"
        cfg.write_text(config)
        ctl = self.spawn("controller", self.gw, sys.executable, "-m", "netwarden", "controller", "--state-dir",
                         str(state), "--config", str(cfg), "--listen", bus, "--no-archive", stdout_pipe=True,
                         cwd=REPO)  # fmt: skip
        assert ctl.stdout is not None
        ready = ctl.stdout.readline()
        if "controller ready" not in ready:
            raise RuntimeError(f"controller did not start: {ready!r} {self.log('controller')}")
        self.controller_ready = ready
        self.spawn("sensor", self.gw, sys.executable, "-m", "netwarden", "sensor", "--iface", "out0", "--connect", bus,
                   "--sensor-id", "gateway", "--batch", "256", "--max-delay", "0", *sensor_args, cwd=REPO)  # fmt: skip
        return ctl

    def fetch(self, ns: str, timeout: float = 2.0) -> bool:
        """One page fetch from ``ns``: True when it answered 200."""
        r = self.run(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout),
                     f"http://{SERVER}:{HTTP_PORT}/", check=False, timeout=timeout + 10)  # fmt: skip
        return r.stdout.strip() == "200"

    def close(self) -> None:
        for _name, proc, log in reversed(self._procs):
            if proc.poll() is None:
                try:
                    os.killpg(
                        proc.pid, signal.SIGKILL
                    )  # its own session: the tool and its children
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
            if log is not None:
                log.close()
        self._procs = []
        for ns in reversed(self._made):
            sh("ip", "netns", "del", ns, check=False)
        self._made = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
