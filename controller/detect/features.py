"""Shared building blocks for detectors: learnt per-host references and short record
buffers, all numpy, sized and bounded.

``KeyedBaseline`` keeps, per address, an exponentially weighted mean and variance of a few
features of the host's telemetry windows (learnt online; the caller masks out hosts that
raised alerts, so an attack is not learnt as normal). Its ``reference`` is what evidence
quotes ("this host's learnt level is 3").

``RecordBuffer`` holds the last ``horizon_s`` of one record type (by a time column), so a
detector can look up the pairs or ARP requests of the few hosts that crossed a threshold.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from controller.detect.base import batch_addr_order, batch_column, shared, stable_argsort
from netwarden.records.schema import join_records


class KeyedBaseline:
    """EW mean/variance of ``n_features`` per host key (``base.addr_hash``). ``alpha`` is the
    weight of a new window once a host has ``1/alpha`` windows of history (before that,
    a plain running mean). At most ``capacity`` hosts; the least recently seen go first.
    Cost: one ``np.unique`` and a ``searchsorted`` per batch."""

    def __init__(self, n_features: int, alpha: float = 0.02, capacity: int = 1 << 16) -> None:
        self.n_features = n_features
        self.alpha = alpha
        self.capacity = capacity
        self.keys = np.zeros(0, np.uint64)  # sorted host hashes
        self.mean = np.zeros((0, n_features))
        self.var = np.zeros((0, n_features))
        self.count = np.zeros(0, np.int64)
        self.last_ns = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index into the table, found mask) for each key."""
        if not len(self.keys):
            return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
        idx = np.searchsorted(self.keys, keys)
        idx_c = np.minimum(idx, len(self.keys) - 1)
        found = self.keys[idx_c] == keys
        return idx_c, found

    def reference(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, std, windows of history) per key; zeros for unknown hosts."""
        if not len(self.keys):
            z = np.zeros((len(keys), self.n_features))
            return z, z.copy(), np.zeros(len(keys), np.int64)
        idx, found = self._find(keys)
        mean = self.mean[idx]
        std = np.sqrt(self.var[idx])
        cnt = self.count[idx]
        if not found.all():
            mean[~found] = 0.0
            std[~found] = 0.0
            cnt = np.where(found, cnt, 0)
        return mean, std, cnt

    def describe(self, key: np.uint64 | int, feature: int, unit: str = "") -> str:
        """ "its learnt level is 3 (over 120 windows)" or "no history for it yet"."""
        mean, std, cnt = self.reference(np.array([key], np.uint64))
        if not cnt[0]:
            return "no learnt history for it yet"
        lvl = float(mean[0, feature] + 3 * std[0, feature])
        return f"its learnt level is {lvl:.3g}{unit} (over {int(cnt[0])} windows)"

    def update(self, keys: np.ndarray, x: np.ndarray, ts_ns: np.ndarray) -> None:
        """Learn one window per row (``x``: ``(n, n_features)``)."""
        if not len(keys):
            return
        order = stable_argsort(keys)
        self.update_sorted(keys[order], x[order], np.asarray(ts_ns)[order])

    def update_sorted(self, ks: np.ndarray, xs: np.ndarray, ts_ns: np.ndarray) -> None:
        """``update`` for rows already in ``stable_argsort`` order of their keys (a detector
        that has the batch's order at hand saves the sort)."""
        self.update_columns(ks, [xs[:, j] for j in range(self.n_features)], ts_ns)

    def learn_windows(
        self, batch: np.ndarray, hk: np.ndarray, cols: list[np.ndarray], learn: np.ndarray
    ) -> None:
        """Learn the rows ``learn`` of a host batch (``hk``: their ``addr_hash``; ``cols``:
        the features, one column each), grouped by host with the batch's shared order, so
        each host's windows count in batch order."""
        g = _learn_groups(batch, hk, learn)
        # each column read once in row order, then permuted (not gathered row by row from
        # the records: a cache miss per value)
        self._update_groups(g, [np.ascontiguousarray(c)[g.sel] for c in cols])

    def update_columns(self, ks: np.ndarray, cols: list[np.ndarray], ts_ns: np.ndarray) -> None:
        """``update_sorted`` with each feature as its own column (``n_features`` 1-D arrays
        in the rows' order): a detector's columns are used as they are, without building
        an ``(n, n_features)`` copy."""
        if len(ks):
            self._update_groups(_Groups.of(ks, np.arange(len(ks)), ts_ns), cols)

    def _update_groups(self, g: _Groups, cols: list[np.ndarray]) -> None:
        if not len(g.sel):
            return
        uk, starts, last = g.keys, g.starts, g.last
        # several windows of one host in a batch: their mean, and the latest time (the sum
        # of one contiguous column is the sum the same rows make in an (n, k) matrix)
        xm = np.empty((len(starts), self.n_features))
        for j, c in enumerate(cols):
            xm[:, j] = np.add.reduceat(np.ascontiguousarray(c, np.float64), starts) / g.n
        idx, found = self._find(uk)
        every = found.all()
        if every or found.any():
            # the known hosts' rows, gathered with ``take`` (a fancy index of 2-D rows is
            # several times slower) and written back once
            i = idx if every else idx[found]
            c = self.count[i] + 1
            a = np.maximum(1.0 / c, self.alpha)[:, None]
            mean = np.take(self.mean, i, axis=0)
            d = (xm if every else xm[found]) - mean
            self.mean[i] = mean + a * d
            self.var[i] = (1 - a) * (np.take(self.var, i, axis=0) + a * d * d)
            self.count[i] = c
            self.last_ns[i] = np.maximum(self.last_ns[i], last if every else last[found])
        new = ~found
        if new.any():
            keys_all = np.concatenate([self.keys, uk[new]])
            order = np.argsort(keys_all, kind="stable")
            self.keys = keys_all[order]
            self.mean = np.concatenate([self.mean, xm[new]])[order]
            self.var = np.concatenate([self.var, np.zeros((int(new.sum()), self.n_features))])[
                order
            ]
            self.count = np.concatenate([self.count, np.ones(int(new.sum()), np.int64)])[order]
            self.last_ns = np.concatenate([self.last_ns, last[new]])[order]
            if len(self.keys) > self.capacity:
                keep = np.sort(np.argsort(-self.last_ns, kind="stable")[: self.capacity])
                self.keys, self.mean, self.var = self.keys[keep], self.mean[keep], self.var[keep]
                self.count, self.last_ns = self.count[keep], self.last_ns[keep]

    def state_dict(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "mean": self.mean,
            "var": self.var,
            "count": self.count,
            "last_ns": self.last_ns,
        }

    def load_state(self, d: dict[str, Any]) -> None:
        self.keys = np.asarray(d["keys"], np.uint64).reshape(-1)
        self.mean = np.asarray(d["mean"], float).reshape(-1, self.n_features)
        self.var = np.asarray(d["var"], float).reshape(-1, self.n_features)
        self.count = np.asarray(d["count"], np.int64)
        self.last_ns = np.asarray(d["last_ns"], np.int64)


class _Groups(NamedTuple):
    """Rows grouped by key: ``sel`` (the rows, grouped, each group in row order), and per
    group its key, first position in ``sel``, size and latest time."""

    sel: np.ndarray
    keys: np.ndarray
    starts: np.ndarray
    n: np.ndarray
    last: np.ndarray

    @staticmethod
    def of(ks: np.ndarray, sel: np.ndarray, ts_ns: np.ndarray) -> _Groups:
        """``ks``/``ts_ns``: key and time of the rows ``sel``, already grouped."""
        if not len(ks):
            none = np.zeros(0, np.int64)
            return _Groups(sel, ks, none, none, none)
        starts = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1])))
        n = np.diff(np.append(starts, len(ks)))
        last = np.maximum.reduceat(ts_ns.astype(np.int64), starts)
        return _Groups(sel, ks[starts], starts, n, last)


