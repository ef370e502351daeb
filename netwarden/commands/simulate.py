"""``netwarden simulate --config CANDIDATE.toml CAPTURE...``: rehearse a policy change.

Replays the captures through detection and the response path of the candidate config and
of the current one (``--current``; the defaults when omitted), in dry run, and shows what
each would have done (bans, rate limits, approvals, recommendations) and, for every
containment, who would be hurt if it were wrong: the blast radius.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from netwarden.commands.quality_options import add_replay_output_arguments

HELP = "replay captures through a candidate config's policy (dry run) and show the difference"
DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ").replace("``", "`") if __doc__ else None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("simulate", help=HELP, description=DESCRIPTION)
    p.add_argument("--config", required=True, metavar="CANDIDATE.toml", help="the config to try")
    p.add_argument("captures", nargs="+", metavar="CAPTURE")
    p.add_argument("--current", default=None, metavar="CURRENT.toml",
                   help="the config in use (default: the built-in defaults)")  # fmt: skip
    add_replay_output_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netwarden.commands.capture_options import check_capture_files
    from netwarden.config_check import check_file
    from netwarden.errors import ConfigError
    from netwarden.quality.simulate import simulate

    check_capture_files(args.captures)
    for cfg in (args.config, args.current):
        if cfg is not None:
            problems = check_file(cfg)
            if problems:
                raise ConfigError(f"{cfg}: {problems[0]} (see `netwarden config check {cfg}`)")
    sim = simulate([Path(p) for p in args.captures], args.config, args.current, args.backend)
    if args.json:
        _json(sim)
    else:
        _print(sim)
    return 0


def _json(sim: object) -> None:
    from dataclasses import asdict

    from netwarden.quality.simulate import Simulation

    assert isinstance(sim, Simulation)
    for side, out in (("current", sim.current), ("candidate", sim.candidate)):
        for e in out.effects.values():
            print(json.dumps({"type": "effect", "config": side, **asdict(e)}))
    for t, a, b in sim.differences():
        r = sim.radius.get(t)
        print(json.dumps({"type": "difference", "target": t,
                          "current": a and a.effect, "candidate": b and b.effect,
                          "current_reason": a and a.reason, "candidate_reason": b and b.reason,
                          "blast_radius": r and {**asdict(r), "harms": r.harms()}}))  # fmt: skip
    for r in sim.radius.values():
        print(json.dumps({"type": "blast_radius", **asdict(r), "harms": r.harms()}))
    print(json.dumps({"type": "summary", "captures": sim.captures,
                      "current": {"config": sim.current.config, "alerts": sim.current.alerts,
                                  "incidents": sim.current.incidents},
                      "candidate": {"config": sim.candidate.config, "alerts": sim.candidate.alerts,
                                    "incidents": sim.candidate.incidents},
                      "differences": len(sim.differences())}))  # fmt: skip


def _print(sim: object) -> None:
    from netwarden.quality.simulate import Simulation

    assert isinstance(sim, Simulation)
    c, n = sim.current, sim.candidate
    print(f"Simulated {len(sim.captures)} capture(s) in dry run (nothing enforced):")
    print(f"  current   {c.config}: {c.alerts} alert(s), {c.incidents} incident(s)")
    print(f"  candidate {n.config}: {n.alerts} alert(s), {n.incidents} incident(s)")
    diffs = sim.differences()
    if not diffs:
        print("No difference: both configs would do the same.")
    else:
        print(f"Differences ({len(diffs)}):")
    for t, a, b in diffs:
        print(f"  {t}")
        print(f"    current:   {a.text() if a else 'nothing'}")
        print(f"    candidate: {b.text() if b else 'nothing'}")
        r = sim.radius.get(t)
        if r is not None:
            print(f"    blast radius: {'; '.join(r.harms())}")
    same = [t for t in n.effects if t not in {d[0] for d in diffs}]
    if same:
        print("Unchanged:")
        for t in same:
            print(f"  {t}: {n.effects[t].text()}")
