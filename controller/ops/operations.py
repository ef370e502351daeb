"""The controller's built-in control operations, registered in one ``Operations`` table.

Each function takes the request's ``args`` and the operator's name and returns a
JSON-serialisable result; refusals raise ``PolicyRefused``, bad input a ``NetWardenError``.
"""

from __future__ import annotations

import os
from typing import Any

from controller.detection import Detection
from controller.ops.registry import Operations
from controller.response.enforce.base import Action, target
from controller.response.responder import Responder
from controller.response.targets import check_ttl
from controller.state.audit import AuditLog


def register_response_ops(ops: Operations, r: Responder) -> None:
    """Bans, allow-list, approvals, detections and the audit log."""

    def ping(_args: dict[str, Any], _actor: str) -> dict[str, Any]:
        return {"pid": os.getpid(), "hook": r.cfg.hook.value, **_backend(r)}

    def ban(args: dict[str, Any], actor: str) -> dict[str, Any]:
        d = r.ban(
            args["addr"],
            check_ttl(args.get("ttl")),
            str(args.get("reason", "")),
            actor,
            Action(args.get("action", "drop")),
        )
        return {"decision_id": d.id, "addr": str(target(d.target)) if d.target else None, "ttl_s": d.ttl_s,
                **_backend(r)}  # fmt: skip

    def unban(args: dict[str, Any], actor: str) -> dict[str, Any]:
        removed = r.unban(args["addr"], actor)
        return {
            "addr": args["addr"],
            "removed": removed,
            "covered_by": r.covering_ranges(args["addr"], r.clock()),
        }

    def bans(_args: dict[str, Any], _actor: str) -> list[dict[str, Any]]:
        now = r.clock()
        return [b.to_dict(now) for b in r.store.active_bans(now)]

    def kernel_bans(_args: dict[str, Any], _actor: str) -> list[dict[str, Any]]:
        return [
            {
                "addr": str(k.addr),
                "action": k.action.value,
                "remaining_s": k.remaining_s,
                "decision_id": k.decision_id,
            }
            for k in r.enforcer.list_bans()
        ]

    def approvals(_args: dict[str, Any], _actor: str) -> list[dict[str, Any]]:
        return [a.to_dict() for a in r.approvals.pending(r.clock())]

    def recommendations(args: dict[str, Any], _actor: str) -> list[dict[str, Any]]:
        return recommendation_rows(r.audit, int(args.get("limit", 20)))

    table: dict[str, Any] = {
        "ping": ping,
        "ban": ban,
        "unban": unban,
        "bans": bans,
        "kernel-bans": kernel_bans,
        "allow-add": lambda a, actor: r.allow_add(
            a["cidr"], str(a.get("note", "")), actor, a.get("force") is True
        ),
        "allow-remove": lambda a, actor: r.allow_remove(a["cidr"], actor),
        "allow-list": lambda _a, _actor: r.allow_entries(),
        "approvals": approvals,
        "recommendations": recommendations,
        "approve": lambda a, actor: r.resolve_approval(str(a["id"]), True, actor),
        "deny": lambda a, actor: r.resolve_approval(str(a["id"]), False, actor),
        "detect": lambda a, _actor: r.submit_detection(Detection.from_dict(a)).to_dict(),
        "audit": lambda a, _actor: r.audit.entries(limit=int(a.get("limit", 50))),
        "verify": lambda _a, _actor: r.audit.verify().as_dict(),
    }
    for name, fn in table.items():
        ops.add(name, fn)


def recommendation_rows(audit: AuditLog, limit: int) -> list[dict[str, Any]]:
    """Level-1 decisions (recommend: nothing done, an operator may act), newest last."""
    rows = audit.db.execute(
        "SELECT seq FROM audit WHERE event='decision' AND result='recommend' ORDER BY seq DESC LIMIT ?",
        (limit,),
    ).fetchall()
    if not rows:
        return []
    entries = audit.entries(since_seq=min(x[0] for x in rows) - 1)
    keep = {x[0] for x in rows}
    return [{"decision_id": e["decision_id"], "target": e["subject"], "actor": e["actor"], "ts": e["ts"],
             "evidence": e["evidence"], "reason": e["detail"].get("reason", ""),
             "score": e["detail"].get("score"), "confidence": e["detail"].get("confidence")}
            for e in entries if e["seq"] in keep]  # fmt: skip


def _backend(r: Responder) -> dict[str, Any]:
    """The enforcement backend, and where a dry run writes what it would have done."""
    journal = getattr(r.enforcer, "journal", None) if r.enforcer.name == "dryrun" else None
    return {"backend": r.enforcer.name, "dry_run": r.enforcer.name == "dryrun",
            "dry_run_file": None if journal is None else str(journal)}  # fmt: skip
