"""Each detector on crafted records: the attack it is for, and the near misses that must
stay quiet (a busy web client is not a scan, a server answering is not the attacker, a
resolver is not a sweep, a poll every minute is not a brute force)."""

from __future__ import annotations

import numpy as np

from controller.detect import Alert
from controller.detect.detectors.bruteforce import BruteforceDetector
from controller.detect.detectors.floods import FloodDetector
from controller.detect.detectors.recon import OsFingerprintDetector, ScanDetector
from tests.detect.records import T0, S, arp_requests, flows, host, pairs


def _run(det, *batches: tuple[str, np.ndarray], now_s: float = 5.0) -> list[Alert]:
    for kind, b in batches:
        det.observe(kind, b)
    return det.advance(T0 + int(now_s * S))


# --- port_scan --------------------------------------------------------------------------
def test_vertical_scan_is_flagged_with_its_victim() -> None:
    rec = host("10.0.0.5", 1, out_dst_ports=120, out_dst_hosts=1, out_dst_ports_long=130,
               out_dst_hosts_long=1, out_flows=125, out_syn=125, out_syn_noreply=120)  # fmt: skip
    (a,) = _run(ScanDetector(), ("pair", pairs("10.0.0.5", ["10.0.0.9"], 1, flows=125)),
                ("host", rec))  # fmt: skip
    assert (a.kind, a.attacker, a.victims) == ("port_scan", "10.0.0.5", ["10.0.0.9"])
    assert a.evidence["distinct_dst_ports"] == 120 and a.evidence["scan_type"] == "TCP SYN"
    assert a.mitre == "T1046" and "120 distinct ports" in a.summary


def test_busy_web_client_is_not_a_scan() -> None:
    dsts = [f"151.101.{i}.{i + 1}" for i in range(60)]
    rec = host("192.168.1.20", 1, out_dst_ports=2, out_dst_hosts=60, out_dst_ports_long=2,
               out_dst_hosts_long=60, out_flows=150, out_syn=150, in_synack=150, out_pkts=900,
               in_pkts=2400)  # fmt: skip
    assert _run(ScanDetector(), ("pair", pairs("192.168.1.20", dsts, 1)), ("host", rec)) == []


def test_server_answering_midstream_is_never_the_scanner() -> None:
    # a capture that replays itself: the server's answers open "new" flows to 600 client
    # ports, while the client opened twice as many flows to it
    rec = host("10.121.70.151", 44, out_dst_ports=650, out_dst_hosts=1, out_dst_ports_long=650,
               out_dst_hosts_long=1, out_flows=624, in_flows=1320, out_synack=715)  # fmt: skip
    got = _run(ScanDetector(), ("pair", pairs("10.121.70.151", ["10.234.125.254"], 44)),
               ("host", rec), now_s=46)  # fmt: skip
    assert got == []


def test_network_scan_of_many_hosts_and_ports() -> None:
    dsts = [f"10.9.0.{i}" for i in range(1, 61)]
    rec = host("10.0.0.5", 1, out_dst_ports=200, out_dst_hosts=60, out_flows=900, out_syn=900,
               out_syn_noreply=500, in_rst=350)  # fmt: skip
    (a,) = _run(ScanDetector(), ("pair", pairs("10.0.0.5", dsts, 1, flows=15)), ("host", rec))
    assert (a.kind, a.attacker) == ("port_scan", "10.0.0.5") and len(a.victims) == 5


def test_peer_to_peer_client_is_not_a_scan() -> None:
    dsts = [f"{20 + i}.{i * 3 % 250}.1.{i + 1}" for i in range(80)]
    rec = host("192.168.1.30", 1, out_dst_ports=75, out_dst_hosts=80, out_flows=80, out_syn=80,
               out_syn_noreply=10, in_rst=4, in_synack=66)  # fmt: skip
    assert _run(ScanDetector(), ("pair", pairs("192.168.1.30", dsts, 1)), ("host", rec)) == []


