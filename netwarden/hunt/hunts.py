"""The built-in hunts: each a function of a ``HuntDB``, a ``Window`` and a row limit that
returns ``Result``s (rows ranked, with scores and reasons, and the SQL that ran).

Internal/external is decided by the controller's ``policy.internal_networks``
(``is_internal(addr)`` in SQL).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netwarden.hunt import beacons as beacon_score
from netwarden.hunt.catalog import CATALOG
from netwarden.hunt.db import HuntDB, HuntError
from netwarden.hunt.output import Result, reasons
from netwarden.hunt.window import Window
from netwarden.records.schema import QNAME_LEN

#: conn_state values of a TCP attempt nobody answered, or answered with a reset
FAILED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
#: the domain of query names cut at the record's length (long names: a tunnelling sign)
CUT = f"(names cut at {QNAME_LEN} chars)"
#: DNS qtype bits (netwarden.records.schema.DNS_QTYPE_BITS) of NULL and TXT
NULL_TXT_MASK = (1 << 4) | (1 << 7)


@dataclass(frozen=True)
class Hunt:
    fn: Callable[..., list[Result]]
    arg: str | None  # name of the argument the hunt needs (ADDR, ID, SQL) or None
    help: str


def _q(db: HuntDB, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    return db.rows(sql, params)


# --- beacons ---------------------------------------------------------------------------
BEACON_SQL = """
SELECT orig_h, resp_h, count(*) AS conns,
       list(epoch(ts) ORDER BY ts) AS t,
       list(orig_bytes ORDER BY ts) AS sizes,
       list(DISTINCT resp_p) AS ports
FROM conns
WHERE {w} AND orig_internal AND NOT resp_internal
GROUP BY orig_h, resp_h
HAVING count(*) >= ? AND count(DISTINCT resp_p) <= ?
"""
#: a pair spread over more responder ports than this is a scan, not a beacon
BEACON_MAX_PORTS = 4


def beacons(db: HuntDB, w: Window, limit: int) -> list[Result]:
    cond, params = w.sql()
    sql = BEACON_SQL.format(w=cond)
    rows = _q(db, sql, [*params, beacon_score.MIN_CONNS, BEACON_MAX_PORTS])
    if not rows:
        return [Result("beacon", "Beacons: no internal -> external pair with enough "
                       "connections", [], [], sql)]  # fmt: skip
    first = min(min(r["t"]) for r in rows)
    last = max(max(r["t"]) for r in rows)
    bounds = w.bounds(first, last)
    out = []
    for r in rows:
        s = beacon_score.score(np.array(r["t"], float), np.array(r["sizes"], float), bounds)
        if s is None:
            continue
        out.append({
            "src": r["orig_h"], "dst": r["resp_h"], "ports": sorted(r["ports"])[:4],
            "conns": r["conns"], "score": s.score, "interval_s": s.interval_s,
            "timing": s.timing, "size": s.size, "duration": s.duration,
            "histogram": s.histogram, "interval_mad_s": s.interval_mad_s,
            "size_mode": s.size_mode, "hours_active": s.hours_active,
            "hours_spanned": s.hours_spanned, "per_hour": s.per_hour, "reasons": s.reasons,
        })  # fmt: skip
    out.sort(key=lambda x: (-x["score"], -x["conns"], x["src"], x["dst"]))
    out = out[:limit]
    notes = [f"{i}. {x['src']} -> {x['dst']}: {'; '.join(x['reasons']) or 'irregular'}"
             for i, x in enumerate(out[:5], 1)]  # fmt: skip
    cols = ["src", "dst", "conns", "interval_s", "score", "timing", "size", "duration"]
    title = f"Beacons ({w.describe()}), ranked by score (1 = perfectly regular)"
    return [Result("beacon", title, cols, out, sql, notes)]


# --- long connections ------------------------------------------------------------------
LONG_SQL = """
SELECT orig_h AS src, resp_h AS dst, resp_p AS port, proto, round(duration, 1) AS duration_s,
       orig_bytes + resp_bytes AS bytes, conn_state AS state, open, ts AS first_seen, uid
