"""Unit tests on crafted records, with near misses, for dns_tunnel, arp_family, beacon and
host_anomaly (traffic_anomaly, data_exfiltration), plus the baselines and the model."""

from __future__ import annotations

import numpy as np

from controller.detect.base import keys_from_strings
from controller.detect.baselines import QuantileBaseline, TieredBaseline
from controller.detect.detectors.anomaly import HostAnomalyDetector
from controller.detect.detectors.arp_family import ArpFamilyDetector
from controller.detect.detectors.beacon import BeaconDetector, beacon_scores
from controller.detect.detectors.dns_tunnel import DnsTunnelDetector
from controller.detect.model import HostModel
from controller.detect.stack import dumps_state, loads_state
from netwarden.records.schema import ARP_DTYPE, DNS_QTYPE_BITS, PAIR_DTYPE
from tests.detect.records import T0, S, _addr, flows, host

NULL = 1 << DNS_QTYPE_BITS[10]
A_TYPE = 1 << DNS_QTYPE_BITS[1]
CNAME = 1 << DNS_QTYPE_BITS[5]


def _run(det, batches, until_s):  # type: ignore[no-untyped-def]
    out = []
    for kind, b in batches:
        det.observe(kind, b)
        out += det.advance(int(b[{"flow": "ts_last_ns", "arp": "ts_ns"}.get(kind, "ts_end_ns")]
                                 .max()))  # fmt: skip
    out += det.advance(T0 + int(until_s * S))
    return out


# --- DNS ------------------------------------------------------------------------------------
def _dns(client: str, n: int, label: int, entropy: float, mask: int, ob: int, rb: int,
         start: float = 0.0):  # type: ignore[no-untyped-def]  # fmt: skip
    f = flows(client, "10.0.0.53", 53, [start + i * 0.2 for i in range(n)], proto=17,
              duration_s=0.01, dns_queries=1, dns_responses=1, dns_distinct_names=1,
              dns_longest_label=label, dns_label_entropy_max=entropy, dns_qtype_mask=mask,
              orig_bytes=ob, resp_bytes=rb)  # fmt: skip
    f["dns_qname"] = [f"{'q' * 10}{i}.tun.example.org".encode() for i in range(n)]
    return f


def test_dns_null_queries_are_tunneling() -> None:
    f = _dns("10.0.0.7", 5, 40, 4.5, NULL, 80, 900)
    alerts = _run(DnsTunnelDetector(), [("flow", f)], 10)
    assert [a.kind for a in alerts] == ["dns_tunneling"]
    assert alerts[0].attacker == "10.0.0.7" and alerts[0].victims == ["10.0.0.53"]
    assert alerts[0].evidence["zone"] == "example.org"


def test_dns_long_labels_with_data_answers_is_tunneling_and_without_is_exfiltration() -> None:
    up = _dns("10.0.0.7", 10, 60, 4.3, A_TYPE, 240, 245)
    down = _dns("10.0.0.7", 5, 9, 2.4, CNAME, 62, 243, start=0.1)
    kinds = [a.kind for a in _run(DnsTunnelDetector(), [("flow", np.concatenate([up, down]))],
                                  10)]  # fmt: skip
    assert kinds == ["dns_tunneling"]
    kinds = [a.kind for a in _run(DnsTunnelDetector(), [("flow", up)], 10)]
    assert kinds == ["dns_exfiltration"]


def test_dns_near_misses_are_quiet() -> None:
    cdn = _dns("10.0.0.8", 50, 20, 3.9, A_TYPE, 60, 200)  # shortish labels (CDN hashes)
    words = _dns("10.0.0.9", 50, 30, 2.8, A_TYPE, 60, 200)  # long but low entropy
    few = _dns("10.0.0.10", 3, 60, 4.4, A_TYPE, 240, 245)  # a handful of odd names
    assert _run(DnsTunnelDetector(), [("flow", np.concatenate([cdn, words, few]))], 10) == []


