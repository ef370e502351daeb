"""``netwarden replay PCAP``: run a capture end to end and say what was found.

Reads the capture through the same flow engine and per-host telemetry as the sensor,
then prints a summary: traffic, flows by protocol and state, tunnels, DNS, ARP, and the
hosts whose per-window telemetry stands out (fan-out to many ports or hosts, unanswered
SYNs, ICMP unreachables, many sources towards one victim), and the alerts the detection
stack (``controller.detect``) raised, in capture time, as the records were made.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netwarden.commands.common_options import add_detector_arguments
from netwarden.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import numpy as np


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="replay a capture end to end and print what was found",
        description="Replay pcap/pcapng files through the flow engine and per-host telemetry "
        "and print a summary of flows, telemetry and notable hosts.",
    )
    p.add_argument("pcaps", nargs="+", metavar="PCAP")
    p.add_argument("--backend", choices=("c", "py"), help="flow engine backend (default: c)")
    p.add_argument("--window", type=float, default=1.0, help="telemetry window, seconds")
    p.add_argument("--top", type=int, default=5, help="rows per table (default 5)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line: alerts, then the summary",
    )
    add_detector_arguments(p)
    p.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="store alerts and incidents in DIR as the controller would (policy in dry run)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="TOML configuration: detection thresholds; policy with --state-dir",
    )
    p.add_argument(
        "--lang", choices=("en", "ja"), default=None, help="language of incident summaries"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netwarden.commands.capture_options import check_capture_files

    check_capture_files(args.pcaps)  # before any summary: a text file is refused like a missing one
    if args.top < 1:
        raise ConfigError("--top must be >= 1")
    from controller.detect import DetectionStack, build
    from controller.detect.thresholds import load as load_thresholds
    from sensor.export.replay_summary import replay

    names = [n.strip() for n in args.detectors.split(",") if n.strip()] if args.detectors else None
    stack = DetectionStack(
        build(names, args.detector_plugin), thresholds=load_thresholds(args.config)
    )
    from netwarden.quality.replaying import AlertSink

    sink = AlertSink(stack)
    alerts = sink.alerts
    from netwarden.progress import FileProgress

    # With a state dir, the records are archived as they stream by (summarised otherwise).
    archive = _ArchiveStream(Path(args.state_dir)) if args.state_dir else None
    bar = FileProgress(sum(Path(p).stat().st_size for p in args.pcaps), "replay")
    try:
        summary, fault = replay(args.pcaps, backend=args.backend, window=args.window, top=args.top,
                                sink=sink, progress=bar,
                                tap=archive.add if archive is not None else None)  # fmt: skip
    finally:
        bar.close()
    summary["alerts"] = [a.to_json() for a in alerts]
    summary["detection"] = stack.status()
    triage = None
    if args.state_dir:  # alerts -> incidents -> policy (dry run), stored as a controller would
        from netwarden.commands.incidents import replay_output

        triage = replay_output(alerts, args.state_dir, args.config, stack.now_ns / 1e9, summary)
    if args.json:
        for a in summary["alerts"]:
            print(json.dumps(a))
        for inc in summary.get("incidents", []):
            print(json.dumps(inc))
        print(
            json.dumps(
                {"type": "summary", **{k: v for k, v in summary.items() if k != "incidents"}}
            )
        )
    else:
        _print(summary)
        if triage is not None:
            from netwarden.commands.incidents import print_replay_triage

            print_replay_triage(triage, args.lang, args.config)
    if archive is not None:
        archive.close()
    if fault:
        print(f"netwarden replay: error: {fault}", file=sys.stderr)
        return 1
    return 0


class _ArchiveStream:
    """The replay's records into STATE_DIR/archive (Parquet, sensor ``replay``) as they
    stream by, as a controller archives what its sensors send (``netwarden report`` and
    ``netwarden hunt`` read them there): memory holds the archive's write buffers, not the
    capture's records. A replay into the same state dir again replaces the previous
    replay's records. A full archive stops the archiving, not the replay: ``close`` raises
    its error once the replay's own results are out."""

    KINDS = ("flow", "arp", "host", "pair")

    def __init__(self, state_dir: Path) -> None:
        import shutil

        from controller.ingest.archive import RecordArchive

        root = state_dir / "archive"
        for old in root.glob("type=*/date=*/hour=*/sensor=replay"):
            shutil.rmtree(old, ignore_errors=True)
        self.archive = RecordArchive(root)
        self.error: StoreError | None = None

    def add(self, kind: str, records: np.ndarray) -> None:
        if self.error is None and kind in self.KINDS and len(records):
            try:
                self.archive.append(kind, "replay", records)
            except StoreError as exc:
                self.error = exc

    def close(self) -> None:
        self.archive.close()
        if self.error is not None:
            raise self.error


