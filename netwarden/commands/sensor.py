"""``netwarden sensor``: capture (pcap file or live interface) and publish records on the bus;
``netwarden collect``: a debug receiver printing batches and sensor status;
``netwarden keygen``: CURVE key pairs for sensors and the controller.

The pcap sensor loop reads packet batches, feeds an ordered list of record sources (the
flow engine first, since it fills the per-packet summaries the per-host telemetry reads),
and hands what they emit to the publisher in messages of ``--batch`` records. The record
sources live in ``sensor.pipeline``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netwarden.commands.capture_options import add_live_arguments, check_live_options
from netwarden.commands.engine_options import add_engine_arguments, engine_config
from netwarden.errors import CaptureError, CaptureFormatError, ConfigError
from sensor.pipeline import FlowSource, Pipeline, RecordSource, TelemetrySource, loss_counters

if TYPE_CHECKING:
    import numpy as np

    from sensor.batch import PacketBatch
    from sensor.publisher import Publisher

log = logging.getLogger("netwarden.sensor")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sensor",
        help="capture packets and publish flow/ARP/host records to a controller",
        description="Read a capture file (--pcap) or an interface (--iface), assemble flows "
        "and per-host telemetry, and publish the records to a controller over ZeroMQ.",
        epilog="Exit status: 0 done, 1 error (or a truncated capture file), 3 records were "
        "left unacknowledged by the controller at exit.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pcap", metavar="FILE", help="read packets from a pcap/pcapng file")
    src.add_argument("--iface", metavar="IF", help="capture live on an interface (AF_PACKET)")
    p.add_argument("--connect", required=True, metavar="ENDPOINT",
                   help="controller endpoint, e.g. tcp://10.0.0.1:5555 or ipc:///run/nw.sock")
    p.add_argument("--sensor-id", default=None, help="unique name of this sensor (hostname)")
    p.add_argument("--batch", type=int, default=1024, metavar="N",
                   help="records per bus message (default 1024)")
    p.add_argument("--max-delay", type=float, default=1.0, metavar="S",
                   help="--iface: a partial message waits at most S seconds (default 1; "
                        "0 publishes every record batch as soon as it is made)")
    p.add_argument("--replay-speed", type=float, default=0.0, metavar="X",
                   help="pcap: pace packets at X times their recorded rate (0 = flat out)")
    p.add_argument("--curve-keys", metavar="DIR",
                   help="CURVE: DIR holds sensor.key_secret and the controller's server.key")
    p.add_argument("--heartbeat", type=float, default=1.0, metavar="S",
                   help="heartbeat interval in seconds (default 1)")
    p.add_argument("--buffer-mb", type=int, default=64,
                   help="local buffer for unacknowledged records, MiB (default 64)")
    p.add_argument("--close-timeout", type=float, default=10.0, metavar="S",
                   help="on exit, wait this long for the controller to acknowledge")
    p.add_argument("--stats-interval", type=float, default=1.0, metavar="S",
                   help="seconds between capture stats lines on stderr (0: only at exit)")
    p.add_argument("--no-telemetry", action="store_true", help="flows and ARP only")
    p.add_argument("--window", type=float, default=None, metavar="S",
                   help="per-host telemetry window, seconds (default 1)")
    add_engine_arguments(p.add_argument_group("flow engine"))
    add_live_arguments(p.add_argument_group("live capture (--iface)"))
    p.set_defaults(func=run_sensor_command)

    c = sub.add_parser(
        "collect",
        help="receive sensor batches and print them (bus debugging)",
        description="Bind a collector and print every batch received and the sensors' status.",
    )
    c.add_argument("--listen", required=True, action="append", metavar="ENDPOINT",
                   help="endpoint to bind, e.g. tcp://0.0.0.0:5555 (repeatable)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.add_argument("--curve-keys", metavar="DIR",
                   help="CURVE: DIR holds server.key_secret and authorized/*.key")
    c.add_argument("--count", type=int, default=None, help="exit after N data batches")
    c.add_argument("--duration", type=float, default=None, metavar="S", help="exit after S s")
    c.add_argument("--status-interval", type=float, default=5.0, metavar="S",
                   help="seconds between sensor status reports (0: only at exit)")
    c.set_defaults(func=run_collect_command)

    k = sub.add_parser(
        "keygen",
        help="create a CURVE key pair (NAME.key, NAME.key_secret)",
        description="Write a CURVE key pair into DIR. Use --name server for the controller "
        "and --name sensor for a sensor; copy each sensor's public .key into the controller's "
        "authorized/ directory and the controller's server.key into each sensor's directory.",
    )
    k.add_argument("dir", metavar="DIR")
    k.add_argument("--name", default="sensor", help="file name stem (default: sensor)")
    k.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    k.set_defaults(func=run_keygen_command)


# ---- stop handling -------------------------------------------------------------------------


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loops check it between batches."""

    def __init__(self) -> None:
        self.signum = 0

    def __bool__(self) -> bool:
        return bool(self.signum)

    def install(self) -> Callable[[], None]:
        def handler(signum: int, _frame: object) -> None:
            self.signum = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for signum, prev in old.items():
                signal.signal(signum, prev)

        return restore


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
        import numpy as np

        parts = self._parts.pop(kind, [])
        self._counts.pop(kind, None)
        self._since.pop(kind, None)
        if not parts:
            return
        allrecs = parts[0] if len(parts) == 1 else np.concatenate(parts)
        full = len(allrecs) - len(allrecs) % self.batch if keep_tail else len(allrecs)
        for start in range(0, full, self.batch):
            chunk = allrecs[start : start + self.batch]
            if self.backpressure is not None:
                waited = 0
                while not self.publisher.wait_for_room(chunk.nbytes, 0.2):
                    waited += 1
                    if waited == 25:  # say so once: a stalled sensor should not be a mystery
                        print(f"sensor: bus buffer full, waiting for the controller at "
                              f"{self.publisher.endpoint}", file=sys.stderr, flush=True)
                    if not self.backpressure():
                        break
            self.publisher.send(kind, chunk)
            self.sent[kind] = self.sent.get(kind, 0) + len(chunk)
        if full < len(allrecs):
            self.add(kind, allrecs[full:].copy())


