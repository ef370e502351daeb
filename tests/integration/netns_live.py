"""A pair of throwaway network namespaces joined by a veth link, for live-capture tests.

``VethPair()`` creates ``nw<tag>a`` / ``nw<tag>b`` with a veth between them (``vethA`` in
the first, ``vethB`` in the second), no addresses and IPv6 off, so neither stack adds
packets of its own; MTU 9000 so captures with offloaded (larger than 1500) frames replay.
Everything is removed on ``close()`` (deleting a namespace deletes its veth end).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Self


def have_root() -> bool:
    return os.geteuid() == 0


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class VethPair:
    IF_A = "vethA"
    IF_B = "vethB"

    def __init__(self, mtu: int = 9000) -> None:
        tag = uuid.uuid4().hex[:8]
        self.ns_a = f"nw{tag}a"
        self.ns_b = f"nw{tag}b"
        self._made: list[str] = []
        try:
            for ns in (self.ns_a, self.ns_b):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
            # Create both ends inside A, then move one: the root namespace never sees them.
            self.exec_a(
                "ip",
                "link",
                "add",
                self.IF_A,
                "mtu",
                str(mtu),
                "type",
                "veth",
                "peer",
                "name",
                self.IF_B,
                "mtu",
                str(mtu),
            )
            self.exec_a("ip", "link", "set", self.IF_B, "netns", self.ns_b)
            for ns, ifname in ((self.ns_a, self.IF_A), (self.ns_b, self.IF_B)):
                self._exec(ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{ifname}.disable_ipv6=1")
                self._exec(ns, "ip", "link", "set", ifname, "up")
                self._exec(ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def _exec(self, ns: str, *cmd: str) -> None:
        _run("ip", "netns", "exec", ns, *cmd)

    def exec_a(self, *cmd: str) -> None:
        self._exec(self.ns_a, *cmd)

    def exec_b(self, *cmd: str) -> None:
        self._exec(self.ns_b, *cmd)

    def prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def close(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._made.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def live_capture_command(
    ns_prefix: list[str], iface: str, ready: Path, out: Path, *extra: str
) -> list[str]:
    """``python -m sensor.live`` capturing on ``iface`` inside a namespace: it creates
    ``ready`` once every worker listens and writes its records to ``out`` on exit."""
    return [*ns_prefix, sys.executable, "-m", "sensor.live", "--iface", iface,
            "--ready-file", str(ready), "--out", str(out), *extra]  # fmt: skip


def wait_ready(ready: Path, proc: subprocess.Popen, timeout: float = 60) -> None:  # type: ignore[type-arg]
    """Wait until a capture started with ``live_capture_command`` is listening."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"capture exited early: {err}")
        if time.monotonic() > deadline:
            raise RuntimeError("capture never became ready")
        time.sleep(0.05)
