"""Live capture on AF_PACKET: TPACKET_V3 ring, PACKET_FANOUT workers, loss accounting.

One ``CaptureWorker`` owns one ring socket, one flow engine (the same decoder and flow
table the pcap path uses, from ``sensor.engine.load_backend``) and one per-host telemetry
table. With ``workers > 1`` each worker is its own process and the sockets form one
PACKET_FANOUT group hashed by flow, so every flow lands whole in one worker; the parent
merges what they emit. Records leave a worker as ``(kind, array)`` items, kind being a key
of ``netwarden.records.schema.RECORD_TYPES`` ("flow", "arp", "host", "pair"). The fanout group
defragments IP before hashing (fragments after the first have no ports), so with several
workers the kernel hands over reassembled datagrams: the same flows, fewer "packets".

Loss is counted where it happens: ``kernel_drops`` (PACKET_STATISTICS), ``ring_losing``
(blocks the kernel marked as having lost packets), ``ring_freezes`` (the ring was full),
``queue_overruns`` (a worker's output queue to the parent was full), ``decode_errors`` and
``frag_dropped`` (engine), ``bus_drops`` (the publisher, in ``run_sensor``); also
``flow_evictions`` and ``host_evictions`` (full tables: records emitted early, not lost) and
``link_down``. Counters are reported every second and on exit.

On a loopback interface the kernel shows every packet twice (leaving, then arriving); the
ring reader drops the PACKET_OUTGOING copy so each packet is counted once.

Packet timestamps are the kernel's wall clock, so when the wire is idle the worker advances
the engine and telemetry to ``time.time_ns()``: flows still time out and windows still
close with no traffic.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from netwarden.errors import ConfigError, InterfaceError, NetWardenError
from sensor.capture.afpacket import (
    RingConfig,
    is_loopback,
    kernel_stats,
    open_ring_socket,
    receive_offloads,
)
from sensor.capture.afpacket import ifindex as _ifindex
from sensor.capture.batch import PacketBatch
from sensor.engine.config import EngineConfig
from sensor.pipeline import FlowSource, RecordSource, TelemetrySource

log = logging.getLogger(__name__)

#: Counters every stats report carries, summed over workers.
COUNTERS = (
    "packets",
    "bytes",
    "kernel_packets",
    "kernel_drops",
    "ring_freezes",
    "ring_losing",
    "truncated",
    "queue_overruns",
    "decode_errors",
    "bus_drops",
    "flows",
    "host_records",
    "host_evictions",
    "link_down",
    "frag_dropped",
    "flow_evictions",
)


def resolve_workers(value: int | str | None) -> int:
    """``auto`` means one worker per core minus one for the parent, at least one."""
    if value is None:
        return 1
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return max(1, (os.cpu_count() or 1) - 1)
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(f"--workers must be a number or 'auto', got {value!r}") from None
    if not 1 <= value <= 64:
        raise ConfigError(f"--workers must be 1..64, got {value}")
    return value


@dataclass
class WorkerSpec:
    """Everything a worker process needs; plain data so it pickles under ``spawn``."""

    iface: str
    engine_config: EngineConfig
    ring: RingConfig
    bpf_instructions: bytes | None = None
    fanout_group: int | None = None
    worker_id: int = 0
    backend: str | None = None  # sensor.engine backend name; None = default selection
    decode: bool = True  # False: count packets only (ring benchmark, no engine)


@dataclass
class CaptureStats:
    """Cumulative counters of one capture (one worker, or the sum over workers)."""

    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    started: float = field(default_factory=time.monotonic)

    def add(self, other: dict[str, int]) -> None:
        for k, v in other.items():
            self.counters[k] = self.counters.get(k, 0) + int(v)

    def line(self, prev: dict[str, int] | None = None, interval: float = 1.0) -> str:
        c = self.counters
        pps = (c["packets"] - (prev or {}).get("packets", 0)) / max(interval, 1e-9)
        return (
            f"capture: {c['packets']} pkts ({pps:.0f} pps), kernel drops {c['kernel_drops']}, "
            f"ring freezes {c['ring_freezes']}, queue overruns {c['queue_overruns']}, "
            f"decode errors {c['decode_errors']}, bus drops {c['bus_drops']}, "
            f"flows {c['flows']}"
        )


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


class CaptureWorker:
    """One ring, one engine, one telemetry table. ``step()`` does one drain/feed/emit round."""

    def __init__(self, spec: WorkerSpec) -> None:
        from netwarden.records.schema import PKTSUM_DTYPE
        from sensor import engine as engine_mod
        from sensor.capture._ring import RxRing

        self.spec = spec
        ring = spec.ring
        engine: Any = _NullEngine()
        if spec.decode:
            backend = engine_mod.load_backend(spec.backend)
            if not hasattr(backend, "FlowEngine"):
                raise ConfigError(f"flow engine backend {backend.__name__} has no FlowEngine")
            engine = backend.FlowEngine(spec.engine_config)
        self.flow_source = FlowSource(engine)
        self.telemetry: TelemetrySource | None = None
        if ring.telemetry and spec.decode:
            self.telemetry = TelemetrySource(
                ring.telemetry_window, iface=spec.worker_id & 0xFF, backend=spec.backend
            )
        # The flow engine first: it fills the packet summaries telemetry reads.
        self.sources: list[RecordSource] = [self.flow_source]
        if self.telemetry is not None:
            self.sources.append(self.telemetry)
        self.sock, self.mapped = open_ring_socket(
            spec.iface, ring, spec.bpf_instructions, spec.fanout_group
        )
        self.ring = RxRing(
            self.sock.fileno(),
            self.mapped,
            ring.block_size,
            ring.block_count,
            skip_outgoing=is_loopback(spec.iface),  # lo shows each packet leave and arrive
        )
        cap = ring.batch_packets
        self.batch = PacketBatch.empty(cap)
        # Room for a whole block plus re-inserted VLAN tags, so one packet always fits.
        self.batch.buffer = np.zeros(max(ring.block_size * 2, cap * 256), np.uint8)
        self.pktsum = np.zeros(cap, PKTSUM_DTYPE) if self.telemetry is not None else None
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._last_ts = 0

    def fill(self, timeout_ms: int) -> int:
        n = self.ring.fill(self.batch, self.spec.worker_id & 0xFF, timeout_ms)
        if n < 0:
            self._socket_error(timeout_ms)
            n = 0
        self.batch.count = n
        return n

    def _socket_error(self, timeout_ms: int) -> None:
        """The link went down (keep waiting: the kernel resumes capture when it comes back)
        or the interface was removed (raise)."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # reading clears it
        try:
            socket.if_nametoindex(self.spec.iface)
        except OSError:
            raise InterfaceError(f"interface {self.spec.iface!r} was removed") from None
        if err and self.counters["link_down"] == 0:
            log.warning(
                "capture on %s: %s; waiting for the link", self.spec.iface, os.strerror(err)
            )
        self.counters["link_down"] += 1
        time.sleep(timeout_ms / 1000.0)  # no busy loop while the link is down

    @property
    def engine(self) -> Any:
        return self.flow_source.engine

    def _feed(self) -> None:
        for src in self.sources:
            src.feed(self.batch, self.pktsum)

    def step(self, timeout_ms: int) -> tuple[int, list[tuple[str, np.ndarray]]]:
        """Drain what the ring holds (waiting up to ``timeout_ms`` if empty), feed it."""
        n = self.fill(timeout_ms)
        if n:
            self._feed()
            self._last_ts = int(self.batch.ts_ns[n - 1])
        else:
            # Idle wire: network time still passes, so timeouts and windows must fire.
            now = max(time.time_ns(), self._last_ts)
            for src in self.sources:
                src.advance(now)
        return n, self.collect()

    def collect(self) -> list[tuple[str, np.ndarray]]:
        out: list[tuple[str, np.ndarray]] = []
        for src in self.sources:
            for kind, recs in src.drain():
                out.append((kind, recs))
                if kind == "flow":
                    self.counters["flows"] += len(recs)
                elif kind == "host":
                    self.counters["host_records"] += len(recs)
        return out

    def finish(self) -> list[tuple[str, np.ndarray]]:
        """Drain the ring until it stays empty past a block timeout, then flush everything.

        At most one ring's worth of blocks is drained: what was captured before the stop is
        processed (and counted), while a busy wire cannot keep the worker from exiting."""
        quiet_ms = self.spec.ring.retire_ms * 3 + 20
        limit = int(self.ring.blocks) + self.spec.ring.block_count + 1
        out: list[tuple[str, np.ndarray]] = []
        while int(self.ring.blocks) < limit:
            try:
                n = self.fill(quiet_ms)
            except InterfaceError:
                break  # the interface is gone: flush what we hold
            if not n:
                break
            self._feed()
            out.extend(self.collect())
        for src in self.sources:
            src.finish()
        out.extend(self.collect())
        return out

    def poll_stats(self) -> dict[str, int]:
        """Counters since the previous call (deltas, so the parent can sum workers)."""
        kpk, kdrop, kfreeze = kernel_stats(self.sock)
        est = self.engine.stats()
        cur = {
            "packets": int(self.ring.packets),
            "bytes": int(self.ring.bytes),
            "ring_losing": int(self.ring.losing_blocks),
            "truncated": int(self.ring.truncated),
            "decode_errors": int(est.get("decode_errors", 0)),
            "frag_dropped": int(est.get("frag_dropped", 0)),
            "flow_evictions": int(est.get("flows_evicted", 0)),
            "flows": self.counters["flows"],
            "host_records": self.counters["host_records"],
            "queue_overruns": self.counters["queue_overruns"],
            "host_evictions": self.telemetry.evictions if self.telemetry is not None else 0,
            "link_down": self.counters["link_down"],
        }
        prev = getattr(self, "_prev", {})
        delta = {k: v - prev.get(k, 0) for k, v in cur.items()}
        self._prev = cur
        delta["kernel_packets"] = kpk
        delta["kernel_drops"] = kdrop
        delta["ring_freezes"] = kfreeze
        return delta

    def close(self) -> None:
        self.ring.release()
        try:
            self.mapped.close()
        except (BufferError, ValueError):
            pass
        self.sock.close()