def test_udp_scan_type() -> None:
    rec = host("10.0.0.5", 1, out_dst_ports=90, out_dst_hosts=1, out_flows=90, out_udp_pkts=90)
    (a,) = _run(ScanDetector(), ("pair", pairs("10.0.0.5", ["10.0.0.9"], 1)), ("host", rec))
    assert a.evidence["scan_type"] == "UDP"


# --- host_sweep -------------------------------------------------------------------------
def test_icmp_sweep_of_a_subnet() -> None:
    dsts = [f"10.1.2.{i}" for i in range(1, 101)]
    rec = host("10.1.2.200", 1, out_dst_hosts=100, out_dst_ports=1, out_dst_hosts_long=100,
               out_flows=100, out_icmp_pkts=100)  # fmt: skip
    (a,) = _run(ScanDetector(), ("pair", pairs("10.1.2.200", dsts, 1)), ("host", rec))
    assert (a.kind, a.attacker, a.victims) == ("host_sweep", "10.1.2.200", ["10.1.2.0/24"])
    assert a.evidence["sweep_type"] == "ICMP" and a.evidence["targets_in_subnet"] == 100


def test_arp_sweep() -> None:
    targets = [f"192.168.5.{i}" for i in range(1, 201)]
    rec = host("192.168.5.77", 0, out_dst_hosts=200, out_dst_hosts_long=200, arp_req_out=200)
    (a,) = _run(ScanDetector(), ("arp", arp_requests("192.168.5.77", targets, 0)), ("host", rec))
    assert (a.kind, a.attacker) == ("host_sweep", "192.168.5.77")
    assert a.evidence["sweep_type"] == "ARP" and a.victims == ["192.168.5.0/24"]


def test_sweep_across_a_16_mostly_unanswered() -> None:
    dsts = [f"10.20.{i * 7 % 256}.{i % 200 + 1}" for i in range(120)]
    rec = host("10.20.0.9", 1, out_dst_hosts=120, out_dst_ports=1, out_flows=120, out_pkts=120,
               out_syn=120, in_pkts=6)  # fmt: skip
    (a,) = _run(ScanDetector(), ("pair", pairs("10.20.0.9", dsts, 1)), ("host", rec))
    assert (a.kind, a.victims) == ("host_sweep", ["10.20.0.0/16"])


def test_resolver_talking_to_many_servers_is_not_a_sweep() -> None:
    dsts = [f"{i + 1}.{(7 * i) % 250}.{i % 13}.53" for i in range(80)]
    rec = host("192.168.1.53", 1, out_dst_hosts=80, out_dst_ports=1, out_dst_hosts_long=80,
               out_flows=80, out_udp_pkts=80, in_udp_pkts=80)  # fmt: skip
    assert _run(ScanDetector(), ("pair", pairs("192.168.1.53", dsts, 1)), ("host", rec)) == []


def test_scan_detector_learns_only_unflagged_hosts() -> None:
    det = ScanDetector()
    for t in range(5):
        det.observe("host", host("10.0.0.7", t, out_dst_ports=3, out_dst_hosts=2, out_flows=5))
        det.advance(T0 + (t + 1) * S)
    scan = host("10.0.0.5", 6, out_dst_ports=120, out_dst_hosts=1, out_flows=125, out_syn=125)
    det.observe("pair", pairs("10.0.0.5", ["10.0.0.9"], 6))
    det.observe("host", scan)
    assert [a.kind for a in det.advance(T0 + 8 * S)] == ["port_scan"]
    learnt = det.baseline.reference(det.baseline.keys)[0]
    assert len(det.baseline) == 1 and learnt[0, 0] == 3.0  # the benign host only


# --- os_fingerprint -----------------------------------------------------------------------
def test_odd_flag_probes_are_fingerprinting() -> None:
    z = np.zeros(8, np.uint32)
    synfin = flows("172.16.16.128", "172.16.16.150", 135, [0.6, 0.8], history=b"Q",
                   orig_flag_counts=np.array([1, 1, 0, 1, 0, 1, 0, 0], np.uint32), resp_pkts=0)  # fmt: skip
    null = flows("172.16.16.128", "172.16.16.150", 135, [0.7], history=b"", orig_flag_counts=z)
    (a,) = _run(OsFingerprintDetector(), ("flow", synfin), ("flow", null), now_s=2)
    assert (a.kind, a.attacker, a.victims) == ("os_fingerprint", "172.16.16.128", ["172.16.16.150"])
    assert set(a.evidence["odd_kinds"]) >= {"SYN+FIN", "NULL", "URG"}


