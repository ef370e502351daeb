"""Open sockets inside a named network namespace without moving the whole process.

``setns(2)`` changes the namespace of the calling thread only, and a socket keeps the
namespace it was created in. So we create sockets in a short-lived thread that joined the
namespace; the rest of the process (and its other sockets) stays where it was.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from netwarden.errors import EnforcementError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> str:
    return name if name.startswith("/") else f"/run/netns/{name}"


def call_in_netns(name: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that first joined namespace ``name`` (None: here)."""
    if name is None:
        return fn()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(netns_path(name), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {name}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name=f"netns-{name}")
    t.start()
    t.join()
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, OSError):
            raise EnforcementError(f"cannot enter network namespace {name}: {exc}") from exc
        raise exc  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def ns_command(name: str | None, argv: list[str]) -> list[str]:
    """Prefix a command so it runs in namespace ``name``."""
    return argv if name is None else ["ip", "netns", "exec", name, *argv]