def _worker_process(spec: WorkerSpec, out_q: Any, stop: Any, ready: Any) -> None:
    """Body of one fanout worker process: capture until ``stop`` is set, then flush."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        worker = CaptureWorker(spec)
    except Exception as exc:  # noqa: BLE001 -- a child cannot raise into the parent: report
        out_q.put(("error", f"{type(exc).__name__}: {exc}"))
        ready.set()
        return
    ready.set()

    def put(item: tuple[str, Any]) -> None:
        try:
            out_q.put(item, timeout=1.0)
        except queue.Full:
            worker.counters["queue_overruns"] += 1

    last = time.monotonic()
    try:
        try:
            while not stop.is_set():
                _, items = worker.step(spec.ring.poll_ms)
                for item in items:
                    put(item)
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    put(("stats", worker.poll_stats()))
        except Exception as exc:  # noqa: BLE001 -- report, then still flush what it holds
            out_q.put(("error", f"{type(exc).__name__}: {exc}"))
        for item in worker.finish():
            put(item)
        put(("stats", worker.poll_stats()))
    finally:
        worker.close()
        out_q.put(("done", spec.worker_id))


class LiveCapture:
    """Capture on ``iface`` with ``workers`` fanout workers; iterate ``records()``.

    ``records()`` yields ``(kind, array)`` until ``stop()`` is called (by a signal handler,
    ``duration`` running out, or the caller) and every worker has flushed its live flows.
    ``stats`` holds the summed counters; ``on_stats`` is called with them every second and
    once at the end.
    """

    def __init__(
        self,
        iface: str,
        config: EngineConfig | None = None,
        *,
        workers: int | str = 1,
        bpf: str | None = None,
        promisc: bool = False,
        ring: RingConfig | None = None,
        duration: float | None = None,
        backend: str | None = None,
        decode: bool = True,
        on_stats: Callable[[CaptureStats, bool], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.iface = iface
        _ifindex(iface)  # fail before any process starts
        merged = [k.upper() for k, on in receive_offloads(iface).items() if on]
        if merged and not is_loopback(iface):  # lo delivers through netif_rx: no GRO there
            log.warning(
                "%s has %s on: the kernel merges packets before capture, so packet counts "
                "will be lower than on the wire (ethtool -K %s gro off lro off)",
                iface, "/".join(merged), iface,
            )  # fmt: skip
        self.config = config or EngineConfig()
        self.workers = resolve_workers(workers)
        ring = ring or RingConfig()
        self.ring = replace(ring, promisc=promisc or ring.promisc)
        self.bpf_instructions: bytes | None = None
        if bpf:
            from sensor.capture.bpf import compile_filter

            self.bpf_instructions = compile_filter(bpf).instructions
        if duration is not None and not duration > 0:
            raise ConfigError(f"duration must be > 0 seconds, got {duration!r}")
        self.duration = duration
        self.backend = backend
        self.decode = decode
        self.on_stats = on_stats
        self.on_ready = on_ready
        self.stats = CaptureStats()
        self._stop = False
        self._mp_stop: Any = None

    def stop(self) -> None:
        self._stop = True
        if self._mp_stop is not None:
            self._mp_stop.set()

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGINT/SIGTERM stop the capture cleanly; returns a function restoring the old ones."""
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, lambda *_: self.stop())

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore

    def _report(self, final: bool) -> None:
        if self.on_stats is not None:
            self.on_stats(self.stats, final)

    def records(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.workers == 1:
            yield from self._run_inline()
        else:
            yield from self._run_fanout()

    def _deadline(self) -> float:
        return time.monotonic() + self.duration if self.duration else float("inf")

    def _run_inline(self) -> Iterator[tuple[str, np.ndarray]]:
        spec = WorkerSpec(
            self.iface,
            self.config,
            self.ring,
            self.bpf_instructions,
            None,
            0,
            self.backend,
            self.decode,
        )
        worker = CaptureWorker(spec)
        if self.on_ready is not None:
            self.on_ready()
        deadline = self._deadline()
        last = time.monotonic()
        error: InterfaceError | None = None
        try:
            try:
                while not self._stop and time.monotonic() < deadline:
                    _, items = worker.step(self.ring.poll_ms)
                    yield from items
                    if time.monotonic() - last >= 1.0:
                        last = time.monotonic()
                        self.stats.add(worker.poll_stats())
                        self._report(False)
            except InterfaceError as exc:
                error = exc  # flush the live flows first, then raise
            yield from worker.finish()
            self.stats.add(worker.poll_stats())
            self._report(True)
        finally:
            worker.close()
        if error is not None:
            raise error

    def _run_fanout(self) -> Iterator[tuple[str, np.ndarray]]:
        ctx = mp.get_context("spawn")
        out_q = ctx.Queue(maxsize=1024)
        self._mp_stop = ctx.Event()
        if self._stop:
            self._mp_stop.set()
        group = (os.getpid() ^ int(time.monotonic_ns())) & 0xFFFF
        procs = []
        readies = []
        for wid in range(self.workers):
            spec = WorkerSpec(
                self.iface,
                self.config,
                self.ring,
                self.bpf_instructions,
                group,
                wid,
                self.backend,
                self.decode,
            )
            ready = ctx.Event()
            p = ctx.Process(
                target=_worker_process,
                args=(spec, out_q, self._mp_stop, ready),
                name=f"netwarden-capture-{wid}",
                daemon=True,
            )
            p.start()
            procs.append(p)
            readies.append(ready)
        for ready in readies:
            ready.wait(timeout=60)
        if self.on_ready is not None:
            self.on_ready()
        deadline = self._deadline()
        done = 0
        errors: list[str] = []
        last = time.monotonic()
        try:
            while done < len(procs):
                if time.monotonic() >= deadline:
                    self.stop()
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    self._report(False)
                try:
                    kind, payload = out_q.get(timeout=0.2)
                except queue.Empty:
                    if not any(p.is_alive() for p in procs):
                        break  # every worker died without saying done
                    continue
                if kind == "done":
                    done += 1
                elif kind == "error":
                    errors.append(payload)
                    self.stop()
                elif kind == "stats":
                    self.stats.add(payload)
                else:
                    yield kind, payload
            self._report(True)
        finally:
            self.stop()
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=2)
        if errors:
            raise InterfaceError("capture worker failed: " + "; ".join(errors))


