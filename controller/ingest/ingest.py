"""Ingest: sensor batches from the bus into the controller.

Wires a ``Collector`` into the ``Controller``'s event loop (its ZeroMQ fd plus a one-second
tick, as the collector's docstring asks), archives every batch (``RecordArchive``), and
hands each batch to the registered consumers -- today the archive and counters; the
detectors and baselines of the next milestone register here as consumers of the same
batches, so nothing about the bus or the store changes when they land.

A consumer that raises is logged and counted; it never stops ingestion or the daemon.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from controller.bus_trust import may_protect
from controller.ingest.archive import RecordArchive
from netwarden.bus import wire
from netwarden.bus.collector import Collector

log = logging.getLogger("netwarden.ingest")

Consumer = Callable[[wire.Batch], None]


class Ingest:
    def __init__(self, collector: Collector, archive: RecordArchive | None = None) -> None:
        self.collector = collector
        self.archive = archive
        self.consumers: list[tuple[str, Consumer]] = []
        self.records: Counter[str] = Counter()
        self.batches = 0
        self.consumer_errors: Counter[str] = Counter()
        self._controller: Any = None
        self._protected: set[str] = set()
        self._stopped: set[str] = set()
        #: (monotonic time, records so far), about one a second over the last ~10 s: records/s
        self._rate: deque[tuple[float, int]] = deque(maxlen=11)
        #: queue depth: batches waiting when the loop came to read them, (monotonic time, n)
        #: per read that found any, over the last minute
        self._depths: deque[tuple[float, int]] = deque(maxlen=4096)
        self.queue_depth = 0

    def add_consumer(self, name: str, fn: Consumer) -> None:
        self.consumers.append((name, fn))

    def attach(self, controller: Any) -> None:
        """Register with the controller's loop (``add_reader`` / ``add_periodic``). Sensors
        authenticated by CURVE are protected by the controller's anti-lockout (never block a
        sensor); an unauthenticated peer never is (``bus_trust.may_protect``)."""
        self._controller = controller
        controller.add_reader(self.collector.fileno(), self.pump)
        controller.add_periodic(1.0, self.pump)
        if self.archive is not None:
            self.archive.migrate()  # an archive of the previous format becomes Parquet now
            self.archive.background()  # files are built off the loop
            controller.add_periodic(3600.0, self.archive.prune)
            controller.add_periodic(1.0, self.archive.flush_due)
            at_close = getattr(controller, "at_close", None)
            if at_close is not None:  # what is still buffered goes to disk at shutdown
                at_close(self.archive.close)

    def pump(self, max_rounds: int = 8) -> int:
        """Handle everything the collector has queued; returns the number of batches.
        Handled batches are acknowledged at once: left to the collector's next poll, the
        last batch of a burst would wait for the sensor's next message (its heartbeat, up
        to a second later), its records held in the sensor's resend buffer meanwhile."""
        n = 0
        for _ in range(max_rounds):
            batches = self.collector.drain()
            self._handle(batches)
            n += len(batches)
            if not batches:
                break
            self.collector.commit()
            if not self.collector.readable():  # the acks were a send: look again
                break
        else:  # bounded, so a flood cannot starve the loop; the fd will not fire again
            call_soon = getattr(self._controller, "call_soon", None)
            if call_soon is not None:
                call_soon(self.pump)
        self.queue_depth = n  # what one wake-up found queued
        if n:
            self._depths.append((time.monotonic(), n))
            self._protect_sensors()
        self._flush_stopped()
        return n

    def _handle(self, batches: list[wire.Batch]) -> None:
        now = time.monotonic()
        if not self._rate or now - self._rate[-1][0] >= 1.0:
            self._rate.append((now, sum(self.records.values())))
        for b in batches:
            self.batches += 1
            self.records[b.record_type] += b.count
            if self.archive is not None:
                try:
                    self.archive.append(b.record_type, b.sensor_id, b.records)
                except Exception as exc:  # noqa: BLE001 - a full disk must not stop the loop
                    self.consumer_errors["archive"] += 1
                    n = self.consumer_errors["archive"]
                    if (
                        n & (n - 1) == 0
                    ):  # 1st, 2nd, 4th, 8th...: a full disk must not flood the log
                        log.warning("archive: %s (%d batches not archived so far)", exc, n)
            for name, fn in self.consumers:
                try:
                    fn(b)
                except Exception:
                    self.consumer_errors[name] += 1
                    log.exception("ingest consumer %s failed on a %s batch", name, b.record_type)

    def _flush_stopped(self) -> None:
        """A sensor that said goodbye sends nothing more: what it sent goes to disk now
        (readers of the archive see it without waiting for the flush interval)."""
        if self.archive is None:
            return
        stopped = {sid for sid, st in self.collector.sensors().items() if st.stopped}
        if stopped - self._stopped:
            self.archive.flush()
            self.archive.wait()  # on disk before anyone is told the sensor stopped
        self._stopped = stopped

    def _protect_sensors(self) -> None:
        protect = getattr(self._controller, "protect", None)
        if protect is None:
            return
        for st in self.collector.sensors().values():
            addr = st.peer_address
            if addr and addr not in self._protected and may_protect(st.key):
                self._protected.add(addr)
                if protect(addr, "sensor"):
                    log.info("sensor %s at %s is now protected from blocking", st.sensor_id, addr)

    def records_per_s(self) -> float | None:
        """Records a second over the last ~10 s (None until two samples a second apart)."""
        if len(self._rate) < 2:
            return None
        (t0, n0), (t1, _n1) = self._rate[0], self._rate[-1]
        return round(
            (sum(self.records.values()) - n0) / max(time.monotonic() - t0, t1 - t0, 1e-9), 1
        )

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.collector.endpoint,
            "batches": self.batches,
            "records": dict(self.records),
            "records_per_s": self.records_per_s(),
            "queue_depth": self.queue_depth,
            "queue_depth_max_60s": max(
                (n for t, n in self._depths if t >= time.monotonic() - 60.0), default=0
            ),
            "consumer_errors": dict(self.consumer_errors),
            "archive": None
            if self.archive is None
            else {
                "root": str(self.archive.root),
                "records_written": self.archive.records_written,
                "bytes_written": self.archive.bytes_written,
                "disk_bytes": self.archive.disk_bytes,
                "max_bytes": self.archive.max_bytes,
                "refused_full": self.archive.refused_full,
                "files_written": self.archive.files_written,
                "compactions": self.archive.compactions,
            },
            "sensors": {sid: st.as_dict() for sid, st in self.collector.sensors().items()},
            "bus": self.collector.stats(),
        }
