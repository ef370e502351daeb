"""The one sensor loop, for capture files and live interfaces alike.

    packet source --batches--> Pipeline (flow engine, then telemetry) --records--> consumer

A packet source is ``PcapSource`` (capture files, flat out or paced) or
``sensor.capture.ring.RingSource`` (one AF_PACKET ring). ``SensorLoop`` feeds its batches
through a ``sensor.pipeline.Pipeline`` and yields ``(kind, records)``; an idle source (a
paced file between packets, a quiet wire) still gives the loop a turn, so time-based work
(flow timeouts, partial bus messages, stats lines) runs without traffic. Live fanout workers
(``sensor.live``) run this same loop in their own processes.

Also here, once each: the definition of loss (``LOSS_COUNTERS``), the stop flag every loop
checks and its signal handlers (``Stop``), and the bus side of ``netwarden sensor``
(``Outbox``, ``publish``).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from sensor.pipeline import FlowSource, Pipeline, RecordSource, TelemetrySource

if TYPE_CHECKING:
    import numpy as np

    from netwarden.bus.publisher import Publisher
    from sensor.capture.batch import PacketBatch
    from sensor.engine.config import EngineConfig

#: The one definition of loss: packets the sensor saw (or should have seen) but could not
#: turn into records, and records emitted early because a table was full. Every capture
#: path reports these names, cumulative, in bus headers and stats lines.
LOSS_COUNTERS = (
    "kernel_drops",  # the kernel had no ring room (PACKET_STATISTICS)
    "ring_freezes",  # the ring was full
    "ring_losing",  # blocks the kernel marked as having lost packets
    "truncated",  # packets cut by the ring's frame size
    "queue_overruns",  # a fanout worker's output queue to the parent was full
    "link_down",  # polls that found the link down
    "decode_errors",  # packets the engine could not decode
    "checksum_errors",  # packets dropped for a bad checksum
    "frag_dropped",  # IP fragments given up on
    "flow_evictions",  # flows ended early by a full flow table
    "host_evictions",  # telemetry hosts pushed out of a full table
    "pair_evictions",  # telemetry host pairs pushed out of a full table
)
#: Engine counters reported under a loss name.
_ALIASES = {"flows_evicted": "flow_evictions"}


def loss_counters(counters: dict[str, int]) -> dict[str, int]:
    """The loss subset of ``counters`` (engine names mapped), every name present."""
    named = {_ALIASES.get(k, k): v for k, v in counters.items()}
    return {k: int(named.get(k, 0)) for k in LOSS_COUNTERS}


class Stop:
    """The stop flag every loop checks between batches.

    Set by ``set()``, by SIGINT/SIGTERM while ``install()``'s handlers are in place, or
    through a shared ``multiprocessing`` event (``Stop(event)``: fanout workers and their
    parent share one)."""

    def __init__(self, event: Any = None) -> None:
        self.event = event
        self.signum = 0
        self._set = False

    def share(self, event: Any) -> None:
        """From now on also set (and be set through) ``event``, a ``multiprocessing`` event."""
        self.event = event
        if self._set:
            event.set()

    def set(self, signum: int = 0) -> None:
        self.signum = self.signum or signum
        self._set = True
        if self.event is not None:
            self.event.set()

    def __bool__(self) -> bool:
        return self._set or (self.event is not None and self.event.is_set())

    def install(
        self,
        signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
        ignore: Sequence[int] = (),
    ) -> Callable[[], None]:
        """Let ``signals`` set the flag (and ``ignore`` be ignored); returns a function that
        restores the previous handlers."""
        old = {s: signal.getsignal(s) for s in (*signals, *ignore)}
        for s in signals:
            signal.signal(s, lambda signum, _frame: self.set(signum))
        for s in ignore:
            signal.signal(s, signal.SIG_IGN)

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore


class PacketSource(Protocol):
    """Where a ``SensorLoop`` gets packets."""

    def batches(self, stop: Stop) -> Iterator[PacketBatch]: ...

    def idle_ns(self) -> int | None: ...

    def tail(self) -> Iterator[PacketBatch]: ...

    def counters(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def _slice(b: PacketBatch, i: int, j: int) -> PacketBatch:
    from sensor.capture.batch import PacketBatch

    return PacketBatch(b.buffer, b.offset[i:j], b.caplen[i:j], b.wirelen[i:j], b.ts_ns[i:j],
                       b.linktype[i:j], b.iface[i:j], count=j - i)  # fmt: skip


def paced(
    batches: Iterator[PacketBatch], speed: float, stop: Stop, idle_s: float = 0.5
) -> Iterator[PacketBatch]:
    """Release packets when they are due at ``speed`` x their recorded pace. While waiting,
    yield an empty batch every ``idle_s`` so the caller can flush partial messages."""
    import numpy as np

    from sensor.capture.batch import PacketBatch

    t0_net: int | None = None
    t0_wall = last = 0.0
    idle = PacketBatch.empty(0)
    for b in batches:
        if not b.count:
            continue
        ts = b.ts_ns[: b.count].astype(np.int64)
        if t0_net is None:
            t0_net, t0_wall = int(ts[0]), time.monotonic()
        due = t0_wall + (ts - t0_net) / 1e9 / speed
        i = 0
        while i < b.count:
            if stop:
                return
            now = time.monotonic()
            j = int(np.searchsorted(due, now, side="right"))
            if j > i:
                yield _slice(b, i, j)
                i, last = j, now
            elif now - last >= idle_s:
                last = now
                yield idle
            else:
                time.sleep(min(due[i] - now, 0.1))


class PcapSource:
    """Capture files, in order, through the engine backend's ``PcapReader``; flat out, or
    paced at ``speed`` x their recorded rate (in smaller batches, so packets leave close to
    their due time)."""

    def __init__(
        self,
        backend: ModuleType,
        paths: Sequence[str],
        speed: float = 0.0,
        max_packets: int | None = None,
    ) -> None:
        self.backend = backend
        self.paths = list(paths)
        self.speed = speed
        self.max_packets = max_packets or (256 if speed > 0 else 4096)

    def batches(self, stop: Stop) -> Iterator[PacketBatch]:
        max_packets = self.max_packets
        for path in self.paths:
            batches: Iterator[PacketBatch] = self.backend.PcapReader(path).batches(
                max_packets=max_packets
            )
            if self.speed > 0:
                batches = paced(batches, self.speed, stop)
            yield from batches

    def idle_ns(self) -> int | None:
        return None  # a file's clock is its packets' timestamps

    def tail(self) -> Iterator[PacketBatch]:
        return iter(())

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class _NullEngine:
    """Stands in for the flow engine when a worker only counts packets."""

    def feed(self, batch: PacketBatch, pktsum: Any = None) -> None:
        pass

    def advance(self, now_ns: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def drain_flows(self, out: np.ndarray) -> int:
        return 0

    drain_arp = drain_flows

    def stats(self) -> dict[str, int]:
        return {}


def make_pipeline(
    config: EngineConfig,
    *,
    backend: str | ModuleType | None = None,
    telemetry: bool = True,
    window: float | None = None,
    iface: int = 0,
    decode: bool = True,
) -> Pipeline:
    """The flow engine (first: it fills the packet summaries telemetry reads), then per-host
    telemetry when asked for and importable. ``decode=False`` counts packets only."""
    from netwarden.errors import ConfigError
    from sensor.engine import load_backend

    engine: Any = _NullEngine()
    if decode:
        mod = backend if isinstance(backend, ModuleType) else load_backend(backend)
        if not hasattr(mod, "FlowEngine"):
            raise ConfigError(f"flow engine backend {mod.__name__} has no FlowEngine")
        engine = mod.FlowEngine(config)
    sources: list[RecordSource] = [FlowSource(engine)]
    if telemetry and decode:
        from netwarden.memory import keep_freed_memory

        keep_freed_memory()  # telemetry hands out a new buffer every window (netwarden/memory.py)
        tel_backend = backend if isinstance(backend, str) else None
        try:
            sources.append(TelemetrySource(window, iface=iface, backend=tel_backend,
                                           identity=(config.sensor, config.session)))  # fmt: skip
        except ImportError:
            pass  # no telemetry backend: flows and ARP only
    return Pipeline(sources)


class SensorLoop:
    """Feed a packet source's batches through a pipeline; ``records()`` yields what comes out.

    ``on_tick()`` runs after every batch (including the empty ones an idle source yields).
    On a fault (a truncated file, a removed interface) everything fed so far is flushed and
    yielded, then the fault is raised."""

    def __init__(
        self,
        source: PacketSource,
        pipeline: Pipeline,
        stop: Stop | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.stop = stop if stop is not None else Stop()
        self.on_tick = on_tick
        self.packets = 0
        self.emitted: dict[str, int] = {}

    def _feed(self, batch: PacketBatch) -> None:
        n = batch.count
        self.pipeline.feed(batch)
        self.pipeline.advance(int(batch.ts_ns[n - 1]))
        self.packets += n

    def _drain(self) -> Iterator[tuple[str, np.ndarray]]:
        for kind, recs in self.pipeline.drain():
            self.emitted[kind] = self.emitted.get(kind, 0) + len(recs)
            yield kind, recs

    def _tick(self) -> None:
        if self.on_tick is not None:
            self.on_tick()

    def records(self) -> Iterator[tuple[str, np.ndarray]]:
        fault: BaseException | None = None
        try:
            for batch in self.source.batches(self.stop):
                if batch.count:
                    self._feed(batch)
                else:
                    now = self.source.idle_ns()
                    if now is not None:
                        self.pipeline.advance(now)
                yield from self._drain()
                self._tick()
                if self.stop:
                    break
        except Exception as exc:  # noqa: BLE001 -- re-raised once what was fed is flushed
            fault = exc
        for batch in self.source.tail():
            self._feed(batch)
            yield from self._drain()
        self.pipeline.finish()
        yield from self._drain()
        self._tick()
        if fault is not None:
            raise fault

    def counters(self) -> dict[str, int]:
        """Cumulative: engine and telemetry counters, then the capture side's, then records
        emitted (``flows``, ``host_records``) and the loss counters under their names."""
        merged = self.pipeline.counters()
        merged["packets"] = self.packets
        merged.update(self.source.counters())
        merged["flows"] = self.emitted.get("flow", 0)
        merged["host_records"] = self.emitted.get("host", 0)
        merged.update(loss_counters(merged))
        return merged


# ---- publishing on the bus (netwarden sensor) ---------------------------------------------


class Outbox:
    """Collect records per type and publish them in messages of ``batch`` records; a partial
    message waits at most ``max_wait_s`` of wall time so quiet periods are not held back."""

    def __init__(
        self,
        publisher: Publisher,
        batch: int,
        max_wait_s: float = 1.0,
        backpressure: Callable[[], bool] | None = None,
    ) -> None:
        self.publisher = publisher
        # When set, wait for buffer room instead of evicting, until it returns False.
        self.backpressure = backpressure
        self.batch = batch
        self.max_wait_s = max_wait_s
        self._parts: dict[str, list[np.ndarray]] = {}
        self._counts: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self.sent: dict[str, int] = {}

    def add(self, kind: str, recs: np.ndarray) -> None:
        if not len(recs):
            return
        self._parts.setdefault(kind, []).append(recs)
        self._counts[kind] = self._counts.get(kind, 0) + len(recs)
        self._since.setdefault(kind, time.monotonic())
        if self._counts[kind] >= self.batch:
            self._send(kind, keep_tail=True)

    def tick(self) -> None:
        now = time.monotonic()
        for kind in [k for k, t in self._since.items() if now - t >= self.max_wait_s]:
            self._send(kind, keep_tail=False)

    def flush(self) -> None:
        for kind in list(self._parts):
            self._send(kind, keep_tail=False)

    def _send(self, kind: str, keep_tail: bool) -> None:
        parts = self._parts.pop(kind, [])
        self._counts.pop(kind, None)
        self._since.pop(kind, None)
        chunks, tail = split_batches(parts, self.batch, keep_tail)
        for chunk in chunks:
            if self.backpressure is not None:
                waited = 0
                while not self.publisher.wait_for_room(chunk.nbytes, 0.2):
                    waited += 1
                    if waited == 25:  # say so once: a stalled sensor should not be a mystery
                        print(
                            f"sensor: bus buffer full, waiting for the controller at "
                            f"{self.publisher.endpoint}",
                            file=sys.stderr,
                            flush=True,
                        )
                    if not self.backpressure():
                        break
            # The records are ours (handed over by the loop): sent without a copy.
            self.publisher.send(kind, chunk, owned=True)
            self.sent[kind] = self.sent.get(kind, 0) + len(chunk)
        for part in tail:
            self.add(kind, part)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    from netwarden.records.schema import join_records

    return parts[0] if len(parts) == 1 else join_records(parts)


def split_batches(
    parts: list[np.ndarray], batch: int, keep_tail: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cut record arrays, in order, into messages of ``batch`` records: views of the parts,
    except a message that spans two parts (joined, at most ``batch`` records copied). A
    part's remainder of at least half a batch goes as a message of its own (a view, not
    copied into the next message). With ``keep_tail`` the last partial message is returned
    as parts to keep, else sent too."""
    out: list[np.ndarray] = []
    pend: list[np.ndarray] = []
    pn = 0
    for part in parts:
        i = 0
        if pn:  # complete the message begun by earlier parts
            i = min(batch - pn, len(part))
            pend.append(part[:i])
            pn += i
            if pn < batch:
                continue
            out.append(_joined(pend))
            pend, pn = [], 0
        while len(part) - i >= batch:
            out.append(part[i : i + batch])
            i += batch
        rest = len(part) - i
        if rest >= max(1, batch // 2):
            out.append(part[i:])
        elif rest:
            pend.append(part[i:])
            pn = rest
    if keep_tail or not pend:
        return out, pend
    out.append(_joined(pend))
    return out, []


class Capture(Protocol):
    """What ``publish`` reads: a ``SensorLoop`` or a ``sensor.live.LiveCapture``."""

    on_tick: Callable[[], None] | None

    def records(self) -> Iterator[tuple[str, np.ndarray]]: ...

    def counters(self) -> dict[str, int]: ...


class StatsLine:
    """``sensor:`` lines on stderr every ``interval`` seconds and at exit: packets, records
    sent, losses (the nonzero ``LOSS_COUNTERS``), telemetry table occupancy and the bus."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.t0 = self.t_last = time.monotonic()
        self.pk_last = 0

    def maybe(
        self, counters: dict[str, int], outbox: Outbox, pub: Publisher, final: bool = False
    ) -> None:
        now = time.monotonic()
        if not final and (self.interval <= 0 or now - self.t_last < self.interval):
            return
        packets = counters.get("packets", 0)
        span = (now - self.t0) if final else (now - self.t_last)
        pps = (packets if final else packets - self.pk_last) / max(span, 1e-9)
        ps = pub.stats()
        sent = " ".join(f"{k}={v}" for k, v in sorted(outbox.sent.items())) or "none"
        losses = loss_counters(counters)
        lost = " ".join(f"{k}={v}" for k, v in sorted(losses.items()) if v) or "none"
        print(
            f"sensor: packets={packets} pps={pps:.0f} records[{sent}] losses[{lost}] "
            + telemetry_occupancy(counters)
            + f"bus: sent={ps['records']} awaiting_ack={ps['buffered_records']} "
            f"dropped={ps['bus_dropped_records']} resends={ps['resends']}"
            + (" (final)" if final else ""),
            file=sys.stderr, flush=True,
        )  # fmt: skip
        self.t_last, self.pk_last = now, packets


def telemetry_occupancy(counters: dict[str, int]) -> str:
    """``telemetry[hosts=N/CAP pairs=N/CAP partial=N] `` for a stats line: live table entries
    of the tables' capacity and the partial windows that evictions sent early ('' without
    telemetry)."""
    if "host_capacity" not in counters:
        return ""
    c = counters
    partial = c.get("host_partial", 0) + c.get("pair_partial", 0)
    return (
        f"telemetry[hosts={c.get('hosts', 0)}/{c['host_capacity']} "
        f"pairs={c.get('pairs', 0)}/{c.get('pair_capacity', 0)} partial={partial}] "
    )


def publish(
    capture: Capture,
    publisher: Publisher,
    batch: int,
    *,
    stats_interval: float = 1.0,
    backpressure: Callable[[], bool] | None = None,
    max_wait_s: float = 1.0,
    observe: Callable[[dict[str, int]], None] | None = None,
) -> None:
    """Publish everything ``capture`` yields in messages of ``batch`` records, with the loss
    counters in every header; a stats line every ``stats_interval`` seconds and at exit. A
    partial message waits at most ``max_wait_s`` (0: it leaves after the batch that made it).
    ``observe`` gets the capture's cumulative counters at each tick (metrics)."""
    outbox = Outbox(publisher, batch, max_wait_s=max_wait_s, backpressure=backpressure)
    stats = StatsLine(stats_interval)
    last = [0.0]

    def tick(final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - last[0] < 0.25:  # counters cost a little: not every batch
            outbox.tick()
            return
        last[0] = now
        counters = capture.counters()
        publisher.set_counters(loss_counters(counters))
        if observe is not None:
            observe(counters)
        if final:
            outbox.flush()
        else:
            outbox.tick()
        stats.maybe(counters, outbox, publisher, final)

    capture.on_tick = tick
    try:
        for kind, recs in capture.records():
            outbox.add(kind, recs)
    finally:
        tick(final=True)
