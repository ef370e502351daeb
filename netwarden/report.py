"""``netwarden report``: one self-contained HTML file about a state dir.

Charts are matplotlib figures rendered to SVG and inlined (text stays text), styles are
inline, and nothing is fetched: the file opens on a box with no network. Works on a
running or stopped controller's state dir and on a replay's (``netwarden replay ...
--state-dir DIR``, which archives the replay's flow records there too).

Sections: traffic timeline (bytes per interval, incident openings marked), top talkers,
alerts over time by kind, incidents with their summaries, bans, approvals and
recommendations.
"""

from __future__ import annotations

import html
import io
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from netwarden.errors import ConfigError

#: bins of the time charts
BINS = 60
TOP_TALKERS = 10


@dataclass
class ReportData:
    state_dir: Path
    generated: float
    since: float | None
    until: float
    flows: np.ndarray
    alerts: list[dict[str, Any]]
    incidents: list[Any]
    bans: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    backend: str = "unknown"
    lang: str = "en"


def load(state_dir: Path, since_text: str | None, lang: str = "en") -> ReportData:
    """Read everything the report shows; ``since_text`` is relative to the state's own
    clock (a replay's capture time, a controller's wall time)."""
    from controller.incidents.store import IncidentStore
    from controller.state.audit import AuditLog
    from controller.state.store import DB_NAME, Store
    from netwarden.commands.incidents import parse_since
    from netwarden.commands.status import _state_clock

    if not (state_dir / DB_NAME).is_file():
        raise ConfigError(
            f"no NetWarden state in {state_dir} (run a controller or `netwarden replay ... --state-dir DIR`)"
        )
    store = Store(state_dir, readonly=True)
    try:
        audit = AuditLog(store.db, state_dir, readonly=True).entries()
        until = _state_clock(store, audit)
        since = parse_since(since_text, now=until)
        try:
            istore = IncidentStore(store.db)
            alerts = istore.alerts(since=since)
            incidents = istore.incidents(since=since)
        except Exception as exc:
            raise ConfigError(f"{state_dir}: no incident tables ({exc})") from exc
        incidents.sort(key=lambda i: (i.priority, -i.risk, i.id))
        bans = [
            e
            for e in audit
            if e["event"] == "ban" and e["result"] == "ok" and (since is None or e["ts"] >= since)
        ]
        active = {str(b.addr) for b in store.active_bans(until)}
        ban_rows = []
        for e in bans:
            d = e["detail"]
            ban_rows.append(
                {
                    "target": re.sub(r"/(32|128)$", "", e["subject"]),
                    "by": e["actor"],
                    "decision": e["decision_id"],
                    "evidence": e["evidence"],
                    "action": d.get("action", ""),
                    "ttl_s": d.get("ttl_s"),
                    "ts": e["ts"],
                    "active": e["subject"] in active or e["subject"].split("/")[0] in active,
                }
            )
        approvals = [a.to_dict() for a in store.approvals() if since is None or a.created >= since]
        recs = [
            {
                "decision": e["decision_id"],
                "target": e["subject"],
                "by": e["actor"],
                "ts": e["ts"],
                "reason": e["detail"].get("reason", ""),
                "evidence": e["evidence"],
            }
            for e in audit
            if e["event"] == "decision"
            and e["result"] == "recommend"
            and (since is None or e["ts"] >= since)
        ]
        starts = [e for e in audit if e["event"] == "start" and e["actor"] == "controller"]
        backend = starts[-1]["subject"] if starts else "unknown"
    finally:
        store.close()
    flows = _flows(state_dir, since)
    return ReportData(
        state_dir,
        time.time(),
        since,
        until,
        flows,
        alerts,
        incidents,
        ban_rows,
        approvals,
        recs,
        backend,
        lang,
    )


def _flows(state_dir: Path, since: float | None) -> np.ndarray:
    from controller.ingest.archive import RecordArchive
    from netwarden.records.schema import RECORD_TYPES

    root = state_dir / "archive"
    if not root.is_dir():
        return np.zeros(0, RECORD_TYPES["flow"])
    return RecordArchive(root).read("flow", None if since is None else int(since * 1e9))


# --- charts ---------------------------------------------------------------------------
def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # no links to anywhere
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _setup() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "netwarden"}
    )
    import matplotlib.pyplot as plt

    return plt


