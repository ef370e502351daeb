"""``netwarden flows``: capture files (or a live interface) to Zeek conn.log, CSV, JSON lines
or Parquet, every format written from the Arrow form of the records."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from netwarden.commands.capture_options import (
    add_live_arguments,
    check_capture_files,
    check_live_options,
)
from netwarden.commands.engine_options import add_engine_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flows", help="assemble flows from pcap/pcapng files or an interface")
    p.add_argument("pcaps", nargs="*", metavar="PCAP", help="capture files, read in order")
    p.add_argument("--format", choices=("zeek", "csv", "json", "parquet"), default="zeek",
                   help="zeek: conn.log TSV (default); csv; json: one object per line; "
                        "parquet (needs -o or a redirected stdout)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--backend", choices=("c", "py"), help="flow engine (default: compiled if built)"
    )
    p.add_argument("--iface", help="capture live from this interface instead of files")
    add_engine_arguments(p.add_argument_group("flow engine"))
    add_live_arguments(
        p.add_argument_group("live capture (--iface)"),
        duration_help="stop after S seconds (default: at Ctrl-C / SIGTERM); live flows are "
        "written as they end and the rest when capture stops",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netwarden.commands.engine_options import engine_config
    from netwarden.errors import CaptureError, ConfigError

    if not args.pcaps and not args.iface:
        raise ConfigError("give at least one PCAP or --iface")
    if args.format == "parquet" and not args.output and sys.stdout.isatty():
        raise ConfigError("--format parquet writes binary: give -o FILE or redirect stdout")
    config = engine_config(args)
    if args.iface:
        # Refuse bad live options before anything is written.
        check_live_options(args)
    else:
        check_capture_files(args.pcaps)  # nothing is written for a missing or foreign file

    from sensor.export.sink import Sink
    from sensor.export.writers import make_writer

    sink = Sink(args.output)  # the file is created by the first write
    sink.check()
    if args.iface:
        writer = make_writer(args.format, sink)
        try:
            _live(args, config, writer)
        except CaptureError as exc:
            return _fault(exc, sink, writer)
        writer.close()
        return 0
    from netwarden.flow_tables import rebatch
    from sensor.export.background import BackgroundWriter
    from sensor.export.writers import BATCH_ROWS
    from sensor.flows import iter_flow_records

    # Conversion runs on two threads and writing on a third while the engine reads on.
    rows = BATCH_ROWS[args.format]
    background = BackgroundWriter(lambda: make_writer(args.format, sink))
    try:
        flows = iter_flow_records(args.pcaps, backend=args.backend, config=config)
        for recs in rebatch(flows, rows):
            background.put(recs)
    except CaptureError as exc:
        return _fault(exc, sink, background.finish())
    background.finish().close()
    return 0


def _fault(exc: Exception, sink: Any, writer: Any) -> int:
    """Every flow read before a capture fault has been written; with none, no file is left."""
    print(f"netwarden flows: error: {exc}", file=sys.stderr)
    if sink.opened:
        writer.close()
    return 1


def _live(args: argparse.Namespace, config: Any, writer: Any) -> None:
    """Flows of a live interface, each drained batch written as it ends."""
    try:
        from sensor.live import capture_flows, ring_from_options
    except ImportError:
        from netwarden.errors import CaptureError

        raise CaptureError("live capture is not available (sensor.live missing)") from None
    from netwarden.records.arrow import to_batch

    flows = capture_flows(
        args.iface,
        args.duration,
        config,
        workers=args.workers,
        bpf=args.filter,
        promisc=args.promisc,
        ring=ring_from_options(args),
        backend=args.backend,
    )
    for recs in flows:
        if len(recs):
            writer.write(to_batch("flow", recs, writer.columns))
