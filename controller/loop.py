"""The controller's event loop: one selector, periodic tasks, signals.

Everything the controller serves runs here, in one thread: the control socket's listener
and its client connections, the ZeroMQ collector's fd, and periodic tasks (expiry, resync,
guard refresh, the collector's tick). A callback must never block: a slow source would
stall every other one. A callback that raises is logged and the loop goes on.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("netwarden.controller")


@dataclass
class _Periodic:
    interval_s: float
    due: float
    callback: Callable[[], object]


class Loop:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._sel = selectors.DefaultSelector()
        self._periodic: list[_Periodic] = []
        self._soon: list[Callable[[], object]] = []
        self._stop = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._sel.register(fd, selectors.EVENT_READ, callback)

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        self._sel.register(fd, selectors.EVENT_WRITE, callback)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the next turn, without waiting for an fd or a period: for
        a source that stopped with work left (a bounded drain of an edge-triggered fd,
        which will not fire again for what is already queued)."""
        if callback not in self._soon:
            self._soon.append(callback)

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd`` (reader or writer)."""
        self._sel.unregister(fd)

    def add_periodic(self, interval_s: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` every ``interval_s`` (its result is ignored)."""
        self._periodic.append(_Periodic(interval_s, self.clock() + interval_s, callback))

    def stop(self) -> None:
        """Ask ``run()`` to return (from any thread)."""
        self._stop = True
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def run(self, install_signals: bool = True, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM or ``stop()``; ``on_ready`` runs once signals are
        handled (so a supervisor that signals right after "ready" gets a clean stop)."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.add_reader(self._wake_r.fileno(), self._drain_wake)
        old: dict[int, Any] = {}
        if install_signals:
            signal.set_wakeup_fd(self._wake_w.fileno())
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, lambda *_: setattr(self, "_stop", True))
        if on_ready is not None:
            on_ready()
        try:
            while not self._stop:
                self.run_once()
        finally:
            if install_signals:
                signal.set_wakeup_fd(-1)
                for signum, handler in old.items():
                    signal.signal(signum, handler)
            self.remove_reader(self._wake_r.fileno())
            self._wake_r.close()
            self._wake_w.close()
            self._wake_r = self._wake_w = None

    def run_once(self, max_wait_s: float = 1.0) -> None:
        """One turn: wait for readable fds (at most until the next periodic task is due),
        serve them, then run the periodic tasks that are due."""
        now = self.clock()
        due = min((p.due for p in self._periodic), default=now + max_wait_s)
        wait = 0.0 if self._soon else max(0.0, min(due - now, max_wait_s))
        for key, _ in self._sel.select(timeout=wait):
            try:
                key.data()
            except Exception:  # one bad source must not kill the controller
                log.exception("reader callback failed")
        soon, self._soon = self._soon, []
        for cb in soon:
            try:
                cb()
            except Exception:
                log.exception("callback failed")
        now = self.clock()
        for p in self._periodic:
            if now >= p.due:
                p.due = now + p.interval_s
                try:
                    p.callback()
                except Exception:
                    log.exception("periodic callback failed")

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self._sel.close()