def test_dns_telemetry_view_alerts_before_flows_end() -> None:
    det = DnsTunnelDetector()
    out = []
    for t in range(3):
        h = np.concatenate([host("10.0.0.7", t, out_dns_queries=6),
                            host("10.0.0.53", t, in_dns_queries=6)])  # fmt: skip
        p = np.zeros(2, PAIR_DTYPE)
        p["src"][0], p["ip_version"] = _addr("10.0.0.7")
        p["dst"][0] = _addr("10.0.0.53")[0]
        p["src"][1], p["dst"][1] = _addr("10.0.0.53")[0], _addr("10.0.0.7")[0]
        p["ts_start_ns"] = T0 + t * S
        p["pkts"] = 6
        p["bytes"] = [6 * 200, 6 * 300]
        det.observe("host", h)
        det.observe("pair", p)
        out += det.advance(T0 + (t + 1) * S)
    assert [a.kind for a in out] == ["dns_tunneling"]
    assert out[0].evidence["view"] == "telemetry"


# --- ARP ------------------------------------------------------------------------------------
def _arp(op: int, smac: str, sip: str, tmac: str, tip: str, t: float) -> np.ndarray:
    a = np.zeros(1, ARP_DTYPE)
    a["op"] = op
    a["sender_mac"] = [int(x, 16) for x in smac.split(":")]
    a["eth_src"] = a["sender_mac"]
    a["target_mac"] = [int(x, 16) for x in tmac.split(":")]
    a["sender_ip"] = [int(x) for x in sip.split(".")]
    a["target_ip"] = [int(x) for x in tip.split(".")]
    a["ts_ns"] = T0 + int(t * S)
    return a


GW, ATT, V, V2 = "02:00:00:00:00:01", "02:00:00:00:00:66", "02:00:00:00:00:07", "02:00:00:00:00:08"
ZERO = "00:00:00:00:00:00"


def _normal_lan(t: float = 0.0) -> list[np.ndarray]:
    return [_arp(1, V, "10.1.1.7", ZERO, "10.1.1.1", t), _arp(2, GW, "10.1.1.1", V, "10.1.1.7", t),
            _arp(1, V2, "10.1.1.8", ZERO, "10.1.1.1", t + 1),
            _arp(2, GW, "10.1.1.1", V2, "10.1.1.8", t + 1)]  # fmt: skip


def test_arp_spoofing_names_the_mac() -> None:
    recs = _normal_lan() + [_arp(2, ATT, "10.1.1.1", V, "10.1.1.7", 20.0)]
    alerts = _run(ArpFamilyDetector(), [("arp", r) for r in recs], 10)
    assert [a.kind for a in alerts] == ["arp_spoofing"]
    a = alerts[0]
    assert a.attacker == ATT and a.victims == ["10.1.1.7", "10.1.1.1"]
    assert any("belongs to" in s for s in a.evidence["signals"])


def test_arp_own_address_reply_and_answers_are_quiet() -> None:
    # a device answering for its own address without a visible request is normal
    recs = _normal_lan() + [_arp(2, V, "10.1.1.7", GW, "10.1.1.1", 5.0)] + _normal_lan(60)
    assert _run(ArpFamilyDetector(), [("arp", r) for r in recs], 100) == []


def test_ip_conflict_is_not_spoofing() -> None:
    dup = "02:00:00:00:00:99"
    recs = _normal_lan() + [_arp(1, GW, "10.1.1.1", ZERO, "10.1.1.8", 3.0),
                            _arp(2, dup, "10.1.1.8", GW, "10.1.1.1", 3.0)]  # fmt: skip
    alerts = _run(ArpFamilyDetector(), [("arp", r) for r in recs], 10)
    assert [a.kind for a in alerts] == ["ip_conflict"]
    assert alerts[0].attacker == dup and "10.1.1.8" in alerts[0].victims


def test_address_misconfig_swapped_octets() -> None:
    recs = _normal_lan() + _normal_lan(30) + [_arp(1, V2, "10.1.8.1", ZERO, "10.1.1.1", 60)]
    alerts = _run(ArpFamilyDetector(), [("arp", r) for r in recs], 70)
    assert [a.kind for a in alerts] == ["address_misconfig"]
    assert alerts[0].attacker == V2 and alerts[0].victims == ["10.1.8.1"]
    # a DHCP renumbering inside a known subnet is not
    recs = _normal_lan() + _normal_lan(30) + [_arp(1, V2, "10.1.1.9", ZERO, "10.1.1.1", 60)]
    assert _run(ArpFamilyDetector(), [("arp", r) for r in recs], 70) == []


