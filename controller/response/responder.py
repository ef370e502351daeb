"""Decisions and operator actions: policy's verdicts and operators' requests become bans.

``Responder`` owns the path detection -> policy -> store + audit -> kernel, and the
operator actions that change what is enforced (ban, unban, allow-list, approvals, the
anti-lockout guard). Each change that touches the kernel runs inside one store
transaction, so a refused kernel commit rolls the store and the audit log back too.

Anti-lockout wins over every stored ban: whenever the protected set grows (an allow-list
entry, a new host address, a known sensor), ``lift_protected`` lifts the bans it now
covers; it is the only place that does so.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from controller.config import ControllerConfig
from controller.detection import Detection
from controller.response.approvals import Approvals
from controller.response.enforce.base import (
    Action,
    BanSpec,
    Enforcer,
    IPNetwork,
    Target,
    as_network,
    is_range,
    target,
)
from controller.response.policy import (
    Decision,
    Guard,
    Policy,
    Protected,
    Verdict,
    build_guard,
    new_decision_id,
)
from controller.response.targets import check_allow, check_ttl
from controller.state.audit import AuditLog
from controller.state.store import Store, StoredBan
from netwarden.errors import ConfigError, ControlError, EnforcementError, PolicyRefused

log = logging.getLogger(__name__)


def _strict_net(text: str, what: str) -> IPNetwork:
    """Parse operator input strictly: a CIDR with host bits set (``10.0.0.5/8``) is a typo
    that would silently widen a ban or an allow entry, so it is refused, not masked."""
    try:
        return ipaddress.ip_network(str(text), strict=True)
    except ValueError as exc:
        try:
            wide = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            raise ConfigError(f"not {what}: {text!r}") from exc
        raise ConfigError(f"{text} has host bits set; did you mean {wide}?") from exc


def _target(text: str) -> Target:
    return target(_strict_net(text, "an IP address or CIDR"))


def _net(text: str) -> IPNetwork:
    return _strict_net(text, "a CIDR")


class Responder:
    def __init__(
        self,
        cfg: ControllerConfig,
        store: Store,
        audit: AuditLog,
        enforcer: Enforcer,
        guard: Guard | None,
        clock: Callable[[], float],
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.audit = audit
        self.enforcer = enforcer
        self.clock = clock
        #: the box's own addresses are re-read by ``refresh_guard`` (a guard given by the
        #: caller, as in tests, is left as it is)
        self.discover_guard = guard is None and cfg.safety.discover_local
        self.guard = guard if guard is not None else build_guard(cfg.safety)
        self._learnt: list[Protected] = []  # protected at run time (connected sensors)
        self.guard.allow = [n for n, _, _ in store.allow_list()]
        window = cfg.policy.offender_window_s
        self.policy = Policy(
            cfg.policy, self.guard, lambda a: store.offences(a, self.clock(), window)
        )
        self.approvals = Approvals(store, cfg.policy.approval_ttl_s)
        #: called with the seconds from a detection's decision to its ban in the kernel
        self.latency_observers: list[Callable[[float], None]] = []

    # --- anti-lockout ---------------------------------------------------------------------
    def sync_allow(self) -> None:
        self.enforcer.set_allow(self.guard.kernel_allow())

    def lift_protected(self, now: float, *, kernel: bool = True) -> list[StoredBan]:
        """Lift every stored ban the guard now refuses (anti-lockout and the allow-list win
        over bans), auditing each with the reason. ``kernel=False`` leaves the kernel
        elements to the caller (reconciliation removes them as unknown)."""
        lifted: list[StoredBan] = []
        with self.store.transaction():
            for b in self.store.active_bans(now):
                refusal = self.guard.refusal(as_network(b.addr))
                if refusal:
                    self.store.delete_ban(b.addr, b.action)
                    lifted.append(b)
                    self.audit.record(
                        "controller",
                        "unban",
                        str(b.addr),
                        decision_id=b.decision_id,
                        result="ok",
                        detail={"why": refusal},
                    )
            if kernel and lifted:
                self.enforcer.apply(remove=[(b.addr, b.action) for b in lifted])
        return lifted

    def refresh_guard(self) -> None:
        """Re-read the box's addresses and gateways (DHCP, new interfaces): anti-lockout
        must follow them, in policy and in the kernel allow-list."""
        self._set_guard(build_guard(self.cfg.safety).fixed + self._learnt, "guard-refresh")

    def protect(self, addr: str, why: str) -> bool:
        """Protect an address learnt at run time (a sensor that connected to us): refused
        in policy, accepted first in the kernel, existing bans on it lifted. Returns False
        when it was already protected."""
        try:
            net = ipaddress.ip_network(addr)
        except ValueError:
            return False
        if any(p.net == net for p in self.guard.fixed):
            return False
        learnt = Protected(net, why)
        self._learnt.append(learnt)
        self._set_guard([*self.guard.fixed, learnt], "guard-learn")
        return True

    def _set_guard(self, fresh: list[Protected], event: str) -> None:
        if {(p.net, p.why) for p in fresh} == {(p.net, p.why) for p in self.guard.fixed}:
            return
        old = self.guard.fixed
        self.guard.fixed = fresh
        self.sync_allow()
        self.lift_protected(self.clock())
        self.audit.record(
            "controller",
            event,
            detail={
                "added": sorted({str(p.net) for p in fresh} - {str(p.net) for p in old}),
                "removed": sorted({str(p.net) for p in old} - {str(p.net) for p in fresh}),
            },
        )

    # --- decisions ----------------------------------------------------------------------
    def submit_detection(self, det: Detection) -> Decision:
        """Run policy on one detector record and act on the verdict."""
        t0 = time.perf_counter()
        now = self.clock()
        d = self.policy.decide(det, now)
        with self.store.transaction():
            self.audit.record(
                d.actor,
                "decision",
                str(det.attacker),
                decision_id=d.id,
                evidence=det.evidence_id,
                result=d.verdict.value,
                detail={
                    "reason": d.reason,
                    "score": det.score,
                    "confidence": det.confidence,
                    "level": d.level,
                    "autonomy": d.autonomy,
                    "autonomy_from": d.autonomy_from,
                    "risky": list(d.risky),
                    "ttl_s": d.ttl_s,
                },
            )
            if d.verdict is Verdict.PENDING:
                a = self.approvals.open(d, now)
                self.audit.record(
                    "policy",
                    "approval-opened",
                    a.id,
                    decision_id=d.id,
                    evidence=det.evidence_id,
                    result="pending",
                    detail={"expires_at": a.expires_at, "reason": d.reason},
                )
        if d.verdict is Verdict.ACT:
            self._enforce(d, d.actor, evidence=det.evidence_id)
            for observe in self.latency_observers:
                observe(time.perf_counter() - t0)
            self.policy.note_acted(now, len(d.targets()))
        return d

    def _enforce(
        self, d: Decision, actor: str, evidence: str = "", reason: str = ""
    ) -> list[StoredBan]:
        assert d.target is not None

        def audit(result: str, **detail: object) -> None:
            self.audit.record(
                actor,
                "ban",
                str(d.target),
                decision_id=d.id,
                evidence=evidence,
                result=result,
                detail=detail,
            )

        refusal = self.guard.refusal(d.target)  # re-checked at the moment of acting
        if refusal:
            audit("refused", why=refusal)
            raise PolicyRefused(refusal)
        now = self.clock()
        bans = [
            StoredBan(
                t,
                d.action,
                d.id,
                reason or d.reason,
                actor,
                now,
                None if d.ttl_s is None else now + d.ttl_s,
            )
            for t in d.targets()
        ]
        superseded = self._nested_ranges(bans, now, actor, d.id, evidence)
        specs = [BanSpec(b.addr, b.action, d.ttl_s, d.id) for b in bans]
        # a ban that already exists is replaced (removed and re-added in the same commit):
        # its new timeout and decision id must win, and kernels differ on whether
        # re-adding an element refreshes them
        refreshed = [
            (b.addr, b.action)
            for b in bans
            if any(o.action is b.action for o in self.store.get_bans(b.addr))
        ]
        try:
            with self.store.transaction():
                for old in superseded:
                    self.store.delete_ban(old.addr, old.action)
                self.store.put_bans(bans)
                for b in bans:
                    self.store.record_offence(b.addr, now, self.cfg.policy.offender_window_s)
                res = self.enforcer.apply(
                    specs, [(o.addr, o.action) for o in superseded] + refreshed
                )  # raises: rollback
                audit(
                    "ok",
                    action=d.action.value,
                    ttl_s=d.ttl_s,
                    count=len(bans),
                    superseded=[str(o.addr) for o in superseded],
                    backend=self.enforcer.name,
                    elapsed_s=round(res.elapsed_s, 6),
                )
        except EnforcementError as exc:
            audit("error", error=str(exc))
            raise
        return bans

    def _nested_ranges(
        self, bans: list[StoredBan], now: float, actor: str, did: str, evidence: str
    ) -> list[StoredBan]:
        """Interval sets refuse overlapping entries, and CIDRs either nest or are apart:
        a range inside an existing range ban is refused as already banned; existing range
        bans inside a new, wider one are replaced by it (same transaction)."""
        out: list[StoredBan] = []
        for b in bans:
            if not is_range(b.addr):
                continue
            new = as_network(b.addr)
            for old in self.store.active_bans(now):
                if not is_range(old.addr) or old.addr == b.addr or old.addr.version != new.version:
                    continue
                old_net = as_network(old.addr)
                if old_net.supernet_of(new):  # type: ignore[arg-type]
                    why = f"{new} is already banned as part of {old_net} ({old.decision_id})"
                    self.audit.record(
                        actor,
                        "ban",
                        str(new),
                        decision_id=did,
                        evidence=evidence,
                        result="refused",
                        detail={"why": why},
                    )
                    raise PolicyRefused(why)
                if new.supernet_of(old_net):  # type: ignore[arg-type]
                    out.append(old)
        return out

    # --- operator actions -----------------------------------------------------------------
    def ban(
        self, addr: str, ttl_s: float | None, reason: str, actor: str, action: Action = Action.DROP
    ) -> Decision:
        """An operator's ban of an address or a range; anti-lockout still applies."""
        t = _target(addr)
        ttl_s = check_ttl(ttl_s)  # finite, positive, bounded (NaN would be a permanent ban)
        if is_range(t) and action is not Action.DROP:
            raise ConfigError("a range can be dropped, not rate-limited")
        net = as_network(t)
        d = Decision(
            new_decision_id(),
            Verdict.ACT,
            reason or "operator ban",
            net,
            action,
            ttl_s,
            3,
            (),
            None,
            actor,
        )
        refusal = self.policy.check_operator(net)
        if refusal:
            self.audit.record(
                actor,
                "ban",
                str(t),
                decision_id=d.id,
                evidence="operator",
                result="refused",
                detail={"why": refusal, "reason": reason},
            )
            raise PolicyRefused(refusal)
        self._enforce(d, actor, evidence="operator", reason=reason or "operator ban")
        return d

    def unban(self, addr: str, actor: str) -> int:
        a = _target(addr)
        with self.store.transaction():
            gone = self.store.delete_ban(a)
            # remove from every set even if the store did not know it: an operator's unban
            # must also clear a stray kernel element
            self.enforcer.apply(
                remove=[(a, Action.DROP)] if is_range(a) else [(a, act) for act in Action]
            )
            self.audit.record(
                actor,
                "unban",
                str(a),
                decision_id=",".join(b.decision_id for b in gone),
                result="ok",
                detail={"removed": len(gone)},
            )
        return len(gone)

    def covering_ranges(self, addr: str, now: float) -> list[str]:
        """Range bans that still cover ``addr`` (an unban of one address does not cut a
        hole in a range: the operator is told which range to lift instead)."""
        net = as_network(_target(addr))
        return [
            str(b.addr)
            for b in self.store.active_bans(now)
            if is_range(b.addr)
            and b.addr != _target(addr)
            and b.addr.version == net.version
            and as_network(b.addr).supernet_of(net)  # type: ignore[arg-type]
        ]

    def allow_add(self, cidr: str, note: str, actor: str, force: bool = False) -> dict[str, Any]:
        net = _net(cidr)
        check_allow(net, force)  # 0.0.0.0/0 would lift every ban: needs force
        now = self.clock()
        with self.store.transaction():
            added = self.store.add_allow(net, note, now)
            self.guard.allow = [n for n, _, _ in self.store.allow_list()]
            try:
                self.sync_allow()
            except EnforcementError:
                self.guard.allow = [n for n in self.guard.allow if n != net]
                raise
            lifted = self.lift_protected(now)  # the allow-list wins over stored bans
            self.audit.record(
                actor,
                "allow-add",
                str(net),
                result="ok" if added else "unchanged",
                detail={"note": note, "lifted": [str(b.addr) for b in lifted]},
            )
        return {"cidr": str(net), "added": added, "lifted": [str(b.addr) for b in lifted]}

    def allow_remove(self, cidr: str, actor: str) -> dict[str, Any]:
        net = _net(cidr)
        with self.store.transaction():
            removed = self.store.remove_allow(net)
            if not removed:
                raise ControlError(f"{net} is not on the allow-list")
            self.guard.allow = [n for n, _, _ in self.store.allow_list()]
            self.sync_allow()
            self.audit.record(actor, "allow-remove", str(net), result="ok")
        return {"cidr": str(net), "removed": True}

    def allow_entries(self) -> list[dict[str, str]]:
        user = [
            {"cidr": str(n), "source": "operator", "note": note}
            for n, note, _ in self.store.allow_list()
        ]
        fixed = [{"cidr": str(p.net), "source": p.why, "note": ""} for p in self.guard.fixed]
        return user + fixed

    def resolve_approval(self, approval_id: str, approve: bool, actor: str) -> dict[str, Any]:
        now = self.clock()
        with self.store.transaction():
            a, d = self.approvals.resolve(approval_id, approve, actor, now)
            self.audit.record(
                actor,
                "approved" if approve else "denied",
                approval_id,
                decision_id=d.id,
                result="ok",
            )
        out: dict[str, Any] = {"id": approval_id, "status": "approved" if approve else "denied"}
        if approve:
            try:
                bans = self._enforce(
                    d,
                    actor,
                    evidence=d.detection.evidence_id if d.detection else "approval",
                    reason=f"approved: {a.reason}",
                )
            except PolicyRefused:
                # e.g. allow-listed since it was proposed: the approval must not read "approved"
                self.store.set_approval_status(approval_id, "refused", actor, self.clock())
                raise
            out["banned"] = [str(b.addr) for b in bans]
        return out
