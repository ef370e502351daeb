"""Plots and HTML for ``eval`` and ``tune``, with the report's machinery
(``netwarden.report``: matplotlib SVG inlined, one self-contained file)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from netwarden.report import CSS, _setup, _svg, _table

if TYPE_CHECKING:
    from netwarden.quality.evaluate import Evaluation
    from netwarden.quality.tune import Tuning


def ttd_chart(ev: Evaluation) -> str | None:
    """Time to detect of each attack row next to its deadline (log scale)."""
    rows = [r for r in ev.rows if r.deadline_s is not None]
    if not rows:
        return None
    plt = _setup()
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.0))
    ys = list(range(len(rows)))[::-1]
    ttd = [max(r.ttd_s or 0.0, 0.01) if r.ttd_s is not None else 0 for r in rows]
    colours = ["#3b7dd8" if r.passed else "#c0392b" for r in rows]
    ax.barh(ys, ttd, color=colours, label="time to detect")
    ax.scatter([r.deadline_s for r in rows], ys, marker="|", s=200, color="k", label="deadline")
    ax.set_yticks(ys, [r.name for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("seconds from the attack's first packet (missed: no bar)")
    ax.set_title("Time to detect against the deadline")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _svg(fig)


def tradeoff_chart(t: Tuning) -> str:
    """Benign alerts per hour against detection on the labelled set, one point per step
    of the threshold search; the chosen point marked."""
    plt = _setup()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [p.alerts_per_hour for p in t.curve]
    ax.plot(xs, [p.detected for p in t.curve], marker="o", ms=3, color="#3b7dd8",
            label="raising thresholds, cheapest first")  # fmt: skip
    ax.scatter([t.chosen.alerts_per_hour], [t.chosen.detected], s=80, color="#c0392b", zorder=3,
               label=f"chosen (target {t.target_per_day:g}/day)")  # fmt: skip
    for p in t.curve[1:]:  # what each step raised
        ax.annotate(p.step, (p.alerts_per_hour, p.detected), fontsize=6, rotation=25,
                    xytext=(3, 4), textcoords="offset points")  # fmt: skip
    ax.axvline(t.target_per_day / 24, color="#999", ls="--", lw=1)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(left=0)
    ax.set_xlabel("false alerts per hour on the benign captures")
    ax.set_ylabel("labelled attacks detected (fraction)" if t.labelled else "labelled set: none")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Trade-off: false alerts against detection")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def _page(title: str, body: list[str]) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(body) + "</body></html>")  # fmt: skip


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def evaluation_html(ev: Evaluation, labels: str) -> str:
    o = ev.overall()
    verdict = "every row passed" if ev.passed else f"{o['rows'] - o['rows_passed']} row(s) failed"
    body = [f"<p>Labels <code>{html.escape(labels)}</code>: {o['rows']} rows, {verdict}. Benign: "
            f"{o['benign_hours']:.2f} capture-hours, {_fmt(o['benign_alerts_per_hour'])} alerts/hour."
            + (f" Thresholds: {html.escape(str(ev.thresholds))}." if ev.thresholds else "") + "</p>"]  # fmt: skip
    body.append("<h2>Captures</h2>")
    body.append(_table(
        ["capture", "class", "expected", "got", "time to detect", "deadline", "false alerts", "verdict"],
        [[r.name, r.cls, r.expected, r.got, *r.cells()[3:4], "-" if r.deadline_s is None else f"{r.deadline_s:g} s", str(r.false_alerts),
          r.verdict] for r in ev.rows],
        ["" if r.passed else "P1" for r in ev.rows],
    ))  # fmt: skip
    body.append(ttd_chart(ev) or "")
    body.append("<h2>Classes</h2>")
    keys = ["rows", "rows_passed", "attacks", "detected", "attributed", "in_time", "ttd_median_s",
            "ttd_max_s", "false_alerts"]  # fmt: skip
    body.append(_table(["class", *keys], [[c["class"], *(_fmt(c[k]) for k in keys)]
                                          for c in [*ev.classes(), {**o, "class": "overall"}]]))  # fmt: skip
    return _page("NetWarden detection evaluation", body)
