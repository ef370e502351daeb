"""Incident commands: ``incidents``, ``incident show|ack|resolve``, ``ack``, ``resolve``,
``alerts``, ``explain``, ``feedback`` and ``export`` (ECS JSON lines).

Each works on the state dir of a running controller and on the state dir of a replay
(``netwarden replay ... --state-dir DIR``) with no controller running: reads go to the
database (read-only); changes go through the controller's control socket when one holds
the state dir, and straight to the database (audited the same way) when none does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netwarden.errors import ConfigError, ControlError
from netwarden.jsonout import emit


def _common(p: argparse.ArgumentParser, lang: bool = False) -> None:
    p.add_argument(
        "--state-dir",
        default=None,
        help="controller or replay state dir (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)",
    )
    p.add_argument("--config", default=None, metavar="FILE", help="controller TOML configuration")
    if lang:
        p.add_argument(
            "--lang",
            choices=("en", "ja"),
            default=None,
            help="language of summaries (default: config, en)",
        )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("incidents", help="list incidents (highest priority first)")
    p.add_argument("--open", action="store_true", help="only open and acknowledged incidents")
    p.add_argument(
        "--since",
        default=None,
        metavar="T",
        help="updated since T (epoch, ISO time, or 30m/2h/1d ago)",
    )
    p.add_argument("--json", action="store_true")
    _common(p, lang=True)
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser("incident", help="show, acknowledge or resolve one incident")
    p.add_argument("verb", choices=("show", "ack", "resolve"))
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    _common(p, lang=True)
    p.set_defaults(func=cmd_incident)

    for verb in ("ack", "resolve"):
        p = sub.add_parser(
            verb, help=f"{'acknowledge' if verb == 'ack' else 'resolve'} an incident"
        )
        p.add_argument("id")
        _common(p)
        p.set_defaults(func=lambda a, v=verb: _change(a, v, a.id))

    p = sub.add_parser("alerts", help="list stored alerts")
    p.add_argument("--since", default=None, metavar="T")
    p.add_argument("--kind", default=None, metavar="K")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser(
        "explain", help="why an incident, ban or decision happened, and what would have changed it"
    )
    p.add_argument(
        "id",
        metavar="INCIDENT|BAN|DECISION",
        help="INC-n, a banned address, or a decision id d-...",
    )
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "feedback", help="tell NetWarden an incident or alert was a false positive or confirmed"
    )
    p.add_argument("id", help="INC-n or A-n")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--false-positive",
        action="store_true",
        help="suppress this pattern (kind, entity, service)",
    )
    g.add_argument("--confirmed", action="store_true", help="raise confidence for this pattern")
    p.add_argument("--note", default="", help="why (goes to the audit log)")
    _common(p)
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("export", help="alerts and incidents as Elastic Common Schema JSON lines")
    p.add_argument("--what", choices=("alerts", "incidents", "all"), default="all")
    p.add_argument("--since", default=None, metavar="T")
    p.add_argument(
        "-o", "--output", default=None, metavar="FILE", help="write here instead of stdout"
    )
    _common(p)
    p.set_defaults(func=cmd_export)


# --- plumbing ---------------------------------------------------------------------------
def _dir(args: argparse.Namespace) -> Path:
    from controller.config import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def parse_since(text: str | None, now: float | None = None) -> float | None:
    if text is None:
        return None
    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip()
    try:
        if t[-1:] in units and t[:-1].replace(".", "", 1).isdigit():
            return now - float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: expected epoch seconds, an ISO time, or an age like 30m, 2h, 1d"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


class _Reader:
    """The state dir's database, read-only (beside a live controller too)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from controller.incidents.store import IncidentStore
        from controller.state.store import DB_NAME, Store

        d = _dir(args)
        if not (d / DB_NAME).is_file():
            raise ConfigError(
                f"no NetWarden state in {d} (run a controller or `netwarden replay ... --state-dir {d}`)"
            )
        self.dir = d
        self.store = Store(d, readonly=True)
        try:
            self.istore = IncidentStore(self.store.db)
            self.istore.incidents(("open",))  # an old schema fails here, with one line
        except Exception as exc:  # any failure: an old or foreign schema
            self.store.close()
            raise ConfigError(
                f"{d}: no incident tables ({exc}); open it once with this version's controller"
            ) from exc

    def audit(self) -> list[dict[str, Any]]:
        from controller.state.audit import AuditLog

        return AuditLog(self.store.db, self.dir, readonly=True).entries()

    def close(self) -> None:
        self.store.close()


