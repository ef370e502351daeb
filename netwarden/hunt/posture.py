"""Posture from traffic alone: what is exposed and risky, with evidence and a fix.

Findings (each with its evidence, a severity and a suggested fix):

- ``exposed_service``: an internal host:port answered connections from outside the
  internal networks;
- ``cleartext_auth``: a login protocol without TLS carried a session both ways (telnet,
  rlogin, FTP, POP3, IMAP, LDAP simple binds; HTTP to internal servers);
- ``new_listener``: an internal host:port answered for the first time after the baseline
  (by default the archive's first day, or its first half when it spans under two days);
- ``rare_external_service``: an internal host used an external service on an uncommon port
  that no other internal host used.

The score is 100 minus the weights of the findings (``WEIGHTS``), floored at 0, and is
given over time: per day (per hour when the archive spans under two days), from the
findings whose evidence falls in each period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from netwarden.hunt.db import HuntDB
from netwarden.hunt.output import Result
from netwarden.hunt.window import Window

WEIGHTS = {"high": 20, "medium": 8, "low": 3}
#: TCP handshake completed, or a UDP service replied
ANSWERED = (
    "(conn_state IN ('SF', 'S1', 'S2', 'S3', 'RSTO', 'RSTR') OR (proto = 'udp' AND resp_pkts > 0))"
)
#: ports whose exposure to the outside is high severity
SENSITIVE = {
    21: "ftp", 22: "ssh", 23: "telnet", 135: "msrpc", 139: "netbios", 445: "smb",
    1433: "mssql", 3306: "mysql", 3389: "rdp", 5432: "postgres", 5900: "vnc",
    6379: "redis", 9200: "elasticsearch", 11211: "memcached", 27017: "mongodb",
}  # fmt: skip
#: login protocols without TLS (port -> name)
CLEARTEXT = {23: "telnet", 513: "rlogin", 512: "rexec", 21: "ftp", 110: "pop3", 143: "imap",
             389: "ldap"}  # fmt: skip
HTTP_PORTS = {80: "http", 8080: "http", 8000: "http"}
#: ports so common outbound that a single user is no signal
COMMON_OUT = {53, 80, 123, 443, 853, 993, 995, 465, 587, 8080, 8443}


@dataclass
class Finding:
    kind: str
    severity: str
    subject: str
    evidence: str
    fix: str
    first_seen: datetime
    last_seen: datetime
    detail: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "subject": self.subject,
                "evidence": self.evidence, "fix": self.fix, "first_seen": self.first_seen,
                "last_seen": self.last_seen, **self.detail}  # fmt: skip


SERVICES_SQL = """
SELECT resp_h AS host, resp_p AS port, proto,
       count(*) AS conns, count(DISTINCT orig_h) AS clients,
       count(DISTINCT orig_h) FILTER (WHERE NOT orig_internal) AS outside_clients,
       list(DISTINCT orig_h ORDER BY orig_h) FILTER (WHERE NOT orig_internal)
           AS outside_sample,
       min(ts) AS first_seen, max(ts_end) AS last_seen,
       min(ts) FILTER (WHERE NOT orig_internal) AS outside_first,
       max(ts_end) FILTER (WHERE NOT orig_internal) AS outside_last,
       count(*) FILTER (WHERE orig_bytes > 0 AND resp_bytes > 0) AS sessions
FROM conns
WHERE {w} AND proto IN ('tcp', 'udp') AND resp_internal AND {answered}
GROUP BY ALL
"""
OUTBOUND_SQL = """
SELECT resp_h AS dst, resp_p AS port, proto,
       count(DISTINCT orig_h) AS users, any_value(orig_h) AS src, count(*) AS conns,
       sum(orig_bytes + resp_bytes) AS bytes, min(ts) AS first_seen, max(ts_end) AS last_seen
FROM conns
WHERE {w} AND proto IN ('tcp', 'udp') AND orig_internal AND NOT resp_internal
  AND {answered}
