"""Issue 9, the controller's state dir and control socket (dry-run backend, no root needed
except to drop to an unprivileged user): a slow client cannot freeze the controller, a
second controller is refused before it writes, errors reach the client, state files are
private, and bad input gets one clear line instead of a traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from controller_proc import ControllerProcess, controller_argv

from controller.app import Controller
from controller.config import ControllerConfig, SafetyConfig
from controller.ops.server import ControlServer, request, socket_path
from controller.state.audit import JSONL_NAME, verify_jsonl
from controller.state.files import prepare_state_dir
from controller.state.store import DB_NAME, Store
from netwarden.errors import ConfigError, ControlError, StoreError
from tests.jsonl import jsonl

NOBODY = 65534


def _cfg(state: Path) -> Path:
    cfg = state.parent / f"{state.name}.toml"
    cfg.write_text("[safety]\ndiscover_local = false\n")
    return cfg


def _netwarden(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netwarden", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_clear_line(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode not in (0, None), r
    assert "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def Daemon(state: Path, *extra: str) -> ControllerProcess:
    """``netwarden controller`` (dry run) on ``state``."""
    return ControllerProcess(state, _cfg(state), *extra)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


# --- Critical 3: one slow client must not freeze the controller -------------------------------
def test_a_trickling_client_delays_neither_other_operators_nor_sensor_acks(tmp_path: Path) -> None:
    from netwarden.bus.publisher import Publisher
    from netwarden.records.schema import FLOW_DTYPE

    state = tmp_path / "st"
    port = _free_port()
    d = Daemon(state, "--listen", f"tcp://127.0.0.1:{port}", "--no-archive")
    pub = Publisher(f"tcp://127.0.0.1:{port}", sensor_id="s1", heartbeat_s=0.2, resend_after_s=0.5)
    trickler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(5)]
    try:
        pub.send("flow", np.zeros(10, FLOW_DTYPE))
        deadline = time.monotonic() + 20
        while pub.stats()["acked_seq"] < 1:  # the bus works before the slow client comes
            assert time.monotonic() < deadline
            time.sleep(0.05)
        trickler.connect(str(socket_path(state)))
        for s in idle:  # connected, saying nothing: several clients at once
            s.connect(str(socket_path(state)))
        stop = threading.Event()

        def trickle() -> None:  # a byte every 2 s, never a whole request
            for b in b'{"op": "bans", "args": {}':
                if stop.wait(2.0):
                    return
                try:
                    trickler.send(bytes([b]))
                except OSError:
                    return

        trickler.send(b"{")
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        time.sleep(0.3)
        for _ in range(3):  # each answered at once, although the trickler is mid-request
            assert _timed(lambda: request(state, "bans", timeout_s=20)) < 3.0
            time.sleep(0.3)
        pub.send("flow", np.zeros(10, FLOW_DTYPE))
        t_ack = time.monotonic()
        while pub.stats()["acked_seq"] < 2:
            assert time.monotonic() - t_ack < 3.0, "sensor ack stalled behind a slow control client"
            time.sleep(0.02)
        # the trickler's whole request has a deadline: it is told and dropped
        trickler.settimeout(15)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = trickler.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert b"not complete within" in reply, reply
        stop.set()
        assert request(state, "ingest")["result"]["batches"] == 2
        assert d.stop() == 0
    finally:
        for s in (trickler, *idle):
            s.close()
        pub.close(timeout=0)
        d.kill()


def test_the_listen_backlog_holds_a_burst_of_clients(tmp_path: Path) -> None:
    burst = 100  # scripts and operators at once (the old backlog was 16)
    if int(Path("/proc/sys/net/core/somaxconn").read_text()) < burst:
        pytest.skip("net.core.somaxconn caps every listen backlog below the burst")
    server = ControlServer(tmp_path, lambda op, args, actor: None)  # not serving: connections queue
    clients = []
    try:
        for _ in range(burst):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect(str(socket_path(tmp_path)))  # BlockingIOError once the queue is full
            clients.append(c)
    finally:
        for c in clients:
            c.close()
        server.close()


def test_a_full_connection_queue_is_reported_busy_not_missing(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)  # a controller that is alive but not accepting
    queued = []
    try:
        while True:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(str(path))
            except BlockingIOError:
                c.close()
                break
            queued.append(c)
        with pytest.raises(ControlError) as err:
            request(tmp_path, "ping", timeout_s=1.0)
        assert "busy" in str(err.value) and "no controller" not in str(err.value)
    finally:
        for c in queued:
            c.close()
        listener.close()


# --- a second controller on a live state dir ------------------------------------------------
def test_a_second_controller_is_refused_before_writing_anything(tmp_path: Path) -> None:
    state = tmp_path / "st"
    d = Daemon(state)
    try:
        assert (
            _netwarden("ban", "203.0.113.1", "--ttl", "60", "--state-dir", str(state)).returncode
            == 0
        )
        before = jsonl(
            _netwarden("audit", "--json", "--limit", "1000", "--state-dir", str(state)).stdout
        )
        db_before = (state / DB_NAME).stat().st_mtime_ns, (state / JSONL_NAME).read_bytes()
        r = subprocess.run(
            controller_argv(state, _cfg(state)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        _one_clear_line(r, "another controller is running")
        assert (
            (state / DB_NAME).stat().st_mtime_ns,
            (state / JSONL_NAME).read_bytes(),
        ) == db_before
        after = jsonl(
            _netwarden("audit", "--json", "--limit", "1000", "--state-dir", str(state)).stdout
        )
        assert after == before  # no false "controller stop"
        r = _netwarden("ban", "203.0.113.2", "--ttl", "60", "--state-dir", str(state))
        assert r.returncode == 0, r.stderr  # the live controller's next ban works
        assert d.stop() == 0
    finally:
        d.kill()
    assert _netwarden("audit", "--verify", "--state-dir", str(state)).returncode == 0


# --- errors inside a request reach the client ------------------------------------------------
def test_an_unwritable_audit_mirror_is_an_error_answer_and_heals(running: Controller) -> None:
    state = running.cfg.state_dir
    mirror = state / JSONL_NAME
    saved = mirror.read_bytes()
    mirror.unlink()
    mirror.mkdir()  # cannot be appended to, even by root
    resp = request(state, "ban", addr="203.0.113.60", ttl=60)
    assert resp["ok"] is False and "audit mirror" in resp["error"], resp
    assert [b["addr"] for b in request(state, "bans")["result"]] == [
        "203.0.113.60"
    ]  # committed: the db says so
    mirror.rmdir()
    mirror.write_bytes(saved)
    assert request(state, "ban", addr="203.0.113.61", ttl=60)["ok"]
    res = verify_jsonl(mirror)  # the pending entries were written, in order, with the next ones
    assert res.ok and res.entries == running.audit.verify().entries


@pytest.mark.parametrize(
    "raw",
    [
        b"[1, 2, 3]\n",
        b'"ban"\n',
        b'{"op": "ban", "args": {"addr": "203.0.113.9", "ttl": 1e400}}\n',
        b'{"op": "ban", "args": {"addr": "203.0.113.9", "ttl": NaN}}\n',
        b'{"op": "ban", "args": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}\n",
        b'{"op": "ban", "args": {"addr": "203.0.113.9", "x": '
        + b'{"a": ' * 40
        + b"1"
        + b"}" * 40
        + b"}}\n",
        b'{"op": ["ban"]}\n',
        b'{"op": "ban", "args": {"addr": "203.0.113.9", "ttl": ' + b"9" * 400 + b"}}\n",
        b"\xff\xfe\n",
    ],
    ids=[
        "array",
        "string",
        "1e400",
        "nan",
        "deep-array",
        "deep-object",
        "op-not-string",
        "huge-int",
        "not-utf8",
    ],
)
def test_malformed_requests_get_a_clear_refusal(running: Controller, raw: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(socket_path(running.cfg.state_dir)))
        s.sendall(raw)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "connection closed without an answer"
            reply += chunk
    resp = json.loads(reply)
    assert resp["ok"] is False and resp["error"].startswith("bad request"), resp
    assert request(running.cfg.state_dir, "bans")["result"] == []


# --- private files ------------------------------------------------------------------------------
def test_files_in_a_pre_existing_0755_state_dir_are_0600(tmp_path: Path) -> None:
    state = tmp_path / "st"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    d = Daemon(state)
    try:
        assert _netwarden("ban", "203.0.113.3", "--state-dir", str(state)).returncode == 0
        live = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if p.is_file()}
        assert d.stop() == 0
    finally:
        d.kill()
    after = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if p.is_file()}
    assert {DB_NAME, JSONL_NAME, "dryrun-state.json", "dryrun.jsonl"} <= set(after)
    assert {f"{DB_NAME}-wal", f"{DB_NAME}-shm"} <= set(live)
    assert {n: m for n, m in {**live, **after}.items() if m != 0o600} == {}


# --- one clear line instead of a traceback ----------------------------------------------------
def test_a_state_dir_that_is_or_lies_under_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    _one_clear_line(_netwarden("controller", "--state-dir", str(f)), "is a file")
    _one_clear_line(
        _netwarden("controller", "--state-dir", str(f / "sub")), f"is under {f}, which is a file"
    )
    _one_clear_line(_netwarden("audit", "--verify", "--state-dir", str(f / "sub")), "no database")


def _as_nobody(fn: Callable[[], None]) -> str:
    """Run ``fn`` in a child process as the unprivileged user; returns what it raised
    ("" when nothing), or "unexpected: ..." for an exception that is not ours."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        out = ""
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            fn()
        except (ConfigError, StoreError, ControlError) as exc:
            out = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = f"unexpected: {type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        msg = fh.read().decode()
    os.waitpid(pid, 0)
    return msg


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory the unprivileged user may traverse (pytest's tmp_path lies under a 0700
    directory of root's)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="nw-public-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def test_mkdir_as_an_unprivileged_user_is_one_clear_line(public_tmp: Path) -> None:
    parent = public_tmp / "root-only"
    parent.mkdir(mode=0o755)
    msg = _as_nobody(lambda: prepare_state_dir(parent / "state"))
    assert msg.startswith("ConfigError: cannot create state dir") and "Permission denied" in msg, (
        msg
    )


def _corrupt(db: Path) -> None:
    with db.open("r+b") as fh:  # page 2 onwards: the tables' b-tree pages
        fh.seek(4096)
        fh.write(b"\xa5" * 4096 * 3)


def _state_with_entries(state: Path) -> None:
    cfg = ControllerConfig(state_dir=state, safety=SafetyConfig(discover_local=False))
    ctl = Controller(cfg)
    ctl.start(control=False)
    for i in range(20):
        ctl.ban(f"203.0.113.{i + 1}", 600, "x" * 200, "operator:test")
    ctl.close()


def test_a_corrupt_database_is_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "st"
    _state_with_entries(state)
    _corrupt(state / DB_NAME)
    _one_clear_line(
        _netwarden("controller", "--state-dir", str(state), "--config", str(_cfg(state))),
        "database is corrupt",
    )
    r = _netwarden("audit", "--verify", "--state-dir", str(state))
    _one_clear_line(r, "database is corrupt")
    with pytest.raises(StoreError, match="corrupt"):
        Store(state, readonly=True)


def test_audit_verify_on_a_read_only_forensic_copy(tmp_path: Path, public_tmp: Path) -> None:
    state = tmp_path / "st"
    _state_with_entries(state)
    copy = public_tmp / "evidence"
    copy.mkdir()
    for name in (DB_NAME, JSONL_NAME):
        shutil.copy2(state / name, copy / name)
        os.chmod(copy / name, 0o444)
    os.chmod(copy, 0o555)
    r = _netwarden("audit", "--verify", "--state-dir", str(copy))  # as root
    assert r.returncode == 0 and "database: chain ok, 23 entries" in r.stdout, r

    def verify() -> None:
        from controller.state.audit import AuditLog

        s = Store(copy, readonly=True)
        res = AuditLog(s.db, copy, readonly=True).verify()
        s.close()
        if not (res.ok and res.entries == 23):
            raise StoreError(f"verify said {res}")

    assert _as_nobody(verify) == ""  # no write access at all: still verifies
    assert sorted(p.name for p in copy.iterdir()) == sorted([DB_NAME, JSONL_NAME])  # wrote nothing


def test_a_corrupt_dryrun_state_is_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "st"
    _state_with_entries(state)
    for bad in ("{not json", '{"bans": [{"addr": "nonsense"}]}', "[]"):
        (state / "dryrun-state.json").write_text(bad)
        _one_clear_line(
            _netwarden("controller", "--state-dir", str(state), "--config", str(_cfg(state))),
            "dryrun-state.json",
            "unreadable dry-run state",
        )
    with sqlite3.connect(state / DB_NAME) as db:  # refused before anything was written
        assert db.execute("SELECT count(*) FROM audit WHERE event='stop'").fetchone()[0] == 1
