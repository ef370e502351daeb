"""Flow records converted and written on other threads while the engine reads on.

Conversion (records -> Arrow -> the format's bytes) runs on a small pool of threads, so the
work of several batches proceeds at once and, when the engine is done, the core it leaves
is used too; one writing thread hands the results to the file in the order the records were
put. The work is mostly in code that releases the GIL (Arrow compute, the compiled row joins,
numpy, file writes). The writer (and with it pyarrow) is created on the writing thread, so
importing it overlaps with the engine's start.

A writer may split its work in two: ``render(batch)`` (any thread, in any order) and
``emit(rendered)`` (the writing thread, in order); one without them gets ``write(batch)``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from sensor.export.writers import FlowWriter


class BackgroundWriter:
    def __init__(self, make: Callable[[], FlowWriter], depth: int = 4, converters: int = 2) -> None:
        self._make = make
        self._writer: FlowWriter | None = None
        self._made = threading.Event()
        # Futures in the order their records were put: bounded, so conversion and memory
        # stay at most ``depth`` batches ahead of the file.
        self._queue: queue.Queue[Future[Any] | None] = queue.Queue(depth)
        self._pool = ThreadPoolExecutor(converters, thread_name_prefix="flow-convert")
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flow-writer", daemon=True)
        self._thread.start()

    def _convert(self, records: np.ndarray) -> Any:
        self._made.wait()
        writer = self._writer
        if writer is None or self._error is not None:
            return None
        from netwarden.records.arrow import to_batch

        batch = to_batch("flow", records, writer.columns)
        render = getattr(writer, "render", None)
        return render(batch) if render is not None else batch

    def _run(self) -> None:
        try:
            from netwarden.records.arrow import to_batch  # noqa: F401 -- imported here, off the engine's thread

            self._writer = self._make()
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller in finish()
            self._error = exc
        finally:
            self._made.set()
        while (fut := self._queue.get()) is not None:
            try:
                out = fut.result()
                if self._error is not None or self._writer is None:
                    continue  # drain, so put() never blocks on a failed writer
                emit = getattr(self._writer, "emit", None)
                if emit is not None:
                    emit(out)
                else:
                    self._writer.write(out)
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller in finish()
                if self._error is None:
                    self._error = exc

    def put(self, records: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(self._pool.submit(self._convert, records))

    def finish(self) -> FlowWriter:
        """Wait until every record put is written; the writer, still open (or the first
        error of the converting or writing threads)."""
        self._queue.put(None)
        self._thread.join()
        self._pool.shutdown()
        if self._error is not None:
            raise self._error
        assert self._writer is not None
        return self._writer