FROM conns
WHERE {w} AND duration > 0
ORDER BY duration DESC, bytes DESC
LIMIT ?
"""


def long_connections(db: HuntDB, w: Window, limit: int) -> list[Result]:
    cond, params = w.sql()
    sql = LONG_SQL.format(w=cond)
    rows = _q(db, sql, [*params, limit])
    cols = ["src", "dst", "port", "proto", "duration_s", "bytes", "state", "open"]
    return [Result("long_connection", f"Longest connections ({w.describe()})", cols, rows, sql)]


# --- rare destinations -----------------------------------------------------------------
RARE_SQL = """
WITH out AS (
    SELECT orig_h, resp_h, resp_p, ts, orig_bytes + resp_bytes AS bytes
    FROM conns WHERE {w} AND orig_internal AND NOT resp_internal
), total AS (SELECT count(DISTINCT orig_h) AS n FROM out)
SELECT resp_h AS dst, count(DISTINCT orig_h) AS sources,
       round(count(DISTINCT orig_h) / any_value(total.n), 3) AS prevalence,
       min(ts) AS first_seen, count(*) AS conns, sum(bytes) AS bytes,
       list(DISTINCT resp_p ORDER BY resp_p)[1:4] AS ports,
       list(DISTINCT orig_h ORDER BY orig_h)[1:3] AS seen_by
FROM out, total
GROUP BY resp_h
ORDER BY prevalence, bytes DESC, first_seen DESC
LIMIT ?
"""


def rare_destinations(db: HuntDB, w: Window, limit: int) -> list[Result]:
    cond, params = w.sql()
    sql = RARE_SQL.format(w=cond)
    rows = _q(db, sql, [*params, limit])
    for r in rows:
        r["reasons"] = [(f"contacted by {r['sources']} internal host(s) "
                         f"({r['prevalence']:.0%} of those talking out)")]  # fmt: skip
    cols = ["dst", "sources", "prevalence", "first_seen", "conns", "bytes", "ports"]
    title = f"Rare external destinations ({w.describe()}): fewest internal hosts first"
    return [Result("rare_destination", title, cols, rows, sql)]


# --- DNS tunnelling --------------------------------------------------------------------
DNS_SQL = """
SELECT orig_h AS src, lower(dns_qname) AS qname, dns_distinct_names AS names,
       dns_queries AS queries, dns_label_entropy_max AS entropy,
       dns_longest_label AS longest_label, dns_qtype_mask AS qtypes
