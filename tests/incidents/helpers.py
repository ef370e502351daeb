"""Helpers: a capture-time clock, a dry-run controller on a state dir, its triage pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.app import Controller
from controller.config import ControllerConfig, PolicyConfig, SafetyConfig
from controller.incidents.config import TriageConfig
from controller.incidents.escalate import Escalator
from controller.incidents.triage import Triage
from controller.response.policy import Guard
from tests.incidents.alerts import T0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_controller(state: Path, clock: Clock, **policy: Any) -> Controller:
    cfg = ControllerConfig(enforce="dryrun", state_dir=state, policy=PolicyConfig(**policy),
                           safety=SafetyConfig(discover_local=False))  # fmt: skip
    ctl = Controller(cfg, guard=Guard(), clock=clock)
    ctl.start(control=False)
    return ctl


def make_triage(ctl: Controller, cfg: TriageConfig | None = None, clock: Clock | None = None,
                escalator: Escalator | None = None) -> Triage:  # fmt: skip
    return Triage(ctl.store, ctl.audit, cfg or TriageConfig(), submit=ctl.submit_detection,
                  wall=clock or (lambda: T0), escalator=escalator)  # fmt: skip
