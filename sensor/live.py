"""Live capture on AF_PACKET: TPACKET_V3 ring, PACKET_FANOUT workers, loss accounting.

Each worker runs the one sensor loop (``sensor.runner.SensorLoop``) over one ring
(``sensor.capture.ring.RingSource``) with its own flow engine and per-host telemetry table,
exactly as the pcap sensor does over a file. With ``workers > 1`` each worker is its own
process and the sockets form one PACKET_FANOUT group hashed by flow, so every flow lands
whole in one worker; the parent merges what they emit. Records leave a worker as ``(kind, array)`` items, kind being a key
of ``netwarden.records.schema.RECORD_TYPES`` ("flow", "arp", "host", "pair"). The fanout group
defragments IP before hashing (fragments after the first have no ports), so with several
workers the kernel hands over reassembled datagrams: the same flows, fewer "packets".

Loss is counted where it happens, under the names of ``sensor.runner.LOSS_COUNTERS`` (the
one definition: kernel, ring, worker queue, engine and telemetry tables); ``bus_drops`` is
the publisher's. Counters are cumulative, summed over workers, reported every second and
on exit.

On a loopback interface the kernel shows every packet twice (leaving, then arriving); the
ring reader drops the PACKET_OUTGOING copy so each packet is counted once.

Packet timestamps are the kernel's wall clock, so when the wire is idle the worker advances
the engine and telemetry to ``time.time_ns()``: flows still time out and windows still
close with no traffic (``RingSource.idle_ns``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from netwarden.errors import ConfigError, InterfaceError, NetWardenError
from netwarden.records.identity import MAX_WORKERS, session_id
from sensor.capture.afpacket import (
    RingConfig,
    is_loopback,
    receive_offloads,
)
from sensor.capture.afpacket import ifindex as _ifindex
from sensor.capture.ring import RingSource
from sensor.engine.config import EngineConfig
from sensor.runner import SensorLoop, Stop, loss_counters, make_pipeline

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
    "checksum_errors",
    "pair_evictions",
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
    if not 1 <= value <= min(64, MAX_WORKERS):
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


def _worker_loop(spec: WorkerSpec, stop: Stop) -> SensorLoop:
    """The sensor loop of one worker: its ring, its flow engine and telemetry table."""
    pipeline = make_pipeline(
        spec.engine_config,
        backend=spec.backend,
        telemetry=spec.ring.telemetry,
        window=spec.ring.telemetry_window,
        iface=spec.worker_id & 0xFF,
        decode=spec.decode,
    )
    source = RingSource(
        spec.iface, spec.ring, spec.bpf_instructions, spec.fanout_group, spec.worker_id
    )
    return SensorLoop(source, pipeline, stop)


class _Every:
    """True once per ``seconds`` of wall time."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def _worker_process(spec: WorkerSpec, out_q: Any, stop_event: Any, ready: Any) -> None:
    """Body of one fanout worker process: the sensor loop until the shared stop is set; its
    records and (cumulative) counters go to the parent."""
    stop = Stop(stop_event)
    stop.install(signals=(signal.SIGTERM,), ignore=(signal.SIGINT,))  # the parent decides
    try:
        loop = _worker_loop(spec, stop)
    except Exception as exc:  # noqa: BLE001 -- a child cannot raise into the parent: report
        out_q.put(("error", f"{type(exc).__name__}: {exc}"))
        ready.set()
        return
    ready.set()
    overruns = 0

    def put(item: tuple[str, Any]) -> None:
        nonlocal overruns
        try:
            out_q.put(item, timeout=1.0)
        except queue.Full:
            overruns += 1

    def send_stats() -> None:
        counters = loop.counters()
        counters["queue_overruns"] = overruns
        put(("stats", (spec.worker_id, counters)))

    every_second = _Every()

    def tick() -> None:
        if every_second():
            send_stats()

    loop.on_tick = tick
    try:
        try:
            for item in loop.records():
                put(item)
        except Exception as exc:  # noqa: BLE001 -- the loop flushed what it held: report
            out_q.put(("error", f"{type(exc).__name__}: {exc}"))
        send_stats()
    finally:
        loop.source.close()
        out_q.put(("done", spec.worker_id))


