"""An online multivariate model of host telemetry windows: a small Kitsune-style ensemble
of autoencoders in numpy.

Features (``FEATURES``, ``log1p`` of host-window counters) are split into fixed groups of
related counters (volume, fan-out, TCP control, DNS/UDP/ICMP/ARP). Each group has a tiny
autoencoder (one sigmoid hidden layer of 3/4 the group's width); the reconstruction errors
(RMSE) of the groups feed an output autoencoder whose RMSE is the anomaly score, as in
KitNET. Inputs are scaled by running min/max. Learning is mini-batch SGD on at most
``LEARN_ROWS`` rows per batch (chosen at random with a fixed seed), so the cost per record
stays small; the caller passes only rows that may be learnt (not from alerted hosts).

Threshold (documented method, on benign data only): scores of benign windows are close to
log-normal (Kitsune's author advises this fit). The first half of the ``GRACE`` windows is
burn-in (the fit starts after it, over the second half); after ``GRACE`` windows the model
keeps an exponentially weighted mean and variance of ``log(score)`` over the windows it
learns, and a window is anomalous when its score's upper-tail p-value under that
log-normal is below ``P_VALUE`` (1e-4, i.e. ``log(score) > mu + 3.72 sigma``). Nothing is
tuned on attack captures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FEATURES = (
    "out_bytes", "in_bytes", "out_pkts", "in_pkts",
    "out_flows", "in_flows", "out_dst_hosts", "out_dst_ports", "in_src_hosts", "in_dst_ports",
    "out_syn", "out_syn_noreply", "out_rst", "in_rst", "in_unreach",
    "out_dns_queries", "out_udp_pkts", "out_icmp_pkts", "arp_req_out",
)  # fmt: skip
GROUPS = ((0, 1, 2, 3), (4, 5, 6, 7, 8, 9), (10, 11, 12, 13, 14), (15, 16, 17, 18))
_GROUP_IDX = tuple(np.array(g) for g in GROUPS)
P_VALUE = 1e-4
Z_CUT = 3.719  # upper-tail standard normal quantile for P_VALUE


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _mean(a: np.ndarray, axis: int) -> np.ndarray:
    """``a.mean(axis)`` computed as ``np.mean`` does (the same sum, then the same division
    by the count as ``intp``), without its Python-level overhead: the model calls it on
    small arrays many times per batch."""
    s = np.add.reduce(a, axis=axis)
    return np.true_divide(s, np.intp(a.shape[axis]), out=s, casting="unsafe")


class _AE:
    def __init__(self, n: int, rng: np.random.Generator) -> None:
        h = max(1, math.ceil(0.75 * n))
        lim = 1.0 / n
        self.w = rng.uniform(-lim, lim, (n, h)).astype(np.float32)
        self.bh = np.zeros(h, np.float32)
        self.bv = np.zeros(n, np.float32)

    def rmse(self, x: np.ndarray) -> np.ndarray:
        y = _sig(x @ self.w + self.bh)
        z = _sig(y @ self.w.T + self.bv)
        return np.sqrt(_mean((x - z) ** 2, 1))

    def train(self, x: np.ndarray, lr: float) -> None:
        y = _sig(x @ self.w + self.bh)
        z = _sig(y @ self.w.T + self.bv)
        dz = (z - x) * z * (1 - z)
        dy = (dz @ self.w) * y * (1 - y)
        n = len(x)
        self.w -= lr * (x.T @ dy + (dz.T @ y)) / n
        self.bh -= lr * _mean(dy, 0)
        self.bv -= lr * _mean(dz, 0)


class HostModel:
    """The ensemble; ``score(x)`` -> anomaly scores, ``learn(x)`` updates it."""

    GRACE = 2000  # learnt windows before the model judges
    LEARN_ROWS = 256
    STEP_ROWS = 32
    LR = 0.5
    ALPHA = 0.001  # weight of one window in the log-score mean/variance

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.groups = [_AE(len(g), self.rng) for g in GROUPS]
        self.out = _AE(len(GROUPS), self.rng)
        self.lo = np.full(len(FEATURES), np.inf, np.float32)
        self.hi = np.full(len(FEATURES), -np.inf, np.float32)
        self.learnt = 0
        self.mu = 0.0
        self.var = 1.0

    @staticmethod
    def features(h: Any) -> np.ndarray:
        """``log1p`` of the ``FEATURES`` columns of host records (an array or a dict of
        columns)."""
        return np.log1p(np.stack([h[f].astype(np.float32) for f in FEATURES], axis=1))

    def _norm(self, x: np.ndarray) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return np.clip((x - np.where(np.isfinite(self.lo), self.lo, 0)) / span, 0, 1.5)

    def _group_errors(self, xn: np.ndarray) -> np.ndarray:
        """The reconstruction error of each feature group (one column per group)."""
        return np.stack([ae.rmse(xn[:, g]) for ae, g in zip(self.groups, _GROUP_IDX, strict=True)],
                        axis=1)  # fmt: skip

    def _parts(self, xn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self._group_errors(xn)
        return r, self.out.rmse(np.clip(r, 0, 1))

    def score(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0)
        return self._parts(self._norm(x))[1]

    def explain(self, x: np.ndarray) -> dict[str, Any]:
        """Score, p-value, threshold and the features reconstructed worst, for one row."""
        xn = self._norm(x[None, :])
        s = float(self._parts(xn)[1][0])
        err = np.zeros(len(FEATURES))
        for ae, g in zip(self.groups, GROUPS, strict=True):
            xs = xn[:, list(g)]
            y = _sig(xs @ ae.w + ae.bh)
            z = _sig(y @ ae.w.T + ae.bv)
            err[list(g)] = np.abs(xs - z)[0]
        top = [FEATURES[i] for i in np.argsort(-err)[:3]]
        return {"model": "autoencoder ensemble (KitNET-style)", "score": round(s, 4),
                "threshold": round(self.threshold(), 4), "p_value": self.p_value(s),
                "ready": self.ready, "worst_reconstructed": top}  # fmt: skip

    @property
    def ready(self) -> bool:
        return self.learnt >= self.GRACE

    def threshold(self) -> float:
        return float(math.exp(self.mu + Z_CUT * math.sqrt(self.var)))

    def p_value(self, s: float) -> float:
        z = (math.log(max(s, 1e-12)) - self.mu) / math.sqrt(max(self.var, 1e-12))
        return float(0.5 * math.erfc(z / math.sqrt(2)))

    def anomalous(self, s: np.ndarray) -> np.ndarray:
        if not self.ready:
            return np.zeros(len(s), bool)
        return s > self.threshold()

    def learn(self, x: np.ndarray) -> None:
        if not len(x):
            return
        if len(x) > self.LEARN_ROWS:
            x = x[self.rng.choice(len(x), self.LEARN_ROWS, replace=False)]
        self.lo = np.minimum(self.lo, x.min(axis=0))
        self.hi = np.maximum(self.hi, x.max(axis=0))
        xn = self._norm(x)
        s = self._parts(xn)[1]  # scored before learning them (prequential)
        for lo in range(0, len(xn), self.STEP_ROWS):  # several small SGD steps per batch
            part = xn[lo : lo + self.STEP_ROWS]
            for ae, g in zip(self.groups, _GROUP_IDX, strict=True):
                ae.train(part[:, g], self.LR)
            self.out.train(np.clip(self._group_errors(part), 0, 1), self.LR)
        ls = np.log(np.maximum(s, 1e-12))
        if self.learnt < self.GRACE // 2:  # burn-in: scores of an untrained model
            self.mu, self.var = float(ls.mean()), float(ls.var())
        elif self.learnt < self.GRACE:  # running mean/variance over the rest of the grace
            n0 = self.learnt - self.GRACE // 2
            n1 = n0 + len(ls)
            m = (self.mu * n0 + ls.sum()) / n1
            self.var = ((self.var + self.mu**2) * n0 + (ls**2).sum()) / n1 - m**2
            self.mu = float(m)
        else:
            a = min(1.0, self.ALPHA * len(ls))
            self.mu = (1 - a) * self.mu + a * float(ls.mean())
            self.var = (1 - a) * self.var + a * float(((ls - self.mu) ** 2).mean())
        self.var = max(float(self.var), 1e-6)
        self.learnt += len(x)

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"lo": self.lo, "hi": self.hi, "learnt": self.learnt,
                             "mu": self.mu, "var": self.var}  # fmt: skip
        for i, ae in enumerate([*self.groups, self.out]):
            d[f"ae{i}"] = {"w": ae.w, "bh": ae.bh, "bv": ae.bv}
        return d

    def load_state(self, d: dict[str, Any]) -> None:
        self.lo = np.asarray(d["lo"], np.float32)
        self.hi = np.asarray(d["hi"], np.float32)
        self.learnt, self.mu, self.var = int(d["learnt"]), float(d["mu"]), float(d["var"])
        for i, ae in enumerate([*self.groups, self.out]):
            p = d[f"ae{i}"]
            ae.w = np.asarray(p["w"], np.float32)
            ae.bh = np.asarray(p["bh"], np.float32)
            ae.bv = np.asarray(p["bv"], np.float32)
