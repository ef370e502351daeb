"""Control socket: a Unix stream socket in the state dir, one JSON request per connection.

Request: ``{"op": "ban", "args": {...}}`` + newline. Response: ``{"ok": true, "result":
...}`` or ``{"ok": false, "error": "...", "refused": bool}``. The socket is mode 0600 (root
only); the peer's uid from SO_PEERCRED names the operator in the audit log.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netwarden.errors import ControlError

log = logging.getLogger(__name__)
SOCKET_NAME = "control.sock"
MAX_REQUEST = 1 << 20
#: op, args, operator name -> result (raise PolicyRefused / NetWardenError to refuse)
Handler = Callable[[str, dict[str, Any], str], Any]


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


class ControlServer:
    def __init__(self, state_dir: str | Path, handler: Handler) -> None:
        self.path = socket_path(state_dir)
        self.handler = handler
        if self.path.exists() or self.path.is_symlink():
            self._refuse_if_live()
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: no window where others can connect
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old)
        self.sock.listen(16)
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

    def on_readable(self) -> None:
        """Serve every pending connection (each is short: one request, one answer)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            with conn:
                conn.settimeout(5.0)
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        from netwarden.errors import NetWardenError, PolicyRefused

        buf = b""
        try:
            while b"\n" not in buf and len(buf) < MAX_REQUEST:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buf += chunk
            req = json.loads(buf.split(b"\n", 1)[0] or b"{}")
            op = str(req.get("op", ""))
            args = req.get("args") or {}
            if not isinstance(args, dict):
                raise ControlError("args must be an object")
            resp: dict[str, Any] = {"ok": True, "result": self.handler(op, args, _peer_name(conn))}
        except PolicyRefused as exc:
            resp = {"ok": False, "refused": True, "error": exc.reason}
        except NetWardenError as exc:
            resp = {"ok": False, "refused": False, "error": str(exc)}
        except (ValueError, KeyError, TypeError) as exc:
            resp = {"ok": False, "refused": False, "error": f"bad request: {exc}"}
        except OSError:
            return  # client went away
        except Exception as exc:
            log.exception("control request failed")
            resp = {"ok": False, "refused": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        try:
            conn.sendall(json.dumps(resp, default=str).encode() + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def request(state_dir: str | Path, op: str, timeout_s: float = 120.0, **args: Any) -> dict[str, Any]:
    """Send one request to a running controller; returns the decoded response."""
    path = socket_path(state_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        try:
            s.connect(str(path))
        except OSError as exc:
            raise ControlError(f"no controller at {path} ({exc.strerror}); is `netwarden controller` running?") from exc
        s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    except TimeoutError as exc:
        raise ControlError(f"controller at {path} did not answer") from exc
    finally:
        s.close()
    if not buf:
        raise ControlError(f"controller at {path} closed the connection")
    return json.loads(buf)  # type: ignore[no-any-return]
