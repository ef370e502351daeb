"""Control socket: a Unix stream socket in the state dir, one JSON request per connection.

Request: ``{"op": "ban", "args": {...}}`` + newline. Response: ``{"ok": true, "result":
...}`` or ``{"ok": false, "error": "...", "refused": bool}``. The socket is mode 0600 (root
only); the peer's uid from SO_PEERCRED names the operator in the audit log.

Clients are served from the controller's loop without ever blocking it: every connection
is non-blocking, read and answered as its bytes arrive, several at once, and dropped when
its whole request (read and answer) is not done within ``REQUEST_DEADLINE_S``. A client
that trickles bytes costs a buffer, never the loop's time (sensor acks and other operators
go on being served).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import os
import pwd
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from netwarden.errors import ControlError, NetWardenError, PolicyRefused

log = logging.getLogger(__name__)
SOCKET_NAME = "control.sock"
MAX_REQUEST = 1 << 20
#: a whole request, from accept to the last byte of the answer
REQUEST_DEADLINE_S = 5.0
#: connections served at once; more are answered "busy" and closed
MAX_CLIENTS = 64
#: JSON nesting accepted in a request (real requests nest two or three levels)
MAX_DEPTH = 16
#: op, args, operator name -> result (raise PolicyRefused / NetWardenError to refuse)
Handler = Callable[[str, dict[str, Any], str], Any]


class LoopLike(Protocol):
    def add_reader(self, fd: int, callback: Callable[[], None]) -> None: ...
    def add_writer(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_reader(self, fd: int) -> None: ...
    def add_periodic(self, interval_s: float, callback: Callable[[], object]) -> None: ...


def socket_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


def _peer_name(conn: socket.socket) -> str:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return "operator:unknown"
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return f"operator:{name}(uid={uid},pid={pid})"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of ``value``, counting no further than ``limit + 1``."""
    if limit < 0 or not isinstance(value, dict | list):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in items), default=0)


