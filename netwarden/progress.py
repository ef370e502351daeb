"""A progress bar (rich) for long jobs on a terminal: shown on stderr only when it is a
TTY and only once the job has run ``after_s`` seconds, so short runs, pipes and files see
nothing of it."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

#: Seconds a job runs before its bar shows (``NETWARDEN_PROGRESS_AFTER_S`` overrides).
AFTER_S = 2.0


class FileProgress:
    """Bytes done of ``total``; call it with each increment, ``close()`` at the end."""

    def __init__(
        self, total: int, label: str, after_s: float | None = None, stream: Any = None
    ) -> None:
        self.total = max(int(total), 1)
        self.label = label
        env = os.environ.get("NETWARDEN_PROGRESS_AFTER_S")
        self.after_s = after_s if after_s is not None else float(env) if env else AFTER_S
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.monotonic()
        self.bar: Any = None
        self.task: Any = None
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.t0 < self.after_s:
                return
            from rich import progress as rp
            from rich.console import Console

            self.bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
                                   rp.TimeElapsedColumn(), rp.TimeRemainingColumn(),
                                   console=Console(file=self.stream), transient=True)  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total)
        self.bar.update(self.task, completed=min(self.done, self.total))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
