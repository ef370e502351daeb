"""Equivalence check for detection speed work: the alerts and the saved state of every
detector, on the corpus captures and on generated streams, recorded once and compared
after a change (``record`` then ``check``). Not a test: it needs a recorded reference.

    python -m benchmarks.detect_equiv record DIR   # run everything, store the results
    python -m benchmarks.detect_equiv check DIR    # run again, compare with DIR

Scenarios: every corpus attack and benign capture alone, each background capture, the
benign day followed by a port scan (one stream), and two generated streams: the
benchmark's host/pair/flow stream and a mixed stream whose heavy-tailed telemetry crosses
the scan, flood and volume thresholds now and then. Alerts must match exactly (their JSON);
state arrays must match exactly (``--rtol`` allows a relative difference in floats).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_detect import NS, make_batch
from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE, HOST_DTYPE, PAIR_DTYPE

Event = tuple[str, Any]


def _corpus() -> Path:
    from tests.conftest import CORPUS

    return Path(CORPUS)


def _capture_events(path: Path, cache: Path) -> list[Event]:
    """The record batches and advances a replay of ``path`` hands the stack (cached)."""
    got = cache / (path.stem + ".events.pkl")
    if got.is_file():
        return pickle.loads(got.read_bytes())  # type: ignore[no-any-return]
    from tests.detect.harness import record_events

    ev = list(record_events(str(path)))
    cache.mkdir(parents=True, exist_ok=True)
    got.write_bytes(pickle.dumps(ev, protocol=5))
    return ev


def _bench_stream(n_batches: int = 30) -> Iterator[Event]:
    """The benchmark's stream, each record type in turn, an advance after each batch."""
    rng = np.random.default_rng(1)
    for kind in ("host", "pair", "flow"):
        base = [make_batch(kind, 20_000, i, rng) for i in range(8)]
        for t in range(n_batches):
            b = base[t % len(base)].copy()
            for f in b.dtype.names or ():
                if f.startswith("ts_"):
                    b[f] = b[f] - (t % len(base)) * NS + t * 20_000 * 1000
            yield "obs", (kind, b)
            yield "adv", (t + 1) * 20_000 * 1000 + NS


def _addrs(ids: np.ndarray, base: tuple[int, int]) -> np.ndarray:
    a = np.zeros((len(ids), 16), np.uint8)
    a[:, 0], a[:, 1] = base
    a[:, 2], a[:, 3] = ids // 250, ids % 250 + 1
    return a