def _learn_groups(batch: np.ndarray, hk: np.ndarray, learn: np.ndarray) -> _Groups:
    """The rows ``learn`` of a host batch grouped by host (shared per batch by the
    detectors that learn the same rows)."""
    memo: dict[tuple[int, bytes], _Groups] = shared(batch, "learn_groups", dict)
    key = (id(hk), learn.tobytes())  # hk: the batch's shared hashes, alive as long as it
    got = memo.get(key)
    if got is None:
        order = batch_addr_order(batch, hashes=hk)
        sel = order if learn.all() else order[learn[order]]
        got = memo[key] = _Groups.of(hk[sel], sel, batch_column(batch, "ts_end_ns")[sel])
    return got


class RecordBuffer:
    """The records of one type from the last ``horizon_s`` seconds of data time
    (``time_field``), at most ``max_rows`` (oldest dropped first)."""

    def __init__(
        self, dtype: np.dtype, time_field: str, horizon_s: float, max_rows: int = 1 << 18
    ) -> None:
        self.dtype = dtype
        self.time_field = time_field
        self.horizon_ns = int(horizon_s * 1e9)
        self.max_rows = max_rows
        self._parts: list[np.ndarray] = []
        self._rows = 0
        self.latest_ns = 0

    def add(self, batch: np.ndarray) -> None:
        if not len(batch):
            return
        self._parts.append(batch)
        self._rows += len(batch)
        self.latest_ns = max(self.latest_ns, int(batch[self.time_field].max()))
        cut = self.latest_ns - self.horizon_ns
        while self._parts and (
            int(self._parts[0][self.time_field].max()) < cut or self._rows > self.max_rows
        ):
            self._rows -= len(self._parts.pop(0))
        if self._parts and int(self._parts[0][self.time_field].min()) < cut:
            # a merged part straddles the horizon: keep only its recent rows
            head = self._parts[0]
            keep = head[head[self.time_field] >= cut]
            self._rows -= len(head) - len(keep)
            self._parts[0] = keep

    def clear(self) -> None:
        self._parts, self._rows, self.latest_ns = [], 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records(), "latest_ns": self.latest_ns}

    def load_state(self, d: dict[str, Any]) -> None:
        rec = d.get("records")
        self._parts = [rec] if rec is not None and len(rec) and rec.dtype == self.dtype else []
        self._rows = sum(len(p) for p in self._parts)
        self.latest_ns = int(d.get("latest_ns", 0))

    def records(self) -> np.ndarray:
        if not self._parts:
            return np.zeros(0, self.dtype)
        if len(self._parts) > 1:
            self._parts = [join_records(self._parts)]  # bytes, not field by field
        return self._parts[0]