# --- beaconing ------------------------------------------------------------------------------
def test_beacon_scores_regular_vs_bursty() -> None:
    reg = beacon_scores(np.arange(10) * 60.0, np.full(10, 300.0), 600)
    burst = beacon_scores(np.r_[0, 0.2, 0.5, 0.6, 300, 300.1, 599], np.r_[1e3, 5e4, 300, 9e3,
                          2e5, 70, 1e3], 600)  # fmt: skip
    assert reg["total"] > 0.95 and burst["total"] < 0.6


def test_c2_beacon_to_rare_external_host() -> None:
    f = flows("10.0.0.5", "203.0.113.9", 443, [i * 30.0 for i in range(8)], orig_bytes=310,
              resp_bytes=90)  # fmt: skip
    alerts = _run(BeaconDetector(), [("flow", f[i : i + 1]) for i in range(len(f))], 400)
    assert [a.kind for a in alerts] == ["c2_beaconing"]
    assert alerts[0].attacker == "10.0.0.5" and alerts[0].victims == ["203.0.113.9"]
    assert alerts[0].evidence["subscores"]["timestamp"] > 0.9


def test_monitoring_poll_and_shared_service_are_not_c2() -> None:
    poll = flows("10.0.0.5", "10.0.0.20", 443, [i * 60.0 for i in range(10)], orig_bytes=200)
    assert _run(BeaconDetector(), [("flow", poll)], 700) == []  # internal service
    shared = np.concatenate([
        flows("10.0.0.5", "198.51.100.7", 443, [i * 60.0 for i in range(10)], orig_bytes=200),
        flows("10.0.0.6", "198.51.100.8", 443, [5.0], orig_bytes=900),
    ])  # fmt: skip
    assert _run(BeaconDetector(), [("flow", shared)], 700) == []


# --- baselines, model, anomaly ----------------------------------------------------------------
def test_quantile_baseline_p99_and_tiers() -> None:
    qb = QuantileBaseline(1)
    keys = keys_from_strings(["10.0.0.1"] * 1000)
    qb.update(keys, np.full((1000, 1), 3.0), np.zeros(1000, np.int64))
    v, cnt = qb.quantile(keys[:1], 0.99)
    assert cnt[0] == 1000 and 3.0 <= v[0, 0] <= 5.0
    tb = TieredBaseline(("x",), warm=100)
    tb.learn(keys, np.full((1000, 1), 3.0), np.zeros(1000, np.int64))
    _, tier = tb.reference(keys_from_strings(["10.0.0.1", "10.0.0.2", "192.0.2.1"]))
    assert tier.tolist() == [0, 1, 2]  # host, its /24, global


def test_model_threshold_from_benign_scores() -> None:
    rng = np.random.default_rng(1)
    m = HostModel()
    benign = np.log1p(rng.poisson(20, (6000, 19)).astype(np.float32))
    for i in range(0, 6000, 500):
        m.learn(benign[i : i + 500])
    assert m.ready
    odd = benign[:5].copy()
    odd[:, 6:10] = np.log1p(5000)  # fan-out far beyond anything learnt
    assert m.anomalous(m.score(odd)).all()
    assert m.anomalous(m.score(benign[:200])).mean() < 0.02


def _host_stream(det: HostAnomalyDetector, ip: str, t0: int, n: int, **f):  # type: ignore[no-untyped-def]  # fmt: skip
    out = []
    for t in range(t0, t0 + n, 50):
        h = np.concatenate([host(ip, s, **f) for s in range(t, min(t + 50, t0 + n))])
        det.observe("host", h)
        out += det.advance(int(h["ts_end_ns"].max()))
    return out


