"""``netwarden controller``: run the response controller in the foreground."""

from __future__ import annotations

import argparse

from netwarden.commands.common_options import add_detector_arguments, add_service_arguments


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("controller", help="run the response controller (foreground)")
    p.add_argument(
        "--enforce",
        choices=("nftables", "iptables", "dryrun"),
        default=None,
        help="enforcement backend (default: config, else dryrun)",
    )
    p.add_argument(
        "--state-dir",
        default=None,
        help="database, audit log and control socket (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)",
    )
    p.add_argument(
        "--hook",
        choices=("input", "forward", "prerouting"),
        default=None,
        help="input for a host, forward for a gateway, prerouting (raw) against floods",
    )
    p.add_argument("--config", default=None, help="TOML configuration file")
    p.add_argument(
        "--listen",
        action="append",
        metavar="ENDPOINT",
        default=[],
        help="also receive sensor batches on this ZeroMQ endpoint (repeatable)",
    )
    p.add_argument(
        "--curve-keys", default=None, metavar="DIR", help="CURVE server keys for --listen"
    )
    p.add_argument(
        "--no-curve",
        action="store_true",
        help="accept unauthenticated sensors on a non-loopback --listen (not recommended)",
    )
    p.add_argument(
        "--archive",
        default=None,
        metavar="DIR",
        help="archive received records here (default: STATE_DIR/archive)",
    )
    p.add_argument("--no-archive", action="store_true", help="do not archive received records")
    p.add_argument(
        "--archive-hours",
        type=float,
        default=24 * 7,
        help="archive retention in hours (default 168)",
    )
    p.add_argument(
        "--archive-max-gb",
        type=float,
        default=4.0,
        help="cap on the archive's disk use in GiB; batches beyond it are not archived (default 4)",
    )
    add_detector_arguments(p, " on received batches")
    add_service_arguments(p, "netwarden_")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from controller import config
    from controller.app import Controller
    from controller.bus_trust import check_listen
    from netwarden.logs import event
    from netwarden.memory import keep_freed_memory

    if args.listen:  # before anything is started or written
        check_listen(
            args.listen,
            curve=bool(args.curve_keys),
            no_curve=args.no_curve,
            command="netwarden controller",
        )
    cfg = config.load(args.config, enforce=args.enforce, hook=args.hook, state_dir=args.state_dir)
    log = logging.getLogger("netwarden.controller")
    base = logging.getLogger("netwarden")
    if base.getEffectiveLevel() > logging.INFO:
        base.setLevel(
            logging.INFO
        )  # a daemon says where it listens, who connects, and when it stops
    keep_freed_memory()  # each detection tick joins its records anew (netwarden/memory.py)
    ctl = Controller(cfg)
    try:
        rep = ctl.start()
        if args.listen:
            archive = (
                None
                if args.no_archive
                else Path(args.archive)
                if args.archive
                else cfg.state_dir / "archive"
            )
            ingest = ctl.attach_ingest(args.listen, curve_keys=args.curve_keys, archive=archive,
                                       archive_hours=args.archive_hours,
                                       archive_max_bytes=int(args.archive_max_gb * (1 << 30)))  # fmt: skip
            log.info("listening for sensors on %s (%s)", ", ".join(ingest.collector.endpoints),
                     "CURVE" if args.curve_keys else "no CURVE",
                     extra=event("controller.listen", endpoints=ingest.collector.endpoints,
                                 curve=bool(args.curve_keys)))  # fmt: skip
        # the detection stack's alerts go through triage (incidents, copilot, feedback) to
        # policy; incident operations are served with or without sensors
        from controller.incidents.stage import attach_triage

        attach_triage(ctl, cfg.state_dir, args.config, detect=bool(args.listen), names=args.detectors,
                      plugins=args.detector_plugin)  # fmt: skip
        if args.metrics:
            from netwarden.metrics import ControllerMetrics, serve

            metrics = ControllerMetrics()
            metrics.attach(ctl)
            ctl.at_close(serve(args.metrics, metrics.registry))
        # one line operators and tests can wait for, printed once SIGTERM is handled
        ctl.run(
            on_ready=lambda: print(
                f"controller ready: backend={ctl.enforcer.name} hook={cfg.hook.value} state_dir={cfg.state_dir} "
                f"reconcile kept={rep.kept} readded={rep.readded} removed={rep.removed} expired={rep.expired}",
                flush=True,
            )
        )
        log.info(
            "stopping (signal received); kernel bans stay in place",
            extra=event("controller.stopping"),
        )
    finally:
        ctl.close()
    log.info("controller stopped", extra=event("controller.stopped"))
    return 0
