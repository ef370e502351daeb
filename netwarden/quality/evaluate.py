"""``netwarden eval``: judge detection against labelled captures.

Each labelled capture is replayed through a fresh detection stack (``replaying``) and its
alerts are judged against its row (``judge``): an alert of the labelled kind naming the
labelled attacker (the victim, for spoofed and reflected attacks) within the kind's
deadline (``labels.DEADLINES_S``) after the attack's first packet; on a ``benign`` row,
no alert at all. Long benign captures (``--benign DIR``) are judged by rate: at most
``max_per_hour`` alerts per capture-hour. The project's corpus tests use this module.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.detect import Alert
from netwarden.quality.labels import (
    BENIGN,
    deadline,
    first_address,
    is_victim_centric,
    names,
    read_labels,
)
from netwarden.quality.replaying import Run, replay_run

BACKGROUND = "benign (background)"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def judge(label: dict[str, str], run: Run) -> tuple[Alert | None, str]:
    """(the first alert that matches the label, or None; a short reason, ``ok`` when
    detected, attributed and in time)."""
    return judge_alerts(label, run.t_first, run.alerts)


def judge_alerts(label: dict[str, str], t_first: float,
                 alerts: list[Alert]) -> tuple[Alert | None, str]:  # fmt: skip
    kind = label["class"]
    start = t_first + float(label["attack_start_s"] or 0)
    of_kind = [a for a in alerts if a.kind == kind]
    if not of_kind:
        got = sorted({a.kind for a in alerts})
        return None, f"no {kind} alert (got {', '.join(got) or 'nothing'})"
    for a in of_kind:
        if attributed(label, a):
            if a.detected_at - start > deadline(kind):
                return a, f"late: {a.detected_at - start:.1f} s > {deadline(kind):.0f} s"
            return a, "ok"
    return None, f"{kind} alert names {of_kind[0].attacker} -> {of_kind[0].victims[:2]}"


def attributed(label: dict[str, str], a: Alert) -> bool:
    """The alert names the label's attacker (its victim when the attack is spoofed or
    reflected)."""
    if is_victim_centric(label["attacker_ip"]):
        want = first_address(label["victim_ips"])
        return want is not None and names(want, a.victims)
    want = first_address(label["attacker_ip"])
    return want is not None and a.attacker is not None and names(want, [a.attacker])


@dataclass
class RowResult:
    file: str
    cls: str
    expected: str
    passed: bool
    verdict: str  # "ok" or why not
    detected: bool = False  # an alert of the labelled kind
    attributed: bool = False  # ... naming the right attacker / victim
    ttd_s: float | None = None  # time to detect, from the attack's first packet
    deadline_s: float | None = None
    got: str = "-"
    false_alerts: int = 0  # alerts that are not the labelled attack
    alerts: int = 0
    hours: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.file).stem

    def cells(self) -> tuple[str, str, str, str, str]:
        """(capture, expected, got, time to detect, verdict): the corpus table's row."""
        ttd = "-" if self.ttd_s is None else f"{self.ttd_s:.2f} s"
        return (self.name, self.expected, self.got, ttd, self.verdict)

    def to_json(self) -> dict[str, Any]:
        return {"type": "row", "file": self.file, "class": self.cls, "expected": self.expected,
                "passed": self.passed, "verdict": self.verdict, "detected": self.detected,
                "attributed": self.attributed, "time_to_detect_s": self.ttd_s,
                "deadline_s": self.deadline_s, "got": self.got, "alerts": self.alerts,
                "false_alerts": self.false_alerts, "hours": round(self.hours, 3),
                "detector_errors": self.errors}  # fmt: skip


def _describe(alerts: list[Alert]) -> str:
    return ", ".join(f"{a.kind}:{a.attacker or a.victims[:1]}" for a in alerts) or "nothing"


