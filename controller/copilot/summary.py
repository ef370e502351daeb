"""Plain-language incident summaries, offline and deterministic, from the evidence only.

``summarize(incident, lang)`` says what happened, who, since when, how sure and why
(the features against the learnt baseline, the priority's reasons), what was done and
what to do next, in the language of a message catalogue (``locales/<lang>.py``). Every
number in the text is a value of the incident record (scores, counts, times, evidence
values rounded for reading): nothing is computed for the text alone, so an operator can
trace each figure back to its evidence (``tests/incidents/test_copilot.py`` checks this).
"""

from __future__ import annotations

import importlib
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

from controller.copilot.recommend import CONTAIN, INVESTIGATE, MONITOR, reference_of
from controller.incidents.engine import ACKNOWLEDGED, CLOSED, PRIORITY_NAMES, RESOLVED, Incident
from controller.incidents.kinds import STAGE_ORDER, VICTIM_CENTRIC, stage_of
from netwarden.errors import ConfigError

LANGS = ("en", "ja")
MAX_LISTED = 3
MAX_FEATURES = 3
_SKIP_FEATURES = (
    "threshold",
    "learnt_reference",
    "reference",
    "baseline",
    "learnt_level",
    "expected",
)


@cache
def catalogue(lang: str) -> tuple[dict[str, str], dict[str, str]]:
    if lang not in LANGS:
        raise ConfigError(f"unknown language {lang!r} (known: {', '.join(LANGS)})")
    mod = importlib.import_module(f"controller.copilot.locales.{lang}")
    return mod.MESSAGES, mod.FEATURES


