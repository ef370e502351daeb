"""``c2_beaconing``: a host checking in with a rare external server at regular times with
regular sizes, scored the way RITA scores beacons, so each part can be read on its own.

Input: FLOW records of TCP connections from an internal host to an external (public)
address. Connections are grouped by (source, destination, destination port); a group with
``MIN_CONNS`` or more is scored from four subscores, each 0..1, weighted equally:

* timestamp: regular intervals, ``(1 - |Bowley skew|  +  max(0, 1 - MAD/median)) / 2`` of
  the intervals between connection starts;
* data size: the same two measures over the bytes the host sent per connection, plus
  smallness ``1 - mode/65535`` (check-ins are small);
* duration: the share of the time since the group's first connection (as far back as
  this detector has watched, up to ``HORIZON_S``) that its connections span, scaled down
  when they span less than a minute: a beacon keeps going, a burst long ago or a burst of
  page loads seconds apart does not;
* histogram: the connections spread evenly over the group's span (``1 - CV`` of counts in
  ``min(n, 12)`` equal bins); a burst of page loads is uneven.

An alert needs ``total >= THRESHOLD``. Threat modifiers, as RITA's prevalence: the
destination's /24 contacted by other internal hosts as well (among the connections kept,
``HORIZON_S``) is a shared service (no alert); each of these halves the score: its /16 is contacted by other internal hosts; the
period is slow (``SLOW_S``, the pace of updaters and IoT cloud heartbeats, while
hands-on C2 checks in within seconds to minutes); the host already polls other external
networks regularly (an appliance talking to its clouds). Below ``MIN_SCORE`` no alert. Only TCP to external
addresses is scored: regular polling of internal services (monitoring, NTP, DNS) and UDP
keep-alives that IoT devices send to their clouds' NAT/STUN endpoints are normal, while
C2 frameworks check in over HTTP(S). Few connections give a lower confidence.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import ADDR_KEY, DetectorBase, batch_addr_keys, key_to_str
from controller.detect.nets import batch_external, prefix16, subnet_keys
from controller.detect.stack import register
from netwarden.records.identity import uids
from netwarden.records.schema import FlowFlags

NS = 1_000_000_000
_GROUP = np.dtype([("src", ADDR_KEY), ("dst", ADDR_KEY), ("port", "<u2")])


def bowley_score(x: np.ndarray) -> float:
    """``1 - |Bowley skewness|`` of ``x`` (1 when the quartiles coincide)."""
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    if q3 - q1 <= 1e-9:
        return 1.0
    return float(1.0 - min(1.0, abs((q3 + q1 - 2 * q2) / (q3 - q1))))


def madm_score(x: np.ndarray) -> float:
    """``max(0, 1 - MAD/median)``: 1 for perfectly regular values."""
    med = float(np.median(x))
    if med <= 0:
        return 0.0
    return float(max(0.0, 1.0 - float(np.median(np.abs(x - med))) / med))


def beacon_scores(ts_s: np.ndarray, sizes: np.ndarray, watched_s: float,
                  min_span_s: float = 60.0) -> dict[str, float]:  # fmt: skip
    """RITA-style subscores for one group's connection start times (sorted, seconds) and
    bytes sent per connection."""
    d = np.diff(ts_s)
    ts_score = (bowley_score(d) + madm_score(d)) / 2 if len(d) else 0.0
    vals, counts = np.unique(sizes, return_counts=True)
    mode = float(vals[np.argmax(counts)])
    ds_score = (bowley_score(sizes) + madm_score(sizes) + max(0.0, 1 - mode / 65535)) / 3
    span = float(ts_s[-1] - ts_s[0])
    dur = min(1.0, span / watched_s) * min(1.0, span / min_span_s) if watched_s > 0 else 0.0
    nb = min(len(ts_s), 12)
    if span > 0 and nb >= 2:
        hist = np.histogram(ts_s, bins=nb, range=(ts_s[0], ts_s[-1]))[0].astype(float)
        hist_score = max(0.0, 1.0 - float(hist.std() / hist.mean()))
    else:
        hist_score = 0.0
    total = 0.25 * (ts_score + ds_score + dur + hist_score)
    return {"timestamp": ts_score, "data_size": ds_score, "duration": dur,
            "histogram": hist_score, "total": total}  # fmt: skip


@register
class BeaconDetector(DetectorBase):
    """c2_beaconing over TCP connections to external hosts."""

    name: ClassVar[str] = "beacon"
    version: ClassVar[str] = "2"  # 2: pending rows carry the flows' identity (uids in evidence)

    MIN_CONNS = 3
    THRESHOLD = 0.8
    HORIZON_S = 6 * 3600.0  # connections kept per group
    MAX_ROWS = 1 << 20
    EVAL_S = 5.0  # evaluate at most this often (data time)
    MAX_GROUPS = 2000  # groups scored per evaluation (the busiest)
    SLOW_S = 300.0  # median interval from which a beacon looks like a slow poller
    MIN_SCORE = 40.0  # modified scores below this are not alerted

    def __init__(self) -> None:
        super().__init__()
        self.start_ns = 0
        self.data_ns = 0  # newest record time (the clock may be wall time in a controller)
        self._rows: list[np.ndarray] = []
        self._buf = np.zeros(0, self._row_dtype())
        self._last_eval = 0
        self._alerted: dict[tuple[str, str], int] = {}
        self._beacon_peers: dict[str, set[str]] = {}  # host -> /16s it polls regularly
        self._reset: dict[int, int] = {}  # group hash -> last connection of its last alert

    @staticmethod
    def _p16(dst: Any) -> str:
        return key_to_str(prefix16(np.asarray([dst], ADDR_KEY))[0])

    @staticmethod
    def _row_dtype() -> np.dtype:
        return np.dtype([("g", _GROUP), ("gh", "<u8"), ("src_h", "<u8"), ("d24", "<u8"),
                         ("d16", "<u8"), ("ts", "<i8"), ("ob", "<u8"), ("fid", "<u8"),
                         ("sensor", "<u8"), ("session", "<u8")])  # fmt: skip

    @staticmethod
    def _h(keys: np.ndarray, salt: int = 0) -> np.ndarray:
        """A 64-bit mix of 16-byte keys (splitmix64 finaliser)."""
        r = np.ascontiguousarray(keys).view(np.uint64).reshape(-1, 2)
        z = r[:, 0] ^ (r[:, 1] * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(salt)
        for mul in (0xBF58476D1CE4E5B9, 0x94D049BB133111EB):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(mul)
        return z ^ (z >> np.uint64(31))

    # --- input ---------------------------------------------------------------------------
    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if not len(batch):
            return
        if record_type != "flow":
            return
        self._tick(int(batch["ts_last_ns"].max()))
        if not self.start_ns:
            self.start_ns = int(batch["ts_first_ns"].min())
        self.data_ns = max(self.data_ns, int(batch["ts_last_ns"].max()))
        sel = np.flatnonzero((batch["proto"] == 6)
                             & ((batch["flags"] & int(FlowFlags.INTERIM)) == 0))  # fmt: skip
        if not len(sel):
            return
        # addresses and their classes: shared with the other flow detectors of the stack
        out = batch_external(batch, "resp_addr")[sel] & ~batch_external(batch, "orig_addr")[sel]
        if not out.any():
            return
        sel = sel[out]
        src = batch_addr_keys(batch, "orig_addr")[sel]
        dst = batch_addr_keys(batch, "resp_addr")[sel]
        rows = np.zeros(len(sel), self._row_dtype())
        g = rows["g"]
        g["src"], g["dst"], g["port"] = src, dst, batch["resp_port"][sel]
        rows["ts"], rows["ob"] = batch["ts_first_ns"][sel], batch["orig_bytes"][sel]
        rows["fid"] = batch["flow_id"][sel]
        rows["sensor"], rows["session"] = batch["sensor"][sel], batch["session"][sel]
        self._rows.append(rows)

    @staticmethod
    def _distinct_src(buf: np.ndarray, col: str, heads: np.ndarray) -> np.ndarray:
        """Distinct internal sources in ``buf`` per value of ``col`` in ``heads``."""
        lo = np.uint64(0xFFFFF)
        col_v = buf[col]
        sub = np.isin(col_v, np.unique(heads[col]))
        pairs = np.unique((col_v[sub] & ~lo) | (buf["src_h"][sub] & lo))
        u, c = np.unique(pairs & ~lo, return_counts=True)
        hv = heads[col] & ~lo
        idx = np.minimum(np.searchsorted(u, hv), len(u) - 1)
        return np.where(u[idx] == hv, c[idx], 0)

    def advance(self, now_ns: int) -> list[Alert]:
        self._tick(now_ns)
        if not self._rows:
            return []
        pending = sum(len(r) for r in self._rows) + len(self._buf)
        if self.data_ns - self._last_eval < self.EVAL_S * NS and pending > 100_000:
            return []  # a big buffer is sorted at most every EVAL_S
        new = np.concatenate(self._rows)
        self._rows = []
        since = self._last_eval
        self._last_eval = self.data_ns
        buf = np.concatenate([self._buf, new])
        buf = buf[buf["ts"] >= self.data_ns - int(self.HORIZON_S * NS)]
        if len(buf) > self.MAX_ROWS:
            buf = buf[np.argsort(buf["ts"], kind="stable")[-self.MAX_ROWS :]]
        fresh = buf["gh"] == 0  # hashes are computed once, for the rows that are kept
        if fresh.any():
            g = buf["g"][fresh]
            src_h = self._h(g["src"])
            port = g["port"].astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93)
            buf["src_h"][fresh] = src_h
            buf["gh"][fresh] = (src_h * np.uint64(3) ^ self._h(g["dst"]) ^ port) | np.uint64(1)
            buf["d24"][fresh] = self._h(subnet_keys(g["dst"]))
            buf["d16"][fresh] = self._h(prefix16(g["dst"]))
        buf = self._buf = buf[np.argsort(buf["gh"], kind="stable")]
        gh = buf["gh"]
        starts = np.flatnonzero(np.r_[True, gh[1:] != gh[:-1]])
        ends = np.r_[starts[1:], len(buf)]
        n = ends - starts
        newest = np.maximum.reduceat(buf["ts"], starts) if len(buf) else np.zeros(0, np.int64)
        cand = np.flatnonzero((n >= self.MIN_CONNS) & (newest >= since))
        if len(cand) > self.MAX_GROUPS:
            cand = cand[np.argsort(-n[cand], kind="stable")[: self.MAX_GROUPS]]
        if not len(cand):
            return []
        heads = buf[starts[cand]]
        p24 = self._distinct_src(buf, "d24", heads)
        p16 = self._distinct_src(buf, "d16", heads)
        watched = min(self.HORIZON_S, (self.data_ns - self.start_ns) / NS)
        out: list[Alert] = []
        for j, gi in enumerate(cand):
            if p24[j] >= 2:
                continue  # a service other internal hosts use too
            rows = buf[starts[gi] : ends[gi]]
            rows = rows[np.argsort(rows["ts"], kind="stable")]
            reset = self._reset.get(int(rows["gh"][0]))
            if reset is not None:  # evidence starts afresh after an alert on this group
                rows = rows[rows["ts"] > reset]
                if len(rows) < self.MIN_CONNS:
                    continue
            ts_s = (rows["ts"] - rows["ts"][0]) / NS
            # watched: since the group's first connection (of this evidence), at most the
            # detector's age: a beacon that keeps going since it began scores 1
            since_first = (self.data_ns - int(rows["ts"][0])) / NS
            sc = beacon_scores(ts_s, rows["ob"].astype(float), min(watched, since_first))
            if sc["total"] < self.THRESHOLD:
                continue
            a = self._alert(rows, sc, int(p16[j]))
            if a is not None:
                out.append(a)
        return out

    def _alert(self, rows: np.ndarray, sc: dict[str, float], p16: int) -> Alert | None:
        g = rows["g"][0]
        src, dst, port = key_to_str(g["src"]), key_to_str(g["dst"]), int(g["port"])
        last = self._alerted.get((src, dst))
        if last is not None and self.now_ns - last < 3600 * NS:
            return None
        self._alerted[(src, dst)] = self.now_ns
        self._reset[int(rows["gh"][0])] = int(rows["ts"].max())
        self.protect(src, self.now_ns)
        n = len(rows)
        iv = np.diff(rows["ts"]) / NS
        mods = []
        if p16 >= 2:
            mods.append("other internal hosts use the same /16")
        if float(np.median(iv)) >= self.SLOW_S:
            mods.append(f"slow period (>= {self.SLOW_S:.0f} s), as updaters and IoT clouds poll")
        if self._beacon_peers.get(src, set()) - {self._p16(g["dst"])}:
            mods.append("the host also polls other external networks (an appliance)")
        score = 100 * sc["total"] * (n / (n + 2)) * 0.5 ** len(mods)
        if score < self.MIN_SCORE:
            self._beacon_peers.setdefault(src, set()).add(self._p16(g["dst"]))
            del self._alerted[(src, dst)]
            return None  # a regular but explained poller: not worth an alert
        self._beacon_peers.setdefault(src, set()).add(self._p16(g["dst"]))
        evidence: dict[str, Any] = {
            "connections": n,
            "median_interval_s": round(float(np.median(iv)), 2),
            "interval_mad_s": round(float(np.median(np.abs(iv - np.median(iv)))), 2),
            "median_bytes_sent": float(np.median(rows["ob"])),
            "subscores": {k: round(v, 3) for k, v in sc.items()},
            "reference": f"RITA-style score >= {self.THRESHOLD} over >= {self.MIN_CONNS} "
            "connections; no other internal host uses this /24",
            "other_internal_hosts_same_16": max(0, p16 - 1),
            "modifiers": mods,
            "flow_uids": uids(rows["sensor"][-5:], rows["session"][-5:], rows["fid"][-5:]),
        }
        return Alert(
            "c2_beaconing", src, [dst], score, min(0.95, sc["total"] * (1 - 1 / n)),
            rows["ts"][0] / NS, self.now_ns / NS, "T1071.001", evidence,
            f"{src} checks in with {dst}:{port} every ~{np.median(iv):.0f} s with ~"
            f"{np.median(rows['ob']):.0f} bytes ({n} connections, beacon score "
            f"{sc['total']:.2f}); no other internal host talks to that network",
            self.name, self.version,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d.update(start_ns=self.start_ns, data_ns=self.data_ns, buf=self._buf.view(np.uint8).copy(),
                 last_eval=self._last_eval, reset=[[g, t] for g, t in self._reset.items()],
                 pending=(np.concatenate(self._rows) if self._rows
                          else np.zeros(0, self._row_dtype())).view(np.uint8).copy(),
                 alerted=[[s, t, v] for (s, t), v in self._alerted.items()])  # fmt: skip
        return d

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        self.start_ns = int(d.get("start_ns", 0))
        self.data_ns = int(d.get("data_ns", 0))
        raw = np.asarray(d.get("buf", np.zeros(0, np.uint8)), np.uint8)
        self._buf = raw.view(self._row_dtype()).copy()
        self._last_eval = int(d.get("last_eval", 0))
        self._reset = {int(g): int(t) for g, t in d.get("reset", [])}
        pend = np.asarray(d.get("pending", np.zeros(0, np.uint8)), np.uint8)
        pend = pend.view(self._row_dtype())
        self._rows = [pend.copy()] if len(pend) else []
        self._alerted = {(str(s), str(t)): int(v) for s, t, v in d.get("alerted", [])}
