"""``netwarden controller`` in a subprocess, ready once it prints its ready line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path


def controller_argv(state: Path, config: Path, *extra: str) -> list[str]:
    """The command line of ``netwarden controller`` on ``state`` with ``config``."""
    cmd = [sys.executable, "-m", "netwarden", "controller", *extra]
    return [*cmd, "--state-dir", str(state), "--config", str(config)]


class ControllerProcess:
    """``prefix`` runs it elsewhere (``ip netns exec NS``); ``extra`` are more options."""

    def __init__(
        self, state: Path, config: Path, *extra: str, prefix: tuple[str, ...] = ()
    ) -> None:
        self.state = state
        self.proc = subprocess.Popen(
            [*prefix, *controller_argv(state, config, *extra)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ready = self.proc.stdout.readline()
        if "controller ready" not in self.ready:
            self.proc.kill()
            raise AssertionError(
                f"controller did not start: {self.ready!r} {self.proc.stderr.read()}"
            )  # type: ignore[union-attr]

    def counts(self) -> dict[str, int]:
        return {
            k: int(v) for k, v in re.findall(r"(kept|readded|removed|expired)=(\d+)", self.ready)
        }

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