def _lang(args: argparse.Namespace) -> str:
    if getattr(args, "lang", None):
        return str(args.lang)
    from controller.incidents.config import load

    return load(args.config).copilot.lang


def _change(args: argparse.Namespace, op: str, target: str, **kw: Any) -> int:
    """Run a change offline, or through the running controller that holds the state dir."""
    from controller.incidents.session import offline

    try:
        with offline(_dir(args), args.config) as tri:
            result = _apply(tri, op, target, getpass.getuser(), **kw)
    except ControlError as exc:
        if "another controller is running" not in str(exc):
            raise
        from controller.ops.server import request

        resp = request(_dir(args), f"incident-{op}", id=target, **kw)
        if not resp.get("ok"):
            print(f"netwarden {args.command}: error: {resp.get('error')}", file=sys.stderr)
            return 1
        result = resp["result"]
    _report_change(op, result)
    return 0


def _apply(tri: Any, op: str, target: str, actor: str, **kw: Any) -> dict[str, Any]:
    if op == "ack":
        return tri.acknowledge(target, actor).to_json()  # type: ignore[no-any-return]
    if op == "resolve":
        return tri.resolve(target, actor).to_json()  # type: ignore[no-any-return]
    if op == "feedback":
        return tri.feedback(target, kw["verdict"], actor, kw.get("note", ""))  # type: ignore[no-any-return]
    raise ConfigError(f"unknown change {op}")


