"""Reconnaissance: port scans, host sweeps (ICMP, TCP, UDP, ARP) and active OS fingerprinting.

``scan`` reads the per-host telemetry windows (``host``: distinct destination ports and
hosts per window and per long window, SYNs, flows each way) and, for the few hosts that
cross a threshold, the ``pair`` and ``arp`` records that name their targets:

* port_scan: many distinct destination ports, at least ``PORTS_PER_HOST`` per target host
  (vertical), from a host that originates far more flows than it receives (a server
  answering mid-stream traffic is never the scanner: Zeek's originator rules).
* host_sweep: many distinct target hosts on few ports, concentrated in one subnet (a /24
  or /64), or many ARP who-has for distinct addresses.

Thresholds are the larger of a fixed floor and a multiple of the host's own learnt level
(``KeyedBaseline`` over its benign windows), so a monitoring server that always polls a
subnet is learnt, while a learnt baseline never raises the bar above a real scan's size.

``os_fingerprint`` reads flow records: TCP probes with flag combinations no stack sends in
normal traffic (SYN with FIN, no flags at all, FIN/PSH/URG without a handshake, URG on a
flow that never opened) from one source to one host within a minute.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import (
    ADDR_KEY,
    DetectorBase,
    addr_keys,
    batch_column,
    flow_uids,
    key_to_str,
    pack_keys,
    unpack_keys,
)
from controller.detect.features import RecordBuffer
from controller.detect.host_windows import HostWindowDetector
from controller.detect.stack import register
from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE

NS = 1_000_000_000


def _ipv4_key(ip4: np.ndarray) -> np.ndarray:
    a = np.zeros((len(ip4), 16), np.uint8)
    a[:, :4] = ip4
    return addr_keys(a, np.full(len(ip4), 4, np.uint8))


def _subnet(keys: np.ndarray, wide: bool = False) -> np.ndarray:
    """The /24 (IPv4) or /64 (IPv6) of each key, as a key; ``wide``: /16 or /48."""
    raw = keys.view(np.uint8).reshape(-1, 16).copy()
    v4 = (raw[:, :12] == np.array([0] * 10 + [255, 255], np.uint8)).all(axis=1)
    raw[v4, 14 if wide else 15 :] = 0
    raw[~v4, 6 if wide else 8 :] = 0
    return raw.view(ADDR_KEY).reshape(-1)


class _Over(NamedTuple):
    """One window over a scan or sweep threshold: its record, address key and hash,
    features, the host's learnt levels, and the time of the check."""

    r: np.void
    key: np.void
    hk: np.uint64
    x: np.ndarray
    learnt: np.ndarray
    now_ns: int


