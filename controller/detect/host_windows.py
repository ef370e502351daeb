"""Detectors of per-host telemetry windows (``host`` records) against learnt per-host
levels: what the scan and flood detectors share.

Each batch of windows goes through the same steps, vectorised: the detector's features as
columns (``columns``); the few windows over a fixed floor of some feature (a learnt level
only ever raises a bar, so the rest cannot alert) are judged (``judge``) against the
host's learnt level; the alerted addresses are protected from learning; every other
window is learnt (``KeyedBaseline.learn_windows``, grouped by host with the grouping the
batch shares across detectors). The recent ``pair`` records name targets or sources for
the few windows that alert.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import (
    DetectorBase,
    batch_addr_hash,
    batch_column,
    join_batches,
    pack_keys,
    unpack_keys,
)
from controller.detect.features import KeyedBaseline, RecordBuffer
from netwarden.records.schema import PAIR_DTYPE


class HostWindowDetector(DetectorBase):
    """Base of a detector of host windows. Subclasses set ``FLOORS`` (one per feature)
    and ``PAIRS_S`` (how long pair records are kept) and implement ``columns``, ``judge``
    and ``protected_by``."""

    FLOORS: ClassVar[tuple[float, ...]] = ()
    PAIRS_S: ClassVar[float] = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.baseline = KeyedBaseline(len(self.FLOORS))
        self.pairs = RecordBuffer(PAIR_DTYPE, "ts_last_ns", self.PAIRS_S)
        self._pending: list[np.ndarray] = []
        self._alerted: dict[tuple[str, str], int] = {}

    # --- what a subclass defines ---------------------------------------------------------
    def columns(self, h: np.ndarray) -> list[np.ndarray]:
        """The features of each window, one 1-D column per entry of ``FLOORS``."""
        raise NotImplementedError

    def judge(
        self, h: np.ndarray, hk: np.ndarray, x: np.ndarray, now_ns: int
    ) -> tuple[list[Alert], np.ndarray]:
        """(alerts, which windows hit) for the windows ``h`` over a floor (``hk``: their
        ``addr_hash``; ``x``: their features, float, one row each)."""
        raise NotImplementedError

    def protected_by(self, alert: Alert) -> list[str]:
        """The addresses whose windows an alert stops being learnt."""
        raise NotImplementedError

    def observe_other(self, record_type: str, batch: np.ndarray) -> None:
        """Records other than ``host`` and ``pair`` (ignored unless overridden)."""

    # --- the stream -----------------------------------------------------------------------
    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if not len(batch):
            return
        if record_type == "host":
            self._pending.append(batch)
            self._data_tick(int(batch_column(batch, "ts_last_ns").max()))
        elif record_type == "pair":
            self.pairs.add(batch)
        else:
            self.observe_other(record_type, batch)

    def on_clock_reset(self) -> None:
        self.pairs.clear()
        self._alerted = {}

    def advance(self, now_ns: int) -> list[Alert]:
        if not self._pending:
            return []
        h = join_batches(self._pending)
        self._pending = []
        hk = batch_addr_hash(h)
        cols = self.columns(h)
        over_m = cols[0] >= self.FLOORS[0]
        for c, floor in zip(cols[1:], self.FLOORS[1:], strict=True):
            over_m |= c >= floor
        over = np.flatnonzero(over_m)
        alerts: list[Alert] = []
        hit = np.zeros(len(h), bool)
        if len(over):
            x = np.stack([c[over] for c in cols], axis=1).astype(float)
            alerts, hit[over] = self.judge(h[over], hk[over], x, now_ns)
        for a in alerts:  # an alert's windows are not its normal
            for addr in self.protected_by(a):
                self.protect(addr, self.now_ns)
        self.baseline.learn_windows(h, hk, cols, self.learnable(h, hk, hit))
        return alerts

    def suppressed(self, kind: str, who: str, ts_ns: int, for_s: float) -> bool:
        """True while ``kind`` was alerted for ``who`` less than ``for_s`` before; else
        starts that period at ``ts_ns``."""
        if ts_ns < self._alerted.get((kind, who), 0):
            return True
        self._alerted[(kind, who)] = ts_ns + int(for_s * 1e9)
        return False

    # --- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        pending = np.concatenate(self._pending) if self._pending else None
        return {
            **super().state_dict(),
            "baseline": self.baseline.state_dict(),
            "pairs": self.pairs.state_dict(),
            "pending": pending,
            "alerted": pack_keys(self._alerted),
        }

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        if "baseline" in d:
            self.baseline.load_state(d["baseline"])
        self.pairs.load_state(d.get("pairs", {}))
        p = d.get("pending")
        self._pending = [p] if p is not None and len(p) else []
        self._alerted = unpack_keys(d.get("alerted", []))