class LiveOutlet:
    """What ``sensor.live.run_sensor`` publishes through: records regrouped into ``--batch``
    sized messages; a partial one leaves within ``max_wait_s`` (a second by default), since
    the live loop refreshes its loss counters every second and that call flushes what waited
    long enough. ``max_wait_s=0``: every batch the capture makes leaves at once (latency)."""

    def __init__(self, publisher: Publisher, batch: int, max_wait_s: float = 1.0) -> None:
        self.publisher = publisher
        self.outbox = Outbox(publisher, batch, max_wait_s=max_wait_s)

    def send(self, kind: str, records: np.ndarray, drops: dict[str, int] | None = None) -> None:
        if drops is not None:
            self.publisher.set_counters(drops)
        self.outbox.add(kind, records)
        self.outbox.tick()

    def set_counters(self, counters: dict[str, int]) -> None:
        self.publisher.set_counters(counters)
        self.outbox.tick()

    @property
    def dropped(self) -> int:
        return self.publisher.dropped

    def flush(self) -> None:
        self.outbox.flush()


# ---- the pcap sensor loop -----------------------------------------------------------------


def _slice(b: PacketBatch, i: int, j: int) -> PacketBatch:
    from sensor.batch import PacketBatch

    return PacketBatch(b.buffer, b.offset[i:j], b.caplen[i:j], b.wirelen[i:j], b.ts_ns[i:j],
                       b.linktype[i:j], b.iface[i:j], count=j - i)  # fmt: skip


def _paced(
    batches: Iterator[PacketBatch], speed: float, stop: _StopFlag, idle_s: float = 0.5
) -> Iterator[PacketBatch]:
    """Release packets when they are due at ``speed`` x their recorded pace. While waiting,
    yield an empty batch every ``idle_s`` so the caller can flush partial messages."""
    import numpy as np

    from sensor.batch import PacketBatch

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


