"""The controller's composition root: builds the parts, wires them, starts and stops them.

    ingest (bus -> archive -> stages) ─┐
    operators (control socket, ops) ───┼─> Responder (policy -> store + audit -> kernel)
    detectors (stages, next issue) ────┘        Reconciler (kernel == store), Loop

Parts, each with a narrow interface:

- ``Loop`` (``controller.loop``): the selector, periodic tasks, signals.
- ``Store`` / ``AuditLog`` (``controller.state``): the database (with migrations) and the
  hash-chained audit log, in a state dir locked by ``StateLock`` before anything is opened.
- ``Responder`` / ``Reconciler`` (``controller.response``): decisions, operator actions,
  anti-lockout; keeping the kernel equal to the store.
- ``Operations`` + ``ControlServer`` (``controller.ops``): one registry of control
  operations, served without blocking the loop.
- ``Ingest`` (``controller.ingest``): sensor batches from the bus, archived, then handed to
  the registered stages.

Where a detection stage plugs in: ``Controller.add_stage(name, consumer)`` hands it every
ingested batch (in-process ``Ingest.add_consumer`` underneath), ``Controller.add_periodic``
advances it on time, and it reports through ``Controller.submit_detection``; its control
operations go to ``Controller.add_op``, and ``Controller.at_close`` saves its state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from controller.config import ControllerConfig
from controller.loop import Loop
from controller.ops.operations import register_response_ops
from controller.ops.registry import Operation, Operations
from controller.ops.server import ControlServer
from controller.response.enforce.base import Enforcer
from controller.response.policy import Guard
from controller.response.reconcile import Reconciler, ReconcileReport
from controller.response.responder import Responder
from controller.state.audit import AuditLog
from controller.state.files import StateLock, prepare_state_dir
from controller.state.store import Store

if TYPE_CHECKING:  # ingest pulls in ZeroMQ: imported when a controller listens
    from controller.ingest.ingest import Consumer, Ingest

__all__ = ["GUARD_REFRESH_S", "Controller", "ReconcileReport", "make_enforcer"]

#: how often the box's own addresses and gateways are re-read for anti-lockout
GUARD_REFRESH_S = 30.0


def make_enforcer(cfg: ControllerConfig, netns: str | None = None) -> Enforcer:
    if cfg.enforce == "nftables":
        from controller.response.enforce.nftables import NftablesEnforcer

        return NftablesEnforcer(
            cfg.hook,
            priority=cfg.priority,
            limit_rate=cfg.limit_rate,
            limit_burst=cfg.limit_burst,
            netns=netns,
        )
    if cfg.enforce == "iptables":
        from controller.response.enforce.iptables import IptablesEnforcer

        return IptablesEnforcer(
            cfg.hook, limit_rate=cfg.limit_rate, limit_burst=cfg.limit_burst, netns=netns
        )
    from controller.response.enforce.dryrun import DryRunEnforcer

    return DryRunEnforcer(cfg.state_dir)


class Controller:
    """Owns the parts; its methods are the parts' own (bound), so callers (the CLI, tests,
    future components) talk to one object without it holding any logic."""

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
        state_dir = prepare_state_dir(cfg.state_dir)
        self.lock = StateLock(state_dir)  # a second controller stops here, before writing anything
        opened: list[Callable[[], None]] = [self.lock.release]
        try:
            self.store = Store(state_dir)
            opened.append(self.store.close)
            self.audit = AuditLog(self.store.db, state_dir, store=self.store)
            self.enforcer = enforcer if enforcer is not None else make_enforcer(cfg)
        except BaseException:
            for undo in reversed(opened):
                undo()
            raise
        self.responder = Responder(cfg, self.store, self.audit, self.enforcer, guard, clock)
        self.reconciler = Reconciler(self.responder)
        self.loop = Loop(clock)
        self.ops = Operations()
        register_response_ops(self.ops, self.responder)
        self.control: ControlServer | None = None
        self.ingest: Ingest | None = None
        self._stages: list[tuple[str, Consumer]] = []
        self._on_close: list[Callable[[], None]] = []
        self._started = False

        r = self.responder  # the operations callers use, straight from the part that owns them
        self.guard, self.policy, self.approvals = r.guard, r.policy, r.approvals
        self.submit_detection, self.ban, self.unban = r.submit_detection, r.ban, r.unban
        self.allow_add, self.allow_remove, self.resolve_approval = (
            r.allow_add,
            r.allow_remove,
            r.resolve_approval,
        )
        self.covering_ranges, self.protect, self.refresh_guard = (
            r.covering_ranges,
            r.protect,
            r.refresh_guard,
        )
        self.reconcile, self.resync, self.tick = (
            self.reconciler.reconcile,
            self.reconciler.resync,
            self.reconciler.tick,
        )
        self.add_reader, self.remove_reader = self.loop.add_reader, self.loop.remove_reader
        self.call_soon = self.loop.call_soon
        self.add_periodic, self.run, self.stop = (
            self.loop.add_periodic,
            self.loop.run,
            self.loop.stop,
        )
        self.handle = self.ops.dispatch

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, control: bool = True) -> ReconcileReport:
        """Set up the backend, load the allow-list, reconcile kernel bans with the store,
        then serve the control socket (``control``) and schedule the periodic tasks."""
        if control:
            self.control = ControlServer(self.cfg.state_dir, self.ops.dispatch)
        self.enforcer.setup()
        self.responder.sync_allow()
        report = self.reconciler.reconcile()
        self.reconciler.restore_breaker()
        if self.control is not None:
            self.control.attach(self.loop)
        self.audit.record(
            "controller",
            "start",
            self.enforcer.name,
            detail={
                "hook": self.cfg.hook.value,
                "pid": os.getpid(),
                "reconcile": report.as_dict(),
                "audit_mirror_healed": self.audit.mirror_healed,
                "store_migrated": self.store.migrated,
            },
        )
        self._started = True
        self.loop.add_periodic(self.cfg.tick_s, self.reconciler.tick)
        self.loop.add_periodic(self.cfg.resync_s, self.reconciler.resync)
        if self.responder.discover_guard:
            self.loop.add_periodic(GUARD_REFRESH_S, self.responder.refresh_guard)
        return report

    def close(self) -> None:
        """Stop serving; kernel bans stay in place so a restart reconciles."""
        for fn in reversed(self._on_close):
            fn()
        self._on_close = []
        if self.control is not None:
            self.control.close()
            self.control = None
        if self._started:
            self.audit.record("controller", "stop", self.enforcer.name)
            self._started = False
        self.enforcer.close()
        self.loop.close()
        self.store.close()
        self.lock.release()

    # --- extension points ---------------------------------------------------------------
    def add_op(self, name: str, fn: Operation) -> None:
        """Serve a control-socket operation ``name`` with ``fn(args, actor)``."""
        self.ops.add(name, fn)

    def at_close(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the controller closes, before the store does (latest first):
        e.g. a detection stage saving its learnt state."""
        self._on_close.append(fn)

    def add_stage(self, name: str, consumer: Consumer) -> None:
        """Hand every ingested batch (after the archive) to ``consumer``: the place a
        detection stage plugs in. Registered before or after ``attach_ingest``."""
        self._stages.append((name, consumer))
        if self.ingest is not None:
            self.ingest.add_consumer(name, consumer)

    def attach_ingest(
        self,
        listen: list[str],
        *,
        curve_keys: str | None = None,
        archive: Path | None = None,
        archive_hours: float = 24 * 7,
        archive_max_bytes: int | None = None,
    ) -> Ingest:
        """Sensor batches into the same loop: collector fd + tick, archive (``archive`` is
        its root, None for no archive), the registered stages, the ``ingest`` operation."""
        from controller.ingest.archive import RecordArchive
        from controller.ingest.ingest import Ingest
        from netwarden.bus.collector import Collector, CurveServerKeys

        curve = CurveServerKeys.from_dir(curve_keys) if curve_keys else None
        collector = Collector(listen, curve=curve)
        self.at_close(collector.close)
        archive_kw = {} if archive_max_bytes is None else {"max_bytes": archive_max_bytes}
        ingest = Ingest(
            collector,
            None
            if archive is None
            else RecordArchive(archive, retention_hours=archive_hours, **archive_kw),
        )
        for name, consumer in self._stages:
            ingest.add_consumer(name, consumer)
        ingest.attach(self)
        self.ops.add("ingest", lambda _args, _actor: ingest.status())
        if ingest.archive is not None:  # top talkers from the archive, buffered records included
            from netwarden.top import top_op

            arch, state_dir = ingest.archive, self.cfg.state_dir
            self.ops.add("top", lambda args, _actor: top_op(state_dir, arch, args))
        self.ingest = ingest
        return ingest
