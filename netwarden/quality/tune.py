"""``netwarden tune``: per-kind thresholds for a target false-alert rate, learnt on the
operator's benign captures.

Method. Each capture is replayed once with no thresholds and its alerts are kept with
their scores (``replaying``). Every alert on a benign capture is a false alert. Starting
from no thresholds, the search raises one kind's threshold at a time to just above its
quietest remaining benign alert, choosing the step that loses the fewest labelled
detections (then the one that removes most false alerts, then the kind's name: the
result is deterministic), until the benign captures raise at most the target number of
alerts per day. Each step is one point of the trade-off curve (false alerts per hour
against the fraction of labelled attacks still detected in time and attributed). The
chosen thresholds are then checked by replaying the benign captures through a stack that
applies them (suppressing an alert can change what the stack learns afterwards); alerts
that check still raises are added to the search, a few rounds at most.

A capture shorter than an hour counts as one hour (``Run.hours``), so a single alert on a
short capture is not scaled up to thousands a day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.detect import Alert
from netwarden.quality.evaluate import judge_alerts
from netwarden.quality.labels import BENIGN, read_labels
from netwarden.quality.replaying import Run, record, replay_run, run_events

ROUNDS = 3  # check-and-extend rounds after the search


@dataclass(frozen=True)
class Point:
    thresholds: dict[str, float]
    alerts_per_hour: float  # false alerts on the benign captures
    detected: float  # fraction of labelled attacks detected in time and attributed
    step: str = ""  # what this point changed

    def to_json(self) -> dict[str, Any]:
        return {"type": "curve", "step": self.step, "alerts_per_hour": round(self.alerts_per_hour, 4),
                "detected": round(self.detected, 4), "thresholds": self.thresholds}  # fmt: skip


@dataclass
class Labelled:
    label: dict[str, str]
    run: Run


@dataclass
class Tuning:
    target_per_day: float
    benign: list[tuple[str, Run]]
    labelled: list[Labelled]
    curve: list[Point]
    chosen: Point
    checked_per_hour: float  # the benign captures replayed with the chosen thresholds
    benign_left: dict[str, int] = field(default_factory=dict)  # per kind, after the check
    lost: dict[str, int] = field(default_factory=dict)  # labelled rows each kind's threshold costs

    @property
    def hours(self) -> float:
        return sum(r.hours for _, r in self.benign)

    @property
    def met(self) -> bool:
        return self.checked_per_hour * 24 <= self.target_per_day + 1e-9

    def source_note(self) -> str:
        names = ", ".join(Path(p).name for p, _ in self.benign)
        lab = (f"; labelled set: {self.chosen.detected:.0%} of {self.attacks()} attacks still "
               f"detected" if self.labelled else "")  # fmt: skip
        return (
            f"learnt by `netwarden tune` on {names} ({self.hours:.2f} capture-hours) for at "
            f"most {self.target_per_day:g} false alert(s) per day: "
            f"{self.checked_per_hour * 24:.2f} per day on them with these thresholds{lab}"
        )

    def attacks(self) -> int:
        return sum(1 for x in self.labelled if x.label["class"] != BENIGN)

    def to_json(self) -> dict[str, Any]:
        return {"type": "tuning", "target_per_day": self.target_per_day, "met": self.met,
                "benign_hours": round(self.hours, 3), "thresholds": self.chosen.thresholds,
                "search_per_hour": round(self.chosen.alerts_per_hour, 4),
                "checked_per_hour": round(self.checked_per_hour, 4),
                "detected": round(self.chosen.detected, 4), "lost_per_kind": self.lost,
                "note": self.source_note()}  # fmt: skip


def _kept(alerts: list[Alert], thresholds: dict[str, float]) -> list[Alert]:
    return [a for a in alerts if a.score >= thresholds.get(a.kind, 0.0)]


def _above(score: float) -> float:
    """A threshold just above ``score`` (0.1 steps, so it reads well in a config)."""
    return min(100.0, math.floor(score * 10 + 1e-6) / 10 + 0.1)


class _Search:
    def __init__(self, benign: list[tuple[str, Run]], labelled: list[Labelled]) -> None:
        self.hours = sum(r.hours for _, r in benign) or 1.0
        self.false = [a for _, r in benign for a in r.alerts]
        self.attacks = [x for x in labelled if x.label["class"] != BENIGN]

    def rate(self, th: dict[str, float]) -> float:
        return len(_kept(self.false, th)) / self.hours

    def detected(self, th: dict[str, float]) -> int:
        return sum(judge_alerts(x.label, x.run.t_first, _kept(x.run.alerts, th))[1] == "ok"
                   for x in self.attacks)  # fmt: skip

    def point(self, th: dict[str, float], step: str) -> Point:
        frac = self.detected(th) / len(self.attacks) if self.attacks else 0.0
        return Point(dict(sorted(th.items())), self.rate(th), frac, step)

    def run(self, start: dict[str, float], target_per_day: float) -> tuple[list[Point], Point]:
        th = dict(start)
        curve = [self.point(th, "start")]
        chosen: Point | None = curve[0] if self.rate(th) * 24 <= target_per_day else None
        while True:
            left = _kept(self.false, th)
            if not left:
                break
            base = self.detected(th)
            options = []
            for kind in sorted({a.kind for a in left}):
                low = min(a.score for a in left if a.kind == kind)
                trial = {**th, kind: _above(low)}
                removed = len(left) - len(_kept(self.false, trial))
                options.append((base - self.detected(trial), -removed, kind, trial))
            _, _, kind, th = min(options, key=lambda o: o[:3])
            curve.append(self.point(th, f"{kind} >= {th[kind]:g}"))
            if chosen is None and curve[-1].alerts_per_hour * 24 <= target_per_day:
                chosen = curve[-1]
        return curve, chosen or curve[-1]


def tune(benign_paths: list[Path], target_per_day: float = 1.0, labels: Path | None = None,
         capture_dir: Path | None = None, backend: str | None = "c") -> Tuning:  # fmt: skip
    """Thresholds for at most ``target_per_day`` false alerts a day on ``benign_paths``,
    with the trade-off against the labelled set (``labels`` under ``capture_dir``)."""
    benign = [(str(p), replay_run([p], None, backend)) for p in benign_paths]
    labelled: list[Labelled] = []
    if labels is not None and capture_dir is not None:
        for row in read_labels(labels):
            path = Path(capture_dir) / row["file"]
            if path.is_file():
                labelled.append(Labelled(row, replay_run([path], None, backend)))
    search = _Search(benign, labelled)
    curve, chosen = search.run({}, target_per_day)
    checked = benign
    for _ in range(ROUNDS):
        checked = [(p, run_events(record((p,), backend), chosen.thresholds)) for p, _ in benign]
        extra = [a for _, r in checked for a in _kept(r.alerts, chosen.thresholds)]
        rate = len(extra) / search.hours
        if rate * 24 <= target_per_day:
            break
        search.false += extra  # alerts the applied thresholds still let through
        curve, chosen = search.run(chosen.thresholds, target_per_day)
    checked_rate = sum(len(r.alerts) for _, r in checked) / search.hours
    left: dict[str, int] = {}
    for _, r in checked:
        for a in r.alerts:
            left[a.kind] = left.get(a.kind, 0) + 1
    lost = {}
    for kind in chosen.thresholds:
        without = {k: v for k, v in chosen.thresholds.items() if k != kind}
        lost[kind] = search.detected(without) - search.detected(chosen.thresholds)
    return Tuning(target_per_day, benign, labelled, curve, chosen, checked_rate, left, lost)


# --- writing the config -----------------------------------------------------------------
HEADER = "[detect.thresholds]"


def config_text(old: str, t: Tuning) -> str:
    """``old`` TOML with its ``[detect.thresholds]`` table replaced by the tuned one, with
    a comment saying where the values came from."""
    from netwarden.errors import ConfigError

    lines = old.splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        stripped = line.strip()
        if stripped == HEADER:
            skipping = True
            while out and out[-1].startswith("# tuned:"):
                out.pop()  # the previous tuning's comment goes with its table
            continue
        if skipping and stripped.startswith("["):
            skipping = False
        if not skipping:
            out.append(line)
    import tomllib

    try:
        rest = tomllib.loads("\n".join(out))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    if "thresholds" in rest.get("detect", {}):
        raise ConfigError("config sets detect.thresholds outside a [detect.thresholds] table; "
                          "move it into one so tune can replace it")  # fmt: skip
    while out and not out[-1].strip():
        out.pop()
    block = [] if not out else [""]
    block += [f"# tuned: {line}" for line in _wrap(t.source_note())]
    block.append(HEADER)
    block += [f"{k} = {v:g}" for k, v in sorted(t.chosen.thresholds.items())]
    return "\n".join(out + block) + "\n"


def _wrap(text: str, width: int = 90) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def write_config(path: Path, t: Tuning) -> None:
    """Write the tuned thresholds into ``path`` (created if missing) after checking the
    whole result as ``netwarden config check`` does."""
    import tomllib

    from netwarden.config_check import check_data
    from netwarden.errors import ConfigError

    try:
        old = path.read_text() if path.exists() else ""
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror or exc}") from exc
    text = config_text(old, t)
    problems = check_data(tomllib.loads(text))
    if problems:
        raise ConfigError(f"config {path} would not pass `config check`: {problems[0]}")
    try:
        path.write_text(text)
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror or exc}") from exc