FROM conns
WHERE {w} AND dns_queries > 0 AND dns_qname IS NOT NULL AND dns_qname <> ''
"""


def registered_domain(name: str) -> str:
    """The domain a query name belongs to: its last two labels, three when the second
    last is a short public suffix label (co.uk, com.au). Records keep a name's first
    ``QNAME_LEN`` bytes: a name cut there has lost its domain (``CUT``)."""
    if len(name.encode()) >= QNAME_LEN:
        return CUT
    labels = [x for x in name.rstrip(".").split(".") if x]
    if len(labels) <= 2:
        return ".".join(labels)
    n = 3 if len(labels[-1]) == 2 and len(labels[-2]) <= 3 else 2
    return ".".join(labels[-n:])


def dns(db: HuntDB, w: Window, limit: int) -> list[Result]:
    cond, params = w.sql()
    sql = DNS_SQL.format(w=cond)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in _q(db, sql, params):
        dom = registered_domain(r["qname"])
        g = groups.setdefault((r["src"], dom), {"src": r["src"], "domain": dom, "qnames": set(),
                                                "names": 0, "queries": 0, "entropy": 0.0,
                                                "longest_label": 0, "null_txt": 0, "flows": 0})  # fmt: skip
        g["qnames"].add(r["qname"])
        g["names"] += int(r["names"] or 1)
        g["queries"] += int(r["queries"] or 0)
        g["entropy"] = max(g["entropy"], float(r["entropy"] or 0))
        g["longest_label"] = max(g["longest_label"], int(r["longest_label"] or 0))
        g["null_txt"] += bool(int(r["qtypes"] or 0) & NULL_TXT_MASK)
        g["flows"] += 1
    out = []
    for g in groups.values():
        subdomains = max(len(g.pop("qnames")), g.pop("names"))
        share = g.pop("null_txt") / g["flows"]
        s_names = min(1.0, math.log10(max(subdomains, 1)) / 2)  # 100 names: full
        s_entropy = min(1.0, max(0.0, (g["entropy"] - 2.5) / 1.5))  # 4 bits/char: full
        s_label = min(1.0, max(0.0, (g["longest_label"] - 15) / 25))  # 40 chars: full
        score = round((s_names + s_entropy + s_label + share) / 4, 3)
        why = reasons(
            (s_names >= 0.5, f"{subdomains} names under {g['domain']}"),
            (s_entropy >= 0.5, f"label entropy {g['entropy']:.2f} bits/char"),
            (s_label >= 0.5, f"labels up to {g['longest_label']} chars"),
            (share > 0, f"{share:.0%} of flows ask TXT/NULL"),
        )
        out.append({**g, "subdomains": subdomains, "null_txt_share": round(share, 3),
                    "entropy": round(g["entropy"], 2), "score": score, "reasons": why})  # fmt: skip
    out.sort(key=lambda x: (-x["score"], -x["subdomains"], x["src"], x["domain"]))
    out = out[:limit]
    notes = [f"{i}. {x['src']} -> {x['domain']}: {'; '.join(x['reasons']) or 'ordinary'}"
             for i, x in enumerate(out[:5], 1)]  # fmt: skip
    cols = ["src", "domain", "subdomains", "entropy", "longest_label", "null_txt_share", "score"]
    title = f"DNS tunnelling candidates ({w.describe()})"
    return [Result("dns_candidate", title, cols, out, sql, notes)]


# --- scans -----------------------------------------------------------------------------
SCAN_SQL = """
SELECT orig_h AS src,
       count(DISTINCT resp_h) AS hosts,
       count(DISTINCT (resp_h, resp_p)) AS targets,
       count(DISTINCT resp_p) AS ports,
       count(*) AS attempts,
       round(avg(CASE WHEN conn_state IN ({failed}) THEN 1 ELSE 0 END), 3) AS failed_share,
       count(DISTINCT date_trunc('hour', ts)) AS hours,
       min(ts) AS first_seen, max(ts) AS last_seen
FROM conns
WHERE {w} AND proto IN ('tcp', 'udp', 'icmp')
GROUP BY orig_h
HAVING count(DISTINCT (resp_h, resp_p)) >= ?
"""


def scans(db: HuntDB, w: Window, limit: int, min_targets: int = 10) -> list[Result]:
    """Sources probing many host:port targets (ICMP: host:code), mostly unanswered, over
    any span (a slow scan of one probe every few minutes adds up over hours)."""
    cond, params = w.sql()
    failed = ", ".join(f"'{s}'" for s in FAILED_STATES)
    sql = SCAN_SQL.format(w=cond, failed=failed)
    out = []
    for r in _q(db, sql, [*params, min_targets]):
        span_h = max((r["last_seen"] - r["first_seen"]).total_seconds() / 3600, 0.0)
        breadth = min(1.0, math.log10(r["targets"]) / 3)  # 1000 targets: full
        score = round(breadth * r["failed_share"], 3)
        reasons = [f"{r['targets']} host:port targets ({r['hosts']} hosts, {r['ports']} ports)",
                   f"{r['failed_share']:.0%} unanswered or refused"]  # fmt: skip
        if span_h >= 1:
            rate = r["attempts"] / max(span_h * 60, 1)
            reasons.append(f"spread over {span_h:.1f} h in {r['hours']} hours "
                           f"({rate:.1f} attempts/min: slow)")  # fmt: skip
        out.append({**r, "span_h": round(span_h, 2), "score": score, "reasons": reasons})
    out.sort(key=lambda x: (-x["score"], -x["targets"], x["src"]))
    out = out[:limit]
    notes = [f"{i}. {x['src']}: {'; '.join(x['reasons'])}" for i, x in enumerate(out[:5], 1)]
    cols = ["src", "targets", "hosts", "ports", "failed_share", "span_h", "score"]
    title = f"Scans ({w.describe()}): breadth x failed share"
    return [Result("scan", title, cols, out, sql, notes)]


# --- talkers ---------------------------------------------------------------------------
TALKERS_SQL = """
WITH c AS MATERIALIZED (
    SELECT orig_h, resp_h, orig_ip_bytes, resp_ip_bytes FROM conns WHERE {w}
), sides AS (
    SELECT orig_h AS host, orig_ip_bytes AS sent, resp_ip_bytes AS received, resp_h AS peer
    FROM c
    UNION ALL
    SELECT resp_h, resp_ip_bytes, orig_ip_bytes, orig_h FROM c
)
SELECT host, sum(sent) + sum(received) AS bytes, sum(sent) AS sent,
       sum(received) AS received, count(*) AS conns, count(DISTINCT peer) AS peers