def test_exfiltration_vs_mail_upload() -> None:
    det = HostAnomalyDetector()
    _host_stream(det, "10.0.0.5", 0, 300, out_bytes=20_000, in_bytes=40_000, out_pkts=30)
    p = np.zeros(2, PAIR_DTYPE)
    p["src"][0], p["ip_version"] = _addr("10.0.0.5")
    p["dst"][0] = _addr("198.51.100.9")[0]
    p["src"][1], p["dst"][1] = _addr("10.0.0.5")[0], _addr("10.0.0.25")[0]  # mail relay
    p["bytes"] = [3_000_000, 20_000_000]
    out = []
    for t in range(300, 303):
        p["ts_start_ns"], p["ts_end_ns"] = T0 + t * S, T0 + (t + 1) * S
        det.observe("pair", p.copy())
        out += det.advance(T0 + (t + 1) * S)
    assert [a.kind for a in out] == ["data_exfiltration"]
    assert out[0].attacker == "10.0.0.5" and out[0].victims == ["198.51.100.9"]
    assert out[0].evidence["reference_tier"] == "host"


def test_state_round_trip_keeps_baselines() -> None:
    det = HostAnomalyDetector()
    _host_stream(det, "10.0.0.5", 0, 200, out_bytes=20_000, in_bytes=40_000)
    blob = dumps_state(det.state_dict())
    det2 = HostAnomalyDetector()
    det2.load_state(loads_state(blob))
    k = keys_from_strings(["10.0.0.5"])
    assert np.array_equal(det.base.reference(k)[0], det2.base.reference(k)[0])
    x = HostModel.features(host("10.0.0.5", 0, out_bytes=5))
    assert np.allclose(det.model.score(x), det2.model.score(x))
    for cls in (DnsTunnelDetector, ArpFamilyDetector, BeaconDetector):
        d = cls()
        d.load_state(loads_state(dumps_state(d.state_dict())))


def _windows(ip: str, t0: int, n: int, vol: int) -> np.ndarray:
    h = np.zeros(n, host("10.0.0.1", 0).dtype)
    h[:] = host(ip, 0)[0]
    h["ts_start_ns"] = T0 + (t0 + np.arange(n)) * S
    h["ts_end_ns"] = h["ts_start_ns"] + S
    h["ts_last_ns"] = h["ts_end_ns"] - 1
    h["out_bytes"], h["in_bytes"] = vol // 2, vol // 2
    h["out_pkts"], h["in_pkts"] = vol // 2000, vol // 2000
    h["out_flows"], h["out_dst_hosts"], h["out_dst_ports"] = 3, 2, 2
    return h


def _feed_hosts(det: HostAnomalyDetector, parts: list[np.ndarray]) -> list:  # type: ignore[type-arg]
    out = []
    h = np.concatenate(parts)
    h = h[np.argsort(h["ts_start_ns"], kind="stable")]
    for t in np.unique(h["ts_start_ns"]):
        b = h[h["ts_start_ns"] == t]
        det.observe("host", b)
        out += det.advance(int(b["ts_end_ns"].max()))
    return out


def test_traffic_anomaly_far_above_learnt_level_and_a_busy_host_is_not() -> None:
    det = HostAnomalyDetector()
    learn = [_windows("10.0.0.5", 0, 1200, 1_000_000), _windows("10.0.0.6", 0, 1200, 800_000_000)]
    learn += [_windows(f"10.0.0.{i}", 0, 1200, 50_000 * i) for i in range(10, 13)]
    assert _feed_hosts(det, learn) == []
    assert det.model.ready
    out = _feed_hosts(det, [_windows("10.0.0.5", 1200, 1, 900_000_000),
                            _windows("10.0.0.6", 1200, 1, 900_000_000)])  # fmt: skip
    assert [(a.kind, a.attacker) for a in out] == [("traffic_anomaly", "10.0.0.5")]
    ev = out[0].evidence
    assert ev["reference_tier"] in ("host", "this hour of day") and ev["factor"] >= 20
    assert ev["direction"] == "above" and "score" in ev["model"]


def test_traffic_anomaly_far_below_when_a_busy_host_goes_silent() -> None:
    det = HostAnomalyDetector()
    busy = _windows("10.0.0.5", 0, 600, 2_000_000)
    other = _windows("10.0.0.9", 0, 1500, 10_000)
    out = _feed_hosts(det, [busy, other])
    below = [a for a in out if a.kind == "traffic_anomaly"]
    assert [(a.attacker, a.evidence["direction"]) for a in below] == [("10.0.0.5", "below")]
    assert below[0].detected_at - 600 - T0 / S >= HostAnomalyDetector.SILENT_S
    # a quiet host going silent is not an anomaly
    assert all(a.attacker != "10.0.0.9" for a in out)


