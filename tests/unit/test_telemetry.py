"""Per-host telemetry: backend parity, window and sketch semantics, bounded memory, and
what the attack corpus looks like through it (labels read from LABELS.tsv)."""

from __future__ import annotations

import csv
import importlib
import ipaddress
import os
from pathlib import Path

import numpy as np
import pytest

from netwarden.records.schema import HOST_DTYPE, PAIR_DTYPE, PKTSUM_DTYPE, PktEvent, TelemetryFlags
from sensor.engine import load_backend
from sensor.engine.config import EngineConfig
from sensor.telemetry import HostTelemetry, TelemetryConfig

ATTACKS = (
    Path(os.environ.get("NETWARDEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    / "corpus"
    / "attacks"
)


def _compiled_available() -> bool:
    try:
        importlib.import_module("sensor.telemetry._telemetry")
        return True
    except ImportError:
        return False


BACKENDS = [
    pytest.param("py", id="py-telemetry"),
    pytest.param(
        "c",
        id="c-telemetry",
        marks=pytest.mark.skipif(
            not _compiled_available(), reason="sensor.telemetry._telemetry not built"
        ),
    ),
]


def _v4(a: str) -> list[int]:
    return list(ipaddress.ip_address(a).packed)


def rows(spec: list[dict]) -> np.ndarray:
    """PKTSUM rows from dicts (ts_ns, src, dst, proto, flags, dport, events, ip_len)."""
    a = np.zeros(len(spec), PKTSUM_DTYPE)
    for i, r in enumerate(spec):
        arp = bool(r.get("events", 0) & PktEvent.ARP)
        a[i]["ts_ns"] = r["ts_ns"]
        a[i]["ip_version"] = 0 if arp else 4
        a[i]["src"][:4] = _v4(r["src"])
        a[i]["dst"][:4] = _v4(r["dst"])
        a[i]["proto"] = r.get("proto", 6)
        a[i]["tcp_flags"] = r.get("flags", 0)
        a[i]["sport"] = r.get("sport", 40000)
        a[i]["dport"] = r.get("dport", 80)
        a[i]["events"] = int(r.get("events", 0))
        a[i]["ip_len"] = r.get("ip_len", 40)
    return a


def run(backend: str, data: np.ndarray, cfg: TelemetryConfig | None = None, chunk: int = 997):
    t = HostTelemetry(cfg or TelemetryConfig(), backend=backend)
    out: dict[str, list[np.ndarray]] = {"host": [], "pair": []}
    for i in range(0, len(data), chunk):
        part = data[i : i + chunk]
        t.update(part, len(part))
        for k, v in t.drain():
            out[k].append(v)
    t.flush()
    for k, v in t.drain():
        out[k].append(v)
    dts = {"host": HOST_DTYPE, "pair": PAIR_DTYPE}
    return t, {k: np.concatenate(v) if v else np.zeros(0, dts[k]) for k, v in out.items()}


def host(recs: np.ndarray, addr: str) -> np.ndarray:
    packed = np.array(_v4(addr) + [0] * 12, np.uint8)
    return recs[(recs["addr"] == packed).all(axis=1)]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Field-by-field equality (np.concatenate leaves padding bytes undefined)."""
    assert a.dtype == b.dtype and len(a) == len(b), (a.dtype, len(a), len(b))
    bad = [f for f in a.dtype.names if not np.array_equal(a[f], b[f])]
    assert not bad, f"fields differ: {bad}"
    return True


def random_pktsum(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros(n, PKTSUM_DTYPE)
    a["ts_ns"] = 1_600_000_000 * 10**9 + np.cumsum(rng.integers(0, 3_000_000, n))
    a["ip_version"] = rng.choice([4, 4, 4, 6, 0], n)
    a["proto"] = rng.choice([6, 17, 1, 58], n)
    a["tcp_flags"] = rng.integers(0, 256, n)
    a["events"] = rng.integers(0, 256, n)
    a["sport"] = rng.integers(0, 3, n)
    a["dport"] = rng.integers(0, 3000, n)
    a["ip_len"] = rng.integers(20, 1500, n)
    a["payload_len"] = rng.integers(0, 1400, n)
    a["src"][:, :4] = rng.integers(0, 5, (n, 4))
    a["dst"][:, :4] = rng.integers(0, 30, (n, 4))
    v6 = a["ip_version"] == 6
    a["src"][v6, 4:] = rng.integers(0, 3, (int(v6.sum()), 12))
    return a


@pytest.mark.skipif(not _compiled_available(), reason="sensor.telemetry._telemetry not built")
@pytest.mark.parametrize("capacity", [64, 4096], ids=["evicting", "roomy"])
def test_backends_give_identical_records(capacity: int) -> None:
    data = random_pktsum(6000, seed=capacity)
    cfg = TelemetryConfig(
        host_capacity=capacity, pair_capacity=capacity * 2, window=0.5, idle_timeout=2.0
    )
    tp, py = run("py", data, cfg)
    tc, c = run("c", data, cfg)
    for kind in ("host", "pair"):
        assert len(py[kind]) > 0
        assert same(py[kind], c[kind]), kind
    assert tp.stats() == tc.stats()
    assert tp.evictions == tc.evictions
    if capacity == 64:
        assert tp.evictions > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_port_scan_window_counts(backend: str) -> None:
    base = 1_700_000_000 * 10**9
    n_ports = 600
    spec = [
        {
            "ts_ns": base + i * 10**6,
            "src": "10.0.0.1",
            "dst": "10.0.0.2",
            "flags": 0x02,
            "dport": i,
            "events": PktEvent.NEW_FLOW,
        }
        for i in range(n_ports)
    ]
    # the target answers the first 100 with RST (first reply of each flow)
    spec += [
        {
            "ts_ns": base + (n_ports + i) * 10**6,
            "src": "10.0.0.2",
            "dst": "10.0.0.1",
            "flags": 0x14,
            "dport": 40000,
            "events": PktEvent.REPLY | PktEvent.FIRST_REPLY,
        }
        for i in range(100)
    ]
    _, out = run(backend, rows(spec))
    scanner = host(out["host"], "10.0.0.1")
    target = host(out["host"], "10.0.0.2")
    assert len(scanner) == 1 and len(target) == 1  # everything inside one 1 s window
    s, t = scanner[0], target[0]
    assert s["out_pkts"] == n_ports and s["out_syn"] == n_ports and s["out_flows"] == n_ports
    assert s["in_rst"] == 100 and s["out_syn_noreply"] == n_ports - 100
    assert t["in_syn_noreply"] == n_ports - 100
    assert abs(int(s["out_dst_ports"]) - n_ports) <= 0.2 * n_ports  # HLL, ~6.5% std error
    assert s["out_dst_hosts"] == 1 and t["in_src_hosts"] == 1
    assert abs(int(t["in_dst_ports"]) - n_ports) <= 0.2 * n_ports
    assert s["ts_start_ns"] <= base < s["ts_end_ns"]
    # decayed rate at window end: ~1000 pkt/s over the last 100 ms; sizes all 40 bytes
    assert s["out_size_mean"][0] == pytest.approx(40.0)
    assert s["out_size_std"][0] == pytest.approx(0.0, abs=1e-3)
    pair = out["pair"][(out["pair"]["src"][:, :4] == _v4("10.0.0.1")).all(axis=1)]
    assert len(pair) == 1 and pair[0]["flows"] == n_ports and pair[0]["pkts"] == n_ports


@pytest.mark.parametrize("backend", BACKENDS)
def test_windows_close_on_time_and_on_idle(backend: str) -> None:
    base = 1_700_000_000 * 10**9
    spec = [
        {
            "ts_ns": base + k * 10**9 + j,
            "src": "192.0.2.1",
            "dst": "192.0.2.9",
            "proto": 17,
            "dport": 53,
            "events": PktEvent.DNS_QUERY | (PktEvent.NEW_FLOW if j == 0 else 0),
            "ip_len": 60,
        }
        for k in range(3)
        for j in range(5)
    ]
    t = HostTelemetry(TelemetryConfig(window=1.0), backend=backend)
    data = rows(spec)
    t.update(data, len(data))
    got = dict(t.drain())["host"]
    assert len(host(got, "192.0.2.1")) == 2  # windows 0 and 1 closed by later packets
    t.advance(base + 10 * 10**9)  # idle wire: the third window still closes
    got = dict(t.drain())["host"]
    recs = host(got, "192.0.2.1")
    assert len(recs) == 1 and recs[0]["out_dns_queries"] == 5
    assert host(got, "192.0.2.9")[0]["in_dns_queries"] == 5
    assert recs[0]["out_udp_pkts"] == 5 and recs[0]["out_bytes"] == 300


@pytest.mark.parametrize("backend", BACKENDS)
def test_arp_counts_and_sweep(backend: str) -> None:
    base = 1_700_000_000 * 10**9
    spec = [
        {
            "ts_ns": base + i * 1000,
            "src": "10.1.0.1",
            "dst": f"10.1.0.{i}",
            "sport": 1,
            "events": PktEvent.ARP,
        }
        for i in range(2, 202)
    ]
    spec.append(
        {
            "ts_ns": base + 10**6,
            "src": "10.1.0.7",
            "dst": "10.1.0.1",
            "sport": 2,
            "events": PktEvent.ARP,
        }
    )
    _, out = run(backend, rows(spec))
    s = host(out["host"], "10.1.0.1")[0]
    assert s["arp_req_out"] == 200 and s["arp_rep_in"] == 1
    assert abs(int(s["out_dst_hosts"]) - 200) <= 40
    assert s["out_pkts"] == 0  # ARP is counted apart from IP traffic
    assert host(out["host"], "10.1.0.7")[0]["arp_rep_out"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_is_bounded_and_evictions_counted(backend: str) -> None:
    base = 1_700_000_000 * 10**9
    spec = [
        {
            "ts_ns": base + i * 1000,
            "src": f"10.{i >> 8 & 255}.{i & 255}.1",
            "dst": "10.255.0.1",
            "events": PktEvent.NEW_FLOW,
            "flags": 0x02,
        }
        for i in range(3000)
    ]
    cfg = TelemetryConfig(host_capacity=256, pair_capacity=256)
    t, out = run(backend, rows(spec), cfg)
    st = t.stats()
    assert st["hosts"] <= 256 and st["pairs"] <= 256
    assert t.evictions > 0 and st["host_evictions"] == t.evictions
    evicted = out["host"][out["host"]["flags"] & TelemetryFlags.EVICTED != 0]
    assert len(evicted) > 0
    # nothing is lost: evicted partial windows are emitted, so packets add up
    assert int(out["host"]["out_pkts"].sum()) == 3000
    assert int(out["pair"]["pkts"].sum()) == 3000


@pytest.mark.parametrize("backend", BACKENDS)
def test_occupancy_and_partial_windows_are_counted(backend: str) -> None:
    base = 1_700_000_000 * 10**9
    # 200 sources each open a flow to one server within one window: 201 hosts, 200 pairs
    spec = [
        {"ts_ns": base + i * 1000, "src": f"10.1.{i}.1", "dst": "10.2.0.1", "flags": 0x02,
         "events": PktEvent.NEW_FLOW}
        for i in range(200)
    ]  # fmt: skip
    t, out = run(backend, rows(spec), TelemetryConfig(host_capacity=64, pair_capacity=64))
    st = t.stats()
    assert (st["host_capacity"], st["pair_capacity"]) == (64, 64)
    assert 0 < st["hosts"] <= 64 and 0 < st["pairs"] <= 64
    # every entry pushed out was active: one EVICTED (partial) record each, counted
    for kind, name in (("host", "host"), ("pair", "pair")):
        flagged = int((out[kind]["flags"] & TelemetryFlags.EVICTED != 0).sum())
        assert flagged == st[f"{name}_partial"] == st[f"{name}_evictions"] > 0
    # live entries + evicted ones account for every host and pair seen
    assert st["hosts"] + st["host_evictions"] == 201
    assert st["pairs"] + st["pair_evictions"] == 200
    assert int(out["pair"]["pkts"].sum()) == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_idle_entries_expire_and_leave_the_occupancy(backend: str) -> None:
    base = 1_700_000_000 * 10**9
    early = [{"ts_ns": base + i, "src": f"10.1.0.{i + 1}", "dst": "10.2.0.1"} for i in range(10)]
    late = [{"ts_ns": base + 5 * 10**9, "src": "10.3.0.1", "dst": "10.3.0.2"}]
    cfg = TelemetryConfig(window=1.0, idle_timeout=2.0)
    t, _ = run(backend, rows(early + late), cfg)
    # the last window (start base + 5 s) closed at flush: everything idle since base expired
    st = t.stats()
    assert (st["hosts"], st["pairs"]) == (2, 1)
    assert st["expired"] == 11 + 10
    assert st["host_evictions"] == st["pair_evictions"] == 0


# --- end to end over labelled attack captures -----------------------------------------


def _labels() -> list[dict[str, str]]:
    path = ATTACKS / "LABELS.tsv"
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _telemetry_of(path: Path, backend: str = "c") -> np.ndarray:
    engine_mod = load_backend()
    engine = engine_mod.FlowEngine(EngineConfig())
    tel = HostTelemetry(TelemetryConfig(), backend=backend if _compiled_available() else "py")
    ps = np.zeros(4096, PKTSUM_DTYPE)
    parts = []
    for batch in engine_mod.PcapReader(str(path)).batches(max_packets=4096):
        engine.feed(batch, pktsum=ps)
        tel.update(ps, batch.count)
        parts += [v for k, v in tel.drain() if k == "host"]
    tel.flush()
    parts += [v for k, v in tel.drain() if k == "host"]
    return np.concatenate(parts)


def _top(recs: np.ndarray, field: str) -> str:
    r = recs[int(np.argmax(recs[field]))]
    return str(ipaddress.ip_address(bytes(r["addr"][: 4 if r["ip_version"] == 4 else 16])))


def _case(cls: str, **match: str) -> dict[str, str]:
    for row in _labels():
        if row["class"] == cls and all(m in row["file"] for m in match.values()):
            return row
    pytest.skip(f"no {cls} capture in {ATTACKS}/LABELS.tsv")


def _engine_ready() -> None:
    if not hasattr(load_backend(), "FlowEngine"):
        pytest.skip("no flow engine backend with FlowEngine yet")


def test_corpus_port_scanner_has_most_distinct_ports() -> None:
    _engine_ready()
    row = _case("port_scan", f="masscan_tcp")
    recs = _telemetry_of(ATTACKS / row["file"])
    assert _top(recs, "out_dst_ports") == row["attacker_ip"]
    assert _top(recs, "out_syn_noreply") == row["attacker_ip"]


def test_corpus_spoofed_flood_is_seen_from_the_victim() -> None:
    _engine_ready()
    row = _case("syn_flood")
    recs = _telemetry_of(ATTACKS / row["file"])
    victim = row["victim_ips"].split()[0]
    assert _top(recs, "in_src_hosts") == victim
    assert _top(recs, "in_syn_noreply") == victim
    # every source is new in its window: the victim's distinct sources dwarf any sender's
    vic = host(recs, victim)
    assert int(vic["in_src_hosts"].max()) > 100 * int(recs["out_dst_hosts"].max())


@pytest.mark.parametrize("f", ["icmp_ping_sweep", "arp_sweep"])
def test_corpus_host_sweeper_has_most_distinct_hosts(f: str) -> None:
    _engine_ready()
    row = _case("host_sweep", f=f)
    recs = _telemetry_of(ATTACKS / row["file"])
    assert _top(recs, "out_dst_hosts") == row["attacker_ip"]


@pytest.mark.skipif(not _compiled_available(), reason="sensor.telemetry._telemetry not built")
def test_corpus_parity_between_backends() -> None:
    _engine_ready()
    row = _case("host_sweep", f="icmp_ping_sweep")
    py = _telemetry_of(ATTACKS / row["file"], "py")
    assert len(py) > 0
    assert same(py, _telemetry_of(ATTACKS / row["file"], "c"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_scan_adds_up_over_the_long_window(backend: str) -> None:
    base = 1_700_000_090 * 10**9  # 50 s into a minute: the scan crosses a long-window edge
    n = 400  # 20 ports a second for 20 s: small per window, large over the long window
    spec = [
        {
            "ts_ns": base + i * 50_000_000,
            "src": "10.9.0.1",
            "dst": "10.9.0.2",
            "flags": 0x02,
            "dport": 1000 + i,
            "events": PktEvent.NEW_FLOW,
        }
        for i in range(n)
    ]
    _, out = run(backend, rows(spec), TelemetryConfig(window=1.0, long_window=60.0))
    recs = host(out["host"], "10.9.0.1")
    assert len(recs) == 20
    assert int(recs["out_dst_ports"].max()) <= 30
    # the long count restarts at the minute boundary and then grows again
    starts = sorted(set(recs["ts_long_start_ns"].tolist()))
    assert len(starts) == 2 and starts[1] - starts[0] == 60 * 10**9
    for start in starts:
        part = recs[recs["ts_long_start_ns"] == start]
        truth = int(part["out_flows"].sum())  # every flow went to a new port
        assert abs(int(part["out_dst_ports_long"].max()) - truth) <= 0.2 * truth
        assert list(part["out_dst_ports_long"]) == sorted(part["out_dst_ports_long"])
    victim = host(out["host"], "10.9.0.2")
    assert int(victim["in_src_hosts_long"].max()) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_input_is_refused(backend: str) -> None:
    t = HostTelemetry(TelemetryConfig(), backend=backend)
    with pytest.raises(TypeError):
        t.update(np.zeros(4, HOST_DTYPE), 4)
    with pytest.raises(ValueError):
        t.update(np.zeros(4, PKTSUM_DTYPE), 5)
    t.update(np.zeros(4, PKTSUM_DTYPE), 4)  # not IP, not ARP: ignored
    t.flush()
    assert all(len(a) == 0 for _, a in t.drain())


def test_tables_are_sized_from_expected_counts() -> None:
    for hosts, pairs in ((1, 1), (5_000, 100_000), (10_000, 150_000)):
        cfg = TelemetryConfig.sized(hosts, pairs)
        for want, cap in ((hosts, cfg.host_capacity), (pairs, cfg.pair_capacity)):
            assert cap & (cap - 1) == 0 and want <= 0.6 * cap and (cap == 64 or want > 0.3 * cap)
    # the defaults hold the 100,000-flow benchmark capture's ~150,000 live pairs
    assert TelemetryConfig().pair_capacity >= TelemetryConfig.sized(1, 150_000).pair_capacity


@pytest.mark.parametrize("cls", ["arp_spoofing", "port_scan", "c2_beaconing"])
def test_records_handed_on_have_zeroed_padding(cls: str) -> None:
    """Every record the sensor loop hands on (flow, ARP, host, pair) is the same bytes as on
    the bus and in the archive: padding zero, not whatever a copy's fresh memory held, so
    records compare, hash and deduplicate the same in process and after the bus."""
    from netwarden.records.schema import record_bytes
    from sensor.runner import PcapSource, SensorLoop, make_pipeline

    _engine_ready()
    row = _case(cls)
    mod = load_backend()
    loop = SensorLoop(PcapSource(mod, [str(ATTACKS / row["file"])]),
                      make_pipeline(EngineConfig(), backend=mod))  # fmt: skip
    seen: set[str] = set()
    for kind, recs in loop.records():
        assert recs.tobytes() == bytes(record_bytes(recs)), kind
        seen.add(kind)
    assert {"flow", "host", "pair"} <= seen
