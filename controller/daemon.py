"""The response controller: policy + enforcer + store + audit + control socket.

``Controller.start()`` sets up the backend, loads the allow-list into the kernel and
reconciles kernel bans with the store (re-adds missing ones with their remaining time,
removes expired or unknown ones, leaves matching ones alone: no unban/reban storm).
``submit_detection()`` is the entry point for detectors; ``run()`` is the main loop, a
selector over the control socket plus any fds and periodic callbacks other components
register (``add_reader``, ``add_periodic``), e.g. a ZeroMQ collector.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.approvals import Approvals
from controller.audit import AuditLog
from controller.config import ControllerConfig
from controller.control import ControlServer
from controller.detection import Detection
from controller.enforce.base import (
    Action,
    BanSpec,
    Enforcer,
    IPNetwork,
    Target,
    as_network,
    is_range,
    target,
)
from controller.policy import (
    Decision,
    Guard,
    Policy,
    Protected,
    Verdict,
    build_guard,
    new_decision_id,
)
from controller.store import Store, StoredBan
from controller.targets import check_allow, check_ttl
from netwarden.errors import ConfigError, ControlError, EnforcementError, PolicyRefused

log = logging.getLogger(__name__)
#: how often the box's own addresses and gateways are re-read for anti-lockout
GUARD_REFRESH_S = 30.0


def make_enforcer(cfg: ControllerConfig, netns: str | None = None) -> Enforcer:
    if cfg.enforce == "nftables":
        from controller.enforce.nftables import NftablesEnforcer

        return NftablesEnforcer(
            cfg.hook, priority=cfg.priority, limit_rate=cfg.limit_rate, limit_burst=cfg.limit_burst, netns=netns
        )
    if cfg.enforce == "iptables":
        from controller.enforce.iptables import IptablesEnforcer

        return IptablesEnforcer(cfg.hook, limit_rate=cfg.limit_rate, limit_burst=cfg.limit_burst, netns=netns)
    from controller.enforce.dryrun import DryRunEnforcer

    return DryRunEnforcer(cfg.state_dir)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    kept: int
    readded: int
    removed: int
    expired: int


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


class Controller:
    def __init__(
        self,
        cfg: ControllerConfig,
        *,
        enforcer: Enforcer | None = None,
        guard: Guard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = Store(cfg.state_dir)
        self.audit = AuditLog(self.store.db, cfg.state_dir, store=self.store)
        self.enforcer = enforcer if enforcer is not None else make_enforcer(cfg)
        self._own_guard = guard is None
        self._learnt: list[Protected] = []  # protected at run time (connected sensors)
        self.guard = guard if guard is not None else build_guard(cfg.safety)
        self.guard.allow = [n for n, _, _ in self.store.allow_list()]
        window = cfg.policy.offender_window_s
        self.policy = Policy(cfg.policy, self.guard, lambda a: self.store.offences(a, self.clock(), window))
        self.approvals = Approvals(self.store, cfg.policy.approval_ttl_s)
        self.control: ControlServer | None = None
        self._sel = selectors.DefaultSelector()
        self._periodic: list[list[Any]] = []  # [interval, next_due, callback]
        self._ops: dict[str, Callable[[dict[str, Any], str], Any]] = {}
        self._stop = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, control: bool = True) -> ReconcileReport:
        if control:  # first: refuses to run beside a live controller before touching the kernel
            self.control = ControlServer(self.cfg.state_dir, self.handle)
        self.enforcer.setup()
        self._sync_allow()
        report = self.reconcile()
        # the circuit breaker survives a restart: count the last minute's automatic bans
        now = self.clock()
        for b in self.store.active_bans(now):
            if b.actor.startswith("detector:") and b.created > now - 60.0:
                self.policy.note_acted(b.created)
        if self.control is not None:
            self.add_reader(self.control.fileno(), self.control.on_readable)
        self.audit.record(
            "controller", "start", self.enforcer.name,
            detail={"hook": self.cfg.hook.value, "pid": os.getpid(), "reconcile": _rep(report),
                    "audit_mirror_healed": self.audit.mirror_healed},
        )
        self.add_periodic(self.cfg.tick_s, self.tick)
        self.add_periodic(self.cfg.resync_s, self.resync)
        if self._own_guard and self.cfg.safety.discover_local:
            self.add_periodic(GUARD_REFRESH_S, self.refresh_guard)
        return report

    def close(self) -> None:
        """Stop serving; kernel bans stay in place so a restart reconciles."""
        if self.control is not None:
            self.control.close()
            self.control = None
        self.audit.record("controller", "stop", self.enforcer.name)
        self.enforcer.close()
        self._sel.close()
        self.store.close()

    # --- extension points ---------------------------------------------------------------
    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._sel.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        self._sel.unregister(fd)

    def add_op(self, name: str, fn: Callable[[dict[str, Any], str], Any]) -> None:
        """Serve a control-socket operation ``name`` with ``fn(args, actor)`` (extensions
        such as ingest status)."""
        self._ops[name] = fn

    def add_periodic(self, interval_s: float, callback: Callable[[], None]) -> None:
        self._periodic.append([interval_s, self.clock() + interval_s, callback])

    def stop(self) -> None:
        self._stop = True
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def run(self, install_signals: bool = True, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM or ``stop()``; ``on_ready`` runs once signals are
        handled (so a supervisor that signals right after "ready" gets a clean stop)."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.add_reader(self._wake_r.fileno(), self._drain_wake)
        old: dict[int, Any] = {}
        if install_signals:
            signal.set_wakeup_fd(self._wake_w.fileno())
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, lambda *_: setattr(self, "_stop", True))
        if on_ready is not None:
            on_ready()
        try:
            while not self._stop:
                now = self.clock()
                due = min((p[1] for p in self._periodic), default=now + 1.0)
                for key, _ in self._sel.select(timeout=max(0.0, min(due - now, 1.0))):
                    try:
                        key.data()
                    except Exception:  # one bad source must not kill the controller
                        log.exception("reader callback failed")
                now = self.clock()
                for p in self._periodic:
                    if now >= p[1]:
                        p[1] = now + p[0]
                        try:
                            p[2]()
                        except Exception:
                            log.exception("periodic callback failed")
        finally:
            if install_signals:
                signal.set_wakeup_fd(-1)
                for sig, handler in old.items():
                    signal.signal(sig, handler)
            self.remove_reader(self._wake_r.fileno())
            self._wake_r.close()
            self._wake_w.close()
            self._wake_r = self._wake_w = None

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(512):
                pass
        except BlockingIOError:
            pass

    # --- reconciliation and expiry ------------------------------------------------------
    def reconcile(self, quiet: bool = False) -> ReconcileReport:
        """Make the kernel match the store; ``quiet`` audits only when something changed."""
        now = self.clock()
        expired = self.store.pop_expired(now)
        for b in expired:
            self.audit.record("controller", "expire", str(b.addr), decision_id=b.decision_id, detail={"action": b.action.value})
        active = {(b.addr, b.action): b for b in self.store.active_bans(now)}
        # anti-lockout wins over stored bans too (e.g. the box got a new address)
        for key, b in list(active.items()):
            refusal = self.guard.refusal(as_network(b.addr))
            if refusal:
                self.store.delete_ban(b.addr, b.action)
                del active[key]
                self.audit.record("controller", "unban", str(b.addr), decision_id=b.decision_id, result="ok", detail={"why": refusal})
        kernel = {(k.addr, k.action): k for k in self.enforcer.list_bans()}
        # a dump can miss elements (hash set resizing); look those up before re-adding
        absent = [key for key in active if key not in kernel]
        confirmed = self.enforcer.confirm(absent) if absent else set()
        readd = [
            BanSpec(b.addr, b.action, None if b.expires_at is None else max(1.0, b.expires_at - now), b.decision_id)
            for key, b in active.items()
            if key not in kernel and key not in confirmed
        ]
        unknown = [key for key in kernel if key not in active]
        if readd or unknown:
            self.enforcer.apply(readd, unknown)
        report = ReconcileReport(len(active) - len(readd), len(readd), len(unknown), len(expired))
        if not quiet or readd or unknown or expired:
            self.audit.record("controller", "reconcile", self.enforcer.name, detail=_rep(report))
        return report

    def resync(self) -> ReconcileReport:
        """Heal outside interference (``nft flush ruleset``, a deleted ipset): re-create our
        objects, reload the allow-list, reconcile. Cheap when nothing changed."""
        if self.enforcer.ensure():
            self.audit.record("controller", "repair", self.enforcer.name, detail={"why": "firewall objects missing or altered"})
        self._sync_allow()
        return self.reconcile(quiet=True)

    def tick(self) -> None:
        now = self.clock()
        with self.store.transaction():
            for b in self.store.pop_expired(now):  # the kernel expired its element itself
                self.audit.record("controller", "expire", str(b.addr), decision_id=b.decision_id, detail={"action": b.action.value})
            for a in self.approvals.expire(now):
                self.audit.record("controller", "approval-expired", a.id, decision_id=a.id)

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
        self._sync_allow()
        now = self.clock()
        with self.store.transaction():  # bans on what is now protected are lifted
            for b in self.store.active_bans(now):
                refusal = self.guard.refusal(as_network(b.addr))
                if refusal:
                    self.store.delete_ban(b.addr, b.action)
                    self.enforcer.apply(remove=[(b.addr, b.action)])
                    self.audit.record("controller", "unban", str(b.addr), decision_id=b.decision_id,
                                      detail={"why": refusal})
        self.audit.record("controller", event, detail={
            "added": sorted({str(p.net) for p in fresh} - {str(p.net) for p in old}),
            "removed": sorted({str(p.net) for p in old} - {str(p.net) for p in fresh}),
        })

    def _sync_allow(self) -> None:
        self.enforcer.set_allow(self.guard.kernel_allow())

    # --- decisions ----------------------------------------------------------------------
    def submit_detection(self, det: Detection) -> Decision:
        """Run policy on one detector record and act on the verdict."""
        now = self.clock()
        d = self.policy.decide(det, now)
        with self.store.transaction():
            self.audit.record(
                d.actor, "decision", str(det.attacker), decision_id=d.id, evidence=det.evidence_id,
                result=d.verdict.value, detail={"reason": d.reason, "score": det.score, "confidence": det.confidence,
                                                "level": d.level, "risky": list(d.risky), "ttl_s": d.ttl_s},
            )
            if d.verdict is Verdict.PENDING:
                a = self.approvals.open(d, now)
                self.audit.record("policy", "approval-opened", a.id, decision_id=d.id, evidence=det.evidence_id,
                                  result="pending", detail={"expires_at": a.expires_at, "reason": d.reason})
        if d.verdict is Verdict.ACT:
            self._enforce(d, d.actor, evidence=det.evidence_id)
            self.policy.note_acted(now, len(d.targets()))
        return d

    def _enforce(self, d: Decision, actor: str, evidence: str = "", reason: str = "") -> list[StoredBan]:
        assert d.target is not None
        refusal = self.guard.refusal(d.target)  # re-checked at the moment of acting
        if refusal:
            self.audit.record(actor, "ban", str(d.target), decision_id=d.id, evidence=evidence, result="refused",
                              detail={"why": refusal})
            raise PolicyRefused(refusal)
        now = self.clock()
        bans = [
            StoredBan(t, d.action, d.id, reason or d.reason, actor, now, None if d.ttl_s is None else now + d.ttl_s)
            for t in d.targets()
        ]
        superseded = self._nested_ranges(bans, now, actor, d.id, evidence)
        specs = [BanSpec(b.addr, b.action, d.ttl_s, d.id) for b in bans]
        # a ban that already exists is replaced (removed and re-added in the same commit):
        # its new timeout and decision id must win, and kernels differ on whether
        # re-adding an element refreshes them
        refreshed = [(b.addr, b.action) for b in bans if any(o.action is b.action for o in self.store.get_bans(b.addr))]
        try:
            with self.store.transaction():
                for old in superseded:
                    self.store.delete_ban(old.addr, old.action)
                self.store.put_bans(bans)
                for b in bans:
                    self.store.record_offence(b.addr, now, self.cfg.policy.offender_window_s)
                res = self.enforcer.apply(specs, [(o.addr, o.action) for o in superseded] + refreshed)  # raises: rollback
                self.audit.record(actor, "ban", str(d.target), decision_id=d.id, evidence=evidence, result="ok",
                                  detail={"action": d.action.value, "ttl_s": d.ttl_s, "count": len(bans),
                                          "superseded": [str(o.addr) for o in superseded],
                                          "backend": self.enforcer.name, "elapsed_s": round(res.elapsed_s, 6)})
        except EnforcementError as exc:
            self.audit.record(actor, "ban", str(d.target), decision_id=d.id, evidence=evidence, result="error",
                              detail={"error": str(exc)})
            raise
        return bans

    def _nested_ranges(self, bans: list[StoredBan], now: float, actor: str, did: str, evidence: str) -> list[StoredBan]:
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
                    self.audit.record(actor, "ban", str(new), decision_id=did, evidence=evidence, result="refused",
                                      detail={"why": why})
                    raise PolicyRefused(why)
                if new.supernet_of(old_net):  # type: ignore[arg-type]
                    out.append(old)
        return out

    # --- operator operations --------------------------------------------------------------
    def ban(self, addr: str, ttl_s: float | None, reason: str, actor: str, action: Action = Action.DROP) -> Decision:
        """An operator's ban of an address or a range; anti-lockout still applies."""
        t = _target(addr)
        ttl_s = check_ttl(ttl_s)  # finite, positive, bounded (NaN would be a permanent ban)
        if is_range(t) and action is not Action.DROP:
            raise ConfigError("a range can be dropped, not rate-limited")
        net = as_network(t)
        d = Decision(new_decision_id(), Verdict.ACT, reason or "operator ban", net, action, ttl_s, 3, (), None, actor)
        refusal = self.policy.check_operator(net)
        if refusal:
            self.audit.record(actor, "ban", str(t), decision_id=d.id, evidence="operator", result="refused",
                              detail={"why": refusal, "reason": reason})
            raise PolicyRefused(refusal)
        self._enforce(d, actor, evidence="operator", reason=reason or "operator ban")
        return d

    def unban(self, addr: str, actor: str) -> int:
        a = _target(addr)
        with self.store.transaction():
            gone = self.store.delete_ban(a)
            # remove from every set even if the store did not know it: an operator's unban
            # must also clear a stray kernel element
            self.enforcer.apply(remove=[(a, Action.DROP)] if is_range(a) else [(a, act) for act in Action])
            self.audit.record(actor, "unban", str(a), decision_id=",".join(b.decision_id for b in gone),
                              result="ok", detail={"removed": len(gone)})
        return len(gone)

    def covering_ranges(self, addr: str, now: float) -> list[str]:
        """Range bans that still cover ``addr`` (an unban of one address does not cut a
        hole in a range: the operator is told which range to lift instead)."""
        net = as_network(_target(addr))
        return [
            str(b.addr) for b in self.store.active_bans(now)
            if is_range(b.addr) and b.addr != _target(addr) and b.addr.version == net.version
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
                self._sync_allow()
            except EnforcementError:
                self.guard.allow = [n for n in self.guard.allow if n != net]
                raise
            # the allow-list wins: lift stored bans it now covers
            lifted = [
                b for b in self.store.active_bans(now)
                if b.addr.version == net.version and as_network(b.addr).overlaps(net)  # type: ignore[arg-type]
            ]
            if lifted:
                for b in lifted:
                    self.store.delete_ban(b.addr, b.action)
                self.enforcer.apply(remove=[(b.addr, b.action) for b in lifted])
            self.audit.record(actor, "allow-add", str(net), result="ok" if added else "unchanged",
                              detail={"note": note, "lifted": [str(b.addr) for b in lifted]})
        return {"cidr": str(net), "added": added, "lifted": [str(b.addr) for b in lifted]}

    def allow_remove(self, cidr: str, actor: str) -> dict[str, Any]:
        net = _net(cidr)
        with self.store.transaction():
            removed = self.store.remove_allow(net)
            if not removed:
                raise ControlError(f"{net} is not on the allow-list")
            self.guard.allow = [n for n, _, _ in self.store.allow_list()]
            self._sync_allow()
            self.audit.record(actor, "allow-remove", str(net), result="ok")
        return {"cidr": str(net), "removed": True}

    def resolve_approval(self, approval_id: str, approve: bool, actor: str) -> dict[str, Any]:
        now = self.clock()
        with self.store.transaction():
            a, d = self.approvals.resolve(approval_id, approve, actor, now)
            self.audit.record(actor, "approved" if approve else "denied", approval_id, decision_id=d.id, result="ok")
        out: dict[str, Any] = {"id": approval_id, "status": "approved" if approve else "denied"}
        if approve:
            try:
                bans = self._enforce(d, actor, evidence=d.detection.evidence_id if d.detection else "approval",
                                     reason=f"approved: {a.reason}")
            except PolicyRefused:
                # e.g. allow-listed since it was proposed: the approval must not read "approved"
                self.store.set_approval_status(approval_id, "refused", actor, self.clock())
                raise
            out["banned"] = [str(b.addr) for b in bans]
        return out

    # --- control socket -----------------------------------------------------------------------
    def handle(self, op: str, args: dict[str, Any], actor: str) -> Any:
        now = self.clock()
        if op == "ping":
            return {"pid": os.getpid(), "backend": self.enforcer.name, "hook": self.cfg.hook.value}
        if op == "ban":
            d = self.ban(args["addr"], check_ttl(args.get("ttl")), str(args.get("reason", "")), actor,
                         Action(args.get("action", "drop")))
            return {"decision_id": d.id, "addr": str(target(d.target)) if d.target else None, "ttl_s": d.ttl_s}
        if op == "unban":
            removed = self.unban(args["addr"], actor)
            return {"addr": args["addr"], "removed": removed, "covered_by": self.covering_ranges(args["addr"], now)}
        if op == "bans":
            return [b.to_dict(now) for b in self.store.active_bans(now)]
        if op == "kernel-bans":
            return [{"addr": str(k.addr), "action": k.action.value, "remaining_s": k.remaining_s,
                     "decision_id": k.decision_id} for k in self.enforcer.list_bans()]
        if op == "allow-add":
            return self.allow_add(args["cidr"], str(args.get("note", "")), actor, args.get("force") is True)
        if op == "allow-remove":
            return self.allow_remove(args["cidr"], actor)
        if op == "allow-list":
            user = [{"cidr": str(n), "source": "operator", "note": note} for n, note, _ in self.store.allow_list()]
            fixed = [{"cidr": str(p.net), "source": p.why, "note": ""} for p in self.guard.fixed]
            return user + fixed
        if op == "approvals":
            return [a.to_dict() for a in self.approvals.pending(now)]
        if op in ("approve", "deny"):
            return self.resolve_approval(str(args["id"]), op == "approve", actor)
        if op == "detect":
            d = self.submit_detection(Detection.from_dict(args))
            return d.to_dict()
        if op == "audit":
            return self.audit.entries(limit=int(args.get("limit", 50)))
        if op == "verify":
            return _rep(self.audit.verify())
        if op in self._ops:
            return self._ops[op](args, actor)
        raise ControlError(f"unknown operation {op!r}")


def _rep(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}
