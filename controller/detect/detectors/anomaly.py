"""Learnt per-host behaviour: ``traffic_anomaly`` and ``data_exfiltration``.

Every HOST window is scored by the autoencoder ensemble (``controller.detect.model``) and
compared with the host's learnt distributions (``controller.detect.baselines``: host, then
/24 group, then global tier; plus an hour-of-day tier per host for volume). Windows of hosts
that raised an alert (here or, through ``protect``, in this detector) and windows the model
finds anomalous are not learnt.

Operator feedback: when an operator calls a ``traffic_anomaly`` or ``data_exfiltration``
alert about a host a false positive, that host's windows are learnt for ``VOUCH_S`` after
the feedback (``DetectorBase.feedback``), all of them, even those far above its baseline,
the model finds odd, or a recent alert protects. Its learnt levels (and its hour-of-day
level) then rise to what the operator called benign, so the detector stops raising it
within a few windows, where triage's suppression of the pattern only hides it for a while.

* ``traffic_anomaly``: far above: a window's volume (bytes both ways) at least ``FACTOR``
  times the host's learnt p99 for that hour of day (the all-hours p99 until that hour slot
  is warm), above ``FLOOR_BYTES``; the model's verdict raises the score and confidence
  (it knows the whole network, so a level normal elsewhere is low priority). Far below:
  a host silent for ``SILENT_S`` at an hour of day whose learnt median volume is at least
  ``BELOW_FLOOR`` per window (a server or service that stopped). Evidence quotes the
  volume, the reference and its tier, and the model's score, threshold and p-value.
* ``data_exfiltration``: over ``SPAN_S``, an internal host sends at least ``EXFIL_BYTES`` to
  one external address, at least ``ASYMMETRY`` times what comes back, to a network no other
  internal host sends to (rare peer), and ``FACTOR`` times above its own learnt p99 of
  outbound bytes per window when it has a baseline. A mail upload to the site's relay is
  internal (and small); a camera that always uploads has learnt that level.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import (
    ADDR_KEY,
    DetectorBase,
    addr_keys,
    batch_column,
    join_batches,
    key_to_str,
)
from controller.detect.baselines import QuantileBaseline, TieredBaseline
from controller.detect.features import LatestRows
from controller.detect.model import FEATURES, HostModel
from controller.detect.nets import external, subnet_keys
from controller.detect.stack import register

NS = 1_000_000_000
BASE_FEATURES = ("volume", "out_bytes", "out_flows", "out_dst_hosts", "out_dst_ports",
                 "out_dns_queries", "in_dst_ports")  # fmt: skip


def _hour_keys(keys: np.ndarray, ts_ns: np.ndarray) -> np.ndarray:
    r = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16).copy()
    r[:, 0] ^= ((ts_ns // (3600 * NS)) % 24 + 1).astype(np.uint8)
    return r.view(ADDR_KEY).reshape(-1)


@register
class HostAnomalyDetector(DetectorBase):
    name: ClassVar[str] = "host_anomaly"
    version: ClassVar[str] = "1"

    FACTOR = 20.0
    FLOOR_BYTES = 10e6  # per telemetry window
    EXFIL_BYTES = 5e6
    SPAN_S = 60.0
    ASYMMETRY = 5.0
    CANDIDATE_BYTES = 100e3  # pair windows from this size are tracked for exfiltration
    HOUR_WARM = 300
    SILENT_S = 600.0  # no window for this long counts as silent
    SILENCE_CHECK_S = 60.0
    BELOW_FLOOR = 1e5  # learnt median bytes per window from which silence is an anomaly
    KEEP_SENDERS = 1 << 16
    SENDER_BYTES = 1e6  # windows from which a host's features are kept for exfil evidence
    LEARN_ROWS = 2048  # host windows learnt per second of network time at most (sampled)
    LEARNS_FROM_FEEDBACK = ("traffic_anomaly", "data_exfiltration")

    def __init__(self) -> None:
        super().__init__()
        self.base = TieredBaseline(BASE_FEATURES)
        self.hourly = QuantileBaseline(1)
        self.model = HostModel()
        self._hosts: list[np.ndarray] = []
        self._pairs: list[np.ndarray] = []
        self._up: dict[tuple[bytes, bytes], list[tuple[int, int, int]]] = {}
        self._senders: dict[bytes, set[bytes]] = {}  # external /24 -> internal senders
        # the latest features of big senders, for exfiltration evidence
        self._sender_features = LatestRows(self.KEEP_SENDERS, ADDR_KEY, len(FEATURES), np.float32)
        self._alerted: dict[tuple[str, str], int] = {}
        self._budget_sec, self._budget = -1, 0
        self._last_silence = 0
        self.data_ns = 0  # newest record time (the clock may be wall time in a controller)

    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if not len(batch):
            return
        if record_type == "host":
            self._hosts.append(batch)
            end = int(batch_column(batch, "ts_end_ns").max())
            self.data_ns = max(self.data_ns, end)
            self._tick(end)
        elif record_type == "pair":
            self._pairs.append(batch)
            self.data_ns = max(self.data_ns, int(batch["ts_end_ns"].max()))

    @staticmethod
    def _base_x(h: Any) -> np.ndarray:
        vol = h["out_bytes"].astype(float) + h["in_bytes"].astype(float)
        cols = [vol] + [h[f].astype(float) for f in BASE_FEATURES[1:]]
        return np.stack(cols, axis=1)

    def advance(self, now_ns: int) -> list[Alert]:
        self._tick(now_ns)
        out: list[Alert] = []
        if self._hosts:
            h = join_batches(self._hosts)
            self._hosts = []
            out += self._host_windows(h)
        if self._pairs:
            p = join_batches(self._pairs)
            self._pairs = []
            out += self._exfil(p)
        if self.data_ns - self._last_silence >= self.SILENCE_CHECK_S * NS:
            self._last_silence = self.data_ns
            out += self._silence()
        return out

    def _silence(self) -> list[Alert]:
        """Hosts that went quiet (no window for ``SILENT_S``) at an hour of day in which
        their learnt median volume is high: far below the learnt level (a service down)."""
        tb = self.base.tiers[0]
        if not len(tb.keys):
            return []
        last = tb.last_ns[tb.slot]
        now = self.data_ns  # record time (the clock may be wall time in a controller)
        gone = (last < now - self.SILENT_S * NS) & (last > now - 7200 * NS)
        if not gone.any():
            return []
        keys = tb.keys[gone]
        hk = _hour_keys(keys, np.full(len(keys), now, np.int64))
        med, cnt = self.hourly.quantile(hk, 0.5)
        hit = (cnt >= self.HOUR_WARM) & (med[:, 0] >= self.BELOW_FLOOR)
        out = []
        for k, m, c, t in zip(keys[hit], med[hit, 0], cnt[hit], last[gone][hit], strict=True):
            host = key_to_str(k)
            if not self._once("traffic_anomaly", host):
                continue
            out.append(Alert(
                "traffic_anomaly", host, [host], 35.0, 0.6, t / NS, self.now_ns / NS, "",
                {"volume_bytes": 0, "silent_s": (now - t) / NS,
                 "reference_median_bytes_per_window": m, "reference_tier": "this hour of day",
                 "reference_windows": int(c), "direction": "below"},
                f"{host} has been silent for {(now - t) / NS:.0f} s at an hour when it "
                f"usually moves {m / 1e6:.2f} MB per window (learnt over {int(c)} windows)",
                self.name, self.version,
            ))  # fmt: skip
        return out

    # --- host windows ----------------------------------------------------------------------
    def _host_windows(self, h_all: np.ndarray) -> list[Alert]:
        # Only three kinds of windows need work: big ones (may alert), a bounded random
        # sample to learn, and big senders (evidence for exfiltration). Select them first.
        out_all = batch_column(h_all, "out_bytes").astype(float)
        vol_all = out_all + batch_column(h_all, "in_bytes").astype(float)
        big = vol_all >= self.FLOOR_BYTES
        sample = ~big
        n_rest = int(sample.sum())
        sec = int(batch_column(h_all, "ts_end_ns").max()) // NS
        if sec != self._budget_sec:  # a learning budget per second of network time
            self._budget_sec, self._budget = sec, self.LEARN_ROWS
        if self._budget <= 0:
            sample[:] = False
        elif n_rest > self._budget:  # under load, learn a random sample within the budget
            pick = np.flatnonzero(sample)[self.model.rng.choice(n_rest, self._budget,
                                                                replace=False)]  # fmt: skip
            sample[:] = False
            sample[pick] = True
        self._budget -= int(sample.sum())
        sender = out_all >= self.SENDER_BYTES
        sel = np.flatnonzero(big | sample | sender)
        h = h_all[sel]  # the selected records (few)
        big, learn, sender = big[sel], sample[sel], sender[sel]
        keys = addr_keys(h["addr"], h["ip_version"])
        x = self._base_x(h)
        xm = HostModel.features(h)
        hk = _hour_keys(keys, h["ts_start_ns"])
        vol = x[:, 0]
        n = len(sel)
        vref = np.zeros(n)
        tier = np.full(n, -1)
        use_hour = np.zeros(n, bool)
        far = big.copy()
        if far.any():
            ref, tier[far] = self.base.reference(keys[far])
            href, hcnt = self.hourly.quantile(hk[far], 0.99)
            use_hour[far] = hcnt >= self.HOUR_WARM
            vref[far] = np.where(use_hour[far], href[:, 0], ref[:, 0])
        far &= (tier >= 0) & (vol >= self.FACTOR * np.maximum(vref, 1))
        learn |= big & ~far  # big but explained by the baseline: learn it
        vk = self.vouched_keys()
        vouched = np.isin(keys, vk) if len(vk) else np.zeros(n, bool)
        learn |= big & vouched  # an operator called this host's levels benign
        odd = self.model.anomalous(self.model.score(xm))
        out: list[Alert] = []
        for i in np.flatnonzero(far):
            a = self._volume_alert(
                int(h["ts_start_ns"][i]),
                keys[i],
                vol[i],
                vref[i],
                int(tier[i]),
                bool(use_hour[i]),
                xm[i],
                bool(odd[i]),
            )
            if a is not None:
                out.append(a)
        prot = self.protected_keys()
        learn &= ~odd | vouched
        if len(prot):
            learn &= ~np.isin(keys, prot) | vouched
        if learn.any():
            self.base.learn(keys[learn], x[learn], h["ts_end_ns"][learn])
            self.hourly.update(hk[learn], x[learn, :1], h["ts_end_ns"][learn])
            self.model.learn(xm[learn])
        if sender.any():
            self._sender_features.append(keys[sender], xm[sender])
        return out

    def _volume_alert(self, ts_ns: int, key: np.void, vol: float, ref: float, tier: int,
                      hourly: bool, xm: np.ndarray, odd: bool) -> Alert | None:  # fmt: skip
        host = key_to_str(key)
        if not self._once("traffic_anomaly", host):
            return None
        what = "this hour of day" if hourly else TieredBaseline.TIERS[tier]
        factor = vol / max(ref, 1.0)
        return Alert(
            "traffic_anomaly", host, [host],
            min(70.0, 20 + 5 * np.log10(factor) + (20 if odd else 0)), 0.8 if odd else 0.5,
            ts_ns / NS, self.now_ns / NS, "",
            {"volume_bytes": vol, "reference_p99_bytes": ref, "reference_tier": what,
             "factor": round(factor, 1), "direction": "above", "model": self.model.explain(xm)},
            f"{host} moved {vol / 1e6:.1f} MB in one window, {factor:.0f}x its learnt p99 "
            f"({ref / 1e6:.2f} MB, {what}); the multivariate model "
            f"{'agrees' if odd else 'finds the window ordinary for the network'}",
            self.name, self.version,
        )  # fmt: skip

    def _once(self, kind: str, who: str) -> bool:
        last = self._alerted.get((kind, who))
        if last is not None and self.now_ns - last < 1800 * NS:
            return False
        self._alerted[(kind, who)] = self.now_ns
        self.protect(who, self.now_ns)
        return True

    # --- exfiltration ---------------------------------------------------------------------
    def _exfil(self, p: np.ndarray) -> list[Alert]:
        big = p[p["bytes"] >= self.CANDIDATE_BYTES]
        if not len(big):
            return []
        src = addr_keys(big["src"], big["ip_version"])
        dst = addr_keys(big["dst"], big["ip_version"])
        up = external(dst) & ~external(src)
        down = external(src) & ~external(dst)
        span = int(self.SPAN_S * NS)
        touched = set()
        for i in np.flatnonzero(up | down):
            s, d = (bytes(src[i]), bytes(dst[i])) if up[i] else (bytes(dst[i]), bytes(src[i]))
            t = int(big["ts_end_ns"][i])
            rec = (t, int(big["bytes"][i]), 0) if up[i] else (t, 0, int(big["bytes"][i]))
            self._up.setdefault((s, d), []).append(rec)
            if up[i]:
                d24 = bytes(subnet_keys(dst[i : i + 1])[0])
                self._senders.setdefault(d24, set()).add(s)
                touched.add((s, d))
        out: list[Alert] = []
        for s, d in touched:
            rows = [r for r in self._up[(s, d)] if r[0] >= self.data_ns - span]
            self._up[(s, d)] = rows
            sent, back = sum(r[1] for r in rows), sum(r[2] for r in rows)
            if sent < self.EXFIL_BYTES or sent < self.ASYMMETRY * back:
                continue
            dk = np.frombuffer(d, ADDR_KEY)
            others = self._senders.get(bytes(subnet_keys(dk)[0]), set()) - {s}
            if others:
                continue
            sk = np.frombuffer(s, ADDR_KEY)
            ref, tier = self.base.reference(sk)
            per_window = ref[0, 1]
            if tier[0] == 0 and sent < self.FACTOR * per_window * 10:
                continue  # this host routinely sends this much
            a = self._exfil_alert(s, d, sent, back, rows, per_window, int(tier[0]))
            if a is not None:
                out.append(a)
        if len(self._up) > 100_000:
            cut = self.data_ns - span
            self._up = {k: v for k, v in self._up.items() if v and v[-1][0] >= cut}
        return out

    def _exfil_alert(self, s: bytes, d: bytes, sent: int, back: int, rows: list[Any],
                     ref: float, tier: int) -> Alert | None:  # fmt: skip
        host, peer = key_to_str(s), key_to_str(d)
        if not self._once("data_exfiltration", host):
            return None
        hit = np.flatnonzero(self._sender_features.keys() == np.frombuffer(s, ADDR_KEY)[0])
        xm = self._sender_features.rows()[hit[-1]] if len(hit) else None
        where = TieredBaseline.TIERS[tier] if tier >= 0 else "none yet"
        ev: dict[str, Any] = {
            "bytes_sent": sent, "bytes_received": back, "span_s": self.SPAN_S,
            "asymmetry": round(sent / max(back, 1), 1),
            "reference_p99_out_bytes_per_window": ref, "reference_tier": where,
            "other_internal_senders_to_peer_24": 0,
        }  # fmt: skip
        if xm is not None:
            ev["model"] = self.model.explain(xm)
        score = min(90.0, 50 + 10 * np.log10(sent / self.EXFIL_BYTES + 1) * 3)
        return Alert(
            "data_exfiltration", host, [peer], score, 0.7, min(r[0] for r in rows) / NS,
            self.now_ns / NS, "T1048", ev,
            f"{host} sent {sent / 1e6:.1f} MB to rare external peer {peer} in "
            f"{self.SPAN_S:.0f} s, {sent / max(back, 1):.0f}x what came back "
            f"(learnt p99 per window {ref / 1e6:.2f} MB, {where})", self.name, self.version,
        )  # fmt: skip

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d.update(base=self.base.state_dict(), hourly=self.hourly.state_dict(),
                 model=self.model.state_dict(),
                 data_ns=self.data_ns, last_silence=self._last_silence,
                 alerted=[[k, w, t] for (k, w), t in self._alerted.items()])  # fmt: skip
        return d

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        self.base.load_state(d["base"])
        self.hourly.load_state(d["hourly"])
        self.model.load_state(d["model"])
        self._alerted = {(str(k), str(w)): int(t) for k, w, t in d.get("alerted", [])}
        self.data_ns = int(d.get("data_ns", 0))
        self._last_silence = int(d.get("last_silence", 0))