class _StatsLine:
    """Capture and bus stats on stderr every ``interval`` seconds and at exit."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.t0 = self.t_last = time.monotonic()
        self.pk_last = 0

    def maybe(
        self,
        packets: int,
        outbox: Outbox,
        pub: Publisher,
        losses: dict[str, int],
        final: bool = False,
    ) -> None:
        now = time.monotonic()
        if not final and (self.interval <= 0 or now - self.t_last < self.interval):
            return
        span = (now - self.t0) if final else (now - self.t_last)
        pps = (packets if final else packets - self.pk_last) / max(span, 1e-9)
        ps = pub.stats()
        sent = " ".join(f"{k}={v}" for k, v in sorted(outbox.sent.items())) or "none"
        lost = " ".join(f"{k}={v}" for k, v in sorted(losses.items()) if v) or "none"
        print(
            f"sensor: packets={packets} pps={pps:.0f} records[{sent}] losses[{lost}] "
            f"bus: acked_seq={ps['acked_seq']} buffered={ps['buffered_records']} "
            f"dropped={ps['bus_dropped_records']} resends={ps['resends']}"
            + (" (final)" if final else ""),
            file=sys.stderr, flush=True,
        )  # fmt: skip
        self.t_last, self.pk_last = now, packets


def run_pcap_sensor(args: argparse.Namespace, publisher: Publisher, stop: _StopFlag) -> int:
    """Read ``args.pcap`` through the flow engine (and telemetry) and publish the records."""

    from sensor.config import EngineConfig
    from sensor.engine import load_backend

    try:
        backend = load_backend()
    except ImportError as exc:
        raise CaptureError(f"no flow engine backend is importable ({exc})") from None
    config = getattr(args, "engine_config", None) or EngineConfig()
    sources: list[RecordSource] = [FlowSource(backend.FlowEngine(config))]
    if not args.no_telemetry:
        try:
            sources.append(TelemetrySource(args.window))
        except ImportError:
            log.info("sensor.telemetry not available: publishing flows and ARP only")
    pipe = Pipeline(sources)
    # Read flat out, a file must not outrun the controller and evict records: wait for
    # acks instead (until a stop signal). Paced replay behaves like live capture.
    flat_out = args.replay_speed == 0
    outbox = Outbox(publisher, args.batch, backpressure=(lambda: not stop) if flat_out else None)
    stats = _StatsLine(args.stats_interval)
    packets = 0
    rc = 0

    losses: dict[str, int] = {}

    def publish() -> None:
        for kind, recs in pipe.drain():
            outbox.add(kind, recs)
        losses.update(loss_counters(pipe.counters()))
        publisher.set_counters(losses)

    # Smaller batches when pacing, so packets leave close to their due time.
    max_packets = 256 if args.replay_speed > 0 else 4096
    reader = backend.PcapReader(args.pcap)
    batches: Iterator[PacketBatch] = reader.batches(max_packets=max_packets)
    if args.replay_speed > 0:
        batches = _paced(batches, args.replay_speed, stop)
    try:
        for batch in batches:
            if not batch.count:  # pacing pause: let partial messages go out
                outbox.tick()
                stats.maybe(packets, outbox, publisher, losses)
                if stop:
                    break
                continue
            n = batch.count
            pipe.feed(batch)
            pipe.advance(int(batch.ts_ns[n - 1]))
            packets += n
            publish()
            outbox.tick()
            stats.maybe(packets, outbox, publisher, losses)
            if stop:
                break
    except CaptureFormatError as exc:
        # Everything before the fault was fed; finish those flows like end of input.
        print(f"netwarden sensor: warning: {exc}", file=sys.stderr)
        rc = 1
    pipe.finish()
    publish()
    outbox.flush()
    stats.maybe(packets, outbox, publisher, losses, final=True)
    return rc


def _publisher(args: argparse.Namespace) -> Publisher:
    from sensor.publisher import CurveClientKeys, Publisher

    if args.batch < 1 or args.batch > 1 << 20:
        raise ConfigError(f"--batch must be in 1..{1 << 20}, got {args.batch}")
    if args.replay_speed < 0:
        raise ConfigError("--replay-speed must be >= 0")
    if args.buffer_mb < 4:
        raise ConfigError("--buffer-mb must be at least 4")
    curve = CurveClientKeys.from_dir(args.curve_keys) if args.curve_keys else None
    return Publisher(
        args.connect,
        sensor_id=args.sensor_id or socket.gethostname(),
        curve=curve,
        heartbeat_s=args.heartbeat,
        buffer_bytes=args.buffer_mb << 20,
    )


def _check_window(window: float | None) -> None:
    """``--window`` by telemetry's own rule (0 must not quietly mean the default)."""
    if window is None:
        return
    try:
        from sensor.telemetry import TelemetryConfig
    except ImportError:
        return  # no telemetry: the window is unused
    TelemetryConfig(window=window)


