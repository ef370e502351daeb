"""Operator commands that talk to a running controller through its control socket:
``ban``, ``unban``, ``bans``, ``allow``, ``approvals``, ``approve``, ``deny``, ``audit``,
and ``detect`` (hand a detector record to policy, e.g. to try a configuration).

A refused action (allow-listed, self, gateway, ...) prints why and exits 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from netwarden.jsonout import emit

EXIT_REFUSED = 3
#: ``type`` of the JSON lines of each listing
_JSON_TYPES = {"bans": "ban", "kernel-bans": "kernel_ban", "allow-list": "allow_entry",
               "approvals": "approval"}  # fmt: skip


def _state(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        default=None,
        help="controller state dir (default $NETWARDEN_STATE_DIR or /var/lib/netwarden)",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ban", help="ban an address (or a CIDR range) now")
    p.add_argument("addr", help="address or CIDR")
    p.add_argument("--ttl", type=_ttl, default=None, help="seconds (default: until unbanned)")
    p.add_argument("--reason", default="", help="why (goes to the audit log)")
    p.add_argument("--rate-limit", action="store_true", help="rate-limit instead of drop")
    _state(p)
    p.set_defaults(func=cmd_ban)

    p = sub.add_parser("unban", help="lift every ban on an address (or a range ban)")
    p.add_argument("addr", help="address or CIDR")
    _state(p)
    p.set_defaults(func=cmd_unban)

    p = sub.add_parser("bans", help="list active bans")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--kernel", action="store_true", help="read the kernel sets instead of the store"
    )
    _state(p)
    p.set_defaults(func=cmd_bans)

    p = sub.add_parser("allow", help="manage the allow-list")
    p.add_argument("verb", choices=("add", "remove", "list"))
    p.add_argument("cidr", nargs="?")
    p.add_argument("--note", default="")
    p.add_argument(
        "--force",
        action="store_true",
        help="allow a very wide CIDR (e.g. 0.0.0.0/0: lifts every ban)",
    )
    p.add_argument("--json", action="store_true")
    _state(p)
    p.set_defaults(func=cmd_allow)

    p = sub.add_parser("approvals", help="list pending approvals")
    p.add_argument("--json", action="store_true")
    _state(p)
    p.set_defaults(func=cmd_approvals)

    for verb in ("approve", "deny"):
        p = sub.add_parser(verb, help=f"{verb} a pending approval")
        p.add_argument("id")
        _state(p)
        p.set_defaults(func=lambda a, v=verb: _simple(a, v, id=a.id))

    p = sub.add_parser("detect", help="submit a detector record to policy (testing, manual triage)")
    p.add_argument(
        "--kind",
        required=True,
        type=_kind,
        metavar="KIND",
        help=_KindsHelp("alert kind"),
    )
    p.add_argument("--attacker", required=True, help="address or CIDR")
    p.add_argument("--victim", action="append", default=[], help="victim address (repeatable)")
    p.add_argument("--score", type=float, required=True, help="0..100")
    p.add_argument("--confidence", type=float, required=True, help="0..1")
    p.add_argument("--evidence", default="", help="evidence id (incident, flow uid)")
    p.add_argument("--clients", type=int, default=0, help="distinct clients the attacker serves")
    _state(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("audit", help="show or verify the audit log")
    p.add_argument(
        "--verify", action="store_true", help="check the hash chain (works without a controller)"
    )
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    _state(p)
    p.set_defaults(func=cmd_audit)


class _KindsHelp(str):
    """Help text that lists the valid kinds only when help is shown: building the list
    imports the detectors, which every other command would otherwise pay at start-up."""

    def __mod__(self, params: object) -> str:
        return f"{self}: {', '.join(alert_kinds())}"


def alert_kinds() -> list[str]:
    """The alert kinds detectors raise (policy's ``detectors`` levels are keyed by them)."""
    from controller.detect.detectors.bruteforce import SERVICES
    from controller.incidents.kinds import STAGE_OF_KIND

    return sorted(STAGE_OF_KIND) + sorted({f"{svc}_bruteforce" for svc in SERVICES.values()})


def _kind(text: str) -> str:
    kinds = alert_kinds()
    if text not in kinds:
        raise argparse.ArgumentTypeError(f"unknown kind {text!r}; valid kinds: {', '.join(kinds)}")
    return text


def _ttl(text: str) -> float:
    """``--ttl``: finite, positive, bounded seconds (the controller checks again)."""
    from controller.response.targets import check_ttl
    from netwarden.errors import ConfigError

    try:
        ttl = check_ttl(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert ttl is not None
    return ttl


def _dir(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from controller.config import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _call(args: argparse.Namespace, op: str, **kw: Any) -> tuple[int, Any]:
    """Ask the controller holding the state dir; with none running, read-only operations
    are answered from the state dir's database (a stopped controller's or a replay's)."""
    from controller.ops import offline
    from controller.ops.server import request
    from controller.state.store import DB_NAME
    from netwarden.errors import ControlError

    try:
        resp = request(_dir(args), op, **kw)
    except ControlError:
        if op not in offline.READS or not (_dir(args) / DB_NAME).is_file():
            raise
        return 0, offline.answer(_dir(args), op, kw)
    if resp.get("ok"):
        return 0, resp.get("result")
    if resp.get("refused"):
        print(f"netwarden {args.command}: refused: {resp.get('error')}", file=sys.stderr)
        return EXIT_REFUSED, None
    print(f"netwarden {args.command}: error: {resp.get('error')}", file=sys.stderr)
    return 1, None


def _simple(args: argparse.Namespace, op: str, **kw: Any) -> int:
    rc, result = _call(args, op, **kw)
    if rc == 0:
        print(json.dumps(result))
    return rc


def cmd_ban(args: argparse.Namespace) -> int:
    rc, result = _call(
        args,
        "ban",
        addr=args.addr,
        ttl=args.ttl,
        reason=args.reason,
        action="ratelimit" if args.rate_limit else "drop",
    )
    if rc == 0:
        ttl = "until unbanned" if result["ttl_s"] is None else f"for {result['ttl_s']:g}s"
        if result.get("dry_run"):
            print(f"DRY RUN: ban on {result['addr']} {ttl} recorded but NOT enforced (decision "
                  f"{result['decision_id']}); the dry-run backend writes what it would do to "
                  f"{result.get('dry_run_file') or 'nowhere (no state dir)'}")  # fmt: skip
        else:
            print(
                f"banned {result['addr']} {ttl} (decision {result['decision_id']}, {result.get('backend')})"
            )
    return rc


def cmd_unban(args: argparse.Namespace) -> int:
    rc, result = _call(args, "unban", addr=args.addr)
    if rc:
        return rc
    print(
        f"unbanned {result['addr']} ({result['removed']} bans lifted)"
        if result["removed"]
        else f"{result['addr']} was not banned"
    )
    for rng in result.get("covered_by", []):
        print(
            f"netwarden unban: {result['addr']} is still blocked by the range ban {rng} "
            f"(unban {rng} to lift it)",
            file=sys.stderr,
        )
    return 0


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from netwarden.tables import print_table

    print_table(title, columns, rows)


def _listing(
    args: argparse.Namespace,
    op: str,
    title: Callable[[list[Any]], str],
    columns: list[str],
    row: Callable[[Any], list[str]],
) -> int:
    """Ask the controller for a list; print it as JSON lines (``--json``, type named after
    the operation) or as a table."""
    rc, result = _call(args, op)
    if rc:
        return rc
    if getattr(args, "json", False):
        emit(_JSON_TYPES[op], result)
    else:
        _table(title(result), columns, [row(r) for r in result])
    return 0


def _dry_run_note(args: argparse.Namespace) -> str:
    """ " (DRY RUN ...)" when the controller enforces nothing, else ""."""
    rc, ping = _call(args, "ping")
    if rc or not ping.get("dry_run"):
        return ""
    return f" -- DRY RUN: not enforced; would-be rules in {ping.get('dry_run_file')}"


def cmd_bans(args: argparse.Namespace) -> int:
    note = "" if args.json else _dry_run_note(args)
    return _listing(
        args, "kernel-bans" if args.kernel else "bans", lambda res: f"{len(res)} bans{note}",
        ["address", "action", "remaining", "decision", "reason"],
        lambda b: [b["addr"], b["action"],
                   "permanent" if b["remaining_s"] is None else f"{b['remaining_s']:.0f}s",
                   b["decision_id"], b.get("reason", "")],
    )  # fmt: skip


def cmd_allow(args: argparse.Namespace) -> int:
    if args.verb == "list":
        return _listing(
            args, "allow-list", lambda _: "allow-list (accepted before any ban)",
            ["network", "source", "note"], lambda r: [r["cidr"], r["source"], r["note"]],
        )  # fmt: skip
    if not args.cidr:
        print(f"netwarden allow {args.verb}: a CIDR is required", file=sys.stderr)
        return 2
    op = "allow-add" if args.verb == "add" else "allow-remove"
    if args.verb == "add" and args.force:
        return _simple(args, op, cidr=args.cidr, note=args.note, force=True)
    return _simple(args, op, cidr=args.cidr, note=args.note)


def cmd_detect(args: argparse.Namespace) -> int:
    rc, d = _call(
        args,
        "detect",
        kind=args.kind,
        attacker=args.attacker,
        victims=args.victim,
        score=args.score,
        confidence=args.confidence,
        evidence_id=args.evidence,
        attacker_clients=args.clients,
    )
    if rc:
        return rc
    print(f"{d['verdict']}: {d['reason']} (decision {d['id']}, ttl {d['ttl_s']})")
    return EXIT_REFUSED if d["verdict"] == "refused" else 0


def cmd_approvals(args: argparse.Namespace) -> int:
    rc = _listing(
        args, "approvals", lambda res: f"{len(res)} pending approvals",
        ["id", "target", "action", "ttl", "why approval", "evidence"],
        lambda a: [a["id"], str(a["proposal"]["target"]), a["proposal"]["action"],
                   str(a["proposal"]["ttl_s"]), a["reason"],
                   (a["proposal"].get("detection") or {}).get("evidence_id", "")],
    )  # fmt: skip
    if rc or args.json:
        return rc
    # level-1 decisions ask nothing and block nothing: shown here so an operator can act
    rc, recs = _call(args, "recommendations")
    if rc or not recs:
        return rc
    print(f"{len(recs)} recommendations (level 1: nothing was done; act with `netwarden ban ADDR`)")
    for r in recs:  # lines, not a table: whole decision ids and addresses at any width
        score = f"score {r['score']:g}" if r["score"] is not None else ""
        print(f"  {r['decision_id']}  {r['target']}  {score}  by {r['actor']}"
              + (f"  evidence {r['evidence']}" if r["evidence"] else ""))  # fmt: skip
        print(f"      why: {r['reason']}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    if args.verify:
        from controller.state.audit import JSONL_NAME, AuditLog, compare_copies, verify_jsonl
        from controller.state.store import Store

        d = _dir(args)
        store = Store(d, readonly=True)
        try:
            res = AuditLog(store.db, d, readonly=True).verify()
            mirror = verify_jsonl(d / JSONL_NAME)
            # each chain alone cannot show a cut-off tail: the two copies must agree
            disagree = compare_copies(store.db, d / JSONL_NAME, res, mirror)
        finally:
            store.close()
        for name, r in (("database", res), ("json lines", mirror)):
            if r.ok:
                print(f"{name}: chain ok, {r.entries} entries")
            else:
                print(
                    f"{name}: TAMPERED at entry {r.bad_seq}: {r.problem} ({r.entries} good entries before it)"
                )
        if disagree:
            print(f"copies: TAMPERED: {disagree}")
        return 0 if res.ok and mirror.ok and not disagree else 4
    rc, result = _call(args, "audit", limit=args.limit)
    if rc:
        return rc
    if args.json:
        emit("audit_entry", result)
        return 0
    import datetime as dt

    _table(
        "audit log",
        ["seq", "time (UTC)", "actor", "event", "subject", "result", "decision"],
        [
            [
                str(e["seq"]),
                dt.datetime.fromtimestamp(e["ts"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
                e["actor"],
                e["event"],
                e["subject"],
                e["result"],
                e["decision_id"],
            ]
            for e in result
        ],
    )
    return 0
