"""``netwarden tune BENIGN_CAPTURE...``: thresholds per alert kind for a target false-alert
rate, learnt on the operator's own benign traffic (method in ``netwarden.quality.tune``).

Shows the trade-off between false alerts per hour and detection on a labelled set
(``--labels``), draws it (``--plot``), and writes the chosen thresholds into a TOML config
(``--write``) that ``netwarden config check`` accepts and every detection path reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from netwarden.commands.quality_options import add_replay_output_arguments

HELP = "propose detection thresholds for a target false-alert rate"
DESCRIPTION = (
    "Learn per-kind alert thresholds on benign captures for at most N false "
    "alerts a day, with the trade-off against detection on a labelled set."
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("tune", help=HELP, description=DESCRIPTION)
    p.add_argument("benign", nargs="+", metavar="BENIGN_CAPTURE")
    p.add_argument("--labels", nargs=2, metavar=("LABELS.tsv", "CAPTURE_DIR"), default=None,
                   help="labelled captures to measure detection against")  # fmt: skip
    p.add_argument("--target-per-day", type=float, default=1.0, metavar="N",
                   help="false alerts a day allowed on the benign captures (default 1)")  # fmt: skip
    p.add_argument("--write", default=None, metavar="CONFIG",
                   help="write the thresholds into this TOML config ([detect.thresholds])")  # fmt: skip
    p.add_argument("--plot", default=None, metavar="OUT.svg", help="draw the trade-off curve")
    add_replay_output_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netwarden.commands.capture_options import check_capture_files
    from netwarden.errors import ConfigError
    from netwarden.quality.tune import tune, write_config

    check_capture_files(args.benign)
    if args.target_per_day < 0:
        raise ConfigError("--target-per-day must be >= 0")
    labels = capture_dir = None
    if args.labels:
        labels, capture_dir = Path(args.labels[0]), Path(args.labels[1])
        if not capture_dir.is_dir():
            raise ConfigError(f"{capture_dir}: not a directory")
    t = tune([Path(p) for p in args.benign], args.target_per_day, labels, capture_dir,
             args.backend)  # fmt: skip
    if args.plot:
        from netwarden.quality.charts import tradeoff_chart

        Path(args.plot).write_text(tradeoff_chart(t))
    if args.write:
        write_config(Path(args.write), t)
    if args.json:
        for pt in t.curve:
            print(json.dumps(pt.to_json()))
        print(json.dumps({**t.to_json(), "written": args.write, "plot": args.plot}))
    else:
        _print(t, args)
    return 0 if t.met else 1


def _print(t: object, args: argparse.Namespace) -> None:
    from netwarden.quality.tune import Tuning

    assert isinstance(t, Tuning)
    print(f"benign: {len(t.benign)} capture(s), {t.hours:.2f} capture-hours; "
          f"target {t.target_per_day:g} false alert(s)/day")  # fmt: skip
    print("trade-off (each step raises one kind's threshold):")
    print(f"  {'alerts/hour':>11}  {'detected':>8}  step")
    for p in t.curve:
        mark = "  <- chosen" if p is t.chosen else ""
        det = f"{p.detected:8.0%}" if t.labelled else f"{'-':>8}"
        print(f"  {p.alerts_per_hour:11.3f}  {det}  {p.step}{mark}")
    if t.chosen.thresholds:
        print("thresholds:")
        for k, v in sorted(t.chosen.thresholds.items()):
            print(f"  {k} = {v:g}  (labelled detections lost: {t.lost.get(k, 0)})")
    else:
        print("thresholds: none needed (the benign captures already meet the target)")
    print(f"checked: {t.checked_per_hour * 24:.2f} false alerts/day on the benign captures with "
          f"these thresholds: {'target met' if t.met else 'TARGET NOT MET'}")  # fmt: skip
    if args.write:
        print(f"written to {args.write} ([detect.thresholds])")
    if args.plot:
        print(f"trade-off curve drawn in {args.plot}")
