"""Learnt baselines: per host, per subnet group and global distributions of telemetry
features, learnt online, quoted by quantile in evidence.

``QuantileBaseline`` keeps, per key, a decayed histogram of each feature over log-spaced
bins (``BINS_PER_OCTAVE`` per doubling, so a quantile is known to within ~41%), which is
enough to say "this host's p99 is 3" and cheap to update for a whole batch (one
``np.add.at``). Each update first decays the key's histogram by ``1 - alpha``, so the
baseline follows slow change (continuous learning) and old behaviour fades.

``TieredBaseline`` answers for hosts with little history: a host with fewer than ``warm``
windows is compared with its /24 (or /64) group, and a group with too little history with
the global distribution; the answer says which tier it came from. The caller chooses what
to learn: rows of hosts that raised an alert are masked out (protected learning).
State is plain arrays (``state_dict``/``load_state``), saved by the detection stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from controller.detect.base import ADDR_KEY
from controller.detect.nets import subnet_keys

BINS_PER_OCTAVE = 2
NBINS = 64  # values up to 2**31


def to_bins(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.log2(1.0 + np.maximum(x, 0)) * BINS_PER_OCTAVE), 0, NBINS - 1
                   ).astype(np.int64)  # fmt: skip


def bin_upper(b: np.ndarray) -> np.ndarray:
    """The largest value that falls in bin ``b``."""
    return np.exp2((b + 1) / BINS_PER_OCTAVE) - 1.0


class QuantileBaseline:
    """Decayed log-histograms of ``n_features`` per key, at most ``capacity`` keys (least
    recently updated dropped first). Keys are kept sorted for lookup; each key points to a
    slot of the histogram table, so a new key costs a slot, not a copy of the table."""

    def __init__(self, n_features: int, alpha: float = 0.002, capacity: int = 1 << 14) -> None:
        self.n_features = n_features
        self.alpha = alpha
        self.capacity = capacity
        self.keys = np.zeros(0, ADDR_KEY)  # sorted
        self.slot = np.zeros(0, np.int64)  # slot of each key
        self.hist = np.zeros((0, n_features, NBINS), np.float32)
        self.count = np.zeros(0, np.int64)  # per slot
        self.last_ns = np.zeros(0, np.int64)  # per slot
        self.free = np.zeros(0, np.int64)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, found) per key."""
        if not len(self.keys):
            return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
        idx = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.slot[idx], self.keys[idx] == keys

    def _alloc(self, n: int) -> np.ndarray:
        if len(self.free) < n:
            grow = min(max(n - len(self.free), len(self.hist)), self.capacity - len(self.hist))
            if grow > 0:
                old = len(self.hist)
                self.hist = np.concatenate(
                    [self.hist, np.zeros((grow, self.n_features, NBINS), np.float32)]
                )
                self.count = np.concatenate([self.count, np.zeros(grow, np.int64)])
                self.last_ns = np.concatenate([self.last_ns, np.zeros(grow, np.int64)])
                self.free = np.concatenate([self.free, np.arange(old, old + grow)])
        if len(self.free) < n:  # full: evict the least recently updated keys
            need = n - len(self.free)
            victims = np.argpartition(self.last_ns[self.slot], need - 1)[:need]
            gone = self.slot[victims]
            keep = np.ones(len(self.keys), bool)
            keep[victims] = False
            self.keys, self.slot = self.keys[keep], self.slot[keep]
            self.free = np.concatenate([self.free, gone])
        got, self.free = self.free[:n], self.free[n:]
        self.hist[got] = 0
        self.count[got] = 0
        self.last_ns[got] = 0
        return got

    def update(self, keys: np.ndarray, x: np.ndarray, ts_ns: np.ndarray) -> None:
        if not len(keys):
            return
        uk, inv = np.unique(keys, return_inverse=True)
        if len(uk) > self.capacity:
            return
        slots, found = self._find(uk)
        if (~found).any():
            add = uk[~found]
            got = self._alloc(len(add))
            pos = np.searchsorted(self.keys, add)
            self.keys = np.insert(self.keys, pos, add)
            self.slot = np.insert(self.slot, pos, got)
            slots, found = self._find(uk)
        rows = slots[inv]
        self.hist[slots] *= np.float32(1.0 - self.alpha)
        b = to_bins(x)
        flat = (rows[:, None] * self.n_features + np.arange(self.n_features)) * NBINS + b
        np.add.at(self.hist.reshape(-1), flat.reshape(-1), np.float32(1.0))
        np.add.at(self.count, rows, 1)
        np.maximum.at(self.last_ns, rows, np.asarray(ts_ns, np.int64))

    def quantile(self, keys: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
        """(value at quantile ``q`` per key and feature, windows of history per key); zero
        history for unknown keys."""
        slots, found = self._find(keys)
        out = np.zeros((len(keys), self.n_features))
        cnt = np.zeros(len(keys), np.int64)
        if found.any():
            cnt[found] = self.count[slots[found]]
            h = self.hist[slots[found]].astype(np.float64)
            c = np.cumsum(h, axis=2)
            tot = c[:, :, -1:]
            b = (c < q * np.maximum(tot, 1e-9)).sum(axis=2)
            out[found] = np.where(tot[:, :, 0] > 0, bin_upper(b), 0.0)
        return out, cnt

    def state_dict(self) -> dict[str, Any]:
        return {"keys": self.keys.view(np.uint8).reshape(-1, 16).copy(), "slot": self.slot,
                "hist": self.hist, "count": self.count, "last_ns": self.last_ns,
                "free": self.free}  # fmt: skip

    def load_state(self, d: dict[str, Any]) -> None:
        self.keys = np.ascontiguousarray(d["keys"], np.uint8).reshape(-1, 16).view(ADDR_KEY)
        self.keys = self.keys.reshape(-1)
        self.slot = np.asarray(d["slot"], np.int64)
        self.hist = np.asarray(d["hist"], np.float32).reshape(-1, self.n_features, NBINS)
        self.count = np.asarray(d["count"], np.int64)
        self.last_ns = np.asarray(d["last_ns"], np.int64)
        self.free = np.asarray(d["free"], np.int64)


class TieredBaseline:
    """Host, then /24 group, then global: the first tier with ``warm`` windows answers."""

    TIERS = ("host", "subnet", "global")

    def __init__(self, features: tuple[str, ...], warm: int = 60) -> None:
        self.features = features
        self.warm = warm
        self.tiers = [QuantileBaseline(len(features)) for _ in self.TIERS]

    def _tier_keys(self, keys: np.ndarray) -> list[np.ndarray]:
        return [keys, subnet_keys(keys), np.zeros(len(keys), ADDR_KEY)]

    def learn(self, keys: np.ndarray, x: np.ndarray, ts_ns: np.ndarray) -> None:
        for tb, k in zip(self.tiers, self._tier_keys(keys), strict=True):
            tb.update(k, x, ts_ns)

    def reference(self, keys: np.ndarray, q: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
        """(reference value per key and feature, tier index per key; -1 = no tier warm)."""
        ref = np.zeros((len(keys), len(self.features)))
        tier = np.full(len(keys), -1)
        for t, (tb, k) in enumerate(zip(self.tiers, self._tier_keys(keys), strict=True)):
            todo = tier < 0
            if not todo.any():
                break
            v, cnt = tb.quantile(k[todo], q)
            ok = cnt >= self.warm
            sel = np.flatnonzero(todo)[ok]
            ref[sel], tier[sel] = v[ok], t
        return ref, tier

    def state_dict(self) -> dict[str, Any]:
        return {name: tb.state_dict() for name, tb in zip(self.TIERS, self.tiers, strict=True)}

    def load_state(self, d: dict[str, Any]) -> None:
        for name, tb in zip(self.TIERS, self.tiers, strict=True):
            if name in d:
                tb.load_state(d[name])
