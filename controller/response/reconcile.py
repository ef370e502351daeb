"""Keep the kernel equal to the store: reconciliation at start, periodic resync, expiry.

``reconcile`` re-adds missing bans with their remaining time, removes expired or unknown
kernel elements and leaves matching ones alone (no unban/reban storm on a restart).
``resync`` also heals outside interference (a flushed ruleset); ``tick`` expires bans and
approvals whose time is up.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.response.enforce.base import BanSpec
from controller.response.responder import Responder


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    kept: int
    readded: int
    removed: int
    expired: int

    def as_dict(self) -> dict[str, int]:
        return {
            "kept": self.kept,
            "readded": self.readded,
            "removed": self.removed,
            "expired": self.expired,
        }


class Reconciler:
    def __init__(self, responder: Responder) -> None:
        self.r = responder

    def restore_breaker(self) -> None:
        """The circuit breaker survives a restart: count the last minute's automatic bans."""
        now = self.r.clock()
        for b in self.r.store.active_bans(now):
            if b.actor.startswith("detector:") and b.created > now - 60.0:
                self.r.policy.note_acted(b.created)

    def _expire_bans(self, now: float) -> int:
        expired = self.r.store.pop_expired(now)
        for b in expired:
            self.r.audit.record(
                "controller",
                "expire",
                str(b.addr),
                decision_id=b.decision_id,
                detail={"action": b.action.value},
            )
        return len(expired)

    def reconcile(self, quiet: bool = False) -> ReconcileReport:
        """Make the kernel match the store; ``quiet`` audits only when something changed."""
        r = self.r
        now = r.clock()
        expired = self._expire_bans(now)
        # anti-lockout wins over stored bans too (e.g. the box got a new address); the
        # kernel elements of lifted bans are removed below as unknown
        r.lift_protected(now, kernel=False)
        active = {(b.addr, b.action): b for b in r.store.active_bans(now)}
        kernel = {(k.addr, k.action): k for k in r.enforcer.list_bans()}
        # a dump can miss elements (hash set resizing); look those up before re-adding
        absent = [key for key in active if key not in kernel]
        confirmed = r.enforcer.confirm(absent) if absent else set()
        readd = [
            BanSpec(
                b.addr,
                b.action,
                None if b.expires_at is None else max(1.0, b.expires_at - now),
                b.decision_id,
            )
            for key, b in active.items()
            if key not in kernel and key not in confirmed
        ]
        unknown = [key for key in kernel if key not in active]
        if readd or unknown:
            r.enforcer.apply(readd, unknown)
        report = ReconcileReport(len(active) - len(readd), len(readd), len(unknown), expired)
        if not quiet or readd or unknown or expired:
            r.audit.record("controller", "reconcile", r.enforcer.name, detail=report.as_dict())
        return report

    def resync(self) -> ReconcileReport:
        """Heal outside interference (``nft flush ruleset``, a deleted ipset): re-create our
        objects, reload the allow-list, reconcile. Cheap when nothing changed."""
        if self.r.enforcer.ensure():
            self.r.audit.record(
                "controller",
                "repair",
                self.r.enforcer.name,
                detail={"why": "firewall objects missing or altered"},
            )
        self.r.sync_allow()
        return self.reconcile(quiet=True)

    def tick(self) -> None:
        now = self.r.clock()
        with self.r.store.transaction():
            self._expire_bans(now)  # the kernel expired its element itself
            for a in self.r.approvals.expire(now):
                self.r.audit.record("controller", "approval-expired", a.id, decision_id=a.id)