def test_icmp_fingerprint_probes() -> None:
    f = flows("10.0.0.66", "10.0.0.2", 0, [0, 0.1, 0.2], proto=1, orig_port=[13, 17, 8],
              history=b"")  # fmt: skip
    f["resp_port"] = [0, 0, 9]  # ICMP code: an echo request with code 9
    (a,) = _run(OsFingerprintDetector(), ("flow", f))
    assert a.kind == "os_fingerprint" and a.evidence["odd_kinds"] == ["odd ICMP"]


def test_normal_sessions_and_one_odd_packet_are_not_fingerprinting() -> None:
    normal = flows("10.0.0.1", "10.0.0.2", 443, [0, 1, 2, 3],
                   orig_flag_counts=np.array([1, 1, 0, 3, 9, 0, 0, 0], np.uint32))  # fmt: skip
    one = flows("10.0.0.3", "10.0.0.2", 80, [1], history=b"Q",
                orig_flag_counts=np.array([1, 1, 0, 0, 0, 0, 0, 0], np.uint32))  # fmt: skip
    assert _run(OsFingerprintDetector(), ("flow", normal), ("flow", one)) == []


# --- floods -----------------------------------------------------------------------------
def test_spoofed_syn_flood_names_the_victim_only() -> None:
    rec = host("10.10.10.10", 0, in_syn=20000, in_syn_noreply=20000, in_pkts=20000,
               in_src_hosts=19000)  # fmt: skip
    (a,) = _run(FloodDetector(), ("host", rec))
    assert (a.kind, a.attacker, a.victims) == ("syn_flood", None, ["10.10.10.10"])
    assert a.to_detection() is None  # nothing to ban: the sources are forged


def test_single_source_syn_flood_names_the_source() -> None:
    rec = host("10.10.10.10", 0, in_syn=5000, in_syn_noreply=5000, in_src_hosts=1)
    p = pairs("198.51.100.7", ["10.10.10.10"], 0, pkts=5000)
    (a,) = _run(FloodDetector(), ("pair", p), ("host", rec))
    assert (a.kind, a.attacker) == ("syn_flood", "198.51.100.7")


def test_busy_server_answering_its_clients_is_not_flooded() -> None:
    rec = host("10.0.0.80", 0, in_syn=5000, in_syn_noreply=40, out_synack=4960,
               in_src_hosts=3000)  # fmt: skip
    assert _run(FloodDetector(), ("host", rec)) == []


def test_udp_amplification_vs_a_download() -> None:
    amp = host("10.10.10.10", 0, in_udp_pkts=4000, in_udp_bytes=900_000, in_src_hosts=2700)
    quic = host("192.168.1.9", 0, in_udp_pkts=4000, in_udp_bytes=5_000_000, out_udp_pkts=1500,
                in_src_hosts=1)  # fmt: skip
    got = _run(FloodDetector(), ("host", np.concatenate([amp, quic])))
    assert [(a.kind, a.attacker, a.victims) for a in got] == [
        ("udp_amplification", None, ["10.10.10.10"])]  # fmt: skip


def test_dns_amplification_vs_a_resolver_client() -> None:
    amp = host("10.10.10.10", 0, in_udp_pkts=60, in_dns_responses=60, in_udp_bytes=200_000,
               in_dns_bytes=200_000, in_src_hosts=25)  # fmt: skip
    client = host("192.168.1.9", 0, in_udp_pkts=60, in_dns_responses=60, out_dns_queries=60,
                  in_udp_bytes=200_000, in_dns_bytes=200_000, in_src_hosts=2)  # fmt: skip
    got = _run(FloodDetector(), ("host", np.concatenate([amp, client])))
    assert [(a.kind, a.victims) for a in got] == [("dns_amplification", ["10.10.10.10"])]