def decode_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """One request line -> (op, args); anything else is refused with a clear reason."""
    try:
        req = json.loads(line or b"{}", parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ControlError("bad request: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, numbers out of range, NaN/Infinity
        raise ControlError(f"bad request: {exc}") from None
    if not isinstance(req, dict):
        raise ControlError('bad request: expected a JSON object {"op": ..., "args": {...}}')
    op = req.get("op", "")
    if not isinstance(op, str):
        raise ControlError("bad request: op must be a string")
    args = req.get("args") or {}
    if not isinstance(args, dict):
        raise ControlError("args must be an object")
    if _depth(args, MAX_DEPTH) > MAX_DEPTH:
        raise ControlError(f"bad request: args nested deeper than {MAX_DEPTH} levels")
    return op, args


def answer(handler: Handler, line: bytes, actor: str) -> dict[str, Any]:
    """Run one request; every failure becomes an error response, never a dropped connection."""
    try:
        op, args = decode_request(line)
        return {"ok": True, "result": handler(op, args, actor)}
    except PolicyRefused as exc:
        return {"ok": False, "refused": True, "error": exc.reason}
    except NetWardenError as exc:
        return {"ok": False, "refused": False, "error": str(exc)}
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        return {"ok": False, "refused": False, "error": f"bad request: {exc}"}
    except Exception as exc:
        log.exception("control request failed")
        return {
            "ok": False,
            "refused": False,
            "error": f"internal error: {type(exc).__name__}: {exc}",
        }


@dataclass
class _Client:
    conn: socket.socket
    actor: str
    deadline: float
    inbuf: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    writing: bool = False


class ControlServer:
    def __init__(
        self, state_dir: str | Path, handler: Handler, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = socket_path(state_dir)
        self.handler = handler
        self.clock = clock
        self._loop: LoopLike | None = None
        self._clients: dict[int, _Client] = {}
        if self.path.exists() or self.path.is_symlink():
            self._refuse_if_live()
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: no window where others can connect
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old)
        # a burst of operators and scripts queues in the kernel, not in "connection refused"
        self.sock.listen(socket.SOMAXCONN)
        self.sock.setblocking(False)

    def _refuse_if_live(self) -> None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            return  # stale socket from a dead controller
        finally:
            probe.close()
        raise ControlError(f"another controller is running on {self.path}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def attach(self, loop: LoopLike) -> None:
        """Serve from ``loop``: the listener and each client are fds in its selector."""
        self._loop = loop
        loop.add_reader(self.fileno(), self.on_readable)
        loop.add_periodic(min(1.0, REQUEST_DEADLINE_S / 5), self.expire)

    def on_readable(self) -> None:
        """Accept every pending connection; each is then read as its bytes arrive."""
        assert self._loop is not None, "attach() the server to a loop first"
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. EMFILE: leave the rest queued for the next turn
                log.warning("control socket: accept failed: %s", exc)
                return
            conn.setblocking(False)
            if len(self._clients) >= MAX_CLIENTS:
                try:
                    conn.send(
                        json.dumps(
                            {
                                "ok": False,
                                "refused": False,
                                "error": "controller busy: too many control connections",
                            }
                        ).encode()
                        + b"\n"
                    )
                except OSError:
                    pass
                conn.close()
                continue
            c = _Client(conn, _peer_name(conn), self.clock() + REQUEST_DEADLINE_S)
            self._clients[conn.fileno()] = c
            self._loop.add_reader(conn.fileno(), functools.partial(self._read, c))

    def _read(self, c: _Client) -> None:
        while True:
            try:
                chunk = c.conn.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self._drop(c)  # client went away
                return
            c.inbuf += chunk
            if not chunk or b"\n" in chunk or len(c.inbuf) >= MAX_REQUEST:
                break
        line, newline, _ = bytes(c.inbuf).partition(b"\n")
        if not newline and len(line) >= MAX_REQUEST:
            resp: dict[str, Any] = {
                "ok": False,
                "refused": False,
                "error": f"bad request: larger than {MAX_REQUEST} bytes",
            }
        else:
            resp = answer(self.handler, line, c.actor)
        self._reply(c, resp)

    def _reply(self, c: _Client, resp: dict[str, Any]) -> None:
        assert self._loop is not None
        c.out = json.dumps(resp, default=str).encode() + b"\n"
        self._loop.remove_reader(c.conn.fileno())
        c.writing = True
        self._loop.add_writer(c.conn.fileno(), functools.partial(self._write, c))
        self._write(c)

    def _write(self, c: _Client) -> None:
        try:
            sent = c.conn.send(c.out)
        except BlockingIOError:
            return
        except OSError:
            sent = len(c.out)  # client went away: nothing more to say
        c.out = c.out[sent:]
        if not c.out:
            self._drop(c)

    def expire(self) -> None:
        """Drop clients whose request was not done in time (told so, if they still read)."""
        now = self.clock()
        for c in [c for c in self._clients.values() if now >= c.deadline]:
            if not c.writing:
                try:
                    c.conn.send(
                        json.dumps(
                            {
                                "ok": False,
                                "refused": False,
                                "error": f"request not complete within {REQUEST_DEADLINE_S:g}s",
                            }
                        ).encode()
                        + b"\n"
                    )
                except OSError:
                    pass
            self._drop(c)

    def _drop(self, c: _Client) -> None:
        fd = c.conn.fileno()
        if self._clients.pop(fd, None) is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(fd)
        c.conn.close()

    def close(self) -> None:
        for c in list(self._clients.values()):
            self._drop(c)
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def request(
    state_dir: str | Path, op: str, timeout_s: float = 120.0, **args: Any
) -> dict[str, Any]:
    """Send one request to a running controller; returns the decoded response."""
    path = socket_path(state_dir)
    deadline = time.monotonic() + timeout_s
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        _connect(s, path, deadline)
        s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    except TimeoutError as exc:
        raise ControlError(f"controller at {path} did not answer") from exc
    except OSError as exc:
        raise ControlError(f"controller at {path}: {exc.strerror or exc}") from exc
    finally:
        s.close()
    if not buf:
        raise ControlError(f"controller at {path} closed the connection")
    return json.loads(buf)  # type: ignore[no-any-return]


def _connect(s: socket.socket, path: Path, deadline: float) -> None:
    """Connect, waiting while the controller's connection queue is full (EAGAIN): a busy
    controller is not a missing one."""
    pause = 0.01
    while True:
        try:
            s.connect(str(path))
            return
        except BlockingIOError as exc:
            if time.monotonic() + pause > deadline:
                raise ControlError(
                    f"controller at {path} is busy: its connection queue stayed full"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                raise ControlError(
                    f"no controller at {path} ({exc.strerror}); is `netwarden controller` running?"
                ) from exc
            raise ControlError(f"cannot reach the controller at {path}: {exc.strerror}") from exc
