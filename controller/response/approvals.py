"""Pending approvals: a decision waiting for a human, which expires if nobody answers.

The approval stores the whole decision so ``approve`` enforces exactly what was proposed
(re-checked against the anti-lockout guard at that moment, since the allow-list may have
changed meanwhile).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from controller.detection import Detection
from controller.response.enforce.base import Action
from controller.response.policy import Decision, Verdict
from controller.state.store import Approval, Store
from netwarden.errors import ControlError


@dataclass(frozen=True, slots=True)
class Approvals:
    store: Store
    ttl_s: float

    def open(self, decision: Decision, now: float) -> Approval:
        a = Approval(
            id=decision.id,
            created=now,
            expires_at=now + self.ttl_s,
            status="pending",
            reason=decision.reason,
            proposal=decision.to_dict(),
            decided_by=None,
            decided_at=None,
        )
        self.store.add_approval(a)
        return a

    def pending(self, now: float) -> list[Approval]:
        return [a for a in self.store.approvals("pending") if a.expires_at > now]

    def resolve(
        self, approval_id: str, approve: bool, by: str, now: float
    ) -> tuple[Approval, Decision]:
        a = self.store.get_approval(approval_id)
        if a is None:
            raise ControlError(f"no approval {approval_id}")
        if a.status != "pending":
            raise ControlError(f"approval {approval_id} is already {a.status}")
        if a.expires_at <= now:
            self.store.set_approval_status(a.id, "expired", None, now)
            raise ControlError(f"approval {approval_id} expired")
        self.store.set_approval_status(a.id, "approved" if approve else "denied", by, now)
        return a, decision_from_proposal(a.proposal, by)

    def expire(self, now: float) -> list[Approval]:
        out = [a for a in self.store.approvals("pending") if a.expires_at <= now]
        for a in out:
            self.store.set_approval_status(a.id, "expired", None, now)
        return out


def decision_from_proposal(p: dict[str, object], by: str) -> Decision:
    det = p.get("detection")
    return Decision(
        id=str(p["id"]),
        verdict=Verdict.ACT,
        reason=f"approved by {by}",
        target=ipaddress.ip_network(str(p["target"])),
        action=Action(str(p["action"])),
        ttl_s=None if p.get("ttl_s") is None else float(p["ttl_s"]),  # type: ignore[arg-type]
        level=int(p.get("level", 2)),  # type: ignore[call-overload]
        risky=tuple(p.get("risky", ())),  # type: ignore[arg-type]
        detection=Detection.from_dict(det) if isinstance(det, dict) else None,
        actor=str(p.get("actor", "policy")),
        autonomy=int(p.get("autonomy", -1)),  # type: ignore[call-overload]
        autonomy_from=str(p.get("autonomy_from", "")),
    )