@cache
def references(lang: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """The catalogue's translations of detectors' written references (``REFERENCES``:
    pattern of the English text, template of the translation filled with its groups)."""
    catalogue(lang)
    mod = importlib.import_module(f"controller.copilot.locales.{lang}")
    return tuple((re.compile(p), tpl) for p, tpl in getattr(mod, "REFERENCES", ()))


class _Text:
    def __init__(self, lang: str) -> None:
        self.m, self.features = catalogue(lang)
        self.refs = references(lang)

    def __call__(self, key: str, **kw: Any) -> str:
        return self.m[key].format(**kw)

    def reference(self, ref: Any) -> str:
        """A reference value as text: numbers as numbers, a detector's written reference
        translated when the catalogue knows its pattern."""
        if not isinstance(ref, str):
            return num(ref)
        for pat, tpl in self.refs:
            m = pat.fullmatch(ref)
            if m:
                return tpl.format(*m.groups())
        return ref


def num(v: Any) -> str:
    """A number for reading: integers as they are, others with at most two decimals."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        s = f"{v:.2f}".rstrip("0").rstrip(".")
        return s
    return str(v)


def when(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def kind_label(t: _Text, kind: str) -> str:
    if kind.endswith("_bruteforce"):
        return t("kind_bruteforce", service=kind[: -len("_bruteforce")].upper())
    key = f"kind_{kind}"
    return t(key) if key in t.m else t("kind_other", kind=kind)


def _listing(t: _Text, items: list[str], total: int) -> str:
    """The first few items; past ``MAX_LISTED``, their total (a count kept in the record)."""
    shown = t("list_join").join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else t("more", shown=shown, total=total)


def features(t: _Text, evidence: dict[str, Any]) -> str:
    ref, thr = reference_of(evidence), evidence.get("threshold")
    parts: list[str] = []
    for k, v in evidence.items():
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or k in _SKIP_FEATURES
            or k.startswith("benign_")
        ):
            continue
        if k.endswith(("_reference", "_baseline", "_p99", "_threshold")):
            continue
        name = t.features.get(k, k.replace("_", " "))
        if not parts and ref is not None and thr is not None:
            parts.append(
                t("feature_ref_thr", name=name, value=num(v), ref=t.reference(ref), thr=num(thr))
            )
        elif not parts and ref is not None:
            parts.append(t("feature_ref", name=name, value=num(v), ref=t.reference(ref)))
        elif not parts and thr is not None:
            parts.append(t("feature_thr", name=name, value=num(v), thr=num(thr)))
        else:
            parts.append(t("feature", name=name, value=num(v)))
        if len(parts) >= MAX_FEATURES:
            break
    return t("list_join").join(parts)


def summarize(inc: Incident, lang: str = "en") -> str:
    t = _Text(lang)
    out: list[str] = []
    # what happened, who, since when
    what = t("what_join").join(kind_label(t, k) for k in inc.kinds)
    out.append(t("headline", priority=inc.priority, priority_name=t(f"priority_{PRIORITY_NAMES[inc.priority]}"),
                 id=inc.id, what=what))  # fmt: skip
    if inc.attackers:
        out.append(t("attackers", attackers=_listing(t, inc.attackers, len(inc.attackers))))
    elif any(k in VICTIM_CENTRIC for k in inc.kinds):
        out.append(t("attackers_spoofed"))
    if inc.victims:
        out.append(t("victims", victims=_listing(t, inc.victims, len(inc.victims))))
    out.append(t("since", start=when(inc.opened_at), end=when(inc.updated_at), duration=num(inc.duration_s),
                 count=inc.alert_count))  # fmt: skip
    if inc.progression:
        stages = t("stage_arrow").join(t(f"stage_{s}") for s in inc.progression["stages"])
        out.append(t("story", host=inc.progression["host"], stages=stages))
    # how sure, and why
    out.append(t("sure", risk=num(inc.risk), confidence=num(inc.confidence)))
    seen: set[str] = set()
    for a in sorted(inc.alerts, key=lambda a: (-a["score"], a["first_seen"])):
        if a["kind"] in seen or len(seen) >= MAX_LISTED:
            continue
        seen.add(a["kind"])
        feats = features(t, a["evidence"])
        if feats:
            out.append(t("evidence_intro", kind=kind_label(t, a["kind"]), features=feats))
    out.append(t("why_intro", reasons=t("reason_join").join(_reasons(t, inc))))
    # what was done
    out.extend(_done(t, inc))
    # what next
    out.append(_next(t, inc))
    if inc.status == CLOSED and inc.closed_at is not None:
        out.append(t("status_closed", closed=when(inc.closed_at)))
    elif inc.status == ACKNOWLEDGED and inc.acknowledged_by:
        out.append(t("status_acknowledged", who=inc.acknowledged_by))
    elif inc.status == RESOLVED and inc.resolved_by:
        out.append(t("status_resolved", who=inc.resolved_by))
    return t("sentence_join").join(out)


def _reasons(t: _Text, inc: Incident) -> list[str]:
    out = []
    for r in inc.reasons:
        f = r["factor"]
        if f == "score":
            out.append(t("why_score", score=num(r["score"]), kind=kind_label(t, r["kind"])))
        elif f == "confidence":
            out.append(t("why_confidence", weight=num(r["weight"])))
        elif f == "criticality":
            out.append(t("why_criticality", host=r["host"], group=r["group"], criticality=t(f"crit_{r['criticality']}"),
                         points=_signed(r["points"])))  # fmt: skip
        elif f == "progression":
            out.append(t("why_progression", host=r["host"], points=_signed(r["points"])))
        elif f == "feedback" and r.get("verdict") == "confirmed":
            out.append(
                t(
                    "why_feedback_confirmed",
                    feedback=", ".join(r["feedback"]),
                    boost=num(r["boost"]),
                )
            )
        elif f == "feedback" and r.get("verdict") == "false_positive":
            out.append(t("why_feedback_false_positive", feedback=", ".join(r["feedback"]),
                         benign=num(r["benign_score"]), cut=num(r["cut"])))  # fmt: skip
    return out


def _signed(p: float) -> str:
    return ("+" if p >= 0 else "-") + num(abs(p))


def _done(t: _Text, inc: Incident) -> list[str]:
    out = []
    decisions = [a for a in inc.actions if a.get("kind") == "decision"]
    for a in decisions[:MAX_LISTED]:
        target = a["target"]
        if a["verdict"] == "refused":
            out.append(t("done_refused", target=target, decision=a["decision_id"]))
            continue
        verdict = t(f"verdict_{a['verdict']}")
        act = t(f"action_{a['action']}") if f"action_{a['action']}" in t.m else a["action"]
        if a.get("ttl_s") and a["verdict"] in ("act", "pending"):
            out.append(t("done_decision_ttl", verdict=verdict, target=target, action=act, ttl=num(a["ttl_s"]),
                         decision=a["decision_id"], level=a["level"]))  # fmt: skip
        else:
            out.append(t("done_decision", verdict=verdict, target=target, action=act, decision=a["decision_id"],
                         level=a["level"]))  # fmt: skip
    if len(decisions) > MAX_LISTED:
        out.append(t("done_more", total=len(decisions)))
    rec = inc.recommendation or {}
    advice = [s for s in rec.get("steps", []) if not s.get("enforce")]
    if rec.get("action") == CONTAIN and advice:
        out.append(
            t("done_advice", steps=t("list_join").join(_step(t, s) for s in advice[:MAX_LISTED]))
        )
    if not out:
        out.append(t("done_none"))
    return out


def _step(t: _Text, s: dict[str, Any]) -> str:
    return t(f"step_{s['do']}", target=s["target"])


def _next(t: _Text, inc: Incident) -> str:
    rec = inc.recommendation or {}
    action = rec.get("action", MONITOR)
    if action == CONTAIN:
        all_steps = rec.get("steps", [])
        steps = [
            _step(t, s) for s in all_steps[: MAX_LISTED + 1]
        ]  # _listing shows MAX_LISTED, then the total
        return t("next_contain", steps=_listing(t, steps, rec.get("step_count", len(all_steps))))
    if action == INVESTIGATE:
        return t("next_investigate", threshold=num(rec["rule"]["investigate_risk"]))
    benign = [_benign(t, b) for b in rec.get("benign", [])]
    return (
        t("next_monitor", benign=t("list_join").join(benign)) if benign else t("next_monitor_none")
    )


def _benign(t: _Text, b: dict[str, Any]) -> str:
    ind = b["indicator"]
    if ind == "confidence":
        return t("benign_confidence", confidence=num(b["confidence"]))
    if ind == "single":
        return t("benign_single")
    if ind == "no_progression":
        return t("benign_no_progression")
    if ind == "low_criticality":
        return t("benign_low_criticality", host=b["host"], group=b["group"])
    return t("benign_detector", name=str(b["name"]).replace("_", " "), value=num(b["value"]))


def stage_names(lang: str) -> dict[str, str]:
    t = _Text(lang)
    return {s: t(f"stage_{s}") for s in STAGE_ORDER}


__all__ = [
    "LANGS",
    "catalogue",
    "kind_label",
    "num",
    "stage_names",
    "stage_of",
    "summarize",
    "when",
]