def test_arp_broadcast_announcement_of_the_gateway_by_a_host_is_spoofing() -> None:
    bcast = "ff:ff:ff:ff:ff:ff"
    recs = _normal_lan() + [_arp(1, ATT, "10.1.1.66", ZERO, "10.1.1.1", 2.0),
                            _arp(2, ATT, "10.1.1.1", bcast, "10.1.1.1", 3.0)]  # fmt: skip
    alerts = _run(ArpFamilyDetector(), [("arp", r) for r in recs], 10)
    assert [(a.kind, a.attacker) for a in alerts] == [("arp_spoofing", ATT)]
    assert "another live MAC" in alerts[0].evidence["signals"][0]


def _feed_chunks(det: HostAnomalyDetector, h: np.ndarray, chunk: int = 30) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(0, len(h), chunk):
        b = h[i : i + chunk]
        det.observe("host", b)
        out += det.advance(int(b["ts_end_ns"].max()))
    return out


def test_a_false_positive_teaches_host_anomaly_the_level_it_called_benign() -> None:
    """A host starts moving 60 MB a window (a new backup job, say). Both detectors alert;
    the operator calls it a false positive on one of them. That one learns the new level
    and stays quiet; the other never learns a window that far above the baseline and alerts
    again once its 30 minutes of once-only are over."""
    told, untold = HostAnomalyDetector(), HostAnomalyDetector()
    learn = [_windows("10.0.0.5", 0, 1200, 1_000_000)]
    learn += [_windows(f"10.0.0.{i}", 0, 1200, 50_000 * i) for i in range(10, 13)]
    for det in (told, untold):
        assert _feed_hosts(det, learn) == []
    backup = _windows("10.0.0.5", 1200, 2400, 60_000_000)
    first = {id(d): _feed_chunks(d, backup[:30]) for d in (told, untold)}
    for det in (told, untold):
        assert [(a.kind, a.attacker) for a in first[id(det)]] == [("traffic_anomaly", "10.0.0.5")]
    at = told.now_ns
    note = told.feedback("false_positive", "traffic_anomaly", "10.0.0.5", ["10.0.0.5"], at)
    assert note is not None and "10.0.0.5" in note
    # the same feedback again, other verdicts, kinds and entities change nothing
    assert told.feedback("false_positive", "traffic_anomaly", "10.0.0.5", ["10.0.0.5"], at) is None
    assert told.feedback("confirmed", "traffic_anomaly", "10.0.0.6", ["10.0.0.6"], at) is None
    assert told.feedback("false_positive", "port_scan", "10.0.0.6", ["10.0.0.7"], at) is None
    assert told.feedback("false_positive", "traffic_anomaly", "aa:bb:cc:dd:ee:ff", [], at) is None
    later = {id(d): [a for a in _feed_chunks(d, backup[30:]) if a.attacker == "10.0.0.5"]
             for d in (told, untold)}  # fmt: skip
    assert later[id(told)] == []
    assert [(a.kind, a.evidence["direction"]) for a in later[id(untold)]] == [
        ("traffic_anomaly", "above")
    ]
    k = keys_from_strings(["10.0.0.5"])
    assert told.base.reference(k)[0][0, 0] * told.FACTOR > 60_000_000
    assert untold.base.reference(k)[0][0, 0] * untold.FACTOR < 60_000_000
    # the vouch is saved with the state, and ends VOUCH_S after the feedback
    again = HostAnomalyDetector()
    again.load_state(loads_state(dumps_state(told.state_dict())))
    assert again.feedback("false_positive", "traffic_anomaly", "10.0.0.5", ["10.0.0.5"], at) is None
    assert "vouched" not in untold.state_dict()  # no feedback: the state is as it was
    again.now_ns = at + int(again.VOUCH_S * S) + 1
    assert len(again.vouched_keys()) == 0
