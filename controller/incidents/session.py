"""Triage on a state dir: in a replay (through a dry-run controller, as a live one would),
and for operator commands when no controller is running.

``replay_triage`` builds a ``Controller`` on the state dir with the dry-run backend and
a clock that follows capture time, and feeds it the replay's alerts in detection order:
the same pipeline (feedback, incidents, copilot, policy, escalation in dry run) and the
same tables a live controller fills. ``offline`` opens the state dir for an operator
command: the controller's lock is taken first, so a controller cannot start mid-command,
and a running controller is reached through its control socket instead.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from controller.detect.alert import Alert
from controller.incidents import config as tconfig
from controller.incidents.escalate import Escalator
from controller.incidents.triage import Triage
from netwarden.errors import ConfigError


def replay_triage(alerts: list[Alert], state_dir: str | Path, config_path: str | None,
                  end_time: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Alerts of one replay into the state dir; returns the per-alert records, the
    incidents this replay touched, what policy decided and what was escalated."""
    from controller import config as ccfg
    from controller.app import Controller

    cfg = ccfg.load(config_path, enforce="dryrun", state_dir=str(state_dir))
    tcfg = tconfig.load(config_path)
    ordered = sorted(alerts, key=lambda a: (a.detected_at, a.kind, a.attacker or "", a.victims))
    clock = [ordered[0].detected_at if ordered else (end_time or time.time())]
    ctl = Controller(cfg, clock=lambda: clock[0])
    try:
        ctl.start(control=False)
        tri = Triage(ctl.store, ctl.audit, tcfg, submit=ctl.submit_detection,
                     escalator=Escalator(tcfg.escalation, dry_run=True))  # fmt: skip
        esc_before = len(tri.istore.escalations())
        records: list[dict[str, Any]] = []
        # The alerts of one detection tick (one detection time) are one batch, as live.
        for _, batch in itertools.groupby(ordered, key=lambda a: a.detected_at):
            group = list(batch)
            clock[0] = max(clock[0], group[0].detected_at)
            records.extend(tri.process(group))
            tri.tick(clock[0])
        if end_time is not None:
            clock[0] = max(clock[0], end_time)
        tri.tick(clock[0])
        touched = list(dict.fromkeys(r["incident_id"] for r in records if r.get("incident_id")))
        incidents: list[Any] = []
        for iid in touched:
            inc = tri.istore.get_incident(iid)
            while inc is not None and inc.merged_into:
                inc = tri.istore.get_incident(inc.merged_into)
            if inc is not None and inc.id not in {i.id for i in incidents}:
                incidents.append(inc)
        decisions = [
            dict(a, incident=i.id)
            for i in incidents
            for a in i.actions
            if a.get("kind") == "decision"
        ]
        return {
            "records": records,
            "incidents": incidents,
            "decisions": decisions,
            "escalations": tri.istore.escalations()[esc_before:],
            "suppressed": tri.suppressed,
            "failed": tri.failed,
            "backend": ctl.enforcer.name,
        }
    finally:
        ctl.close()


@contextlib.contextmanager
def offline(state_dir: str | Path, config_path: str | None = None) -> Iterator[Triage]:
    """A ``Triage`` on the state dir of a stopped controller or of a replay."""
    from controller.state.audit import AuditLog
    from controller.state.files import StateLock
    from controller.state.store import DB_NAME, Store

    d = Path(state_dir)
    if not (d / DB_NAME).is_file():
        raise ConfigError(
            f"no NetWarden state in {d} (run a controller or `netwarden replay ... --state-dir {d}`)"
        )
    lock = StateLock(d)
    try:
        store = Store(d)
        try:
            audit = AuditLog(store.db, d, store=store)
            yield Triage(store, audit, tconfig.load(config_path))
        finally:
            store.close()
    finally:
        lock.release()