FROM sides
GROUP BY host
ORDER BY bytes DESC, host
LIMIT ?
"""


def talkers(db: HuntDB, w: Window, limit: int) -> list[Result]:
    cond, params = w.sql()
    sql = TALKERS_SQL.format(w=cond)
    rows = _q(db, sql, [*params, limit])
    cols = ["host", "bytes", "sent", "received", "conns", "peers"]
    return [Result("talker", f"Top talkers by IP bytes ({w.describe()})", cols, rows, sql)]


# --- one address -----------------------------------------------------------------------
PEERS_SQL = """
SELECT CASE WHEN orig_h = ? THEN resp_h ELSE orig_h END AS peer,
       CASE WHEN orig_h = ? THEN 'out' ELSE 'in' END AS dir,
       list(DISTINCT resp_p ORDER BY resp_p)[1:5] AS ports,
       count(*) AS conns, sum(orig_bytes + resp_bytes) AS bytes,
       min(ts) AS first_seen, max(ts_end) AS last_seen
FROM conns
WHERE {w} AND (orig_h = ? OR resp_h = ?)
GROUP BY ALL
ORDER BY conns DESC, bytes DESC, peer
LIMIT ?
"""
HOST_SQL = """
SELECT count(*) AS conns,
       count(DISTINCT CASE WHEN orig_h = ? THEN resp_h END) AS contacted,
       count(DISTINCT CASE WHEN resp_h = ? THEN orig_h END) AS contacted_by,
       sum(CASE WHEN orig_h = ? THEN orig_ip_bytes ELSE resp_ip_bytes END)
           AS sent,
       sum(CASE WHEN orig_h = ? THEN resp_ip_bytes ELSE orig_ip_bytes END)
           AS received,
       min(ts) AS first_seen, max(ts_end) AS last_seen
FROM conns
WHERE {w} AND (orig_h = ? OR resp_h = ?)
"""
ALERTS_SQL = """
SELECT id, detected_at, kind, attacker, score, confidence, incident_id, summary
FROM alerts
WHERE (attacker = ? OR list_contains(victims, ?)) AND {w}
ORDER BY detected_at
"""
BANS_SQL = """
SELECT 'ban' AS what, addr, action, reason, actor, created AS ts, decision_id FROM bans
WHERE addr = ?
UNION ALL
SELECT event, subject, result, coalesce(detail::JSON ->> 'reason', detail), actor, ts, decision_id
FROM audit
WHERE (subject = ? OR subject = ? || '/32' OR subject = ? || '/128')
  AND (event LIKE '%ban%' OR event LIKE '%block%' OR event LIKE '%decision%')