def _stderr_stats(prefix: str = "") -> Callable[[CaptureStats, bool], None]:
    state: dict[str, Any] = {"prev": None, "t": time.monotonic()}

    def report(stats: CaptureStats, final: bool) -> None:
        now = time.monotonic()
        if final:  # the whole capture's average rate, not the last second's
            line = stats.line(None, now - stats.started)
        else:
            line = stats.line(state["prev"], now - state["t"])
        state["prev"], state["t"] = dict(stats.counters), now
        print(f"{prefix}{line}{' (final)' if final else ''}", file=sys.stderr, flush=True)

    return report


def capture_flows(
    iface: str,
    duration: float | None,
    config: EngineConfig | None = None,
    *,
    workers: int | str = 1,
    bpf: str | None = None,
    promisc: bool = False,
    ring: RingConfig | None = None,
    on_stats: Callable[[CaptureStats, bool], None] | None = None,
    handle_signals: bool = True,
    backend: str | None = None,
) -> Iterator[np.ndarray]:
    """Yield ``FLOW_DTYPE`` arrays captured live on ``iface`` for ``duration`` seconds
    (None: until SIGINT/SIGTERM), then the flushed live flows. Stats go to stderr unless
    ``on_stats`` is given."""
    ring = replace(ring or RingConfig(), telemetry=False)
    cap = LiveCapture(
        iface,
        config,
        workers=workers,
        bpf=bpf,
        promisc=promisc,
        ring=ring,
        duration=duration,
        backend=backend,
        on_stats=on_stats or _stderr_stats(),
    )
    restore = cap.install_signal_handlers() if handle_signals else (lambda: None)
    try:
        for kind, arr in cap.records():
            if kind == "flow":
                yield arr
    finally:
        restore()


