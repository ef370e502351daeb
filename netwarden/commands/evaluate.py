"""``netwarden eval LABELS.tsv CAPTURE_DIR``: how well detection does on labelled captures.

Replays each labelled capture, judges its alerts against its row and prints, per capture,
per class and overall: detected, attributed right, time to detect against the kind's
deadline, false alerts, and alerts per hour on the benign captures. Exit status 0 only
when every row passed, so it can run in an operator's own CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from netwarden.commands.quality_options import add_replay_output_arguments

HELP = "measure detection on labelled captures (exit 0 when every row passes)"
DESCRIPTION = (
    "Replay labelled captures (TSV: file, class, attacker_ip, victim_ips, "
    "attack_start_s; class 'benign' means nothing should fire) and report detection, "
    "attribution, time to detect and false alerts."
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help=HELP, description=DESCRIPTION)
    p.add_argument("labels", metavar="LABELS.tsv")
    p.add_argument("capture_dir", metavar="CAPTURE_DIR", help="where the label's files are")
    p.add_argument("--benign", action="append", default=[], metavar="DIR",
                   help="long benign captures in DIR: judged by alerts per hour (repeatable)")  # fmt: skip
    p.add_argument("--max-per-hour", type=float, default=1.0, metavar="N",
                   help="alerts per capture-hour a --benign capture may raise (default 1)")  # fmt: skip
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML configuration whose [detect.thresholds] to apply")  # fmt: skip
    add_replay_output_arguments(p)
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write an HTML report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.detect.thresholds import load as load_thresholds
    from netwarden.errors import ConfigError
    from netwarden.quality.evaluate import evaluate

    if not Path(args.capture_dir).is_dir():
        raise ConfigError(f"{args.capture_dir}: not a directory")
    if args.max_per_hour < 0:
        raise ConfigError("--max-per-hour must be >= 0")
    ev = evaluate(Path(args.labels), Path(args.capture_dir), [Path(d) for d in args.benign],
                  load_thresholds(args.config), args.max_per_hour, args.backend)  # fmt: skip
    if args.json:
        for r in ev.rows:
            print(json.dumps(r.to_json()))
        for c in ev.classes():
            print(json.dumps(c))
        print(json.dumps(ev.overall()))
    else:
        _print(ev)
    if args.output:
        from netwarden.quality.charts import evaluation_html

        Path(args.output).write_text(evaluation_html(ev, args.labels))
        if not args.json:
            print(f"report written to {args.output}")
    return 0 if ev.passed else 1


def _print(ev: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from netwarden.quality.evaluate import Evaluation

    assert isinstance(ev, Evaluation)
    con = Console(width=140)
    tab = Table(title="Captures", title_justify="left")
    for col in ("capture", "expected", "got", "time to detect", "deadline", "false alerts",
                "verdict"):  # fmt: skip
        tab.add_column(col)
    for r in ev.rows:
        name, exp, got, ttd, why = r.cells()
        dl = "-" if r.deadline_s is None else f"{r.deadline_s:g} s"
        tab.add_row(name, exp, got, ttd, dl, str(r.false_alerts),
                    why if r.passed else f"[red]{why}[/red]")  # fmt: skip
    con.print(tab)
    tab = Table(title="Classes", title_justify="left")
    for col in ("class", "rows", "passed", "detected", "attributed", "in time", "median ttd",
                "max ttd", "false alerts"):  # fmt: skip
        tab.add_column(col)
    for c in [*ev.classes(), {**ev.overall(), "class": "overall"}]:
        tab.add_row(c["class"], str(c["rows"]), str(c["rows_passed"]),
                    *(f"{c[k]}/{c['attacks']}" if c["attacks"] else "-"
                      for k in ("detected", "attributed", "in_time")),
                    *("-" if c[k] is None else f"{c[k]:.2f} s" for k in ("ttd_median_s", "ttd_max_s")),
                    str(c["false_alerts"]))  # fmt: skip
    con.print(tab)
    o = ev.overall()
    rate = o["benign_alerts_per_hour"]
    con.print(f"benign: {o['benign_hours']:.2f} capture-hours, "
              + ("no benign captures" if rate is None else f"{rate:.2f} alerts/hour")
              + (f"; thresholds {o['thresholds']}" if o["thresholds"] else ""), highlight=False)  # fmt: skip
    con.print("[green]PASS[/green]: every row passed" if ev.passed else
              f"[red]FAIL[/red]: {o['rows'] - o['rows_passed']} of {o['rows']} rows failed")  # fmt: skip
