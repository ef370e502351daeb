"""Captures through the detection stack the way ``netwarden replay`` does: capture time,
records handed over as they are made.

A replay is recorded once per process (``record_events``: the record batches and clock
advances a sink saw); running a stack over the recording (``run_events``) gives the same
alerts as a replay feeding the stack directly, so evaluating, tuning and simulating
several configurations costs one replay per capture.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.detect import Alert, DetectionStack, build

Event = tuple[str, Any]  # ("obs", (record_type, batch)) or ("adv", now_ns)


@dataclass
class Run:
    alerts: list[Alert]
    t_first: float  # capture time of the first packet, epoch seconds
    errors: dict[str, int] = field(default_factory=dict)
    warm_alerts: list[Alert] = field(default_factory=list)
    t_last: float = 0.0  # capture time of the last packet

    @property
    def hours(self) -> float:
        """The capture's span in hours, at least one (a short capture is not scaled up)."""
        return max(1.0, (self.t_last - self.t_first) / 3600)


@dataclass(frozen=True)
class Recording:
    events: tuple[Event, ...]
    t_first: float
    t_last: float

    def batches(self, record_type: str) -> list[Any]:
        return [b for what, arg in self.events if what == "obs" and arg[0] == record_type
                for b in [arg[1]]]  # fmt: skip


def _replay(paths: list[str], backend: str | None, sink: Any) -> dict[str, int]:
    from sensor.export.replay_summary import _run

    _, counts, _, fault = _run(paths, backend, 1.0, sink, keep=())  # the sink has them all
    if fault is not None:
        raise fault
    return counts


@functools.cache
def record(paths: tuple[str, ...], backend: str | None = "c") -> Recording:
    """The record batches and clock advances a replay of ``paths`` (one stream) hands a
    sink, with the capture's first and last packet times (cached per process)."""
    events: list[Event] = []

    class Rec:
        @staticmethod
        def observe(kind: str, batch: Any) -> None:
            events.append(("obs", (kind, batch.copy())))

        @staticmethod
        def advance(now_ns: int) -> None:
            events.append(("adv", now_ns))

    counts = _replay(list(paths), backend, Rec())
    return Recording(tuple(events), counts.get("t_first", 0) / 1e9, counts.get("t_last", 0) / 1e9)


def record_events(path: str, backend: str | None = "c") -> tuple[Event, ...]:
    """The recorded events of one capture (cached)."""
    return record((str(path),), backend).events


class AlertSink:
    """A replay's record sink that runs a stack and keeps the alerts it raises."""

    def __init__(self, stack: DetectionStack) -> None:
        self.stack = stack
        self.alerts: list[Alert] = []
        self.observe = stack.observe

    def advance(self, now_ns: int) -> None:
        self.alerts.extend(self.stack.advance(now_ns))


def new_stack(thresholds: dict[str, float] | None = None, **stack_kw: Any) -> DetectionStack:
    """A fresh stack of every registered detector."""
    return DetectionStack(build(), thresholds=thresholds, **stack_kw)


def feed(stack: Any, events: Iterable[Event]) -> list[Alert]:
    """``events`` through ``stack`` (a stack or one detector); the alerts it raised."""
    alerts: list[Alert] = []
    for what, arg in events:
        if what == "obs":
            stack.observe(*arg)
        else:
            alerts += stack.advance(arg)
    return alerts


def run_events(rec: Recording, thresholds: dict[str, float] | None = None,
               warm: tuple[Event, ...] = (), **stack_kw: Any) -> Run:  # fmt: skip
    """A recorded replay through a fresh stack (after it learnt from ``warm``)."""
    stack = new_stack(thresholds, **stack_kw)
    warm_alerts = feed(stack, warm)
    alerts = feed(stack, rec.events)
    return Run(alerts, rec.t_first, dict(stack.errors), warm_alerts, rec.t_last)


def _key(thresholds: dict[str, float] | None) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((thresholds or {}).items()))


@functools.cache
def _cached_run(paths: tuple[str, ...], backend: str | None,
                key: tuple[tuple[str, float], ...]) -> Run:  # fmt: skip
    return run_events(record(paths, backend), dict(key))


def replay_run(paths: Iterable[str | Path], thresholds: dict[str, float] | None = None,
               backend: str | None = "c") -> Run:  # fmt: skip
    """``paths`` as one stream through a fresh stack (recording and result cached per
    process: the corpus tests and ``netwarden eval`` in one test run replay once)."""
    return _cached_run(tuple(str(p) for p in paths), backend, _key(thresholds))


def run_captures(
    paths: list[str | Path],
    backend: str | None = "c",
    warm: tuple[Event, ...] = (),
    **stack_kw: Any,
) -> Run:
    """All of ``paths`` as one stream through a fresh stack of every registered detector,
    fed live by the sensor pipeline, after the stack has learnt from the recorded records
    ``warm`` (alerts raised while warming are kept in ``Run.warm_alerts``)."""
    stack = new_stack(**stack_kw)
    warm_alerts = feed(stack, warm)
    sink = AlertSink(stack)
    counts = _replay([str(p) for p in paths], backend, sink)
    return Run(sink.alerts, counts.get("t_first", 0) / 1e9, dict(stack.errors), warm_alerts,
               counts.get("t_last", 0) / 1e9)  # fmt: skip