@register
class ScanDetector(HostWindowDetector):
    """port_scan and host_sweep from host telemetry windows."""

    name: ClassVar[str] = "scan"
    version: ClassVar[str] = "1"

    PORT_FLOOR = 40  # distinct ports in one window (default 1 s)
    PORT_FLOOR_LONG = 100  # ... in the long window (60 s)
    PORTS_PER_HOST = 4  # vertical: ports per target host
    HOST_FLOOR = 40  # distinct target hosts in one window
    HOST_FLOOR_LONG = 100
    HOSTS_PER_PORT = 4  # sweep: target hosts per port
    FAILED_SHARE = 0.5  # network scan (many hosts and ports): SYNs unanswered or refused
    SUBNET_SHARE = 0.5  # share of the targets inside the busiest /24
    UNANSWERED = 0.5  # a /16-wide sweep: packets back at most this share of packets sent
    BASELINE_FACTOR = 3.0  # sweep threshold >= factor * learnt level (mature hosts)
    MATURE_WINDOWS = 100  # windows of history before a learnt level may raise a threshold
    MAX_RAISE = 4 * 100.0  # the most a learnt level may raise a sweep threshold to
    SUPPRESS_S = 600.0  # one alert per kind and attacker this long
    FEATURES = ("out_dst_ports", "out_dst_hosts", "out_dst_ports_long", "out_dst_hosts_long")
    # Only windows over a floor can be a scan or a sweep (a learnt level only ever raises
    # a threshold): the rest is learnt, nothing more.
    FLOORS: ClassVar[tuple[float, ...]] = (PORT_FLOOR, HOST_FLOOR, PORT_FLOOR_LONG, HOST_FLOOR_LONG)
    PAIRS_S: ClassVar[float] = 120.0

    def __init__(self) -> None:
        super().__init__()
        self.arps = RecordBuffer(ARP_DTYPE, "ts_ns", 120.0)

    def observe_other(self, record_type: str, batch: np.ndarray) -> None:
        if record_type == "arp":
            self.arps.add(batch[batch["op"] == 1])

    def on_clock_reset(self) -> None:
        super().on_clock_reset()
        self.arps.clear()

    def columns(self, h: np.ndarray) -> list[np.ndarray]:
        return [batch_column(h, f) for f in self.FEATURES]

    def protected_by(self, alert: Alert) -> list[str]:
        return [alert.attacker] if alert.attacker else []

    def judge(
        self, h: np.ndarray, hk: np.ndarray, x: np.ndarray, now_ns: int
    ) -> tuple[list[Alert], np.ndarray]:
        """The windows over a floor: the host's learnt high level ("p99"), the scan and
        sweep conditions, alerts."""
        mean, std, cnt = self.baseline.reference(hk)
        ref = mean + 3 * std
        # A learnt level raises the sweep bar only for hosts with a long history, and at
        # most MAX_RAISE times: a monitoring server polling its subnet is learnt, but no
        # baseline masks a port scan (the port floors are fixed).
        mature = (cnt >= self.MATURE_WINDOWS)[:, None]
        raise_ = np.where(mature, np.minimum(self.BASELINE_FACTOR * ref, self.MAX_RAISE), 1.0)
        ports, hosts = x[:, 0], x[:, 1]
        ports_l, hosts_l = x[:, 2], x[:, 3]
        originates = h["out_flows"].astype(float) >= 2 * h["in_flows"].astype(float)
        many_ports = (ports >= self.PORT_FLOOR) | (ports_l >= self.PORT_FLOOR_LONG)
        vertical = np.maximum(ports, ports_l) >= self.PORTS_PER_HOST * np.maximum(
            np.maximum(hosts, hosts_l), 1
        )
        # many ports on many hosts (a network scan): only when most SYNs failed (no
        # answer, or refused), unlike a peer-to-peer client whose peers accept
        syn = h["out_syn"].astype(float)
        failed = h["out_syn_noreply"].astype(float) + h["in_rst"].astype(float)
        network = (
            (np.maximum(hosts, hosts_l) >= self.HOST_FLOOR / 2)
            & (syn >= np.maximum(ports, 1))
            & (failed >= self.FAILED_SHARE * syn)
        )
        scan = many_ports & (vertical | network) & originates
        sweep = (
            (hosts >= self.HOST_FLOOR * np.maximum(raise_[:, 1] / self.HOST_FLOOR, 1))
            | (hosts_l >= self.HOST_FLOOR_LONG * np.maximum(raise_[:, 3] / self.HOST_FLOOR_LONG, 1))
        ) & (np.maximum(hosts, hosts_l) >= self.HOSTS_PER_PORT * np.maximum(ports, 1))
        learnt = ref
        alerts: list[Alert] = []
        for i in np.flatnonzero(scan | sweep):  # only the hosts over a threshold
            key = addr_keys(h["addr"][i : i + 1], h["ip_version"][i : i + 1])[0]
            w = _Over(h[i], key, hk[i], x[i], learnt[i], now_ns)
            for a in (self._port_scan(w) if scan[i] else None,
                      self._host_sweep(w) if sweep[i] else None):  # fmt: skip
                if a:
                    alerts.append(a)
        return alerts, scan | sweep

    # --- the few hosts over a threshold ---------------------------------------------------
    def _suppressed(self, kind: str, att: str, ts_ns: int) -> bool:
        return self.suppressed(kind, att, ts_ns, self.SUPPRESS_S)

    def _targets(self, key: np.void, start_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(target keys, flows per target, first window start) of pairs from ``key``
        since ``start_ns``."""
        p = self.pairs.records()
        if not len(p):
            return np.zeros(0, ADDR_KEY), np.zeros(0, np.int64), np.zeros(0, np.int64)
        src = addr_keys(p["src"], p["ip_version"])
        m = (src == key) & (p["ts_last_ns"] >= start_ns)
        p = p[m]
        dst = addr_keys(p["dst"], p["ip_version"])
        u, inv = np.unique(dst, return_inverse=True)
        flows = np.bincount(inv, weights=p["flows"], minlength=len(u)).astype(np.int64)
        first = np.full(len(u), np.iinfo(np.int64).max)
        np.minimum.at(first, inv, p["ts_start_ns"])
        return u, flows, first

    def _port_scan(self, w: _Over) -> Alert | None:
        r, key, hk, x, learnt, now_ns = w
        att = key_to_str(key)
        start = int(r["ts_long_start_ns"])
        tgt, flows, first = self._targets(key, start)
        if not len(tgt):
            return None
        if self._suppressed("port_scan", att, int(r["ts_end_ns"])):
            return None
        order = np.argsort(-flows, kind="stable")
        victims = [key_to_str(tgt[j]) for j in order[:5]]
        syn, udp = int(r["out_syn"]), int(r["out_udp_pkts"])
        flows_out = max(int(r["out_flows"]), 1)
        style = "TCP SYN" if syn >= flows_out / 2 else "UDP" if udp >= flows_out / 2 else "TCP"
        noreply = int(r["out_syn_noreply"])
        ports, ports_l = int(x[0]), int(x[2])
        big = ports >= ports_l / 2
        n, ref = (ports, learnt[0]) if big else (ports_l, learnt[2])
        span = "in one telemetry window" if big else "within the long window (60 s)"
        window_s = (int(r["ts_end_ns"]) - int(r["ts_start_ns"])) / NS
        score = min(100.0, 40 + 60 * np.log10(max(n, 1) / self.PORT_FLOOR + 1))
        return Alert(
            "port_scan", att, victims, score, min(0.99, 0.6 + n / 500),
            int(first.min()) / NS, now_ns / NS, "T1046",
            {
                "distinct_dst_ports": n, "window_s": window_s if big else 60.0,
                "threshold": self.PORT_FLOOR if big else self.PORT_FLOOR_LONG,
                "learnt_reference": round(float(ref), 2),
                "target_hosts": int(max(x[1], x[3])), "syn_sent": syn, "syn_unanswered": noreply,
                "udp_sent": udp, "scan_type": style,
            },
            f"{att} probed {n} distinct ports on {victims[0]}"
            + (f" and {len(tgt) - 1} other host(s)" if len(tgt) > 1 else "")
            + f" {span} ({style} scan); {self.baseline.describe(hk, 0 if big else 2)}.",
            self.name, self.version,
        )  # fmt: skip

    def _host_sweep(self, w: _Over) -> Alert | None:
        r, key, hk, x, learnt, now_ns = w
        att = key_to_str(key)
        start = int(r["ts_long_start_ns"])
        tgt, _, first = self._targets(key, start)
        arp_n = 0
        a = self.arps.records()
        if len(a):
            a = a[(a["ts_ns"] >= start) & (_ipv4_key(a["sender_ip"]) == key)]
            if len(a):
                at = np.unique(_ipv4_key(a["target_ip"]))
                arp_n = len(at)
                tgt = np.unique(np.concatenate([tgt, at]))
                first = np.append(first, int(a["ts_ns"].min()))
        if not len(tgt):
            return None
        # the busiest /24 (/64); else the busiest /16 (/48) when most probes went
        # unanswered (a client of one big CDN network gets answers)
        mostly_unanswered = int(r["in_pkts"]) <= self.UNANSWERED * int(r["out_pkts"])
        for wide in (False, True) if mostly_unanswered else (False,):
            nets, cnt = np.unique(_subnet(tgt, wide), return_counts=True)
            top = int(np.argmax(cnt))
            if cnt[top] >= self.SUBNET_SHARE * len(tgt) and cnt[top] >= self.HOST_FLOOR / 2:
                break
        else:
            return None  # spread over the internet: a busy client, not a sweep
        if self._suppressed("host_sweep", att, int(r["ts_end_ns"])):
            return None
        net = key_to_str(nets[top])
        bits = (16 if wide else 24) if ":" not in net else (48 if wide else 64)
        net = f"{net}/{bits}"
        icmp, syn, udp = int(r["out_icmp_pkts"]), int(r["out_syn"]), int(r["out_udp_pkts"])
        style = max((("ARP", arp_n), ("ICMP", icmp), ("TCP", syn), ("UDP", udp)),
                    key=lambda kv: kv[1])[0]  # fmt: skip
        n = len(tgt)
        ref = max(learnt[1], learnt[3])
        short = x[1] >= self.HOST_FLOOR  # the one-window count crossed the floor
        ports = int(x[0] if short else x[2])
        span = "in one telemetry window" if short else "within the long window (60 s)"
        return Alert(
            "host_sweep", att, [net], min(100.0, 35 + n / 8), min(0.99, 0.6 + n / 600),
            int(min(first)) / NS, now_ns / NS, "T1018",
            {
                "distinct_targets": n, "targets_in_subnet": int(cnt[top]), "subnet": net,
                "distinct_dst_ports": ports, "arp_requests_targets": arp_n,
                "icmp_sent": icmp, "syn_sent": syn, "udp_sent": udp, "sweep_type": style,
                "threshold": self.HOST_FLOOR, "learnt_reference": round(float(ref), 2),
            },
            f"{att} contacted {n} distinct hosts ({int(cnt[top])} in {net}) on {ports} "
            f"port(s) {span} ({style} sweep); {self.baseline.describe(hk, 1 if short else 3)}.",
            self.name, self.version,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "arps": self.arps.state_dict()}

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        self.arps.load_state(d.get("arps", {}))


# --- OS fingerprinting ------------------------------------------------------------------
FIN, SYN, RST, PSH, ACK, URG = range(6)


def _rows_any(a: np.ndarray) -> np.ndarray:
    """Per row of a 2-D array: any non-zero byte (``a.any(axis=1)`` for integer or bool
    rows, OR-ing a machine word at a time, much faster for narrow rows)."""
    b = np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1)
    if b.shape[1] % 8:
        return np.asarray(b.any(axis=1))
    w = b.view(np.uint64)
    acc = w[:, 0].copy()
    for j in range(1, w.shape[1]):
        acc |= w[:, j]
    return acc != 0


def _has_byte(b: np.ndarray, c: str) -> np.ndarray:
    """Per row of a ``(n, width)`` byte array: holds byte ``c``."""
    return _rows_any(b == ord(c))


def odd_flag_kinds(f: np.ndarray) -> np.ndarray:
    """Per flow, a bit mask of odd probe kinds its originator sent: 1 SYN+FIN, 2 no flags
    at all, 4 FIN/PSH/URG without SYN or ACK (FIN/Xmas), 8 URG before any handshake,
    16 an odd ICMP request (timestamp, information, address mask, coded echo)."""
    k = np.zeros(len(f), np.int64)
    tcp = np.flatnonzero((f["proto"] == 6) & (f["orig_pkts"] > 0))
    if len(tcp):  # the TCP kinds, for TCP flows the originator sent packets on
        whole = len(tcp) == len(f)
        of = np.ascontiguousarray(f["orig_flag_counts"] if whole else f["orig_flag_counts"][tcp])
        hist = f["history"] if whole else f["history"][tcp]
        hist = np.ascontiguousarray(hist).view(np.uint8).reshape(len(tcp), -1)
        # Zeek's "Q" (upper case: the originator) is one packet with SYN and FIN (or RST);
        # per-flow flag counts cannot tell that from a SYN ... FIN session.
        kt = np.where(_has_byte(hist, "Q"), 1, 0)
        kt |= np.where(_rows_any(of), 0, 2)  # no flags at all
        kt |= np.where((of[:, FIN] > 0) & (of[:, SYN] == 0) & (of[:, ACK] == 0), 4, 0)
        urg = np.flatnonzero(of[:, URG] > 0)  # URG is rare: the handshake looked up for those
        if len(urg):
            hu = hist[urg]
            handshake = (_has_byte(hu, "S") | _has_byte(hu, "s")) & (
                _has_byte(hu, "H") | _has_byte(hu, "h")
            )
            kt[urg[~handshake]] |= 8
        k[tcp] = kt
    # ICMP probes of fingerprinting tools: timestamp, information and address-mask
    # requests, echo requests with a non-zero code (ICMP flows: orig_port type, resp_port code)
    icmp = (f["proto"] == 1) & (f["ip_version"] == 4)
    if icmp.any():
        typ, code = f["orig_port"], f["resp_port"]
        odd_icmp = (typ == 13) | (typ == 15) | (typ == 17) | ((typ == 8) & (code != 0))
        k |= np.where(icmp & odd_icmp, 16, 0)
    return k


@register
class OsFingerprintDetector(DetectorBase):
    name: ClassVar[str] = "os_fingerprint"
    version: ClassVar[str] = "1"

    WINDOW_S = 60.0
    MIN_KINDS = 2  # distinct odd probe kinds in at least two probes to one host ...
    MIN_FLOWS = 3  # ... or this many odd probes
    MAX_PORTS = 16  # more distinct ports: a (FIN/NULL/Xmas) port scan, not a fingerprint

    def __init__(self) -> None:
        super().__init__()
        self.odd = RecordBuffer(FLOW_DTYPE, "ts_last_ns", self.WINDOW_S)
        self._new = False
        self._alerted: dict[tuple[str, str], int] = {}

    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if record_type != "flow" or not len(batch):
            return
        k = odd_flag_kinds(batch)
        if k.any():
            self.odd.add(batch[k > 0])
            self._new = True
        self._data_tick(int(batch["ts_last_ns"].max()))

    def on_clock_reset(self) -> None:
        self.odd.clear()
        self._alerted = {}

    def advance(self, now_ns: int) -> list[Alert]:
        if not self._new:
            return []
        self._new = False
        f = self.odd.records()
        f = f[f["ts_last_ns"] >= self.odd.latest_ns - int(self.WINDOW_S * NS)]
        src = addr_keys(f["orig_addr"], f["ip_version"])
        dst = addr_keys(f["resp_addr"], f["ip_version"])
        kinds = odd_flag_kinds(f)
        pair = np.stack([src.view(np.uint8).reshape(-1, 16), dst.view(np.uint8).reshape(-1, 16)], 1)
        pk = np.ascontiguousarray(pair.reshape(-1, 32)).view("V32").reshape(-1)
        u, inv = np.unique(pk, return_inverse=True)
        out = []
        for j in range(len(u)):  # distinct (source, target) pairs with odd probes: few
            m = inv == j
            kb = int(np.bitwise_or.reduce(kinds[m]))
            n_kinds = kb.bit_count()
            ports = len(np.unique(f["resp_port"][m]))
            n = int(m.sum())
            enough = n >= self.MIN_FLOWS or (n >= 2 and n_kinds >= self.MIN_KINDS)
            if not enough or ports > self.MAX_PORTS:
                continue
            att, vic = key_to_str(src[m][0]), key_to_str(dst[m][0])
            t_last = int(f["ts_last_ns"][m].max())
            if t_last < self._alerted.get((att, vic), 0):
                continue
            self._alerted[(att, vic)] = t_last + int(600 * NS)
            names = [n for b, n in ((1, "SYN+FIN"), (2, "NULL"), (4, "FIN/Xmas"), (8, "URG"),
                                    (16, "odd ICMP")) if kb & b]  # fmt: skip
            self.protect(att, self.now_ns)
            out.append(Alert(
                "os_fingerprint", att, [vic], 45 + 10 * n_kinds, min(0.95, 0.5 + 0.15 * n_kinds),
                int(f["ts_first_ns"][m].min()) / NS, now_ns / NS, "T1082",
                {"odd_probe_flows": int(m.sum()), "odd_kinds": names, "distinct_ports": ports,
                 "reference": "0 such probes in normal traffic (RFC 793 stacks never send them)",
                 "flow_uids": flow_uids(f[m])},
                f"{att} sent {int(m.sum())} probes with invalid flag combinations or odd types "
                f"({', '.join(names)}) to {vic}, the pattern of active OS fingerprinting.",
                self.name, self.version,
            ))  # fmt: skip
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "odd": self.odd.state_dict(),
            "new": self._new,
            "alerted": pack_keys(self._alerted),
        }

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        self.odd.load_state(d.get("odd", {}))
        self._new = bool(d.get("new", False))
        self._alerted = unpack_keys(d.get("alerted", []))
