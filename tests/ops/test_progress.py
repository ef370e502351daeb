"""The replay's progress bar: on stderr when it is a terminal (a pty here) and the replay
runs longer than the delay; nothing on a pipe; stdout stays the summary either way."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from netwarden.progress import FileProgress

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate

BAR = "━"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_on_a_terminal_only_after_the_delay() -> None:
    tty, pipe = _Tty(), io.StringIO()
    for stream, after in ((tty, 0.0), (pipe, 0.0)):
        bar = FileProgress(1000, "replay", after_s=after, stream=stream)
        for _ in range(4):
            bar(250)
        bar.close()
        assert bar.done == 1000
    assert "replay" in tty.getvalue() and BAR in tty.getvalue()
    assert pipe.getvalue() == ""
    late = _Tty()
    bar = FileProgress(1000, "replay", after_s=3600.0, stream=late)
    bar(1000)
    bar.close()
    assert late.getvalue() == ""  # a short job shows nothing


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("progress") / "demo.pcap"
    generate.build().write(p)
    return p


def test_replay_on_a_terminal_draws_a_bar_and_the_summary_is_unchanged(pcap: Path) -> None:
    master, slave = os.openpty()
    env = {**os.environ, "NETWARDEN_PROGRESS_AFTER_S": "0", "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "netwarden", "replay", "--json", str(pcap)],
                            stdout=subprocess.PIPE, stderr=slave, cwd=REPO, env=env)  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the pty closed: the replay ended
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "replay" in text and BAR in text
    lines = out.decode().splitlines()
    assert lines and lines[-1].startswith('{"type": "summary"') and BAR not in out.decode()