GROUP BY ALL
"""
SPAN_SQL = "SELECT min(ts) AS first, max(ts_end) AS last FROM conns WHERE {w}"


def _svc(port: int, proto: str) -> str:
    name = SENSITIVE.get(port) or CLEARTEXT.get(port) or HTTP_PORTS.get(port)
    return f"{port}/{proto}" + (f" ({name})" if name else "")


def _exposed(s: dict[str, Any]) -> Finding | None:
    if not s["outside_clients"]:
        return None
    sev = "high" if s["port"] in SENSITIVE else "medium"
    sample = ", ".join(s["outside_sample"][:3])
    return Finding(
        "exposed_service", sev, f"{s['host']}:{_svc(s['port'], s['proto'])}",
        f"answered {s['outside_clients']} outside client(s) (e.g. {sample})",
        f"restrict {s['host']} port {s['port']} to the networks that need it "
        "(firewall, or reach it over a VPN)",
        s["outside_first"], s["outside_last"],
        {"host": s["host"], "port": s["port"], "clients": s["outside_clients"]},
    )  # fmt: skip


def _cleartext(s: dict[str, Any]) -> Finding | None:
    port = s["port"]
    name = CLEARTEXT.get(port) or HTTP_PORTS.get(port)
    if name is None or s["proto"] != "tcp" or not s["sessions"]:
        return None
    sev = "medium" if port in HTTP_PORTS else "high"
    fix = ("serve it over HTTPS only (redirect port 80) so logins are encrypted"
           if port in HTTP_PORTS else
           f"replace {name} with its encrypted form (ssh, sftp/ftps, pop3s/imaps, ldaps) "
           f"and turn off {name} on {s['host']}")  # fmt: skip
    return Finding(
        "cleartext_auth", sev, f"{s['host']}:{_svc(port, s['proto'])}",
        f"{s['sessions']} {name} session(s) with data both ways from {s['clients']} "
        "client(s): passwords cross the network readable",
        fix, s["first_seen"], s["last_seen"],
        {"host": s["host"], "port": port, "protocol": name, "sessions": s["sessions"]},
    )  # fmt: skip


def _new(s: dict[str, Any], baseline_end: datetime) -> Finding | None:
    if s["first_seen"] < baseline_end:
        return None
    return Finding(
        "new_listener", "medium", f"{s['host']}:{_svc(s['port'], s['proto'])}",
        f"first answered at {s['first_seen']:%Y-%m-%d %H:%M} UTC, after the baseline "
        f"(to {baseline_end:%Y-%m-%d %H:%M}); {s['conns']} connection(s)",
        f"confirm {s['host']} is meant to serve port {s['port']}; stop the service or "
        "firewall it if not",
        s["first_seen"], s["last_seen"], {"host": s["host"], "port": s["port"]},
    )  # fmt: skip


def _rare(o: dict[str, Any]) -> Finding | None:
    if o["users"] != 1 or o["port"] in COMMON_OUT:
        return None
    return Finding(
        "rare_external_service", "low", f"{o['src']} -> {o['dst']}:{o['port']}/{o['proto']}",
        f"only internal host using it: {o['conns']} connection(s), {o['bytes']} bytes",
        f"check what on {o['src']} talks to {o['dst']} port {o['port']}; block the port "
        "outbound if nothing needs it",
        o["first_seen"], o["last_seen"], {"host": o["src"], "dst": o["dst"], "port": o["port"]},
    )  # fmt: skip


def score(findings: list[Finding]) -> int:
    return max(0, 100 - sum(WEIGHTS[f.severity] for f in findings))


def assess(db: HuntDB, w: Window, baseline_until: float | None = None) -> list[Result]:
    cond, params = w.sql()
    span = db.rows(SPAN_SQL.format(w=cond), params)[0]
    if span["first"] is None:
        return [Result("posture", "Posture: no archived connections", [], [], "")]
    first, last = span["first"], span["last"]
    width = (last - first).total_seconds()
    if baseline_until is None:
        base_s = 86400.0 if width >= 2 * 86400 else width / 2
        baseline_end = datetime.fromtimestamp(first.timestamp() + base_s, tz=UTC)
    else:
        baseline_end = datetime.fromtimestamp(baseline_until, tz=UTC)
    services = db.rows(SERVICES_SQL.format(w=cond, answered=ANSWERED), params)
    outbound = db.rows(OUTBOUND_SQL.format(w=cond, answered=ANSWERED), params)
    found: list[Finding | None] = []
    for s in services:
        found += [_exposed(s), _cleartext(s), _new(s, baseline_end)]
    found += [_rare(o) for o in outbound]
    findings = [f for f in found if f is not None]
    order = {"high": 0, "medium": 1, "low": 2}
    findings.sort(key=lambda f: (order[f.severity], f.kind, f.subject))
    rows = [f.row() for f in findings]
    total = score(findings)
    notes = [f"{i}. [{f.severity}] {f.subject}: {f.evidence}. Fix: {f.fix}."
             for i, f in enumerate(findings, 1)]  # fmt: skip
    cols = ["severity", "kind", "subject", "first_seen"]
    title = f"Posture score {total}/100 ({w.describe()}; {len(findings)} finding(s))"
    over_time = _over_time(findings, first, last)
    trend = " ".join(f"{r['period']}={r['score']}" for r in over_time)
    return [
        Result("posture_finding", title, cols, rows, "", notes),
        Result("posture_score", f"Score over time: {trend}", ["period", "score", "findings"],
               over_time),
        _summary(total, findings, baseline_end),
    ]  # fmt: skip


def _summary(total: int, findings: list[Finding], baseline_end: datetime) -> Result:
    by = {s: sum(f.severity == s for f in findings) for s in WEIGHTS}
    row = {"score": total, "findings": len(findings), **by, "baseline_until": baseline_end}
    return Result("posture", "Summary", ["score", "findings", "high", "medium", "low"], [row])


def _over_time(findings: list[Finding], first: datetime, last: datetime) -> list[dict[str, Any]]:
    step = 86400 if (last - first).total_seconds() >= 2 * 86400 else 3600
    fmt = "%Y-%m-%d" if step == 86400 else "%m-%d %H:00"
    t = int(first.timestamp()) // step * step
    out = []
    while t <= last.timestamp():
        active = [f for f in findings
                  if f.first_seen.timestamp() < t + step and f.last_seen.timestamp() >= t]  # fmt: skip
        period = datetime.fromtimestamp(t, tz=UTC).strftime(fmt)
        out.append({"period": period, "score": score(active), "findings": len(active)})
        t += step
    return out
