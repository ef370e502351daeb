"""The state directory: checked and created with one clear error, locked by one
controller, and every file in it private (0600) whatever the directory's mode."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import IO

from netwarden.errors import ConfigError, ControlError

LOCK_NAME = "controller.lock"


def prepare_state_dir(path: str | Path) -> Path:
    """Create the state dir (0700) if missing; refuse a path that is, or lies under, a
    file, or that this user may not create, with one line saying so."""
    p = Path(path)
    try:
        for parent in (p, *p.parents):
            if parent.exists() and not parent.is_dir():
                where = "is a file" if parent == p else f"is under {parent}, which is a file"
                raise ConfigError(f"state dir {p} {where}, not a directory")
            if parent.exists():
                break
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"cannot create state dir {p}: {exc.strerror}"
            f"{' (run as root or choose --state-dir)' if exc.errno == errno.EACCES else ''}"
        ) from exc
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(
            f"state dir {p} is not writable by this user (run as root or choose --state-dir)"
        )
    return p


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist yet (then whatever opens
    it later, sqlite included, keeps that mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass


def open_private(path: Path, mode: str = "a") -> IO[str]:
    """``open(path, mode)`` for text, creating the file 0600 ("a" or "w" modes)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


class StateLock:
    """An exclusive ``flock`` on ``STATE_DIR/controller.lock``, taken before anything else
    in the state dir is opened: a second controller is refused before it writes a thing.
    The kernel releases it when the process dies, so a crash leaves no stale lock."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise ControlError(
                f"another controller is running on {state_dir}"
                f"{f' (pid {holder})' if holder.isdigit() else ''}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
