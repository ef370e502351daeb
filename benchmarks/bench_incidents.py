"""Triage: alert-to-incident compression on the corpus, and triage throughput.

1. Every capture of the corpus (attacks, then the background hours) replayed through the
   detection stack; all their alerts into one triage pipeline on a dry-run controller:
   incidents formed per 10,000 alerts.
2. 10,000 generated alerts (seeded: 300 sources, 60 victims, the issue's kinds, over a day)
   through the same pipeline (feedback lookup, incidents, copilot summaries in two
   languages, policy, sqlite): alerts per second and incidents per 10,000 alerts, the
   alerts arriving one per detection tick, then 100 per tick (a storm).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("NETWARDEN_SHARED", REPO.parent / "shared")) / "corpus"
KINDS = ["port_scan", "host_sweep", "ssh_bruteforce", "ftp_bruteforce", "c2_beaconing", "dns_tunneling",
         "data_exfiltration", "syn_flood", "dns_amplification", "traffic_anomaly"]  # fmt: skip


def _triage_run(alerts: list[Any], per_tick: int = 1) -> tuple[int, float]:
    """Incidents formed and seconds taken, the alerts arriving ``per_tick`` at a time (one
    ``process`` call and one ``tick`` each, as the detection stage hands them over)."""
    from controller.app import Controller
    from controller.config import ControllerConfig, SafetyConfig
    from controller.incidents.config import TriageConfig
    from controller.incidents.triage import Triage
    from controller.response.policy import Guard

    with tempfile.TemporaryDirectory() as d:
        now = [alerts[0].detected_at if alerts else 0.0]
        ctl = Controller(ControllerConfig(state_dir=Path(d), safety=SafetyConfig(discover_local=False)),
                         guard=Guard(), clock=lambda: now[0])  # fmt: skip
        ctl.start(control=False)
        try:
            tri = Triage(ctl.store, ctl.audit, TriageConfig(), submit=ctl.submit_detection)
            t0 = time.perf_counter()
            ordered = sorted(alerts, key=lambda a: a.detected_at)
            for i in range(0, len(ordered), per_tick):
                group = ordered[i : i + per_tick]
                now[0] = group[-1].detected_at
                tri.process(group)
                tri.tick(now[0])
            elapsed = time.perf_counter() - t0
            return len(tri.istore.incidents()), elapsed
        finally:
            ctl.close()


def corpus_alerts() -> list[Any]:
    from controller.detect import DetectionStack, build
    from sensor.export.replay_summary import replay

    paths = sorted((CORPUS / "attacks").glob("*/*.pcap")) + sorted(
        (CORPUS / "background").glob("*.pcap")
    )
    out: list[Any] = []
    for p in paths:
        stack = DetectionStack(build())
        got: list[Any] = []

        class Sink:
            observe = stack.observe

            @staticmethod
            def advance(now_ns: int, _s: Any = stack, _g: list[Any] = got) -> None:
                _g.extend(_s.advance(now_ns))

        _, fault = replay([str(p)], backend="c", window=1.0, top=1, sink=Sink())
        if fault:
            print(f"  {p.name}: {fault}")
        out.extend(got)
    return out


def generated_alerts(n: int = 10_000, seed: int = 7) -> list[Any]:
    from controller.detect.alert import Alert

    rng = random.Random(seed)
    sources = [f"198.51.{i // 250}.{i % 250 + 1}" for i in range(300)]
    victims = [f"10.0.0.{i + 1}" for i in range(60)]
    t0, out = 1_700_000_000.0, []
    for i in range(n):
        kind = rng.choice(KINDS)
        t = t0 + 86400.0 * i / n
        src = None if kind in ("syn_flood", "dns_amplification") else rng.choice(sources)
        out.append(Alert(kind, src, [rng.choice(victims)], rng.uniform(30, 100), rng.uniform(0.3, 0.99), t - 5, t,
                         "", {"observed": rng.randint(1, 1000), "learnt_reference": 3, "threshold": 20},
                         kind, "bench", "1"))  # fmt: skip
    return out


def main() -> int:
    if (CORPUS / "attacks").is_dir():
        t0 = time.perf_counter()
        alerts = corpus_alerts()
        print(f"corpus: {len(alerts)} alerts from detection in {time.perf_counter() - t0:.1f} s")
        if alerts:
            incs, el = _triage_run(alerts)
            print(f"corpus: {incs} incidents from {len(alerts)} alerts = {incs / len(alerts) * 10_000:.0f} "
                  f"incidents per 10,000 alerts (triage {el:.2f} s)")  # fmt: skip
    else:
        print(f"corpus not found at {CORPUS}: skipped")
    gen = generated_alerts()
    for per_tick, how in ((1, "one alert per tick"), (100, "a storm: 100 alerts per tick")):
        incs, el = _triage_run(gen, per_tick)
        print(f"generated, {how}: {len(gen)} alerts -> {incs} incidents "
              f"({incs / len(gen) * 10_000:.0f} per 10,000 alerts); "
              f"triage {len(gen) / el:,.0f} alerts/s on one core")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