ORDER BY ts
"""


def _addr(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise HuntError(f"not an IP address: {text!r}") from None


def peers(db: HuntDB, w: Window, limit: int, addr: str, direction: str = "") -> list[Result]:
    a = _addr(addr)
    cond, params = w.sql()
    sql = PEERS_SQL.format(w=cond)
    rows = _q(db, sql, [a, a, *params, a, a, limit * 4])
    if direction:
        rows = [r for r in rows if r["dir"] == direction]
    rows = rows[:limit]
    cols = ["peer", "dir", "ports", "conns", "bytes", "first_seen", "last_seen"]
    title = f"Peers of {a} ({w.describe()})" + (" talking to it" if direction == "in" else "")
    return [Result("peer", title, cols, rows, sql)]


def alerts_for(db: HuntDB, w: Window, addr: str) -> Result:
    cond, params = w.sql("detected_at")
    sql = ALERTS_SQL.format(w=cond)
    rows = _q(db, sql, [addr, addr, *params])
    cols = ["id", "detected_at", "kind", "attacker", "score", "incident_id"]
    notes = [f"{r['id']}: {r['summary']}" for r in rows[:10] if r.get("summary")]
    return Result("alert", f"Alerts naming {addr}", cols, rows, sql, notes)


def host(db: HuntDB, w: Window, limit: int, addr: str) -> list[Result]:
    """Everything one address did: its totals, its peers, its alerts."""
    a = _addr(addr)
    cond, params = w.sql()
    sql = HOST_SQL.format(w=cond)
    summary = _q(db, sql, [a, a, a, a, *params, a, a])
    summary[0]["host"] = a
    cols = ["host", "conns", "contacted", "contacted_by", "sent", "received"]
    head = Result("host", f"What {a} did ({w.describe()})", cols, summary, sql)
    return [head, *peers(db, w, limit, a), alerts_for(db, w, a)]


def blocked(db: HuntDB, w: Window, limit: int, addr: str) -> list[Result]:
    """Why an address was blocked: its bans and ban decisions, and the alerts naming it."""
    a = _addr(addr)
    rows = _q(db, BANS_SQL, [a, a, a, a])
    cols = ["what", "ts", "action", "actor", "reason"]
    notes = [f"{r['what']} ({r['action']}, {r['actor']}): {r['reason']}" for r in rows[:limit]]
    bans = Result("ban", f"Bans and ban decisions for {a}", cols, rows, BANS_SQL, notes)
    return [bans, alerts_for(db, Window(now=w.now), a)]


# --- incidents and SQL -----------------------------------------------------------------
INCIDENT_SQL = """
SELECT incident_id, ts, orig_h, orig_p, resp_h, resp_p, proto, conn_state,
       orig_bytes, resp_bytes, uid
FROM incident_flows WHERE incident_id = ? ORDER BY ts LIMIT ?
"""


def incident(db: HuntDB, w: Window, limit: int, iid: str) -> list[Result]:
    """An incident's context: its hosts' connections from an hour before it opened to
    five minutes after its last alert (the ``incident_flows`` view)."""
    found = _q(db, "SELECT id, hosts, opened_at, updated_at FROM incidents WHERE id = ?", [iid])
    if not found:
        raise HuntError(f"no incident {iid!r} in this state dir")
    rows = _q(db, INCIDENT_SQL, [iid, limit])
    cols = ["ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "conn_state"]
    hosts = ", ".join(found[0]["hosts"])
    title = f"Context of {iid}: connections of {hosts}, 1 h before to 5 min after"
    return [Result("incident_flow", title, cols, rows, INCIDENT_SQL)]


def sql(db: HuntDB, w: Window, limit: int, text: str) -> list[Result]:
    cols, tuples = db.query(text)
    rows = [dict(zip(cols, t, strict=True)) for t in tuples]
    return [Result("row", f"{len(rows)} rows", cols, rows, text)]


_FUNCTIONS: dict[str, Callable[..., list[Result]]] = {
    "beacons": beacons,
    "long-connections": long_connections,
    "rare-destinations": rare_destinations,
    "dns": dns,
    "scans": scans,
    "talkers": talkers,
    "host": host,
    "peers": peers,
    "blocked": blocked,
    "incident": incident,
    "sql": sql,
}
HUNTS: dict[str, Hunt] = {name: Hunt(_FUNCTIONS[name], *CATALOG[name]) for name in CATALOG}


def run(db: HuntDB, name: str, w: Window, limit: int, arg: str | None = None) -> list[Result]:
    hunt = HUNTS.get(name)
    if hunt is None:
        raise HuntError(f"unknown hunt {name!r} (known: {', '.join(HUNTS)})")
    if hunt.arg and not arg:
        raise HuntError(f"hunt {name} needs {hunt.arg}")
    if not hunt.arg and arg:
        raise HuntError(f"hunt {name} takes no argument (got {arg!r})")
    return hunt.fn(db, w, limit, arg) if hunt.arg else hunt.fn(db, w, limit)