def judge_row(label: dict[str, str], run: Run) -> RowResult:
    """One labelled capture's result."""
    kind = label["class"]
    errs = dict(run.errors)
    if kind == BENIGN:
        ok = not run.alerts and not errs
        why = "ok" if not run.alerts else "FALSE POSITIVE"
        return RowResult(label["file"], kind, "nothing", ok, why if not errs else f"detector errors {errs}",
                         got=_describe(run.alerts), false_alerts=len(run.alerts),
                         alerts=len(run.alerts), hours=run.hours, errors=errs)  # fmt: skip
    alert, why = judge(label, run)
    start = run.t_first + float(label["attack_start_s"] or 0)
    right = [a for a in run.alerts if a.kind == kind and attributed(label, a)]
    expected = f"{kind} {label['attacker_ip'].split(' (')[0][:24]}"
    got = "-"
    if alert is not None:
        got = f"{alert.kind} {alert.attacker or '(victim ' + alert.victims[0] + ')'}"
    if errs:
        why = f"detector errors {errs}" if why == "ok" else why
    return RowResult(
        label["file"], kind, expected, why == "ok", why,
        detected=any(a.kind == kind for a in run.alerts), attributed=bool(right),
        ttd_s=None if alert is None else alert.detected_at - start, deadline_s=deadline(kind),
        got=got, false_alerts=len(run.alerts) - len(right), alerts=len(run.alerts),
        hours=run.hours, errors=errs,
    )  # fmt: skip


def judge_background(path: Path, run: Run, max_per_hour: float) -> RowResult:
    """A long benign capture: at most ``max_per_hour`` alerts per capture-hour."""
    rate = len(run.alerts) / run.hours
    ok = rate <= max_per_hour and not run.errors
    why = "ok" if ok else (f"{rate:.2f} alerts/hour > {max_per_hour:g}" if not run.errors
                           else f"detector errors {run.errors}")  # fmt: skip
    return RowResult(str(path), BACKGROUND, f"<= {max_per_hour:g} alerts/hour", ok, why,
                     got=_describe(run.alerts[:5]), false_alerts=len(run.alerts),
                     alerts=len(run.alerts), hours=run.hours, errors=dict(run.errors))  # fmt: skip


def background_captures(dirs: list[Path]) -> list[Path]:
    from netwarden.errors import ConfigError

    out: list[Path] = []
    for d in dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"--benign {d}: not a directory")
        out += sorted(p for p in Path(d).iterdir() if p.suffix in CAPTURE_SUFFIXES)
    return out


@dataclass
class Evaluation:
    rows: list[RowResult]
    thresholds: dict[str, float]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    def classes(self) -> list[dict[str, Any]]:
        by: dict[str, list[RowResult]] = defaultdict(list)
        for r in self.rows:
            by[r.cls].append(r)
        return [{"type": "class", "class": c, **_aggregate(rs)} for c, rs in sorted(by.items())]

    def overall(self) -> dict[str, Any]:
        benign = [r for r in self.rows if r.cls in (BENIGN, BACKGROUND)]
        hours = sum(r.hours for r in benign)
        per_hour = sum(r.alerts for r in benign) / hours if hours else None
        return {"type": "overall", **_aggregate(self.rows), "passed": self.passed,
                "benign_hours": round(hours, 3), "benign_alerts_per_hour": per_hour,
                "thresholds": self.thresholds}  # fmt: skip


def _aggregate(rows: list[RowResult]) -> dict[str, Any]:
    attacks = [r for r in rows if r.cls not in (BENIGN, BACKGROUND)]
    ttd = [r.ttd_s for r in attacks if r.ttd_s is not None]
    return {
        "rows": len(rows), "rows_passed": sum(r.passed for r in rows),
        "attacks": len(attacks), "detected": sum(r.detected for r in attacks),
        "attributed": sum(r.attributed for r in attacks),
        "in_time": sum(r.passed for r in attacks),
        "ttd_median_s": statistics.median(ttd) if ttd else None,
        "ttd_max_s": max(ttd) if ttd else None,
        "false_alerts": sum(r.false_alerts for r in rows),
    }  # fmt: skip


def evaluate(labels_path: Path, capture_dir: Path, benign_dirs: list[Path] | None = None,
             thresholds: dict[str, float] | None = None, max_per_hour: float = 1.0,
             backend: str | None = "c") -> Evaluation:  # fmt: skip
    """Every row of ``labels_path`` (captures under ``capture_dir``) and every capture in
    ``benign_dirs``, each replayed through a fresh stack with ``thresholds``."""
    rows: list[RowResult] = []
    for label in read_labels(labels_path):
        path = Path(capture_dir) / label["file"]
        if not path.is_file():
            rows.append(RowResult(label["file"], label["class"], label["attacker_ip"], False,
                                  f"capture missing: {path}"))  # fmt: skip
            continue
        rows.append(judge_row(label, replay_run([path], thresholds, backend)))
    for path in background_captures(list(benign_dirs or [])):
        rows.append(judge_background(path, replay_run([path], thresholds, backend), max_per_hour))
    return Evaluation(rows, dict(thresholds or {}))