def test_tcp_reflection_vs_a_scanner_collecting_resets() -> None:
    refl = host("10.10.10.10", 0, in_synack=3000, in_rst=500, in_src_hosts=800)
    scanner = host("10.0.0.5", 0, in_rst=3000, out_syn=3000, in_src_hosts=1)
    got = _run(FloodDetector(), ("host", np.concatenate([refl, scanner])))
    assert [(a.kind, a.attacker, a.victims) for a in got] == [
        ("tcp_reflection", None, ["10.10.10.10"])]  # fmt: skip


def test_few_reflectors_fast_with_big_answers() -> None:
    amp = host("10.10.10.10", 0, in_udp_pkts=6000, in_udp_bytes=6000 * 480, in_src_hosts=4)
    (a,) = _run(FloodDetector(), ("host", amp))
    assert (a.kind, a.attacker) == ("udp_amplification", None)


def test_icmp_flood() -> None:
    (a,) = _run(FloodDetector(), ("host", host("10.0.0.1", 0, in_icmp_pkts=9000, in_src_hosts=500)))
    assert (a.kind, a.victims) == ("icmp_flood", ["10.0.0.1"])


# --- brute force ------------------------------------------------------------------------
def _sessions(starts: list[float], port: int = 22, **kw) -> np.ndarray:
    return flows("203.0.113.5", "10.0.0.22", port, starts, duration_s=3.0, orig_bytes=kw.pop(
        "orig_bytes", 1133), resp_bytes=kw.pop("resp_bytes", 1863), **kw)  # fmt: skip


def test_fast_ssh_bruteforce_names_the_client() -> None:
    (a,) = _run(BruteforceDetector(), ("flow", _sessions([i * 5.0 for i in range(8)])), now_s=45)
    assert (a.kind, a.attacker, a.victims) == ("ssh_bruteforce", "203.0.113.5", ["10.0.0.22"])
    assert a.evidence["attempts"] >= 6 and a.mitre == "T1110.001"


def test_slow_bruteforce_over_twenty_minutes() -> None:
    det = BruteforceDetector()
    got: list[Alert] = []
    for i in range(40):  # one guess every 28 s: never 6 in a minute
        got += _run(det, ("flow", _sessions([i * 28.0], port=3389)), now_s=i * 28.0 + 3)
    assert [(a.kind, a.attacker) for a in got] == [("rdp_bruteforce", "203.0.113.5")]


def test_monitoring_poll_every_minute_is_not_bruteforce() -> None:
    det = BruteforceDetector()
    got: list[Alert] = []
    for i in range(25):
        got += _run(det, ("flow", _sessions([i * 60.0])), now_s=i * 60.0 + 3)
    assert got == []


def test_varied_sessions_are_not_bruteforce() -> None:
    sizes = np.array([900, 15000, 4000, 22000, 300, 9000, 12000, 2500], np.uint64)
    f = _sessions([i * 5.0 for i in range(8)], orig_bytes=sizes, resp_bytes=sizes * 3 % 30000)
    assert _run(BruteforceDetector(), ("flow", f), now_s=45) == []


def test_http_needs_more_attempts_than_ssh() -> None:
    few = _sessions([i * 5.0 for i in range(10)], port=80)
    assert _run(BruteforceDetector(), ("flow", few), now_s=50) == []
    many = _sessions([i * 2.0 for i in range(30)], port=80)
    (a,) = _run(BruteforceDetector(), ("flow", many), now_s=62)
    assert a.kind == "http-auth_bruteforce"


def test_record_buffer_keeps_only_its_horizon() -> None:
    from controller.detect.features import RecordBuffer
    from netwarden.records.schema import PAIR_DTYPE

    buf = RecordBuffer(PAIR_DTYPE, "ts_last_ns", horizon_s=10.0)
    for t in range(30):
        buf.add(pairs("10.0.0.1", ["10.0.0.2", "10.0.0.3"], t))
        if t == 15:
            assert len(buf.records()) > 0  # merges the parts into one
    ts = buf.records()["ts_last_ns"]
    assert ts.min() >= buf.latest_ns - 10 * S  # nothing older than the horizon ...
    assert len(buf.records()) == 2 * 11  # ... and all of the last 10 s (11 windows end in it)


