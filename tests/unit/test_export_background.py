"""BackgroundWriter: every record put is written, in order, by the writing thread; an error
there reaches the caller instead of vanishing with the thread."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from netwarden.records.schema import FLOW_DTYPE
from sensor.export.background import BackgroundWriter


class Recorder:
    columns = ("flow_id", "orig_pkts")

    def __init__(self, fail_at: int = -1) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.fail_at = fail_at

    def write(self, batch: pa.RecordBatch) -> None:
        if len(self.batches) == self.fail_at:
            raise OSError("disk full")
        self.batches.append(batch)

    def close(self) -> None:
        pass


def records(n: int, first: int) -> np.ndarray:
    recs = np.zeros(n, FLOW_DTYPE)
    recs["flow_id"] = np.arange(first, first + n)
    return recs


def test_every_batch_written_in_order_with_the_writers_columns() -> None:
    rec = Recorder()
    bg = BackgroundWriter(lambda: rec, depth=2)
    for i in range(10):
        bg.put(records(7, 7 * i))
    assert bg.finish() is rec
    assert all(set(b.schema.names) == set(Recorder.columns) for b in rec.batches)
    assert len(rec.batches) == 10
    ids = [x for b in rec.batches for x in b.column("flow_id").to_pylist()]
    assert ids == list(range(70))


def test_a_write_error_reaches_the_caller() -> None:
    bg = BackgroundWriter(lambda: Recorder(fail_at=2), depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(50):  # put() raises once the thread has failed, or finish() does
            bg.put(records(3, 3 * i))
        bg.finish()


def test_a_writer_that_cannot_be_made_reaches_the_caller() -> None:
    def broken() -> Recorder:
        raise PermissionError("no")

    bg = BackgroundWriter(broken)
    with pytest.raises(PermissionError):  # from put() or finish(), whichever comes first
        bg.put(records(1, 0))
        bg.finish()


class SlowRenderer(Recorder):
    """Renders on the converting threads, some batches slower than later ones."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self.emitted: list[int] = []

    def render(self, batch: pa.RecordBatch) -> int:
        import threading
        import time

        first = batch.column("flow_id")[0].as_py()
        self.threads.add(threading.current_thread().name)
        time.sleep(0.02 if first % 3 == 0 else 0.001)  # finish out of order
        return int(first)

    def emit(self, rendered: int) -> None:
        self.emitted.append(rendered)


def test_batches_render_in_parallel_and_are_emitted_in_order() -> None:
    rec = SlowRenderer()
    bg = BackgroundWriter(lambda: rec, depth=4, converters=2)
    for i in range(30):
        bg.put(records(1, i))
    assert bg.finish() is rec
    assert rec.emitted == list(range(30))
    assert len(rec.threads) == 2 and all(t.startswith("flow-convert") for t in rec.threads)
