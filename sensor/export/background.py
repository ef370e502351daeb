"""Flow records converted and written on a second thread while the engine reads on.

The writer's work is mostly in code that releases the GIL (Arrow compute, the compiled row
joins, numpy, file writes), so on a machine with a free core ``netwarden flows`` costs about
the engine's time plus the last batch, not the sum of both. The writer (and with it pyarrow)
is created on that thread too, so importing it overlaps with the engine's start.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from sensor.export.writers import FlowWriter


class BackgroundWriter:
    def __init__(self, make: Callable[[], FlowWriter], depth: int = 4) -> None:
        self._make = make
        self._writer: FlowWriter | None = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flow-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from netwarden.records.arrow import to_batch

            self._writer = self._make()
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller in finish()
            self._error = exc
        while (recs := self._queue.get()) is not None:
            if self._error is not None or self._writer is None:
                continue  # drain, so put() never blocks on a failed writer
            try:
                self._writer.write(to_batch("flow", recs, self._writer.columns))
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller in finish()
                self._error = exc

    def put(self, records: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(records)

    def finish(self) -> FlowWriter:
        """Wait until every record put is written; the writer, still open (or the first
        error of the writing thread)."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._writer is not None
        return self._writer