def run_sensor_command(args: argparse.Namespace) -> int:
    # Bad options fail here, before a publisher connects; both paths read the config from args.
    args.engine_config = engine_config(args)
    _check_window(args.window)
    if args.iface:
        check_live_options(args)
        try:
            from sensor.live import run_sensor
        except ImportError as exc:
            print(f"netwarden sensor: live capture is not available ({exc})", file=sys.stderr)
            return 1
    elif not Path(args.pcap).is_file():
        raise ConfigError(f"--pcap {args.pcap}: no such file")
    publisher = _publisher(args)
    stop = _StopFlag()
    restore = stop.install() if not args.iface else (lambda: None)  # live installs its own
    rc = 1
    try:
        if args.iface:
            outlet = LiveOutlet(publisher, args.batch, max(0.0, args.max_delay))
            try:
                rc = run_sensor(args, outlet)
            finally:
                outlet.flush()  # the flushed live flows may still sit in a partial message
        else:
            rc = run_pcap_sensor(args, publisher, stop)
    finally:
        restore()
        left = publisher.close(timeout=args.close_timeout)
        ps = publisher.stats()
        print(
            f"sensor: bus: {ps['records']} records in {ps['batches']} messages, "
            f"{ps['records'] - left - ps['bus_dropped_records']} acknowledged, "
            f"{left} unacknowledged at exit, {ps['bus_dropped_records']} dropped "
            f"(buffer full), {ps['resends']} resent, {ps['reconnects']} reconnects",
            file=sys.stderr, flush=True,
        )  # fmt: skip
    if left and rc == 0:
        rc = 3  # data left unacknowledged: the caller should know
    return rc


# ---- collect ---------------------------------------------------------------------------------


def _batch_json(b: Any) -> dict[str, Any]:
    h = b.header
    return {
        "sensor_id": h.sensor_id, "session": h.session, "seq": h.seq, "type": h.record_type,
        "count": h.count, "ts_first_ns": h.ts_first_ns, "ts_last_ns": h.ts_last_ns,
        "drops": dict(h.drops),
    }  # fmt: skip


def _status(collector: Any, as_json: bool) -> None:
    sensors = collector.sensors()
    if as_json:
        print(json.dumps({"sensors": {k: v.as_dict() for k, v in sensors.items()},
                          "stats": collector.stats()}), flush=True)  # fmt: skip
        return
    for sid, st in sorted(sensors.items()):
        print(
            f"status {sid}: {'up' if st.up else 'stopped' if st.stopped else 'DOWN'} "
            f"records={st.received_records} "
            f"messages={st.received_messages} gaps={st.gaps} lost={st.lost_messages} "
            f"dup={st.duplicates} restarts={st.restarts} drops={st.drops}",
            flush=True,
        )
    s = collector.stats()
    print(f"status collector: rejected={s['rejected_total']} {s['rejected']} "
          f"auth_refused={s['auth_refused']}", flush=True)  # fmt: skip


def run_collect_command(args: argparse.Namespace) -> int:
    from controller.collector import Collector, CurveServerKeys

    curve = CurveServerKeys.from_dir(args.curve_keys) if args.curve_keys else None
    stop = _StopFlag()
    restore = stop.install()
    n = 0
    deadline = time.monotonic() + args.duration if args.duration else None
    next_status = time.monotonic() + args.status_interval
    with Collector(args.listen, curve=curve) as collector:
        if not args.json:
            print(f"listening on {' '.join(collector.endpoints)}", flush=True)
        try:
            while not stop:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if args.count is not None and n >= args.count:
                    break
                for b in collector.poll(200):
                    n += 1
                    if args.json:
                        print(json.dumps({"batch": _batch_json(b)}), flush=True)
                    else:
                        print(f"{b.sensor_id} #{b.seq} {b.record_type} {b.count} records "
                              f"[{b.ts_first_ns}..{b.ts_last_ns}]", flush=True)  # fmt: skip
                if args.status_interval > 0 and time.monotonic() >= next_status:
                    _status(collector, args.json)
                    next_status = time.monotonic() + args.status_interval
            collector.commit()
        finally:
            restore()
        _status(collector, args.json)
    return 0


# ---- keygen ----------------------------------------------------------------------------------


def run_keygen_command(args: argparse.Namespace) -> int:
    import zmq.auth

    d = Path(args.dir)
    name = args.name
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name must be a plain file name stem, got {name!r}")
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    if (public.exists() or secret.exists()) and not args.force:
        raise ConfigError(f"{public} or {secret} exists (use --force to overwrite)")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)  # the secret key file is never readable by others, even briefly
    try:
        zmq.auth.create_certificates(d, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    print(f"public key: {public}\nsecret key: {secret}")
    return 0
