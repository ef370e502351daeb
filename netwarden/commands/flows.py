"""``netwarden flows``: capture files (or a live interface) to Zeek conn.log / JSON / CSV."""

from __future__ import annotations

import argparse
import sys

from netwarden.commands.capture_options import (
    add_live_arguments,
    check_capture_files,
    check_live_options,
)
from netwarden.commands.engine_options import add_engine_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flows", help="assemble flows from pcap/pcapng files or an interface")
    p.add_argument("pcaps", nargs="*", metavar="PCAP", help="capture files, read in order")
    p.add_argument("--format", choices=("zeek", "json", "csv"), default="zeek",
                   help="zeek: conn.log TSV (default); json: one object per flow; csv")  # fmt: skip
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
    from sensor.export.zeeklog import make_writer

    if not args.pcaps and not args.iface:
        raise ConfigError("give at least one PCAP or --iface")
    config = engine_config(args)
    if args.iface:
        # Refuse bad live options before -o truncates an existing file.
        check_live_options(args)
    else:
        check_capture_files(args.pcaps)  # nothing is written for a missing or foreign file
    fh = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115 (closed below)
    writer = make_writer(args.format, fh)
    rc = 0
    try:
        if args.iface:
            try:
                from sensor.live import capture_flows
            except ImportError:
                print(
                    "netwarden flows: error: live capture is not available (sensor.live missing)",
                    file=sys.stderr,
                )
                return 1
            from sensor.live import ring_from_options

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
                writer.write(recs)
        else:
            from sensor.flows import iter_flow_records

            try:
                for recs in iter_flow_records(args.pcaps, backend=args.backend, config=config):
                    writer.write(recs)
            except CaptureError as exc:
                # Every flow read before the fault has been written above.
                print(f"netwarden flows: error: {exc}", file=sys.stderr)
                rc = 1
    finally:
        writer.close()
        if args.output:
            fh.close()
    return rc