def _print(s: dict[str, Any]) -> None:
    from netwarden.tables import console, print_table, say

    con = console()
    t = s["traffic"]
    say(con, f"[bold]Capture[/bold] {', '.join(s['files'])}: {t['packets']:,} packets, "
        f"{t['bytes']:,} bytes over {t['duration_s']:.1f} s "
        f"(decode errors {t['decode_errors']}, backend {s['backend']})")  # fmt: skip
    f = s["flows"]
    say(con, f"[bold]Flows[/bold] {f['total']:,}: " + ", ".join(f"{k} {v}" for k, v in f["by_proto"].items())
        + f"; tunnelled {f['tunnelled']}")  # fmt: skip
    say(con, "  conn_state: " + ", ".join(f"{k} {v}" for k, v in f["by_state"].items()))
    print_table("Top conversations by bytes", ["proto", "originator", "responder", "state", "pkts", "bytes", "history"],
                [[c["proto"], c["orig"], c["resp"], c["state"], str(c["pkts"]), str(c["bytes"]), c["history"]]
                 for c in f["top"]], right=("pkts", "bytes"))  # fmt: skip
    attackers = {a["attacker"] for a in s.get("alerts", []) if a.get("attacker")}
    print_table("Top host pairs by flows (scans and brute force rank here)",
                ["originator", "responder", "flows", "ports", "pkts", "bytes", "alerted"],
                [[c["orig"], c["resp"], str(c["flows"]), str(c["ports"]), str(c["pkts"]), str(c["bytes"]),
                  "yes" if c["orig"] in attackers or c["resp"] in attackers else ""] for c in f.get("top_pairs", [])],
                right=("flows", "ports", "pkts", "bytes"))  # fmt: skip
    d = s["dns"]
    say(con, f"[bold]DNS[/bold] {d['queries']} queries, {d['responses']} responses, "
        f"{d['nxdomain']} NXDOMAIN, {d['distinct_names']} distinct names in {d['flows']} flows; "
        f"longest label {d['longest_label']}, max label entropy {d['max_entropy']:.2f} bits/char")  # fmt: skip
    a = s["arp"]
    say(con, f"[bold]ARP[/bold] {a['requests']} requests, {a['replies']} replies, "
        f"{a['ip_mac_conflicts']} IP addresses claimed by more than one MAC")  # fmt: skip
    tel = s["telemetry"]
    say(con, f"[bold]Telemetry[/bold] {tel['host_records']} host-window records for "
        f"{tel['hosts']} hosts, {tel['pair_records']} pair records (window {tel['window_s']} s)")  # fmt: skip
    if s["notable"]:
        print_table("Hosts that stand out (peak per window)", ["host", "indicator", "peak", "in window starting"],
                    [[n["host"], n["indicator"], str(n["peak"]), n["at"]] for n in s["notable"]],
                    right=("peak",))  # fmt: skip
    else:
        say(con, "  no host stands out")
    if not s["alerts"]:
        say(con, "[bold]Alerts[/bold] none")
        return
    rows = []
    for i, a in enumerate(s["alerts"], 1):
        vics = ", ".join(a["victims"][:3]) + (
            f" +{len(a['victims']) - 3}" if len(a["victims"]) > 3 else ""
        )
        rows.append([str(i), _ts(a["detected_at"]), a["kind"], a["attacker"] or "(spoofed)", vics,
                     f"{a['score']:.0f}", f"{a['confidence']:.2f}"])  # fmt: skip
    print_table(f"Alerts ({len(s['alerts'])})",
                ["#", "detected (UTC)", "kind", "attacker", "victims", "score", "conf"], rows,
                right=("score", "conf"))  # fmt: skip
    for i, a in enumerate(s["alerts"], 1):  # MITRE ATT&CK technique first
        say(con, f"  {i}. [{a['mitre']}] {a['summary']}", highlight=False, markup=False)


def _ts(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, tz=UTC).strftime("%m-%d %H:%M:%S")