def test_device_retrying_tls_to_its_cloud_is_not_bruteforce() -> None:
    det = BruteforceDetector()
    got: list[Alert] = []
    for i in range(150):  # a failing TLS connection retried every 8 s for 20 minutes
        got += _run(det, ("flow", _sessions([i * 8.0], port=443)), now_s=i * 8.0 + 3)
    assert got == []


class _CountsEveryKey(BruteforceDetector):
    """The detector as it was: every key of the window counted at every look."""

    def advance(self, now_ns: int) -> list[Alert]:
        self._cands = None
        return super().advance(now_ns)


def test_bruteforce_counting_only_candidate_keys_raises_what_counting_all_does() -> None:
    """Many clients and services, some guessing fast, some slow, some with varied sessions,
    ticks with nothing from the guessers (their suppression runs out while no new attempt
    comes in) and state saved between a batch and the next look: the alerts are the same,
    in the same order, with the same evidence."""
    rng = np.random.default_rng(7)
    clients = [f"203.0.113.{i}" for i in range(1, 40)]
    ports = [21, 22, 25, 80, 3389]
    fast, full = BruteforceDetector(), _CountsEveryKey()
    for det in (fast, full):
        det.SUPPRESS_S = 90.0  # short, so it runs out within the run
    got_fast: list[dict] = []
    got_full: list[dict] = []
    for tick in range(400):
        t = tick * 3.0
        batch = []
        for _ in range(int(rng.integers(0, 6))):
            c = clients[int(rng.integers(0, 5 if tick % 50 < 25 else len(clients)))]
            size = 1133 if rng.random() < 0.8 else int(rng.integers(200, 30000))
            batch.append(flows(c, "10.0.0.22", ports[int(rng.integers(0, len(ports)))],
                               [t + float(rng.random())], duration_s=2.0,
                               orig_bytes=size, resp_bytes=1863))  # fmt: skip
        for det, got in ((fast, got_fast), (full, got_full)):
            for b in batch:
                det.observe("flow", b)
            if tick % 7 == 0:
                det.state_dict()  # a save between a batch and the next look
            got += [a.to_json() for a in det.advance(T0 + int((t + 3) * S))]
    assert got_full and got_fast == got_full


def test_a_false_positive_flood_raises_the_victims_own_bar() -> None:
    """A monitoring server with a long, quiet history starts receiving 1,500 ICMP packets a
    second from the hosts it watches: over the floor and ten times its learnt level. The
    operator calls the icmp_flood a false positive on one detector: it learns the server's
    new level (the victim's windows, not the source's) and stays quiet; the other raises it
    again once its own repeat suppression is over."""

    def window(t: int, rate: int) -> np.ndarray:
        return host("10.0.0.30", t, in_icmp_pkts=rate, in_src_hosts=40)

    told, untold = FloodDetector(), FloodDetector()
    for det in (told, untold):
        for t in range(400):  # one window a second, as a sensor sends them
            assert _run(det, ("host", window(t, 100)), now_s=t + 1) == []
    first = {id(d): _run(d, ("host", window(400, 1500)), now_s=401) for d in (told, untold)}
    for det in (told, untold):
        assert [(a.kind, a.victims) for a in first[id(det)]] == [("icmp_flood", ["10.0.0.30"])]
    at = told.now_ns
    note = told.feedback("false_positive", "icmp_flood", "198.51.100.1", ["10.0.0.30"], at)
    assert note is not None and "10.0.0.30" in note and "198.51.100.1" not in note
    assert told.feedback("false_positive", "port_scan", None, ["10.0.0.30"], at) is None
    later: dict[int, list[Alert]] = {id(told): [], id(untold): []}
    for t in range(401, 1400):
        for det in (told, untold):
            later[id(det)] += _run(det, ("host", window(t, 1500)), now_s=t + 1)
    assert later[id(told)] == []
    assert [a.kind for a in later[id(untold)]] == ["icmp_flood"]
