"""Where a writer's bytes go: a file created only when the first byte is written, or stdout.

A command that fails before writing anything (a missing or bad capture) leaves no file
behind, not even a header, and an existing file of that name is not truncated.
"""

from __future__ import annotations

import sys
from typing import IO


class Sink:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    @property
    def opened(self) -> bool:
        return self._fh is not None

    def file(self) -> IO[bytes]:
        """The binary file to write to (created on first call)."""
        if self._fh is None:
            self._fh = open(self.path, "wb") if self.path else sys.stdout.buffer  # noqa: SIM115 (closed in close())
        return self._fh

    def close(self) -> None:
        if self._fh is None:
            return
        if self.path:
            self._fh.close()
        else:
            self._fh.flush()
