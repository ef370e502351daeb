"""Denial of service, victim-centric: syn_flood, icmp_flood, udp_amplification,
dns_amplification and tcp_reflection, from the per-host telemetry windows (``host``).

Each reads what the victim received in one window, as a rate (per second of window):
SYNs it did not answer, ICMP packets, UDP packets and bytes nobody on it asked for (it sent
far fewer UDP packets, or DNS queries, than it received), SYN-ACKs and RSTs for
connections it never opened (few SYNs sent). The bar is the larger of a fixed floor (a rate
no LAN host sees in normal use) and ``FACTOR`` times the victim's learnt level, learnt from
its windows that raised nothing, and from all of them for a day after an operator called a
flood on it a false positive (``DetectorBase.feedback``: a server whose normal load is
above a floor then raises its own bar).

Spoofed and reflected floods name no attacker: thousands of sources are forged or are
innocent reflectors, so the response is a rate limit or upstream advice, never a ban. When
one source sends most of the flood (``pair`` records) and the sources are few, it is named.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import addr_keys, batch_column, key_to_str
from controller.detect.host_windows import HostWindowDetector
from controller.detect.stack import register

NS = 1_000_000_000

#: kind -> (ATT&CK id, floor per second, what is counted)
KINDS = {
    "syn_flood": ("T1499.002", 500.0, "unanswered SYNs"),
    "icmp_flood": ("T1498.001", 500.0, "ICMP packets"),
    "udp_amplification": ("T1498.002", 500.0, "unsolicited UDP packets"),
    "dns_amplification": ("T1498.002", 20.0, "unsolicited DNS responses"),
    "tcp_reflection": ("T1498.002", 500.0, "SYN-ACKs/RSTs for connections it never opened"),
}
FEATURES = tuple(KINDS)


@register
class FloodDetector(HostWindowDetector):
    name: ClassVar[str] = "flood"
    version: ClassVar[str] = "1"

    FACTOR = 10.0  # above the victim's learnt level by this much
    MIN_SOURCES_SPOOFED = 20  # more distinct sources than this: no single attacker named
    ONE_SOURCE_SHARE = 0.8
    DNS_MIN_BYTES_PER_S = 16_000.0  # amplified DNS: big responses add up
    DNS_MIN_MEAN_SIZE = 512.0  # mean IP bytes per DNS response received
    UDP_MIN_SOURCES = 10
    UDP_FAST_FACTOR = 4.0  # fewer sources: the rate must be this many times the floor ...
    UDP_AMP_MEAN_SIZE = 300.0  # ... in datagrams this big on average (amplified answers)
    SUPPRESS_S = 600.0
    MATURE_WINDOWS = 300  # windows of history before a learnt level raises a bar
    LEARNS_FROM_FEEDBACK = FEATURES

    FLOORS: ClassVar[tuple[float, ...]] = tuple(KINDS[k][1] for k in FEATURES)
    PAIRS_S: ClassVar[float] = 30.0

    @staticmethod
    def rates(h: np.ndarray) -> np.ndarray:
        """Per record, the per-second rate of each ``FEATURES`` entry (vectorised)."""
        col = functools.partial(batch_column, h)  # shared, contiguous columns
        win = np.maximum((col("ts_end_ns") - col("ts_start_ns")) / NS, 1e-3)
        f = {k: col(k).astype(float) for k in (
            "in_syn_noreply", "in_icmp_pkts", "in_udp_pkts", "out_udp_pkts", "in_dns_responses",
            "out_dns_queries", "in_synack", "in_rst", "out_syn")}  # fmt: skip
        unsolicited_udp = np.maximum(f["in_udp_pkts"] - 4 * f["out_udp_pkts"], 0)
        unsolicited_dns = np.maximum(f["in_dns_responses"] - 2 * f["out_dns_queries"], 0)
        reflected = np.maximum(f["in_synack"] + f["in_rst"] - 2 * f["out_syn"], 0)
        cols = (f["in_syn_noreply"], f["in_icmp_pkts"], unsolicited_udp, unsolicited_dns, reflected)
        out = np.empty((len(cols), len(win)))
        for j, c in enumerate(cols):  # column by column: no stacked temporary
            np.divide(c, win, out=out[j])
        return out.T  # (records, kinds), each column contiguous

    def columns(self, h: np.ndarray) -> list[np.ndarray]:
        x = self.rates(h)
        return [x[:, j] for j in range(len(FEATURES))]

    def protected_by(self, alert: Alert) -> list[str]:
        return alert.victims  # the victim's flooded windows are not its normal

    def vouch_hosts(self, kind: str, attacker: str | None, victims: list[str]) -> list[str]:
        return list(victims)  # the victim's windows carry the levels (victim-centric)

    def judge(
        self, h: np.ndarray, hk: np.ndarray, x: np.ndarray, now_ns: int
    ) -> tuple[list[Alert], np.ndarray]:
        """The windows over a floor: learnt levels, the per-kind conditions, alerts."""
        floors = np.array(self.FLOORS)
        mean, std, cnt = self.baseline.reference(hk)
        ref = mean + 3 * std
        # Only a long history may raise the bar (a flood's own ramp-up is not "normal").
        mature = (cnt >= self.MATURE_WINDOWS)[:, None]
        hit = x >= np.maximum(floors, np.where(mature, self.FACTOR * ref, 0.0))
        win = np.maximum((h["ts_end_ns"] - h["ts_start_ns"]) / NS, 1e-3)
        dns_i, udp_i = FEATURES.index("dns_amplification"), FEATURES.index("udp_amplification")
        dns_bytes = h["in_dns_bytes"].astype(float)
        dns_resp = np.maximum(h["in_dns_responses"].astype(float), 1)
        hit[:, dns_i] &= (dns_bytes / win >= self.DNS_MIN_BYTES_PER_S) & (
            dns_bytes / dns_resp >= self.DNS_MIN_MEAN_SIZE
        )
        # mostly DNS: it is DNS amplification, not generic UDP reflection
        mostly_dns = dns_bytes >= 0.5 * h["in_udp_bytes"].astype(float)
        # many reflectors, or a few sending big unsolicited datagrams very fast
        udp_mean = h["in_udp_bytes"].astype(float) / np.maximum(h["in_udp_pkts"].astype(float), 1)
        many = h["in_src_hosts"] >= self.UDP_MIN_SOURCES
        few_fast = (x[:, udp_i] >= self.UDP_FAST_FACTOR * KINDS["udp_amplification"][1]) & (
            udp_mean >= self.UDP_AMP_MEAN_SIZE
        )
        hit[:, udp_i] &= (many | few_fast) & ~(mostly_dns & hit[:, dns_i])
        alerts = []
        for i, j in zip(*np.nonzero(hit), strict=True):  # victims over a floor: few
            key = addr_keys(h["addr"][i : i + 1], h["ip_version"][i : i + 1])[0]
            a = self._alert(FEATURES[j], h[i], key, hk[i], float(x[i, j]), float(ref[i, j]), now_ns)
            if a is not None:
                alerts.append(a)
        return alerts, hit.any(axis=1)

    def _alert(
        self,
        kind: str,
        r: np.void,
        key: np.void,
        hk: np.uint64,
        rate: float,
        ref: float,
        now_ns: int,
    ) -> Alert | None:
        victim = key_to_str(key)
        end = int(r["ts_end_ns"])
        if self.suppressed(kind, victim, end, self.SUPPRESS_S):
            return None
        sources = int(r["in_src_hosts"])
        attacker, share = None, 0.0
        p = self.pairs.records()
        if len(p) and sources < self.MIN_SOURCES_SPOOFED:
            m = (addr_keys(p["dst"], p["ip_version"]) == key) & (
                p["ts_last_ns"] >= int(r["ts_start_ns"])
            )
            if m.any():
                src = addr_keys(p["src"][m], p["ip_version"][m])
                u, inv = np.unique(src, return_inverse=True)
                pk = np.bincount(inv, weights=p["pkts"][m])
                top = int(np.argmax(pk))
                share = float(pk[top] / max(pk.sum(), 1))
                if share >= self.ONE_SOURCE_SHARE:
                    attacker = key_to_str(u[top])
        mitre, floor, what = KINDS[kind]
        win = max((end - int(r["ts_start_ns"])) / NS, 1e-3)
        ev: dict[str, Any] = {
            "rate_per_s": round(rate, 1), "measure": what, "floor_per_s": floor,
            "learnt_reference_per_s": round(ref, 2), "distinct_sources": sources,
            "window_s": win, "in_pkts": int(r["in_pkts"]), "in_bytes": int(r["in_bytes"]),
        }  # fmt: skip
        if kind == "dns_amplification":
            ev["dns_response_bytes"] = int(r["in_dns_bytes"])
            ev["dns_queries_sent"] = int(r["out_dns_queries"])
        if attacker:
            ev["top_source_share"] = round(share, 3)
        who = attacker or (f"{sources} sources (spoofed or reflectors)")
        severity = min(100.0, 50 + 15 * np.log10(max(rate / max(floor, 1), 1)) * 2)
        return Alert(
            kind, attacker, [victim], severity, min(0.99, 0.7 + 0.1 * np.log10(max(rate / floor, 1))),
            int(r["ts_start_ns"]) / NS, now_ns / NS, mitre, ev,
            f"{victim} received {rate:.0f} {what} per second from {who}; "
            f"{self.baseline.describe(hk, FEATURES.index(kind), '/s')}.",
            self.name, self.version,
        )  # fmt: skip
