"""Summarise a replayed capture: flows, DNS, ARP and per-host telemetry peaks.

Used by ``netwarden replay`` (and ``make demo``). Everything is computed from the records
the sensor would put on the bus, so the summary shows what a controller receives.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from netwarden.records.schema import (
    ARP_DTYPE,
    FLOW_DTYPE,
    HOST_DTYPE,
    ConnState,
    FlowFlags,
    addr_to_str,
    join_records,
)
from sensor.capture.batch import PacketBatch
from sensor.runner import PcapSource

PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}

#: Telemetry indicators shown when a host's peak window reaches the floor. Distinct counts
#: are the sensor's HyperLogLog estimates (a few per cent off), hence "estimate".
INDICATORS = (
    ("out_dst_ports", "distinct destination ports it opened flows to (estimate)", 20),
    ("out_dst_hosts", "distinct hosts it contacted (estimate)", 20),
    ("out_syn_noreply", "SYNs it sent that got no reply", 20),
    ("in_src_hosts", "distinct sources sending to it (estimate)", 20),
    ("in_unreach", "ICMP unreachables it received", 10),
    ("out_dns_queries", "DNS queries it sent", 20),
)


#: estimated indicators -> (flow field the host is in, flow field whose distinct values
#: bound it): a host cannot have contacted more hosts (ports) than its flows name
BOUNDED = {
    "out_dst_hosts": ("orig_addr", "resp_addr"),
    "out_dst_ports": ("orig_addr", "resp_port"),
    "in_src_hosts": ("resp_addr", "orig_addr"),
}


def _distinct_bound(flows: np.ndarray, field: str, addr: np.ndarray) -> int:
    """How many distinct peers (ports) the capture's flow records give the host: the most
    an estimate of that indicator in any one window can truthfully be."""
    side, other = BOUNDED[field]
    mine = flows[(flows[side] == addr).all(axis=1)]
    if not len(mine):
        return 0
    vals = mine[other]
    return int(len(np.unique(vals, axis=0)) if vals.ndim > 1 else len(np.unique(vals)))


def _top_pairs(final: np.ndarray, tot_bytes: np.ndarray, top: int) -> list[dict[str, Any]]:
    """Host pairs ranked by how many flows the originator opened to the responder (then
    by distinct ports): a scan or a brute force is many small flows, never the top by bytes."""
    if not len(final):
        return []
    keys = np.concatenate([final["orig_addr"], final["resp_addr"]], axis=1)
    uniq, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    port_pairs = np.unique(
        np.stack([inv.astype(np.int64), final["resp_port"].astype(np.int64)], axis=1), axis=0
    )
    ports = np.bincount(port_pairs[:, 0], minlength=len(uniq))
    pkts = np.bincount(
        inv,
        weights=(final["orig_pkts"] + final["resp_pkts"]).astype(np.float64),
        minlength=len(uniq),
    )
    nbytes = np.bincount(inv, weights=tot_bytes.astype(np.float64), minlength=len(uniq))
    version = np.zeros(len(uniq), np.int64)
    version[inv] = final["ip_version"]
    order = np.lexsort((-nbytes, -ports, -counts))[:top]
    return [
        {
            "orig": addr_to_str(uniq[i, :16], int(version[i])),
            "resp": addr_to_str(uniq[i, 16:], int(version[i])),
            "flows": int(counts[i]),
            "ports": int(ports[i]),
            "pkts": int(pkts[i]),
            "bytes": int(nbytes[i]),
        }
        for i in order
    ]


RunResult = tuple[dict[str, list[np.ndarray]], dict[str, int], str, BaseException | None]


class RecordSink(Protocol):
    """Where replayed records also go as they are made (the detection stack): batches in
    order, then the capture time reached after each packet batch."""

    def observe(self, record_type: str, batch: np.ndarray) -> None: ...

    def advance(self, now_ns: int) -> object: ...


class _ReplayFiles(PcapSource):
    """The replayed files as the sensor loop's packet source, noting what the summary
    reports (packets, bytes, first and last capture time). With a sink, batches are cut
    where they cross a ``SINK_STEP_NS`` boundary, so the records (and the sink's clock)
    move as they would live. ``now_ns`` is the capture time the last batch reached, and the
    last packet's time once the files are done."""

    def __init__(self, backend: Any, paths: list[str], sliced: bool,
                 progress: Callable[[int], object] | None = None) -> None:  # fmt: skip
        super().__init__(backend, paths)
        self.sliced = sliced
        self.progress = progress  # gets the file bytes each batch took (headers included)
        self.counts: Counter[str] = Counter()
        self.now_ns: int | None = None

    def batches(self, stop: Any) -> Iterator[PacketBatch]:
        counts = self.counts
        try:
            for batch in super().batches(stop):
                if not batch.count:
                    continue
                for part in _time_slices(batch) if self.sliced else [batch]:
                    self.now_ns = int(part.ts_ns[: part.count].max())
                    yield part
                counts["packets"] += batch.count
                if self.progress is not None:
                    self.progress(
                        int(batch.caplen[: batch.count].sum()) + PCAP_RECORD_HEADER * batch.count
                    )
                counts["bytes"] += int(batch.wirelen[: batch.count].sum())
                ts = batch.ts_ns[: batch.count]
                counts["t_first"] = min(counts.get("t_first", int(ts.min())), int(ts.min()))
                counts["t_last"] = max(counts["t_last"], int(ts.max()))
        finally:
            self.now_ns = counts.get("t_last")


class TelemetryDigest:
    """What the summary reads of the host and pair records, taken as they stream by, so a
    replay need not hold them all: their counts, the distinct host addresses, and the few
    host windows at or over an indicator's floor (in record order)."""

    def __init__(self) -> None:
        self.host_records = 0
        self.pair_records = 0
        self._addrs: list[np.ndarray] = []
        self.over: dict[str, list[np.ndarray]] = {field: [] for field, _, _ in INDICATORS}

    def add(self, kind: str, recs: np.ndarray) -> None:
        if kind == "pair":
            self.pair_records += len(recs)
        elif kind == "host" and len(recs):
            self.host_records += len(recs)
            self._addrs.append(np.unique(np.ascontiguousarray(recs["addr"]).view("V16")))
            if len(self._addrs) >= 64:  # held as the distinct addresses, not one per record
                self._addrs = [np.unique(np.concatenate(self._addrs))]
            for field, _, floor in INDICATORS:
                hit = recs[field] >= floor
                if hit.any():
                    self.over[field].append(recs[hit])

    def hosts(self) -> int:
        """Distinct host addresses among the host records."""
        return len(np.unique(np.concatenate(self._addrs))) if self._addrs else 0

    def over_floor(self, field: str) -> np.ndarray:
        rows = self.over[field]
        return join_records(rows) if rows else np.zeros(0, HOST_DTYPE)


def _run(
    paths: list[str],
    backend: str | None,
    window: float,
    sink: RecordSink | None = None,
    progress: Callable[[int], object] | None = None,
    digest: TelemetryDigest | None = None,
    tap: Callable[[str, np.ndarray], object] | None = None,
    keep: tuple[str, ...] = ("flow", "arp"),
) -> RunResult:
    """Feed every capture through the sensor loop (one engine, one telemetry table: the
    pipeline ``netwarden sensor`` runs); hand the records to ``sink``, ``digest`` and
    ``tap``, and keep those of the types in ``keep`` (the summary reads flow and ARP
    records whole)."""
    from sensor.engine import load_backend
    from sensor.engine.config import EngineConfig
    from sensor.runner import SensorLoop, make_pipeline

    mod = load_backend(backend)
    files = _ReplayFiles(mod, paths, sliced=sink is not None, progress=progress)
    out: dict[str, list[np.ndarray]] = defaultdict(list)

    # capture time reached: a capture may jump back a little (frames repeated) and this
    # stays put; a jump back of more than CLOCK_RESET_NS (another capture, older) restarts it
    clock = [0]

    def tick() -> None:
        now_ns = files.now_ns
        if sink is not None and now_ns is not None:
            back = now_ns < clock[0] - CLOCK_RESET_NS
            clock[0] = now_ns if back else max(clock[0], now_ns)
            sink.advance(clock[0])

    loop = SensorLoop(files, make_pipeline(EngineConfig(), backend=backend, window=window),
                      on_tick=tick)  # fmt: skip
    fault: BaseException | None = None
    try:
        for kind, recs in loop.records():
            if kind in keep:
                out[kind].append(recs)
            if digest is not None:
                digest.add(kind, recs)
            if sink is not None:
                sink.observe(kind, recs)
            if tap is not None:
                tap(kind, recs)
    except Exception as exc:  # noqa: BLE001 - reported after what was read is summarised
        fault = exc
    counts = dict(files.counts)
    counts["decode_errors"] = loop.counters().get("decode_errors", 0)
    return out, counts, str(mod.BACKEND), fault


#: Capture time a replay slice spans at most when records also go to a sink.
SINK_STEP_NS = 250_000_000
#: Bytes of a pcap record header (pcapng blocks carry more: progress is an estimate).
PCAP_RECORD_HEADER = 16
#: A jump back in capture time larger than this restarts the sink's clock.
CLOCK_RESET_NS = 3600 * 1_000_000_000


def _time_slices(batch: PacketBatch) -> list[PacketBatch]:
    """``batch`` cut where its packets cross a ``SINK_STEP_NS`` boundary (same buffer)."""
    n = batch.count
    ts = batch.ts_ns[:n]
    cuts = (np.flatnonzero(np.diff(ts // SINK_STEP_NS) != 0) + 1).tolist()
    if not cuts:
        return [batch]
    return [
        PacketBatch(batch.buffer, batch.offset[a:b], batch.caplen[a:b], batch.wirelen[a:b],
                    batch.ts_ns[a:b], batch.linktype[a:b], batch.iface[a:b], b - a)
        for a, b in zip([0, *cuts], [*cuts, n], strict=True)
    ]  # fmt: skip


def _cat(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    return join_records(parts) if parts else np.zeros(0, dtype)  # bytes, not field by field


def _ts(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def replay(
    paths: list[str],
    backend: str | None = None,
    window: float = 1.0,
    top: int = 5,
    sink: RecordSink | None = None,
    progress: Callable[[int], object] | None = None,
    tap: Callable[[str, np.ndarray], object] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Run the captures and return (summary dict, fault message or None). ``sink`` also
    receives every record batch as it is made, and the capture time after each batch;
    ``tap(kind, records)`` every record batch as it is made (nothing is kept for it)."""
    digest = TelemetryDigest()
    parts, counts, backend_name, fault = _run(paths, backend, window, sink, progress, digest, tap)
    flows = _cat(parts["flow"], FLOW_DTYPE)
    arp = _cat(parts["arp"], ARP_DTYPE)
    # Interim records (active timeout) repeat a flow: count each flow once, by its last record.
    final = flows[(flows["flags"] & FlowFlags.INTERIM) == 0]

    by_proto = Counter(PROTO_NAMES.get(int(p), "other") for p in final["proto"])
    by_state = Counter(ConnState(int(s)).name for s in final["conn_state"] if s)
    tot_bytes = final["orig_ip_bytes"].astype(np.int64) + final["resp_ip_bytes"].astype(np.int64)
    top_idx = np.argsort(-tot_bytes, kind="stable")[:top]
    top_rows = []
    for i in top_idx:
        r = final[i]
        v = int(r["ip_version"])
        top_rows.append(
            {
                "proto": PROTO_NAMES.get(int(r["proto"]), str(int(r["proto"]))),
                "orig": f"{addr_to_str(r['orig_addr'], v)}:{int(r['orig_port'])}",
                "resp": f"{addr_to_str(r['resp_addr'], v)}:{int(r['resp_port'])}",
                "state": ConnState(int(r["conn_state"])).name if r["conn_state"] else "-",
                "pkts": int(r["orig_pkts"] + r["resp_pkts"]),
                "bytes": int(tot_bytes[i]),
                "history": r["history"].decode(errors="replace") or "-",
            }
        )
    top_pairs = _top_pairs(final, tot_bytes, top)
    dns_flows = final[(final["dns_queries"] > 0) | (final["dns_responses"] > 0)]
    claims: dict[bytes, set[bytes]] = defaultdict(set)
    for r in arp:
        if int(r["op"]) == 2 or bytes(r["sender_ip"]) != bytes(r["target_ip"]):
            claims[bytes(r["sender_ip"])].add(bytes(r["sender_mac"]))
    notable = []
    if digest.host_records:
        for field, label, _floor in INDICATORS:
            peak_by_host: dict[str, tuple[int, int]] = {}
            bounds: dict[str, int] = {}
            for r in digest.over_floor(field):
                h = addr_to_str(r["addr"], int(r["ip_version"]))
                val = int(r[field])
                if field in BOUNDED:  # an estimate never says more than the capture holds
                    if h not in bounds:
                        bounds[h] = _distinct_bound(flows, field, r["addr"])
                    val = min(val, bounds[h])
                if val > peak_by_host.get(h, (-1, 0))[0]:
                    peak_by_host[h] = (val, int(r["ts_start_ns"]))
            for h, (val, ts) in sorted(peak_by_host.items(), key=lambda kv: -kv[1][0])[:top]:
                notable.append({"host": h, "indicator": label, "peak": val, "at": _ts(ts)})
    t_first, t_last = counts.get("t_first", 0), counts.get("t_last", 0)
    summary: dict[str, Any] = {
        "files": list(paths),
        "backend": backend_name,
        "traffic": {
            "packets": counts.get("packets", 0),
            "bytes": counts.get("bytes", 0),
            "duration_s": max(0, t_last - t_first) / 1e9,
            "decode_errors": counts.get("decode_errors", 0),
        },
        "flows": {
            "total": len(final),
            "records": len(flows),
            "by_proto": dict(by_proto.most_common()),
            "by_state": dict(by_state.most_common()),
            "tunnelled": int((final["tunnel_type"] > 0).sum()) if len(final) else 0,
            "top": top_rows,
            "top_pairs": top_pairs,
        },
        "dns": {
            "flows": len(dns_flows),
            "queries": int(dns_flows["dns_queries"].sum()),
            "responses": int(dns_flows["dns_responses"].sum()),
            "nxdomain": int(dns_flows["dns_nxdomain"].sum()),
            "distinct_names": int(dns_flows["dns_distinct_names"].sum()),
            "longest_label": int(dns_flows["dns_longest_label"].max()) if len(dns_flows) else 0,
            "max_entropy": float(dns_flows["dns_label_entropy_max"].max())
            if len(dns_flows)
            else 0.0,
        },
        "arp": {
            "requests": int((arp["op"] == 1).sum()),
            "replies": int((arp["op"] == 2).sum()),
            "ip_mac_conflicts": sum(1 for macs in claims.values() if len(macs) > 1),
        },
        "telemetry": {
            "window_s": window,
            "host_records": digest.host_records,
            "pair_records": digest.pair_records,
            "hosts": digest.hosts(),
        },
        "notable": notable,
    }
    return summary, (str(fault) if fault else None)