class LatestRows:
    """The last ``keep`` rows appended (a key and a row of numbers each), in appending
    order: ``append`` costs the rows appended (the storage holds twice ``keep`` and moves
    the live rows to its front when full), not a copy of everything kept."""

    def __init__(self, keep: int, key_dtype: Any, width: int, dtype: Any) -> None:
        self.keep = keep
        self._k = np.zeros(2 * keep, key_dtype)
        self._x = np.zeros((2 * keep, width), dtype)
        self._n = 0

    def append(self, keys: np.ndarray, rows: np.ndarray) -> None:
        n = len(keys)
        if n >= self.keep:
            self._k[: self.keep], self._x[: self.keep] = keys[-self.keep :], rows[-self.keep :]
            self._n = self.keep
            return
        if self._n + n > len(self._k):
            lo = self._n - self.keep
            self._k[: self.keep], self._x[: self.keep] = (
                self._k[lo : self._n],
                self._x[lo : self._n],
            )
            self._n = self.keep
        self._k[self._n : self._n + n], self._x[self._n : self._n + n] = keys, rows
        self._n += n

    def keys(self) -> np.ndarray:
        return self._k[max(0, self._n - self.keep) : self._n]

    def rows(self) -> np.ndarray:
        return self._x[max(0, self._n - self.keep) : self._n]