def traffic_chart(d: ReportData) -> str | None:
    if not len(d.flows):
        return None
    plt = _setup()
    ts = d.flows["ts_first_ns"].astype(np.float64) / 1e9
    nbytes = d.flows["orig_ip_bytes"].astype(np.float64) + d.flows["resp_ip_bytes"].astype(
        np.float64
    )
    lo, hi = float(ts.min()), float(max(ts.max(), ts.min() + 1))
    edges = np.linspace(lo, hi, BINS + 1)
    width = edges[1] - edges[0]
    vol, _ = np.histogram(ts, edges, weights=nbytes)
    cnt, _ = np.histogram(ts, edges)
    fig, ax = plt.subplots(figsize=(10, 3.2))
    centers = [_dt(x) for x in (edges[:-1] + width / 2)]
    ax.bar(centers, vol / width, width=width / 86400 * 0.9, color="#3b7dd8", label="bytes/s")
    ax.set_ylabel("bytes/s")
    ax2 = ax.twinx()
    ax2.plot(centers, cnt / width, color="#d8873b", lw=1.2, label="new flows/s")
    ax2.set_ylabel("new flows/s")
    for inc in d.incidents:
        if lo <= inc.opened_at <= hi:
            ax.axvline(_dt(inc.opened_at), color="#c0392b", lw=1, ls="--")
            ax.text(
                _dt(inc.opened_at),
                ax.get_ylim()[1] * 0.95,
                f" {inc.id} {inc.priority}",
                color="#c0392b",
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
            )
    ax.set_title("Traffic (dashed: incidents opened)")
    fig.autofmt_xdate()
    return _svg(fig)


def top_talkers(d: ReportData) -> list[tuple[str, int, int]]:
    """(address, bytes it sent or received as originator, flows it opened), biggest first."""
    from netwarden.records.schema import addr_to_str

    if not len(d.flows):
        return []
    f = d.flows
    nbytes = f["orig_ip_bytes"].astype(np.int64) + f["resp_ip_bytes"].astype(np.int64)
    keys = np.concatenate([f["orig_addr"], f["ip_version"][:, None].astype(np.uint8)], axis=1)
    uniq, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    tot = np.bincount(inv, weights=nbytes.astype(np.float64), minlength=len(uniq))
    order = np.argsort(-tot, kind="stable")[:TOP_TALKERS]
    return [
        (addr_to_str(uniq[i, :16], int(uniq[i, 16])), int(tot[i]), int(counts[i])) for i in order
    ]


def talkers_chart(rows: list[tuple[str, int, int]]) -> str | None:
    if not rows:
        return None
    plt = _setup()
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 0.8))
    names = [r[0] for r in rows][::-1]
    ax.barh(names, [r[1] for r in rows][::-1], color="#3b7dd8")
    ax.set_xlabel("bytes in flows it opened")
    ax.set_title("Top talkers")
    return _svg(fig)


def alerts_chart(d: ReportData) -> str | None:
    if not d.alerts:
        return None
    plt = _setup()
    ts = np.array([a["detected_at"] for a in d.alerts], np.float64)
    lo, hi = float(ts.min()), float(max(ts.max(), ts.min() + 1))
    if len(d.flows):
        fts = d.flows["ts_first_ns"].astype(np.float64) / 1e9
        lo, hi = min(lo, float(fts.min())), max(hi, float(fts.max()))
    edges = np.linspace(lo, hi, BINS + 1)
    width = edges[1] - edges[0]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for a in d.alerts:
        by_kind[a["kind"]].append(a["detected_at"])
    fig, ax = plt.subplots(figsize=(10, 3))
    bottom = np.zeros(BINS)
    for kind in sorted(by_kind):
        h, _ = np.histogram(by_kind[kind], edges)
        ax.bar(
            [_dt(x) for x in edges[:-1] + width / 2],
            h,
            width=width / 86400 * 0.9,
            bottom=bottom,
            label=f"{kind} ({len(by_kind[kind])})",
        )
        bottom += h
    ax.set_ylabel("alerts")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no half alerts
    ax.set_title("Alerts over time, by kind")
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    fig.autofmt_xdate()
    return _svg(fig)


# --- HTML -------------------------------------------------------------------------------
CSS = """
body{font-family:sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.P1{color:#b00;font-weight:bold}.P2{color:#c60}.dry{background:#fee;border:2px solid #b00;
padding:.5em;font-weight:bold}.muted{color:#777}.summary{white-space:pre-wrap}svg{max-width:100%;height:auto}
"""