def ring_from_options(args: Any, **overrides: Any) -> RingConfig:
    """The ring the command-line options ask for (``ring_blocks``, ``ring_block_size``,
    ``block_timeout``, ``promisc``; see ``netwarden.commands.capture_options``); options left
    unset keep ``RingConfig``'s defaults. Out-of-range values raise ``ConfigError``."""
    given = {
        "block_count": getattr(args, "ring_blocks", None),
        "block_size": getattr(args, "ring_block_size", None),
        "retire_ms": getattr(args, "block_timeout", None),
    }
    kw: dict[str, Any] = {k: int(v) for k, v in given.items() if v is not None}
    kw["promisc"] = bool(getattr(args, "promisc", False))
    kw.update(overrides)
    return RingConfig(**kw)


def run_sensor(args: Any, publisher: Any) -> int:
    """Body of ``netwarden sensor --iface``: capture and publish every record batch.

    ``args`` carries ``iface``, ``workers``, ``filter``, ``promisc``, ``duration`` and the
    optional ring settings (``ring_blocks``, ``ring_block_size``, ``block_timeout``,
    ``window``). ``publisher.send(record_type, records, drops=...)`` puts a batch on the bus;
    its ``dropped`` attribute (records it had to discard), when present, is reported as
    ``bus_drops``.
    """
    ring = ring_from_options(
        args, telemetry_window=float(getattr(args, "window", None) or RingConfig.telemetry_window)
    )
    report = _stderr_stats()

    def on_stats(stats: CaptureStats, final: bool) -> None:
        stats.counters["bus_drops"] = int(getattr(publisher, "dropped", 0) or 0)
        if hasattr(publisher, "set_counters"):
            publisher.set_counters(drop_counters(stats))  # heartbeats carry them when idle
        report(stats, final)

    cap = LiveCapture(
        args.iface,
        getattr(args, "engine_config", None) or EngineConfig(),
        workers=getattr(args, "workers", 1) or 1,
        bpf=getattr(args, "filter", None),
        ring=ring,
        duration=getattr(args, "duration", None),
        on_stats=on_stats,
    )
    restore = cap.install_signal_handlers()
    try:
        for kind, arr in cap.records():
            publisher.send(kind, arr, drops=drop_counters(cap.stats))
    finally:
        restore()
    return 0