class LiveCapture:
    """Capture on ``iface`` with ``workers`` fanout workers; iterate ``records()``.

    ``records()`` yields ``(kind, array)`` until ``stop`` is set (by a signal handler,
    ``duration`` running out, or the caller) and every worker has flushed its live flows.
    ``stats`` holds the summed counters; ``on_stats`` is called with them every second and
    once at the end, ``on_tick`` after every round of the loop (``sensor.runner.publish``).
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
        stop: Stop | None = None,
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
        self.on_tick: Callable[[], None] | None = None
        self.stats = CaptureStats()
        self.stop_flag = stop if stop is not None else Stop()
        self._per_worker: dict[int, dict[str, int]] = {}
        self._deadline = float("inf")
        self._epoch_us = time.time_ns() // 1000

    def _ready(self) -> None:
        """Every ring is open: the duration starts now."""
        if self.duration:
            self._deadline = time.monotonic() + self.duration
        if self.on_ready is not None:
            self.on_ready()

    def stop(self) -> None:
        self.stop_flag.set()

    def counters(self) -> dict[str, int]:
        return self.stats.counters

    def _update(self, worker_id: int, counters: dict[str, int]) -> None:
        self._per_worker[worker_id] = counters
        summed = dict.fromkeys(COUNTERS, 0)
        for c in self._per_worker.values():
            for k, v in c.items():
                summed[k] = summed.get(k, 0) + int(v)
        summed["bus_drops"] = self.stats.counters.get("bus_drops", 0)
        self.stats.counters = summed

    def _report(self, final: bool) -> None:
        if self.on_stats is not None:
            self.on_stats(self.stats, final)

    def _tick(self, every_second: _Every, refresh: Callable[[], None] | None = None) -> None:
        if time.monotonic() >= self._deadline:
            self.stop()
        if every_second():
            if refresh is not None:
                refresh()
            self._report(False)
        if self.on_tick is not None:
            self.on_tick()

    def records(self) -> Iterator[tuple[str, np.ndarray]]:
        self.stats = CaptureStats()
        self._epoch_us = time.time_ns() // 1000
        if self.workers == 1:
            yield from self._run_inline()
        else:
            yield from self._run_fanout()

    def _spec(self, group: int | None, worker_id: int) -> WorkerSpec:
        # Each worker is its own engine run: its own session (start time + worker number).
        config = replace(self.config, session=session_id(worker_id, self._epoch_us))
        return WorkerSpec(self.iface, config, self.ring, self.bpf_instructions, group,
                          worker_id, self.backend, self.decode)  # fmt: skip

    def _run_inline(self) -> Iterator[tuple[str, np.ndarray]]:
        loop = _worker_loop(self._spec(None, 0), self.stop_flag)
        self._ready()
        every_second = _Every()

        def refresh() -> None:
            self._update(0, loop.counters())

        loop.on_tick = lambda: self._tick(every_second, refresh)
        try:
            yield from loop.records()
        finally:
            refresh()
            self._report(True)
            loop.source.close()

    def _run_fanout(self) -> Iterator[tuple[str, np.ndarray]]:
        from netwarden.memory import keep_freed_memory

        # The workers' records arrive here unpickled into new buffers, held until the
        # controller acknowledges them: keep freed ones for the next (as the workers do).
        keep_freed_memory()
        ctx = mp.get_context("spawn")
        out_q = ctx.Queue(maxsize=1024)
        self.stop_flag.share(ctx.Event())
        group = (os.getpid() ^ int(time.monotonic_ns())) & 0xFFFF
        procs = []
        readies = []
        for wid in range(self.workers):
            ready = ctx.Event()
            p = ctx.Process(
                target=_worker_process,
                args=(self._spec(group, wid), out_q, self.stop_flag.event, ready),
                name=f"netwarden-capture-{wid}",
                daemon=True,
            )
            p.start()
            procs.append(p)
            readies.append(ready)
        for ready in readies:
            ready.wait(timeout=60)
        self._ready()
        done = 0
        errors: list[str] = []
        every_second = _Every()
        try:
            while done < len(procs):
                self._tick(every_second)
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
                    self._update(*payload)
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


def stderr_stats(prefix: str = "") -> Callable[[CaptureStats, bool], None]:
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
        on_stats=on_stats or stderr_stats(),
    )
    restore = cap.stop_flag.install() if handle_signals else (lambda: None)
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


def drop_counters(stats: CaptureStats) -> dict[str, int]:
    """The loss counters a bus header carries (``sensor.runner.LOSS_COUNTERS``; cumulative,
    the publisher adds its own bus drop counters)."""
    return loss_counters(stats.counters)


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
        on_stats=stderr_stats(),
        on_ready=ready,
    )
    restore = cap.stop_flag.install()
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
    np.savez(args.out, allow_pickle=False, **arrays)
    return rc


if __name__ == "__main__":
    sys.exit(main())