def _mixed_stream(seconds: int = 600, hosts: int = 800, peers: int = 3000) -> Iterator[Event]:
    """One window per second: host, pair, flow and ARP records with heavy tails and a
    few planted outliers (scans, floods, big senders, odd flags, long DNS labels)."""
    rng = np.random.default_rng(11)
    t0 = 1_700_000_000 * NS
    for s in range(seconds):
        t = t0 + s * NS
        n = int(rng.integers(hosts // 2, hosts))
        ids = np.sort(rng.choice(hosts, n, replace=False))
        h = np.zeros(n, HOST_DTYPE)
        h["addr"] = _addrs(ids, (10, 1))
        h["ip_version"] = 4
        six = rng.random(n) < 0.05
        h["addr"][six, 0] = 0xFD
        h["ip_version"][six] = 6
        h["ts_start_ns"], h["ts_end_ns"], h["ts_last_ns"] = t, t + NS, t + NS - 1
        h["ts_long_start_ns"] = t - 59 * NS
        for col in HOST_DTYPE.names or ():
            if col.startswith(("out_", "in_", "arp_")) and HOST_DTYPE[col].kind in "ui":
                h[col] = np.minimum(rng.pareto(2.5, n) * 2, 2**31).astype(np.int64)
        h["out_bytes"] = rng.lognormal(9, 2.5, n)
        h["in_bytes"] = rng.lognormal(10, 2.5, n)
        k = rng.choice(n, 4, replace=False)  # planted outliers, every 10 s
        k = k if s % 10 == 0 else k[:0]
        if len(k):
            h["out_dst_ports"][k[0]], h["out_flows"][k[0]], h["in_flows"][k[0]] = 900, 950, 3
            h["out_dst_hosts"][k[0]] = 2
            h["out_dst_hosts"][k[1]], h["out_dst_ports"][k[1]] = 200, 1
            h["in_syn_noreply"][k[2]] = int(rng.integers(100, 20000))
            h["out_bytes"][k[3]] = 5e8
        yield "obs", ("host", h)

        m = 1500
        p = np.zeros(m, PAIR_DTYPE)
        p["src"] = _addrs(rng.integers(0, hosts, m), (10, 1))
        ext = rng.random(m) < 0.5
        p["dst"] = np.where(ext[:, None], _addrs(rng.integers(0, peers, m), (93, 184)),
                            _addrs(rng.integers(0, hosts, m), (10, 1)))  # fmt: skip
        swap = rng.random(m) < 0.3
        p["src"][swap], p["dst"][swap] = p["dst"][swap].copy(), p["src"][swap].copy()
        p["ip_version"] = 4
        p["ts_start_ns"], p["ts_end_ns"], p["ts_last_ns"] = t, t + NS, t + NS - 1
        p["bytes"] = rng.lognormal(7, 2.5, m)
        p["pkts"] = rng.integers(1, 200, m)
        p["flows"] = rng.integers(1, 20, m)
        yield "obs", ("pair", p)

        m = 1000
        fw = np.zeros(m, FLOW_DTYPE)
        fw["flow_id"] = s * m + np.arange(m)
        fw["orig_addr"] = _addrs(rng.integers(0, hosts, m), (10, 1))
        ext = rng.random(m) < 0.7
        fw["resp_addr"] = np.where(ext[:, None], _addrs(rng.integers(0, peers, m), (93, 184)),
                                  _addrs(rng.integers(0, hosts, m), (10, 1)))  # fmt: skip
        fw["ip_version"] = 4
        fw["ts_first_ns"] = t + rng.integers(0, NS, m)
        fw["ts_last_ns"] = fw["ts_first_ns"] + rng.integers(0, 5 * NS, m)
        fw["proto"] = rng.choice([6, 17, 1], m, p=[0.7, 0.25, 0.05])
        fw["resp_port"] = rng.choice([443, 80, 53, 22, 21, 3389, 8080, 25], m)
        fw["orig_port"] = rng.integers(1024, 65535, m)
        fw["orig_bytes"] = rng.lognormal(6, 2, m)
        fw["resp_bytes"] = rng.lognormal(8, 2, m)
        fw["orig_pkts"], fw["resp_pkts"] = rng.integers(1, 50, m), rng.integers(0, 50, m)
        fw["flags"] = np.where(rng.random(m) < 0.1, 1, 0)
        fw["history"] = rng.choice([b"ShADadFf", b"S", b"ShR", b"SF"], m)
        fc = fw["orig_flag_counts"]  # FIN, SYN, RST, PSH, ACK, URG, ...
        fc[:, 0], fc[:, 1], fc[:, 4] = 1, 1, fw["orig_pkts"]
        odd = rng.random(m) < 0.002  # a few odd probes: no flags, FIN alone, URG
        fc[odd] = rng.choice([0, 1], (int(odd.sum()), 8)) * [1, 0, 0, 1, 0, 1, 0, 0]
        dns = fw["resp_port"] == 53
        fw["dns_queries"][dns] = rng.integers(1, 20, int(dns.sum()))
        fw["dns_distinct_names"][dns] = rng.integers(1, 20, int(dns.sum()))
        nd = int(dns.sum())
        odd = rng.random(nd) < 0.01  # now and then a long random label or an odd type
        fw["dns_longest_label"][dns] = np.where(
            odd, rng.integers(20, 63, nd), rng.integers(3, 15, nd)
        )
        fw["dns_label_entropy_max"][dns] = rng.random(nd) * np.where(odd, 5, 3)
        fw["dns_qtype_mask"][dns] = np.where(odd, rng.integers(0, 256, nd), 1)
        yield "obs", ("flow", fw)

        if s % 7 == 0:
            m = 50
            a = np.zeros(m, ARP_DTYPE)
            a["ts_ns"] = t + rng.integers(0, NS, m)
            a["op"] = rng.integers(1, 3, m)
            ips = rng.integers(0, 300, m)
            a["sender_ip"] = _addrs(ips, (10, 1))[:, :4]
            a["target_ip"] = _addrs(rng.integers(0, 300, m), (10, 1))[:, :4]
            a["sender_mac"][:, 4], a["sender_mac"][:, 5] = ips // 256, ips % 256  # its own MAC
            other = rng.random(m) < 0.01  # now and then another device's
            a["sender_mac"][other, 5] += 1
            a["eth_src"] = a["sender_mac"]
            yield "obs", ("arp", a)
        yield "adv", t + NS + NS // 10


def scenarios(cache: Path) -> Iterator[tuple[str, Any]]:
    """(name, a callable giving the events) for every scenario."""
    corpus = _corpus()
    for p in sorted((corpus / "attacks").glob("*/*.pcap")):
        yield f"attack/{p.stem}", lambda p=p: _capture_events(p, cache)
    for p in sorted((corpus / "background").glob("*.pcap")):
        yield f"background/{p.stem}", lambda p=p: _capture_events(p, cache)
    warm = corpus / "background" / "m57_office_9h.pcap"
    scan = corpus / "attacks" / "port_scan" / "masscan_tcp_0-1000.pcap"
    if warm.is_file() and scan.is_file():

        def after() -> list[Event]:
            from tests.detect.harness import shift_pcap

            ev = _capture_events(warm, cache)
            last = max(a for w, a in ev if w == "adv")
            moved = cache / "masscan_after_m57.pcap"
            if not moved.is_file():
                shift_pcap(scan, moved, last / 1e9 + 60)
            return ev + _capture_events(moved, cache)

        yield "after_benign/masscan_tcp", after
    yield "generated/bench", _bench_stream
    yield "generated/mixed", _mixed_stream


def run(events: Iterable[Event]) -> dict[str, Any]:
    from controller.detect import DetectionStack, build
    from controller.detect.stack import dumps_state, loads_state

    stack = DetectionStack(build())
    alerts = []
    for what, arg in events:
        if what == "obs":
            stack.observe(*arg)
        else:
            alerts += [a.to_json() for a in stack.advance(arg)]
    state = {
        d.name: loads_state(dumps_state({"version": d.version, "state": d.state_dict()}))
        for d in stack.detectors
    }
    return {"alerts": alerts, "state": state, "errors": dict(stack.errors)}


def diff(a: Any, b: Any, path: str, rtol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'reference' if k in a else 'new'}")
            else:
                diff(a[k], b[k], f"{path}/{k}", rtol, out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            diff(x, y, f"{path}[{i}]", rtol, out)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or x.dtype != y.dtype:
            out.append(f"{path}: {x.dtype}{x.shape} != {y.dtype}{y.shape}")
        elif x.dtype.names:  # records: field by field (padding bytes are not data)
            for f in x.dtype.names:
                diff(x[f], y[f], f"{path}.{f}", rtol, out)
        elif x.dtype.kind == "f" and rtol > 0:
            if not np.allclose(x, y, rtol=rtol, atol=0, equal_nan=True):
                out.append(
                    f"{path}: max rel diff {np.nanmax(np.abs(x - y) / np.abs(x).clip(1e-300)):.3g}"
                )
        elif x.tobytes() != y.tobytes():
            n = int((x != y).sum()) if x.dtype.kind in "fiub" else -1
            out.append(f"{path}: {n} of {x.size} values differ")
    elif isinstance(a, float) and isinstance(b, float) and rtol > 0:
        if not np.isclose(a, b, rtol=rtol, atol=0):
            out.append(f"{path}: {a!r} != {b!r}")
    elif a != b:
        out.append(f"{path}: {str(a)[:80]!r} != {str(b)[:80]!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("record", "check"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--only", default="", help="run the scenarios whose name contains this")
    ap.add_argument("--rtol", type=float, default=0.0)
    args = ap.parse_args(argv)
    cache = args.dir / "events"
    bad = 0
    for name, events in scenarios(cache):
        if args.only not in name:
            continue
        got = run(events())
        ref_path = args.dir / (name.replace("/", "__") + ".pkl")
        if args.mode == "record":
            ref_path.write_bytes(pickle.dumps(got, protocol=5))
            print(f"{name}: {len(got['alerts'])} alerts recorded")
            continue
        ref = pickle.loads(ref_path.read_bytes())
        problems: list[str] = []
        diff(ref, got, "", args.rtol, problems)
        bad += bool(problems)
        print(f"{name}: {'same' if not problems else 'DIFFERENT'} ({len(got['alerts'])} alerts)")
        for p in problems[:20]:
            print("   ", p)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
