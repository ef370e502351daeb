"""DNS used as a data channel: ``dns_tunneling`` and ``dns_exfiltration``.

Two views of one client's DNS, each general (no zone or tool names):

* Content, from FLOW records (``dns_*`` fields: longest label, its entropy, the query types
  seen, distinct names, payload bytes each way). A query is *data-carrying* when its
  longest label is long and random (``LABEL_MIN`` chars at ``ENTROPY_MIN`` bits/char or
  more): hostnames people and CDNs use are short or low-entropy. Per client over
  ``WINDOW_S``: distinct data-carrying names, NULL queries, queries of types that carry
  data back (NULL, TXT, CNAME, MX) and how much the answers add beyond the echoed question.
* Volume and size, from HOST/PAIR telemetry windows: a client sending many DNS queries whose
  packets to its resolver are large (a name of 100+ characters makes a query of 150+ IP
  bytes; ordinary queries are 60-100). UDP DNS flows only end after the idle timeout, so
  this view raises the alert within seconds and the content view confirms and names the
  zone later.

Which one:
* ``dns_tunneling``: a two-way channel. NULL queries (no resolver library asks for them),
  or data-carrying queries while answers carry data back (answers ``DOWN_EXCESS`` bytes or
  more beyond the question, or large answers per query in the telemetry).
* ``dns_exfiltration``: a one-way upload. Very long data-carrying labels (``EXFIL_LABEL``
  chars and more) or a burst of TXT queries for distinct names under one zone, answered
  with little more than the question.
The attacker is the client (the originator of the DNS flows); the victim is the resolver.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any, ClassVar

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import DetectorBase, addr_keys, batch_column, flow_uids, key_to_str
from controller.detect.features import RecordBuffer
from controller.detect.stack import register
from netwarden.records.schema import DNS_QTYPE_BITS, FLOW_DTYPE, QNAME_LEN

NS = 1_000_000_000
BIT_NULL = 1 << DNS_QTYPE_BITS[10]
BIT_TXT = 1 << DNS_QTYPE_BITS[16]
BIT_DATA = BIT_NULL | BIT_TXT | (1 << DNS_QTYPE_BITS[5]) | (1 << DNS_QTYPE_BITS[15])


_HOST_COLS = np.dtype([("addr", "u1", (16,)), ("ip_version", "u1"), ("ts_start_ns", "<i8"),
                       ("out_dns_queries", "<u4"), ("in_dns_queries", "<u4")])  # fmt: skip
_SHARED_COLS = ("ts_start_ns", "out_dns_queries", "in_dns_queries")
_PAIR_COLS = np.dtype([("src", "u1", (16,)), ("dst", "u1", (16,)), ("ip_version", "u1"),
                       ("ts_start_ns", "<i8"), ("pkts", "<u4"), ("bytes", "<u8")])  # fmt: skip


def zone_of(qname: bytes) -> str:
    """The registered-looking zone of a name: its last two labels, or three when the
    second-level label is a short public-suffix-like one (``co.uk``)."""
    labels = [x for x in qname.decode("ascii", "replace").lower().split(".") if x]
    if len(labels) <= 2:
        return ".".join(labels)
    k = 3 if len(labels[-2]) <= 3 and len(labels[-1]) == 2 else 2
    return ".".join(labels[-k:])


@register
class DnsTunnelDetector(DetectorBase):
    """dns_tunneling and dns_exfiltration per DNS client."""

    name: ClassVar[str] = "dns_tunnel"
    version: ClassVar[str] = "1"

    WINDOW_S = 120.0  # content evidence is summed over this much time per client
    LABEL_MIN = 24  # characters in the longest label of a data-carrying query
    ENTROPY_MIN = 3.2  # bits/char of that label (base32 ~4.3, hex ~3.8, words ~2.5-3)
    MIN_NAMES = 6  # distinct data-carrying names before the content view alerts
    MANY_NAMES = 30  # ... alone enough for dns_tunneling when the direction is unclear
    MIN_NULL = 3  # NULL-type queries (for distinct names)
    DOWN_EXCESS = 60.0  # answer bytes beyond the question, per query, that carry data down
    EXFIL_LABEL = 40  # mean longest label of an upload channel
    TXT_BURST = 10  # TXT queries for distinct data-carrying names in WINDOW_S
    # telemetry view
    TEL_QUERIES = 10  # DNS queries over TEL_SPAN_S
    TEL_SPAN_S = 10.0
    TEL_UP_SIZE = 150.0  # mean IP bytes of the client's packets to its resolver
    TEL_TUNNEL_RATIO = 1.25  # answer/query packet size: data comes back
    TEL_EXFIL_RATIO = 1.12  # ... at most this for a one-way upload

    def __init__(self) -> None:
        super().__init__()
        self.flows = RecordBuffer(FLOW_DTYPE, "ts_last_ns", self.WINDOW_S)
        self._pending_flows: list[np.ndarray] = []
        self._hosts: list[np.ndarray] = []
        self._pairs: list[np.ndarray] = []
        # telemetry accumulation per client: list of (ts_ns, queries, up_pkts, up_bytes,
        # down_pkts, down_bytes, resolver)
        self._tel: dict[str, list[tuple[int, int, int, int, int, int, str]]] = {}
        self._alerted: dict[tuple[str, str], int] = {}

    # --- input ----------------------------------------------------------------------------
    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if not len(batch):
            return
        if record_type == "flow":
            d = batch[batch["dns_queries"] > 0]
            if len(d):
                self.flows.add(d)
                self._pending_flows.append(d)
            self._tick(int(batch["ts_last_ns"].max()))
        elif record_type == "host":
            # only the columns this view reads, for hosts with DNS in the window (the
            # batch's shared columns where it has them)
            col = functools.partial(batch_column, batch)
            sel = np.flatnonzero((col("out_dns_queries") >= 2) | (col("in_dns_queries") >= 2))
            if len(sel):
                h = np.zeros(len(sel), _HOST_COLS)
                for f in _HOST_COLS.names or ():
                    h[f] = (col(f) if f in _SHARED_COLS else batch[f])[sel]
                self._hosts.append(h)
            self._tick(int(col("ts_end_ns").max()))
        elif record_type == "pair":
            sel = np.flatnonzero(batch["pkts"] >= 2)
            if len(sel):
                p = np.zeros(len(sel), _PAIR_COLS)
                for f in _PAIR_COLS.names or ():
                    p[f] = batch[f][sel]
                self._pairs.append(p)

    def advance(self, now_ns: int) -> list[Alert]:
        self._tick(now_ns)
        out = self._telemetry()
        out += self._content()
        return out

    # --- content view ---------------------------------------------------------------------
    def _susp(self, f: np.ndarray) -> np.ndarray:
        return ((f["dns_longest_label"] >= self.LABEL_MIN)
                & (f["dns_label_entropy_max"] >= self.ENTROPY_MIN))  # fmt: skip

    def _content(self) -> list[Alert]:
        if not self._pending_flows:
            return []
        new = np.concatenate(self._pending_flows)
        self._pending_flows = []
        hot = self._susp(new) | ((new["dns_qtype_mask"] & BIT_NULL) != 0)
        if not hot.any():
            return []
        allf = self.flows.records()
        allf = allf[allf["ts_last_ns"] >= self.flows.latest_ns - int(self.WINDOW_S * NS)]
        keys = addr_keys(allf["orig_addr"], allf["ip_version"])
        out: list[Alert] = []
        hot_keys = np.unique(addr_keys(new["orig_addr"][hot], new["ip_version"][hot]))
        for k in hot_keys:
            a = self._judge_client(allf[keys == k], key_to_str(k))
            if a is not None:
                out.append(a)
        return out

    def _judge_client(self, f: np.ndarray, client: str) -> Alert | None:
        susp = self._susp(f)
        mask = f["dns_qtype_mask"]
        q = f["dns_queries"].astype(float)
        names = f["dns_distinct_names"].astype(float)
        excess = f["resp_bytes"].astype(float) - f["orig_bytes"].astype(float)
        susp_names = float(names[susp].sum())
        null = (mask & BIT_NULL) != 0
        null_q, null_names = float(q[null].sum()), float(names[null].sum())
        data = (mask & BIT_DATA) != 0
        data_q = float(q[data].sum())
        down_excess = float(excess[data].sum() / data_q) if data_q else 0.0
        sq = float(q[susp].sum())
        up_excess = float(excess[susp].sum() / sq) if sq else 0.0
        mean_ll = float(f["dns_longest_label"][susp].mean()) if susp.any() else 0.0
        txt = susp & ((mask & BIT_TXT) != 0)
        txt_names = float(names[txt].sum())
        channel_down = (data_q >= 3 and down_excess >= self.DOWN_EXCESS) or (
            sq >= 3 and up_excess >= self.DOWN_EXCESS
        )
        kind = None
        if null_q >= self.MIN_NULL and null_names >= self.MIN_NULL:
            kind, why = "dns_tunneling", "NULL-type queries"
        elif susp_names >= self.MIN_NAMES and channel_down:
            kind, why = "dns_tunneling", "random labels up and data-bearing answers down"
        elif (susp_names >= self.MIN_NAMES and mean_ll >= self.EXFIL_LABEL) or (
            txt_names >= self.TXT_BURST
        ):
            kind, why = "dns_exfiltration", "long data-carrying labels with empty answers"
        elif susp_names >= self.MANY_NAMES:
            kind, why = "dns_tunneling", "many random names"
        if kind is None:
            return None
        rows = f[susp | null]
        resolvers = Counter(key_to_str(k) for k in addr_keys(rows["resp_addr"], rows["ip_version"]))
        zones = Counter(
            zone_of(bytes(n)) for n in rows["dns_qname"] if 0 < len(bytes(n)) < QNAME_LEN
        )
        zone = zones.most_common(1)[0][0] if zones else None
        victim = resolvers.most_common(1)[0][0]
        evidence: dict[str, Any] = {
            "view": "content",
            "data_carrying_names": susp_names,
            "null_queries": null_q,
            "txt_data_names": txt_names,
            "mean_longest_label": round(mean_ll, 1),
            "max_label_entropy_bits": float(f["dns_label_entropy_max"].max()),
            "reference": f"ordinary names have labels under {self.LABEL_MIN} chars "
            f"or entropy under {self.ENTROPY_MIN} bits/char",
            "answer_bytes_beyond_question_per_query": round(max(down_excess, up_excess), 1),
            "zone": zone,
            "flow_uids": flow_uids(rows),
        }
        return self._alert(kind, client, victim, int(rows["ts_first_ns"].min()), why,
                           susp_names + null_names, evidence, zone)  # fmt: skip

    # --- telemetry view -------------------------------------------------------------------
    def _telemetry(self) -> list[Alert]:
        if not self._hosts:
            if len(self._pairs) > 64:
                self._pairs = self._pairs[-8:]  # pairs wait a few ticks for their hosts
            return []
        h = np.concatenate(self._hosts)
        self._hosts = []
        p = np.concatenate(self._pairs) if self._pairs else np.zeros(0, _PAIR_COLS)
        self._pairs = []
        clients = h[h["out_dns_queries"] >= 2]
        resolvers = h[h["in_dns_queries"] >= 2]
        if not len(clients) or not len(resolvers) or not len(p):
            return []
        # only pairs between a DNS client and a resolver of the same windows (vectorised)
        ck = addr_keys(clients["addr"], clients["ip_version"])
        rk = addr_keys(resolvers["addr"], resolvers["ip_version"])
        ps, pd = addr_keys(p["src"], p["ip_version"]), addr_keys(p["dst"], p["ip_version"])
        p = p[(np.isin(ps, ck) & np.isin(pd, rk)) | (np.isin(ps, rk) & np.isin(pd, ck))]
        if not len(p):
            return []
        rkey = set(zip(addr_keys(resolvers["addr"], resolvers["ip_version"]).tolist(),
                       resolvers["ts_start_ns"].tolist(), strict=True))  # fmt: skip
        ckey = {
            (k, t): int(n)
            for k, t, n in zip(addr_keys(clients["addr"], clients["ip_version"]).tolist(),
                               clients["ts_start_ns"].tolist(),
                               clients["out_dns_queries"].tolist(), strict=True)
        }  # fmt: skip
        src = addr_keys(p["src"], p["ip_version"]).tolist()
        dst = addr_keys(p["dst"], p["ip_version"]).tolist()
        ts = p["ts_start_ns"].tolist()
        index = {(s, d, t): i for i, (s, d, t) in enumerate(zip(src, dst, ts, strict=True))}
        out: list[Alert] = []
        touched = set()
        for i, (s, d, t) in enumerate(zip(src, dst, ts, strict=True)):
            if (s, t) not in ckey or (d, t) not in rkey:
                continue
            j = index.get((d, s, t))
            down_pkts = int(p["pkts"][j]) if j is not None else 0
            down_bytes = int(p["bytes"][j]) if j is not None else 0
            client = key_to_str(s)
            touched.add(client)
            self._tel.setdefault(client, []).append(
                (t, ckey[(s, t)], int(p["pkts"][i]), int(p["bytes"][i]), down_pkts, down_bytes,
                 key_to_str(d))
            )  # fmt: skip
        span = int(self.TEL_SPAN_S * NS)
        data_ns = max(ts)  # record time (the clock may be wall time in a controller)
        for client in touched:
            rows = [r for r in self._tel[client] if r[0] >= data_ns - span]
            self._tel[client] = rows
            q = sum(r[1] for r in rows)
            up_p, up_b = sum(r[2] for r in rows), sum(r[3] for r in rows)
            dn_p, dn_b = sum(r[4] for r in rows), sum(r[5] for r in rows)
            if q < self.TEL_QUERIES or not up_p or not dn_p:
                continue
            up_size, dn_size = up_b / up_p, dn_b / dn_p
            if up_size < self.TEL_UP_SIZE:
                continue
            ratio = dn_size / up_size
            if ratio >= self.TEL_TUNNEL_RATIO:
                kind, why = "dns_tunneling", "long queries answered with data-bearing answers"
            elif ratio <= self.TEL_EXFIL_RATIO:
                kind, why = "dns_exfiltration", "long queries answered with almost nothing"
            else:
                continue
            victim = Counter(r[6] for r in rows).most_common(1)[0][0]
            evidence = {
                "view": "telemetry",
                "dns_queries": q,
                "span_s": self.TEL_SPAN_S,
                "mean_query_packet_bytes": round(up_size, 1),
                "reference": "ordinary DNS queries are 60-100 IP bytes; "
                f"alert at {self.TEL_UP_SIZE:.0f}",
                "mean_answer_packet_bytes": round(dn_size, 1),
                "answer_to_query_size_ratio": round(ratio, 2),
            }
            a = self._alert(kind, client, victim, min(r[0] for r in rows), why, q, evidence, None)
            if a is not None:
                out.append(a)
        if len(self._tel) > 10_000:
            cut = data_ns - span
            self._tel = {c: r for c, r in self._tel.items() if r and r[-1][0] >= cut}
        return out

    # --- alerts ---------------------------------------------------------------------------
    def _alert(self, kind: str, client: str, victim: str, first_ns: int, why: str,
               n: float, evidence: dict[str, Any], zone: str | None) -> Alert | None:  # fmt: skip
        last = self._alerted.get((kind, client))
        if last is not None and self.now_ns - last < 600 * NS:
            return None
        self._alerted[(kind, client)] = self.now_ns
        self.protect(client, self.now_ns)
        score = min(95.0, 60.0 + 10.0 * np.log10(max(n, 1.0)))
        where = f" under {zone}" if zone else ""
        verb = "tunnelling through" if kind == "dns_tunneling" else "exfiltrating data via"
        return Alert(
            kind, client, [victim], score, min(0.95, 0.55 + n / 100.0),
            first_ns / NS, self.now_ns / NS,
            "T1071.004" if kind == "dns_tunneling" else "T1048.003",
            evidence,
            f"{client} appears to be {verb} DNS{where} ({why}) to {victim}",
            self.name, self.version,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["alerted"] = [[k, c, t] for (k, c), t in self._alerted.items()]
        d["flows"] = self.flows.records().view(np.uint8).copy()
        d["latest_ns"] = self.flows.latest_ns
        pf = np.concatenate(self._pending_flows) if self._pending_flows else np.zeros(0, FLOW_DTYPE)
        d["pending_flows"] = pf.view(np.uint8).copy()
        for name, parts, dt in (
            ("hosts", self._hosts, _HOST_COLS),
            ("pairs", self._pairs, _PAIR_COLS),
        ):
            d[name] = (np.concatenate(parts) if parts else np.zeros(0, dt)).view(np.uint8).copy()
        d["tel"] = [[c, [list(r) for r in rows]] for c, rows in self._tel.items()]
        return d

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        self._alerted = {(str(k), str(c)): int(t) for k, c, t in d.get("alerted", [])}

        def arr(name: str, dt: np.dtype) -> list[np.ndarray]:
            a = np.asarray(d.get(name, np.zeros(0, np.uint8)), np.uint8).view(dt).copy()
            return [a] if len(a) else []

        self.flows = RecordBuffer(FLOW_DTYPE, "ts_last_ns", self.WINDOW_S)
        for part in arr("flows", FLOW_DTYPE):
            self.flows.add(part)
        self.flows.latest_ns = max(self.flows.latest_ns, int(d.get("latest_ns", 0)))
        self._pending_flows = arr("pending_flows", FLOW_DTYPE)
        self._hosts, self._pairs = arr("hosts", _HOST_COLS), arr("pairs", _PAIR_COLS)
        self._tel = {str(c): [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]),
                               int(r[5]), str(r[6])) for r in rows]
                     for c, rows in d.get("tel", [])}  # fmt: skip