def _report_change(op: str, r: dict[str, Any]) -> None:
    if op == "feedback":
        print(f"feedback {', '.join(r['feedback'])} on {r['target']}: {r['verdict']}")
        for s in r["suppressions"]:
            until = datetime.fromtimestamp(s["expires_at"], tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
            print(
                f"  suppression {s['id']}: {s['kind']} from {s['entity']} service {s['service']} until {until} UTC"
            )
        return
    who = r.get("acknowledged_by") if op == "ack" else r.get("resolved_by")
    print(f"incident {r['id']} {r['status']} by {who}")


# --- commands ---------------------------------------------------------------------------
def cmd_incidents(args: argparse.Namespace) -> int:
    rd = _Reader(args)
    try:
        incs = rd.istore.incidents(
            ("open", "acknowledged") if args.open else None, parse_since(args.since)
        )
    finally:
        rd.close()
    incs.sort(key=lambda i: (i.priority, -i.risk, i.id))
    lang = _lang(args)
    if args.json:
        emit("incident", ({**i.to_json(), "text": i.summary.get(lang, "")} for i in incs))
        return 0
    _incident_table(incs, f"{len(incs)} incident(s)")
    return 0


def _incident_table(incs: list[Any], title: str) -> None:
    from netwarden.tables import print_table

    rows = [[i.id, i.priority, f"{i.risk:g}", i.status, ", ".join(i.kinds), ", ".join(i.attackers[:2]) or "-",
             ", ".join(i.victims[:2]) + (f" +{len(i.victims) - 2}" if len(i.victims) > 2 else ""), str(i.alert_count)]
            for i in incs]  # fmt: skip
    print_table(title, ["id", "pri", "risk", "status", "kinds", "source", "target", "alerts"], rows,
                right=("risk", "alerts"))  # fmt: skip


def cmd_incident(args: argparse.Namespace) -> int:
    if args.verb in ("ack", "resolve"):
        return _change(args, args.verb, args.id)
    rd = _Reader(args)
    try:
        inc = rd.istore.get_incident(args.id)
        if inc is None:
            raise ConfigError(f"no incident {args.id}")
        alerts = rd.istore.alerts(incident_id=inc.id)
        trail = [e for e in rd.audit() if inc.id in (e["subject"], e["evidence"])]
    finally:
        rd.close()
    lang = _lang(args)
    if args.json:
        emit("incident", {**inc.to_json(), "text": inc.summary.get(lang, ""), "stored_alerts": alerts,
                          "audit": trail})  # fmt: skip
        return 0
    print(
        f"{inc.id}  {inc.priority}  risk {inc.risk:g}  confidence {inc.confidence:g}  {inc.status}"
    )
    print()
    print(inc.summary.get(lang) or "")
    print()
    from controller.copilot.summary import _Text

    t = _Text(lang)
    print(t("show_timeline"))
    for a in inc.alerts:
        more = f" (x{a['count']})" if a.get("count", 1) > 1 else ""
        print(f"  {_t(a['first_seen'])}  {a['alert_id']:>6}  {a['kind']:<18} {a['attacker'] or '(spoofed)'} -> "
              f"{', '.join(a['victims'][:3])}  score {a['score']:g}{more}")  # fmt: skip
    rec = inc.recommendation or {}
    action = rec.get("action")
    print(t("show_recommendation", action=t(f"action_{action}") if action else "-"))
    for s in rec.get("steps", []):
        print(
            f"  - {t('step_' + s['do'], target=s['target'])}"
            + ("" if s.get("enforce") else t("show_advice"))
        )
    for c in rec.get("commands", []):
        print(f"  $ {c}")
    if inc.actions:
        print(t("show_actions"))
        for a in inc.actions:
            if a.get("kind") == "decision":
                print(
                    f"  {a['decision_id']}: {a['verdict']} {a['action']} {a['target']} ({a['reason']})"
                )
            else:
                print(
                    f"  {a.get('kind')}: {a.get('verdict') or a.get('resolution')} by {a.get('by')}"
                )
    if inc.escalations:
        print(t("show_escalations"))
        for e in inc.escalations:
            print(
                f"  {e['id']}: {e['reason']} via {', '.join(f'{k}={v}' for k, v in e['channels'].items()) or '-'}"
            )
    if trail:
        print(t("show_audit"))
        for e in trail:
            print(
                f"  #{e['seq']} {_t(e['ts'])} {e['actor']} {e['event']} {e['subject']} {e['result']}"
            )
    return 0


def _t(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_alerts(args: argparse.Namespace) -> int:
    rd = _Reader(args)
    try:
        rows = rd.istore.alerts(since=parse_since(args.since), kind=args.kind)
    finally:
        rd.close()
    if args.json:
        emit("alert", rows)
        return 0
    from netwarden.tables import print_table

    print_table(f"{len(rows)} alert(s)", ["id", "detected (UTC)", "kind", "attacker", "victims", "score", "incident"],
                [[a["id"], _t(a["detected_at"]), a["kind"], a["attacker"] or "(spoofed)", ", ".join(a["victims"][:2])
                  + (f" +{len(a['victims']) - 2}" if len(a["victims"]) > 2 else ""), f"{a['score']:g}",
                  a["incident_id"] or f"suppressed {a.get('suppressed_by')}"] for a in rows],
                right=("score",))  # fmt: skip
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from controller import config as ccfg
    from controller.copilot.explain import explain_audit_decision, explain_incident, render
    from controller.incidents import config as tconfig

    policy = ccfg.load(args.config).policy
    copilot = tconfig.load(args.config).copilot
    rd = _Reader(args)
    try:
        audit = rd.audit()
        ex: dict[str, Any] | None = None
        target = args.id
        if target.startswith("INC-"):
            inc = rd.istore.get_incident(target)
            ex = None if inc is None else explain_incident(inc, policy, copilot, audit)
        else:
            decision = target
            if not target.startswith("d-"):  # an address: its ban's decision
                from controller.response.enforce.base import target as parse_target

                try:
                    bans = rd.store.get_bans(parse_target(target))
                except ValueError:
                    raise ConfigError(
                        f"{target}: not an incident id, decision id or address"
                    ) from None
                if not bans:
                    past = [
                        e
                        for e in audit
                        if e["event"] == "ban" and e["subject"] == target and e["result"] == "ok"
                    ]
                    if not past:
                        raise ConfigError(f"{target} is not banned and was never banned")
                    decision = past[-1]["decision_id"]
                else:
                    decision = bans[0].decision_id
            ex = explain_audit_decision(decision, audit, policy)
            if ex is not None:
                ex["subject"] = target if target == decision else f"{target} (decision {decision})"
                ex["what"] = "decision" if target == decision else "ban"
                inc = rd.istore.get_incident(ex.get("evidence", "")) if ex.get("evidence") else None
                if inc is not None:
                    ex["incident"] = explain_incident(inc, policy, copilot, audit)
    finally:
        rd.close()
    if ex is None:
        raise ConfigError(f"nothing recorded for {args.id}")
    if args.json:
        emit("explanation", ex)
    else:
        print(render(ex))
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    verdict = "false_positive" if args.false_positive else "confirmed"
    return _change(args, "feedback", args.id, verdict=verdict, note=args.note)


def cmd_export(args: argparse.Namespace) -> int:
    from controller.incidents.ecs import alert_to_ecs, incident_to_ecs

    rd = _Reader(args)
    try:
        since = parse_since(args.since)
        docs: list[dict[str, Any]] = []
        if args.what in ("alerts", "all"):
            docs.extend(alert_to_ecs(a) for a in rd.istore.alerts(since=since))
        if args.what in ("incidents", "all"):
            docs.extend(incident_to_ecs(i.to_json()) for i in rd.istore.incidents(since=since))
    finally:
        rd.close()
    text = "".join(json.dumps(d) + "\n" for d in docs)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


# --- replay -----------------------------------------------------------------------------
def replay_output(alerts: list[Any], state_dir: str, config: str | None, end_time: float,
                  summary: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Run the replay's alerts through triage into ``state_dir``; put what it made into the
    replay's summary (alert lines with their ids and incidents; incident lines)."""
    from controller.incidents.session import replay_triage

    tri = replay_triage(alerts, state_dir, config, end_time)
    summary["alerts"] = [r for r in tri["records"] if not r.get("suppressed_by")]
    summary["incidents"] = [i.to_json() for i in tri["incidents"]]
    summary["triage"] = {
        "state_dir": str(state_dir), "backend": tri["backend"], "suppressed_alerts": tri["suppressed"],
        "failed_alerts": tri["failed"], "incidents": [i.id for i in tri["incidents"]], "decisions": tri["decisions"],
        "escalations": tri["escalations"],
    }  # fmt: skip
    return tri


def print_replay_triage(tri: dict[str, Any], lang: str | None, config: str | None = None) -> None:
    if lang is None:
        from controller.incidents.config import load

        lang = load(config).copilot.lang
    incs = sorted(tri["incidents"], key=lambda i: (i.priority, -i.risk, i.id))
    print()
    if not incs:
        print("Incidents: none")
    else:
        _incident_table(incs, f"Incidents ({len(incs)})")
        for i in incs:
            print()
            print(i.summary.get(lang, ""))
    if tri["suppressed"]:
        print(f"\n{tri['suppressed']} alert(s) suppressed by operator feedback")
    if tri["failed"]:
        print(f"\n{tri['failed']} alert(s) left out: triage failed on them (see the log)")
    print(f"\nDry run ({tri['backend']} backend, nothing enforced):")
    acted = [d for d in tri["decisions"] if d["verdict"] == "act"]
    pending = [d for d in tri["decisions"] if d["verdict"] == "pending"]
    other = [d for d in tri["decisions"] if d["verdict"] not in ("act", "pending")]
    for d in acted:
        print(
            f"  would have blocked {d['target']} ({d['action']}, {d['ttl_s']:g} s) for {d['incident']}: {d['reason']}"
        )
    for d in pending:
        print(
            f"  would have asked approval to block {d['target']} for {d['incident']}: {d['reason']}"
        )
    for d in other:
        print(
            f"  would not have blocked {d['target']} for {d['incident']}: {d['verdict']} ({d['reason']})"
        )
    advice = [
        (i.id, s)
        for i in incs
        for s in (i.recommendation or {}).get("steps", [])
        if not s.get("enforce")
    ]
    for iid, s in advice:
        print(f"  advice for {iid}: {s['do'].replace('_', ' ')} {s['target']}")
    if not (acted or pending or other or advice):
        print("  nothing would have been blocked")
    for e in tri["escalations"]:
        print(
            f"  would have escalated {e['subject']} ({e['reason']}) via {', '.join(e['channels']) or 'no channel configured'}"
        )
