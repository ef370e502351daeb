"""The detection stack: registered detectors fed the same record batches.

``DetectionStack`` fans every batch out to its detectors, advances network time, drops
repeats (the same kind, attacker and victims alerted again within ``dedup_s``), isolates
failures (a detector that raises is logged and counted; the others go on) and saves and
loads every detector's state in the state directory, so baselines survive a restart.

The same object runs in-process for ``netwarden replay`` (capture time) and as an ingest
consumer in ``netwarden controller`` (wall time, ``attach``), where each alert with an IP
attacker goes to policy through ``Controller.submit_detection``.

Detectors register with ``@register``; ``discover()`` imports every module of
``controller.detect.detectors`` (and any plugin module named), so adding a detector is
adding a file.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import pkgutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import RECORD_TYPES, Detector, release_joins, share_batch

log = logging.getLogger("netwarden.detect")

#: name -> detector class. Filled by ``@register`` when detector modules are imported.
REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)

STATE_SUBDIR = "detect"
_NDARRAY_EXT = 1


def register(cls: T) -> T:
    """Class decorator: make a detector class available by its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise TypeError(f"{cls.__name__}: a detector needs a non-empty class attribute 'name'")
    other = REGISTRY.get(name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise TypeError(f"detector name {name!r} registered twice ({other!r}, {cls!r})")
    REGISTRY[name] = cls
    return cls


def discover(plugins: Iterable[str] = ()) -> dict[str, type]:
    """Import the built-in detector modules and any named plugin modules; return the
    registry."""
    import controller.detect.detectors as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    for mod in plugins:
        importlib.import_module(mod)
    return REGISTRY


def build(names: Iterable[str] | None = None, plugins: Iterable[str] = ()) -> list[Detector]:
    """Instances of the named detectors (all registered ones when ``names`` is None), in
    name order so runs are deterministic."""
    from netwarden.errors import ConfigError

    reg = discover(plugins)
    wanted = sorted(reg) if names is None else list(names)
    unknown = [n for n in wanted if n not in reg]
    if unknown:
        raise ConfigError(
            f"unknown detector(s) {', '.join(unknown)}; known: {', '.join(sorted(reg))}"
        )
    return [reg[n]() for n in wanted]


class DetectionStack:
    def __init__(
        self,
        detectors: list[Detector],
        state_dir: str | Path | None = None,
        dedup_s: float = 600.0,
        thresholds: dict[str, float] | None = None,
    ) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate detector names: {names}")
        self.detectors = list(detectors)
        self.state_dir = Path(state_dir) / STATE_SUBDIR if state_dir is not None else None
        self.dedup_s = dedup_s
        #: kind -> lowest score raised (``[detect.thresholds]``, ``controller.detect.thresholds``)
        self.thresholds = dict(thresholds or {})
        self.below_threshold = 0
        self.errors: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.alerts_raised = 0
        self.suppressed = 0
        self.now_ns = 0
        # (kind, attacker or "", victim) -> detected_at of its last alert
        self._seen: dict[tuple[str, str, str], float] = {}
        if self.state_dir is not None:
            self.load()

    # --- the stream ---------------------------------------------------------------------
    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if record_type not in RECORD_TYPES or not len(batch):
            return
        self.records[record_type] += len(batch)
        share_batch(batch)  # work on it that several detectors need is done once
        for d in self.detectors:
            try:
                d.observe(record_type, batch)
            except Exception:
                self.errors[d.name] += 1
                log.exception("detector %s failed on a %s batch", d.name, record_type)

    def advance(self, now_ns: int) -> list[Alert]:
        """Advance every detector to ``now_ns``; the new (not repeated) alerts, ordered by
        detection time then kind."""
        self.now_ns = max(self.now_ns, int(now_ns))
        out: list[Alert] = []
        for d in self.detectors:
            try:
                got = d.advance(int(now_ns))
            except Exception:
                self.errors[d.name] += 1
                log.exception("detector %s failed to advance", d.name)
                continue
            out.extend(a for a in got if self._loud(a) and self._fresh(a))
        release_joins()
        out.sort(key=lambda a: (a.detected_at, a.kind, a.attacker or "", a.victims))
        self._protect_everywhere(out)
        self.alerts_raised += len(out)
        return out

    def _protect_everywhere(self, alerts: list[Alert]) -> None:
        """Traffic that raised any alert is learnt as normal by no detector: every
        detector with a ``protect(addr, now_ns)`` hears of every attacker (river's
        ``protect_anomaly_detector``, across the stack)."""
        for a in alerts:
            if not a.attacker:
                continue
            for d in self.detectors:
                protect = getattr(d, "protect", None)
                if protect is not None:
                    try:
                        protect(a.attacker, int(getattr(d, "now_ns", self.now_ns)))
                    except Exception:
                        self.errors[d.name] += 1
                        log.exception("detector %s failed to protect %s", d.name, a.attacker)

    def feedback(
        self, verdict: str, kind: str, attacker: str | None, victims: list[str], at_ns: int
    ) -> list[str]:
        """Hand an operator's verdict on alerts of ``kind`` to every detector with a
        ``feedback`` method (``DetectorBase.feedback``); what each learnt from it, as
        ``"name: what"``."""
        notes = []
        for d in self.detectors:
            fn = getattr(d, "feedback", None)
            if fn is None:
                continue
            try:
                note = fn(verdict, kind, attacker, list(victims), int(at_ns))
            except Exception:
                self.errors[d.name] += 1
                log.exception("detector %s failed on feedback about %s", d.name, kind)
                continue
            if note:
                notes.append(f"{d.name}: {note}")
        return notes

    def _loud(self, a: Alert) -> bool:
        """False when ``a`` scores below its kind's configured threshold (counted)."""
        if a.score >= self.thresholds.get(a.kind, 0.0):
            return True
        self.below_threshold += 1
        return False

    def _fresh(self, a: Alert) -> bool:
        """False when every victim of ``a`` was alerted for this kind and attacker within
        ``dedup_s``; records the alert's victims otherwise."""
        att = a.attacker or ""
        victims = a.victims or [""]
        keys = [(a.kind, att, v) for v in victims]
        fresh = any(
            k not in self._seen or a.detected_at - self._seen[k] > self.dedup_s for k in keys
        )
        if not fresh:
            self.suppressed += 1
            return False
        for k in keys:
            self._seen[k] = a.detected_at
        if len(self._seen) > 100_000:  # bounded: forget the oldest half
            cut = sorted(self._seen.values())[len(self._seen) // 2]
            self._seen = {k: t for k, t in self._seen.items() if t > cut}
        return True

    # --- state --------------------------------------------------------------------------
    def save(self) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for d in self.detectors:
            try:
                blob = dumps_state({"version": d.version, "state": d.state_dict()})
            except Exception:
                self.errors[d.name] += 1
                log.exception("detector %s: state not saved", d.name)
                continue
            path = self.state_dir / f"{d.name}.state"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)

    def load(self) -> None:
        if self.state_dir is None or not self.state_dir.is_dir():
            return
        for d in self.detectors:
            path = self.state_dir / f"{d.name}.state"
            if not path.is_file():
                continue
            try:
                saved = loads_state(path.read_bytes())
                if str(saved.get("version")) != str(d.version):
                    log.info("detector %s: saved state is version %s, not %s; starting fresh",
                             d.name, saved.get("version"), d.version)  # fmt: skip
                    continue
                d.load_state(saved["state"])
            except Exception:
                self.errors[d.name] += 1
                log.exception("detector %s: state in %s not loaded; starting fresh", d.name, path)

    def status(self) -> dict[str, Any]:
        return {
            "detectors": {d.name: d.version for d in self.detectors},
            "records": dict(self.records),
            "alerts": self.alerts_raised,
            "suppressed_repeats": self.suppressed,
            "below_threshold": self.below_threshold,
            "errors": dict(self.errors),
        }


# --- state encoding: msgpack with numpy arrays as .npy blobs (no pickle) ------------------
def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return msgpack.ExtType(_NDARRAY_EXT, buf.getvalue())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot save {type(obj).__name__} in detector state")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _NDARRAY_EXT:
        return np.load(io.BytesIO(data), allow_pickle=False)
    return msgpack.ExtType(code, data)


def dumps_state(d: dict[str, Any]) -> bytes:
    return msgpack.packb(d, default=_default, use_bin_type=True, strict_types=False)


def loads_state(b: bytes) -> dict[str, Any]:
    return msgpack.unpackb(b, ext_hook=_ext_hook, raw=False, strict_map_key=False)


# --- the controller path ----------------------------------------------------------------------
class IngestDetection:
    """The stack as an ``Ingest`` consumer: batches in, alerts to policy on a wall-clock
    tick. Keeps the last alerts for the ``alerts`` control operation.

    With ``min_tick_s`` (``[controller] detect_tick_s``), the stack also advances within
    that long of new batches arriving, so an alert leaves as soon as its records are in
    rather than on the next one-second tick: the live loop's time from an attack's first
    packet to the kernel element depends on it. Detectors then see more, smaller steps (a
    scan's host window may be advanced before its pair records arrive)."""

    def __init__(self, stack: DetectionStack, controller: Any,
                 clock: Callable[[], int] = time.time_ns, save_every_s: float = 60.0,
                 min_tick_s: float | None = None) -> None:  # fmt: skip
        self.stack = stack
        self.controller = controller
        self.clock = clock
        self.save_every_s = save_every_s
        self.min_tick_s = min_tick_s
        self.recent: deque[dict[str, Any]] = deque(maxlen=200)
        self.submitted = 0
        self._last_save = time.monotonic()
        self._fresh_data = False

    def consume(self, batch: Any) -> None:
        self.stack.observe(batch.record_type, batch.records)
        self._fresh_data = True

    def tick_if_fresh(self) -> None:
        """Advance when batches arrived since the last look (the short periodic task)."""
        if self._fresh_data:
            self._fresh_data = False
            self.tick()

    def tick(self) -> None:
        for a in self.stack.advance(self.clock()):
            rec = a.to_json()
            decision = None
            det = a.to_detection()
            if det is not None:
                try:
                    d = self.controller.submit_detection(det)
                    decision = {"id": d.id, "verdict": d.verdict.value, "reason": d.reason}
                    self.submitted += 1
                except Exception:
                    log.exception("policy failed on a %s alert", a.kind)
            rec["decision"] = decision
            self.recent.append(rec)
            log.warning("alert %s attacker=%s victims=%s score=%.0f: %s",
                        a.kind, a.attacker, a.victims[:3], a.score, a.summary)  # fmt: skip
        if time.monotonic() - self._last_save >= self.save_every_s:
            self.save()

    def save(self) -> None:
        self._last_save = time.monotonic()
        try:
            self.stack.save()
        except OSError as exc:
            log.warning("detector state not saved: %s", exc)

    def attach(self, controller: Any) -> None:
        """Plug into ``controller.app.Controller``: a stage for every ingested batch, a
        one-second tick, the ``alerts`` operation, state saved when it closes."""
        controller.add_stage("detect", self.consume)
        controller.add_periodic(1.0, self.tick)
        if self.min_tick_s is not None:
            controller.add_periodic(self.min_tick_s, self.tick_if_fresh)
        controller.add_op("alerts", lambda _args, _actor: {
            "status": self.stack.status(), "submitted": self.submitted, "recent": list(self.recent),
        })  # fmt: skip
        controller.at_close(self.save)


def attach_detection(
    controller: Any,
    state_dir: str | Path,
    names: str | None = None,
    plugins: Iterable[str] = (),
    thresholds: dict[str, float] | None = None,
) -> IngestDetection:
    """The detection stack of ``names`` (comma-separated; all registered when None) with
    its state in ``state_dir``, attached to a running controller's ingest."""
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    stack = DetectionStack(build(wanted, plugins), state_dir=state_dir, thresholds=thresholds)
    det = IngestDetection(stack, controller)
    det.attach(controller)
    return det
