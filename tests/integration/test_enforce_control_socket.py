"""The control socket and CLI against a dry-run controller served from a thread (no root)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from controller_proc import ControllerProcess

from controller.app import Controller
from controller.ops.server import ControlServer, request, socket_path
from netwarden.cli import main as cli
from netwarden.errors import ControlError
from tests.jsonl import jsonl


def test_requests_answers_and_refusals(running: Controller, tmp_path: Path) -> None:
    assert request(tmp_path, "ping")["result"]["backend"] == "dryrun"
    ok = request(tmp_path, "ban", addr="203.0.113.4", ttl=60, reason="test")
    assert ok["ok"] and ok["result"]["ttl_s"] == 60
    refused = request(tmp_path, "ban", addr="192.0.2.1", ttl=60)
    assert refused == {"ok": False, "refused": True, "error": refused["error"]}
    assert "gateway" in refused["error"]
    assert request(tmp_path, "frobnicate")["error"] == "unknown operation 'frobnicate'"
    assert "not an IP address" in request(tmp_path, "ban", addr="nonsense")["error"]
    assert "bad request" in request(tmp_path, "ban")["error"]  # missing addr
    actors = {e["actor"] for e in running.audit.entries() if e["event"] == "ban"}
    assert actors == {f"operator:{_me()}(uid={os.getuid()},pid={os.getpid()})"}


def test_cli_exit_codes(
    running: Controller, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    assert cli(["ban", "203.0.113.9", "--ttl", "30", "--reason", "cli", "--state-dir", d]) == 0
    assert cli(["ban", "192.0.2.1", "--state-dir", d]) == 3
    assert "refused" in capsys.readouterr().err
    assert cli(["allow", "add", "198.51.100.0/24", "--state-dir", d]) == 0
    assert cli(["ban", "198.51.100.7", "--state-dir", d]) == 3
    assert cli(["allow", "remove", "198.51.100.0/24", "--state-dir", d]) == 0
    assert cli(["allow", "remove", "198.51.100.0/24", "--state-dir", d]) == 1  # not listed
    capsys.readouterr()
    assert cli(["bans", "--json", "--state-dir", d]) == 0
    assert [b["addr"] for b in jsonl(capsys.readouterr().out, "ban")] == ["203.0.113.9"]
    assert (
        cli(
            [
                "detect",
                "--kind",
                "port_scan",
                "--attacker",
                "192.0.2.1",
                "--score",
                "99",
                "--confidence",
                "1",
                "--state-dir",
                d,
            ]
        )
        == 3
    )
    assert cli(["approve", "d-nope", "--state-dir", d]) == 1
    assert cli(["audit", "--verify", "--state-dir", d]) == 0


def test_socket_is_private_and_single(running: Controller, tmp_path: Path) -> None:
    mode = stat.S_IMODE(os.stat(socket_path(tmp_path)).st_mode)
    assert mode == 0o600
    with pytest.raises(ControlError, match="another controller"):
        ControlServer(tmp_path, lambda *_: None)


def test_stale_socket_is_replaced_and_missing_controller_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no controller"):
        request(tmp_path, "ping")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path(tmp_path)))
    stale.close()  # a controller that died without cleaning up
    server = ControlServer(tmp_path, lambda op, args, actor: {"op": op})
    server.close()
    assert not socket_path(tmp_path).exists()


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def test_controller_command_with_ingest(tmp_path: Path) -> None:
    """`netwarden controller --listen` serves bans and sensor ingest from one loop."""
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[safety]\ndiscover_local = false\n")
    ctl = ControllerProcess(tmp_path / "st", cfg, "--listen", f"tcp://127.0.0.1:{port}")
    try:
        assert "controller ready: backend=dryrun" in ctl.ready
        status = request(tmp_path / "st", "ingest")
        assert status["ok"] and status["result"]["batches"] == 0
        assert request(tmp_path / "st", "ban", addr="203.0.113.5", ttl=30)["ok"]
        assert ctl.stop() == 0
    finally:
        ctl.kill()


def test_state_dir_from_environment_and_dryrun_by_default(tmp_path: Path) -> None:
    """With neither --enforce nor --state-dir, the controller runs dry and both it and the
    CLI find their state through NETWARDEN_STATE_DIR; a refused ban says why."""
    import signal
    import subprocess
    import sys

    state = tmp_path / "from-env"
    env = {**os.environ, "NETWARDEN_STATE_DIR": str(state)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "netwarden", "controller"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "netwarden", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert "backend=dryrun" in ready and f"state_dir={state}" in ready, ready
        assert (state / "control.sock").exists()
        r = run("ban", "203.0.113.44", "--ttl", "30", "--reason", "env test")
        assert r.returncode == 0, r.stderr
        bans = jsonl(run("bans", "--json").stdout, "ban")
        assert [b["addr"] for b in bans] == ["203.0.113.44"]
        r = run("ban", "127.0.0.1", "--ttl", "30")  # loopback: anti-lockout
        assert r.returncode == 3 and "refused" in r.stderr and "loopback" in r.stderr, r
        # --state-dir wins over the environment
        other = tmp_path / "elsewhere"
        r = subprocess.run(
            [sys.executable, "-m", "netwarden", "bans", "--state-dir", str(other)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert r.returncode == 1 and str(other) in r.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = run("audit", "--verify")
    assert r.returncode == 0 and "database: chain ok" in r.stdout, r.stdout


def test_unban_inside_a_range_ban_names_the_range(
    running: Controller, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    assert cli(["ban", "198.51.100.0/24", "--ttl", "60", "--state-dir", d]) == 0
    assert cli(["ban", "198.51.100.7", "--ttl", "60", "--state-dir", d]) == 0
    capsys.readouterr()
    assert cli(["unban", "198.51.100.7", "--state-dir", d]) == 0
    out = capsys.readouterr()
    assert "unbanned 198.51.100.7 (1 bans lifted)" in out.out
    assert "still blocked by the range ban 198.51.100.0/24" in out.err
    assert cli(["unban", "203.0.113.200", "--state-dir", d]) == 0
    out = capsys.readouterr()
    assert "was not banned" in out.out and out.err == ""
    assert {str(b.addr) for b in running.enforcer.list_bans()} == {"198.51.100.0/24"}