def _t(ts: float | None) -> str:
    return "-" if ts is None else _dt(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(cols: list[str], rows: list[list[str]], cls: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for i, r in enumerate(rows):
        c = f' class="{cls[i]}"' if cls and cls[i] else ""
        body.append(f"<tr{c}>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render(d: ReportData) -> str:
    e = html.escape
    head = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>NetWarden report</title>"
        f"<style>{CSS}</style></head><body>"
    )
    parts = [head]
    parts.append("<h1>NetWarden report</h1>")
    span = f"from {_t(d.since)} " if d.since is not None else ""
    parts.append(
        f"<p>State dir <code>{e(str(d.state_dir))}</code>, {span}up to {_t(d.until)} UTC; generated "
        f"{_t(d.generated)} UTC. Enforcement backend: {e(d.backend)}.</p>"
    )
    if d.backend in ("dryrun", "unknown"):
        parts.append(
            "<p class='dry'>DRY RUN: nothing was enforced; bans below are what would have been done.</p>"
        )
    n_open = sum(1 for i in d.incidents if i.status in ("open", "acknowledged"))
    by_p = Counter(i.priority for i in d.incidents)
    parts.append(
        f"<p>{len(d.incidents)} incidents ({n_open} open; "
        + ", ".join(f"{p} {by_p.get(p, 0)}" for p in ("P1", "P2", "P3", "P4"))
        + f"), {len(d.alerts)} alerts, {len(d.bans)} bans, "
        f"{sum(1 for a in d.approvals if a['status'] == 'pending')} pending approvals, "
        f"{len(d.flows)} flow records.</p>"
    )

    parts.append("<h2>Traffic timeline</h2>")
    parts.append(
        traffic_chart(d)
        or "<p class='muted'>No flow records in this state dir (a controller archives "
        "what sensors send; a replay with --state-dir archives its flows).</p>"
    )
    parts.append("<h2>Top talkers</h2>")
    rows = top_talkers(d)
    if rows:
        parts.append(talkers_chart(rows) or "")
        parts.append(
            _table(
                ["address", "bytes", "flows opened"], [[a, f"{b:,}", f"{n:,}"] for a, b, n in rows]
            )
        )
    else:
        parts.append("<p class='muted'>No flow records.</p>")
    parts.append("<h2>Alerts over time</h2>")
    parts.append(alerts_chart(d) or "<p class='muted'>No alerts.</p>")

    parts.append("<h2>Incidents</h2>")
    if not d.incidents:
        parts.append("<p class='muted'>No incidents.</p>")
    for i in d.incidents:
        text = i.summary.get(d.lang) or i.summary.get("en") or ""
        parts.append(
            f"<h3 class='{e(i.priority)}'>{e(i.id)} {e(i.priority)} {e(', '.join(i.kinds))} "
            f"<span class='muted'>({e(i.status)}, risk {i.risk:g}, confidence {i.confidence:g}, "
            f"opened {_t(i.opened_at)})</span></h3>"
        )
        parts.append(f"<p class='summary'>{e(text)}</p>")
        parts.append(
            f"<p>Source: {e(', '.join(i.attackers[:5]) or '-')}; target: "
            f"{e(', '.join(i.victims[:5]) or '-')}{' ...' if len(i.victims) > 5 else ''}; "
            f"{i.alert_count} alert(s).</p>"
        )

    parts.append("<h2>Bans</h2>")
    if d.bans:
        parts.append(
            _table(
                ["time (UTC)", "target", "action", "ttl", "by", "decision", "evidence", "active"],
                [
                    [
                        _t(b["ts"]),
                        b["target"],
                        b["action"],
                        "-" if b["ttl_s"] is None else f"{b['ttl_s']:g}s",
                        b["by"],
                        b["decision"],
                        b["evidence"],
                        "yes" if b["active"] else "expired",
                    ]
                    for b in d.bans
                ],
            )
        )
    else:
        parts.append("<p class='muted'>No bans.</p>")
    parts.append("<h2>Approvals</h2>")
    if d.approvals:
        parts.append(
            _table(
                ["id", "created (UTC)", "status", "target", "action", "why approval", "decided by"],
                [
                    [
                        a["id"],
                        _t(a["created"]),
                        a["status"],
                        re.sub(r"/(32|128)$", "", str(a["proposal"].get("target", ""))),
                        a["proposal"].get("action", ""),
                        a["reason"],
                        a["decided_by"] or "-",
                    ]
                    for a in d.approvals
                ],
            )
        )
    else:
        parts.append("<p class='muted'>No approvals.</p>")
    if d.recommendations:
        parts.append("<h2>Recommendations (level 1, nothing done)</h2>")
        parts.append(
            _table(
                ["time (UTC)", "target", "by", "decision", "why", "evidence"],
                [
                    [_t(r["ts"]), r["target"], r["by"], r["decision"], r["reason"], r["evidence"]]
                    for r in d.recommendations
                ],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)
