"""``netwarden sensor``: capture (pcap file or live interface) and publish records on the bus;
``netwarden collect``: a debug receiver printing batches and sensor status;
``netwarden keygen``: CURVE key pairs for sensors and the controller.

Both sensor sources run the one loop of ``sensor.runner`` (the live capture's fanout
workers too); ``sensor.runner.publish`` hands what it yields to the publisher in messages
of ``--batch`` records.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netwarden.commands.capture_options import add_live_arguments, check_live_options
from netwarden.commands.common_options import add_service_arguments
from netwarden.commands.engine_options import add_engine_arguments, engine_config
from netwarden.errors import CaptureError, CaptureFormatError, ConfigError
from sensor.runner import Stop, publish

if TYPE_CHECKING:
    from netwarden.bus.publisher import Publisher

log = logging.getLogger("netwarden.sensor")


#: Records per bus message. Fewer, larger messages cost less per record at both ends: against
#: 1,024, about 6% of the sensor's CPU and 15% of the controller's on the 2M-packet benchmark
#: capture (benchmarks/README.md); --max-delay still bounds how long a record waits.
DEFAULT_BATCH = 4096


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
    p.add_argument(
        "--connect",
        required=True,
        metavar="ENDPOINT",
        help="controller endpoint, e.g. tcp://10.0.0.1:5555 or ipc:///run/nw.sock",
    )
    p.add_argument("--sensor-id", default=None, help="unique name of this sensor (hostname)")
    p.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"records per bus message (default {DEFAULT_BATCH}; a partial one leaves after "
        "--max-delay)",
    )
    p.add_argument(
        "--max-delay",
        type=float,
        default=1.0,
        metavar="S",
        help="a partial message waits at most S seconds (default 1; 0 publishes the "
        "records of every captured batch at once: lowest detection latency)",
    )
    p.add_argument(
        "--replay-speed",
        type=float,
        default=0.0,
        metavar="X",
        help="pcap: pace packets at X times their recorded rate (0 = flat out)",
    )
    p.add_argument(
        "--curve-keys",
        metavar="DIR",
        help="CURVE: DIR holds sensor.key_secret and the controller's server.key",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=1.0,
        metavar="S",
        help="heartbeat interval in seconds (default 1)",
    )
    p.add_argument(
        "--buffer-mb",
        type=int,
        default=64,
        help="local buffer for unacknowledged records, MiB (default 64)",
    )
    p.add_argument(
        "--close-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="on exit, wait this long for the controller to acknowledge",
    )
    p.add_argument(
        "--stats-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between capture stats lines on stderr (0: only at exit)",
    )
    add_service_arguments(p, "netwarden_sensor_")
    p.add_argument("--no-telemetry", action="store_true", help="flows and ARP only")
    p.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="S",
        help="per-host telemetry window, seconds (default 1)",
    )
    add_engine_arguments(p.add_argument_group("flow engine"))
    add_live_arguments(p.add_argument_group("live capture (--iface)"))
    p.set_defaults(func=run_sensor_command)

    c = sub.add_parser(
        "collect",
        help="receive sensor batches and print them (bus debugging)",
        description="Bind a collector and print every batch received and the sensors' status.",
    )
    c.add_argument(
        "--listen",
        required=True,
        action="append",
        metavar="ENDPOINT",
        help="endpoint to bind, e.g. tcp://0.0.0.0:5555 (repeatable)",
    )
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.add_argument(
        "--curve-keys",
        metavar="DIR",
        help="CURVE: DIR holds server.key_secret and authorized/*.key",
    )
    c.add_argument(
        "--no-curve",
        action="store_true",
        help="accept unauthenticated sensors on a non-loopback --listen (not recommended)",
    )
    c.add_argument("--count", type=int, default=None, help="exit after N data batches")
    c.add_argument("--duration", type=float, default=None, metavar="S", help="exit after S s")
    c.add_argument(
        "--status-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between sensor status reports (0: only at exit)",
    )
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


# ---- the sensor: a capture (file or interface) published on the bus ------------------------


def _capture(args: argparse.Namespace, stop: Stop) -> Any:
    """The sensor loop over ``--pcap``, or the live capture over ``--iface``."""
    from netwarden.records.identity import sensor_hash, session_id
    from sensor.engine import load_backend
    from sensor.engine.config import EngineConfig
    from sensor.runner import PcapSource, SensorLoop, make_pipeline

    config = getattr(args, "engine_config", None) or EngineConfig()
    # Records name their sensor and this run (netwarden.records.identity).
    config = replace(config, sensor=sensor_hash(_sensor_id(args)), session=session_id(0))
    if args.iface:
        from sensor.capture.afpacket import RingConfig
        from sensor.live import LiveCapture, ring_from_options

        window = float(args.window or RingConfig.telemetry_window)
        return LiveCapture(
            args.iface,
            config,
            workers=args.workers or 1,
            bpf=args.filter,
            ring=ring_from_options(args, telemetry=not args.no_telemetry, telemetry_window=window),
            duration=args.duration,
            stop=stop,
        )
    try:
        backend = load_backend()
    except ImportError as exc:
        raise CaptureError(f"no flow engine backend is importable ({exc})") from None
    pipe = make_pipeline(config, backend=backend, telemetry=not args.no_telemetry,
                         window=args.window)  # fmt: skip
    return SensorLoop(PcapSource(backend, [args.pcap], args.replay_speed), pipe, stop)


def _publisher(args: argparse.Namespace) -> Publisher:
    from netwarden.bus.publisher import CurveClientKeys, Publisher

    if args.batch < 1 or args.batch > 1 << 20:
        raise ConfigError(f"--batch must be in 1..{1 << 20}, got {args.batch}")
    if args.replay_speed < 0:
        raise ConfigError("--replay-speed must be >= 0")
    if args.max_delay < 0:
        raise ConfigError("--max-delay must be >= 0")
    if args.buffer_mb < 4:
        raise ConfigError("--buffer-mb must be at least 4")
    curve = CurveClientKeys.from_dir(args.curve_keys) if args.curve_keys else None
    return Publisher(
        args.connect,
        sensor_id=_sensor_id(args),
        curve=curve,
        heartbeat_s=args.heartbeat,
        buffer_bytes=args.buffer_mb << 20,
    )


def _sensor_id(args: argparse.Namespace) -> str:
    return str(args.sensor_id or socket.gethostname())


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
            import sensor.live  # noqa: F401
        except ImportError as exc:
            print(f"netwarden sensor: live capture is not available ({exc})", file=sys.stderr)
            return 1
    elif not Path(args.pcap).is_file():
        raise ConfigError(f"--pcap {args.pcap}: no such file")
    publisher = _publisher(args)
    observe = None
    stop_metrics = None
    if args.metrics:
        from netwarden.metrics import SensorMetrics, serve

        metrics = SensorMetrics(publisher)
        stop_metrics = serve(args.metrics, metrics.registry)
        observe = metrics.observe
    stop = Stop()
    restore = stop.install()
    rc = 1
    try:
        capture = _capture(args, stop)
        if args.iface:
            capture.on_stats = _live_stats(publisher)
        # Read flat out, a file must not outrun the controller and evict records: wait for
        # acks instead (until a stop signal). Paced replay behaves like live capture.
        flat_out = not args.iface and args.replay_speed == 0
        rc = 0
        try:
            publish(capture, publisher, args.batch, stats_interval=args.stats_interval,
                    backpressure=(lambda: not stop) if flat_out else None, max_wait_s=args.max_delay,
                    observe=observe)  # fmt: skip
        except CaptureFormatError as exc:
            # Everything before the fault was published, like end of input.
            print(f"netwarden sensor: warning: {exc}", file=sys.stderr)
            rc = 1
    finally:
        restore()
        left = publisher.close(timeout=args.close_timeout)
        if stop_metrics is not None:
            stop_metrics()
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


def _live_stats(publisher: Publisher) -> Any:
    """The live capture's ``capture:`` lines, with the publisher's drops."""
    from sensor.live import CaptureStats, stderr_stats

    report = stderr_stats()

    def on_stats(stats: CaptureStats, final: bool) -> None:
        stats.counters["bus_drops"] = int(publisher.dropped)
        report(stats, final)

    return on_stats


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
        print(json.dumps({"type": "collector", "sensors": {k: v.as_dict() for k, v in sensors.items()},
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
    from controller.bus_trust import check_listen
    from netwarden.bus.collector import Collector, CurveServerKeys

    check_listen(
        args.listen,
        curve=bool(args.curve_keys),
        no_curve=args.no_curve,
        command="netwarden collect",
    )
    curve = CurveServerKeys.from_dir(args.curve_keys) if args.curve_keys else None
    stop = Stop()
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
                        print(json.dumps({"type": "batch", "batch": _batch_json(b)}), flush=True)
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
