"""Read-only control operations answered from a state dir's database when no controller
holds it (a stopped controller's state, or a replay's): ``bans``, ``approvals``,
``recommendations``, ``audit`` and ``ping``, as of the state's own clock (a replay's bans
and approvals carry capture time). Changes always need the controller (or, for incidents,
``controller.incidents.session.offline``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.ops.operations import recommendation_rows

READS = ("ping", "bans", "approvals", "recommendations", "audit")


def answer(state_dir: Path, op: str, args: dict[str, Any]) -> Any:
    """The result ``op`` would have had from the controller that last held ``state_dir``."""
    from controller.state.audit import AuditLog
    from controller.state.store import Store
    from netwarden.commands.status import _state_clock

    store = Store(state_dir, readonly=True)
    try:
        audit = AuditLog(store.db, state_dir, readonly=True)
        if op == "audit":
            return audit.entries(limit=int(args.get("limit", 50)))
        if op == "recommendations":
            return recommendation_rows(audit, int(args.get("limit", 20)))
        if op == "ping":
            starts = audit.db.execute(
                "SELECT subject FROM audit WHERE event='start' AND actor='controller' ORDER BY seq DESC LIMIT 1"
            ).fetchall()
            backend = starts[0][0] if starts else "unknown"
            journal = state_dir / "dryrun.jsonl"
            return {"pid": None, "backend": backend, "dry_run": backend in ("dryrun", "unknown"),
                    "dry_run_file": str(journal) if backend == "dryrun" else None}  # fmt: skip
        as_of = _state_clock(store, audit.entries(limit=1))
        if op == "bans":
            return [b.to_dict(as_of) for b in store.active_bans(as_of)]
        if op == "approvals":
            return [a.to_dict() for a in store.approvals("pending") if a.expires_at > as_of]
    finally:
        store.close()
    raise ValueError(f"{op} needs a running controller")
