"""Live capture options shared by ``netwarden flows --iface`` and ``netwarden sensor --iface``.

Not a subcommand: both commands add the same arguments with ``add_live_arguments``;
``sensor.live.ring_from_options`` turns them into a ``RingConfig``; ``check_live_options``
refuses bad values before a command opens its output or connects. Kept free of heavy
imports because it runs while the CLI parsers are built.
"""

from __future__ import annotations

from typing import Any


def add_live_arguments(group: Any, duration_help: str = "stop after S seconds") -> None:
    """``--workers --filter --promisc --duration --ring-blocks --ring-block-size
    --block-timeout`` on a parser or argument group."""
    group.add_argument(
        "--workers",
        default="1",
        metavar="N|auto",
        help="fanout worker processes (auto: one per core but one)",
    )
    group.add_argument(
        "--filter",
        default=None,
        metavar="BPF",
        help="capture filter, tcpdump syntax (e.g. 'tcp or udp port 53')",
    )
    group.add_argument("--promisc", action="store_true", help="promiscuous mode")
    group.add_argument("--duration", type=float, default=None, metavar="S", help=duration_help)
    group.add_argument(
        "--ring-blocks",
        type=int,
        default=None,
        metavar="N",
        help="ring blocks per worker (default 64)",
    )
    group.add_argument(
        "--ring-block-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="ring block size, a multiple of the page size (default 1 MiB)",
    )
    group.add_argument("--block-timeout", type=int, default=None, metavar="MS",
                       help="the kernel hands over a partly filled block after MS (default 20)")  # fmt: skip


def check_live_options(args: Any) -> None:
    """Raise ``ConfigError`` / ``InterfaceError`` for what ``LiveCapture`` would refuse, so
    a command can refuse before it opens its output or connects to a controller."""
    try:
        from sensor.capture.afpacket import ifindex
        from sensor.live import resolve_workers, ring_from_options
    except ImportError:
        return  # the command reports a missing live capture itself
    resolve_workers(args.workers)
    ring_from_options(args)
    if args.duration is not None and not args.duration > 0:
        from netwarden.errors import ConfigError

        raise ConfigError(f"--duration must be > 0 seconds, got {args.duration!r}")
    if args.filter:
        from sensor.capture.bpf import compile_filter

        compile_filter(args.filter)
    ifindex(args.iface)


def check_capture_files(paths: list[str]) -> None:
    """Refuse, with one line naming the file, a path that is missing, unreadable or not a
    pcap/pcapng capture -- before a command writes a header or an output file."""
    import struct
    from pathlib import Path

    from netwarden.errors import CaptureError
    from sensor.engine.reference.pcapread import PCAP_NSEC, PCAP_USEC, PCAPNG_SHB

    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise CaptureError(
                f"{p}: no such file" if not path.exists() else f"{p}: not a regular file"
            )
        try:
            with path.open("rb") as fh:
                head = fh.read(4)
        except OSError as exc:
            raise CaptureError(f"{p}: cannot read ({exc.strerror or exc})") from None
        if len(head) < 4:
            raise CaptureError(f"{p}: empty or too short to be a capture file")
        magics = {struct.unpack("<I", head)[0], struct.unpack(">I", head)[0]}
        if not magics & {PCAP_USEC, PCAP_NSEC, PCAPNG_SHB}:
            raise CaptureError(f"{p}: not a pcap or pcapng capture file (it starts with {head!r})")