def drop_counters(stats: CaptureStats) -> dict[str, int]:
    """The capture-side loss counters a bus header carries (cumulative; the publisher adds
    its own bus drop counters)."""
    c = stats.counters
    keys = (
        "kernel_drops",
        "ring_freezes",
        "ring_losing",
        "queue_overruns",
        "decode_errors",
        "host_evictions",
        "link_down",
        "frag_dropped",
        "flow_evictions",
    )
    return {k: int(c.get(k, 0)) for k in keys}


def main(argv: list[str] | None = None) -> int:
    """``python -m sensor.live``: capture into an .npz (records by kind + counters).

    A small harness for tests and benchmarks that run the capture inside a network
    namespace (``ip netns exec NS python -m sensor.live ...``); operators use
    ``netwarden flows --iface`` and ``netwarden sensor --iface``.
    """
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m sensor.live")
    ap.add_argument("--iface", required=True)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--filter", default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--promisc", action="store_true")
    ap.add_argument("--no-decode", action="store_true", help="count packets only")
    ap.add_argument("--no-telemetry", action="store_true")
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="S",
        help="one inactivity timeout for every protocol (default: Zeek's)",
    )
    ap.add_argument("--ring-blocks", type=int, default=RingConfig.block_count)
    ap.add_argument("--ring-block-size", type=int, default=RingConfig.block_size)
    ap.add_argument("--block-timeout", type=int, default=RingConfig.retire_ms, metavar="MS")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--ready-file", default=None, help="created once every worker is ready")
    ap.add_argument("--out", required=True, help=".npz file written on exit")
    args = ap.parse_args(argv)

    ring = ring_from_options(args, telemetry=not args.no_telemetry, telemetry_window=args.window)

    def ready() -> None:
        if args.ready_file:
            with open(args.ready_file, "w") as fh:
                fh.write(str(os.getpid()))

    config = EngineConfig()
    if args.idle_timeout is not None:
        t = args.idle_timeout
        config = replace(config, tcp_timeout=t, udp_timeout=t, icmp_timeout=t, other_timeout=t)
    cap = LiveCapture(
        args.iface,
        config,
        workers=args.workers,
        bpf=args.filter,
        promisc=args.promisc,
        ring=ring,
        duration=args.duration,
        backend=args.backend,
        decode=not args.no_decode,
        on_stats=_stderr_stats(),
        on_ready=ready,
    )
    restore = cap.install_signal_handlers()
    parts: dict[str, list[np.ndarray]] = {}
    rc = 0
    try:
        for kind, arr in cap.records():
            parts.setdefault(kind, []).append(arr)
    except NetWardenError as exc:  # records flushed before the fault are still written
        print(f"sensor.live: error: {exc}", file=sys.stderr)
        rc = 1
    finally:
        restore()
    from netwarden.records.schema import RECORD_TYPES

    arrays = {
        kind: np.concatenate(parts[kind]) if parts.get(kind) else np.zeros(0, dt)
        for kind, dt in RECORD_TYPES.items()
        if kind != "pktsum"
    }
    arrays["stats"] = np.frombuffer(json.dumps(cap.stats.counters).encode(), np.uint8)
    np.savez(args.out, **arrays)
    return rc


if __name__ == "__main__":
    sys.exit(main())
