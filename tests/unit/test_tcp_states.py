"""TCP connection states, history letters, originator flips, reuse and timeouts, with
segments crafted by scapy. Expected states follow Zeek's conn_state definitions."""

from __future__ import annotations

import pytest

pytest.importorskip("scapy")
from scapy.all import IP, TCP, UDP, Ether, raw

from netwarden.records.schema import ConnState, EndReason, FlowFlags, PktEvent
from sensor.engine.config import EngineConfig
from tests.conftest import addr, run_engine

A, B = "10.0.0.1", "10.0.0.2"
AP, BP = 40000, 9999  # neither is a likely server port: no port-based flip
ISN_A, ISN_B = 1000, 5000


def seg(
    src: str,
    flags: str,
    seq: int,
    ack: int = 0,
    data: bytes = b"",
    sport: int = AP,
    dport: int = BP,
) -> bytes:
    dst = B if src == A else A
    if src == B:
        sport, dport = dport, sport
    return raw(
        Ether()
        / IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=512)
        / data
    )


def handshake() -> list[bytes]:
    return [
        seg(A, "S", ISN_A),
        seg(B, "SA", ISN_B, ISN_A + 1),
        seg(A, "A", ISN_A + 1, ISN_B + 1),
        seg(A, "PA", ISN_A + 1, ISN_B + 1, b"hello"),
        seg(B, "A", ISN_B + 1, ISN_A + 6),
    ]


def one(backend, frames, **kw):
    recs = run_engine(backend, frames, **kw)[0]
    assert len(recs) == 1, [bytes(r["history"]) for r in recs]
    return recs[0]


def state(rec) -> ConnState:
    return ConnState(int(rec["conn_state"]))


def hist(rec) -> str:
    return bytes(rec["history"]).rstrip(b"\0").decode()


def test_s0(backend) -> None:
    r = one(backend, [seg(A, "S", ISN_A)])
    assert state(r) == ConnState.S0 and hist(r) == "S"
    assert (int(r["orig_pkts"]), int(r["resp_pkts"])) == (1, 0)


def test_s1(backend) -> None:
    r = one(backend, handshake())
    assert state(r) == ConnState.S1 and hist(r) == "ShADa"
    assert (int(r["orig_bytes"]), int(r["resp_bytes"])) == (5, 0)


def test_sf(backend) -> None:
    frames = handshake() + [
        seg(A, "FA", ISN_A + 6, ISN_B + 1),
        seg(B, "FA", ISN_B + 1, ISN_A + 7),
        seg(A, "A", ISN_A + 7, ISN_B + 2),
    ]
    r = one(backend, frames)
    assert state(r) == ConnState.SF and hist(r) == "ShADaFf"
    assert (int(r["orig_bytes"]), int(r["resp_bytes"])) == (5, 0)
    assert (int(r["orig_pkts"]), int(r["resp_pkts"])) == (5, 3)
    assert list(r["orig_flag_counts"][:2]) == [1, 1]  # one FIN, one SYN


def test_rej(backend) -> None:
    r = one(backend, [seg(A, "S", ISN_A), seg(B, "RA", 0, ISN_A + 1)])
    assert state(r) == ConnState.REJ and hist(r) == "Sr"


def test_s2_orig_closed_only(backend) -> None:
    r = one(backend, handshake() + [seg(A, "FA", ISN_A + 6, ISN_B + 1)])
    assert state(r) == ConnState.S2


def test_s3_resp_closed_only(backend) -> None:
    r = one(backend, handshake() + [seg(B, "FA", ISN_B + 1, ISN_A + 6)])
    assert state(r) == ConnState.S3


def test_rsto(backend) -> None:
    r = one(backend, handshake() + [seg(A, "R", ISN_A + 6)])
    assert state(r) == ConnState.RSTO and hist(r).endswith("R")


def test_rstr(backend) -> None:
    r = one(backend, handshake() + [seg(B, "R", ISN_B + 1)])
    assert state(r) == ConnState.RSTR and hist(r).endswith("r")


def test_rstos0(backend) -> None:
    r = one(backend, [seg(A, "S", ISN_A), seg(A, "R", ISN_A + 1)])
    assert state(r) == ConnState.RSTOS0 and hist(r) == "SR"


def test_rstrh(backend) -> None:
    # SYN-ACK from a likely server port (80) flips roles; then the responder resets.
    r = one(backend, [seg(B, "SA", ISN_B, ISN_A + 1, dport=80), seg(B, "R", ISN_B + 1, dport=80)])
    assert state(r) == ConnState.RSTRH
    assert addr(r, "orig") == A and int(r["resp_port"]) == 80
    assert hist(r).startswith("^") and int(r["flags"]) & FlowFlags.FLIPPED


def test_sh(backend) -> None:
    r = one(backend, [seg(A, "S", ISN_A), seg(A, "F", ISN_A + 1)])
    assert state(r) == ConnState.SH and hist(r) == "SF"


def test_shr(backend) -> None:
    r = one(
        backend,
        [seg(B, "SA", ISN_B, ISN_A + 1, dport=80), seg(B, "FA", ISN_B + 1, ISN_A + 1, dport=80)],
    )
    assert state(r) == ConnState.SHR


def test_oth_midstream(backend) -> None:
    r = one(
        backend,
        [
            seg(A, "PA", ISN_A + 100, ISN_B + 100, b"abc"),
            seg(B, "PA", ISN_B + 100, ISN_A + 103, b"de"),
        ],
    )
    assert state(r) == ConnState.OTH and hist(r) == "Dd"


def test_synack_first_flips_on_ack(backend) -> None:
    """Missed SYN: the SYN-ACK sender is the originator until an ACK/data shows otherwise."""
    frames = [
        seg(B, "SA", ISN_B, ISN_A + 1),
        seg(A, "A", ISN_A + 1, ISN_B + 1),
        seg(A, "PA", ISN_A + 1, ISN_B + 1, b"hi"),
    ]
    r = one(backend, frames)
    assert hist(r).startswith("^h") and addr(r, "orig") == A
    assert (int(r["orig_pkts"]), int(r["resp_pkts"])) == (2, 1)


def test_likely_server_port_flip_without_syn(backend) -> None:
    r = one(backend, [seg(B, "PA", ISN_B, ISN_A, b"HTTP/1.1 200 OK\r\n", dport=80)])
    assert addr(r, "orig") == A and int(r["resp_port"]) == 80 and hist(r) == "^d"


def test_reuse_after_close_starts_a_new_flow(backend) -> None:
    closed = handshake() + [
        seg(A, "FA", ISN_A + 6, ISN_B + 1),
        seg(B, "FA", ISN_B + 1, ISN_A + 7),
        seg(A, "A", ISN_A + 7, ISN_B + 2),
    ]
    recs = run_engine(backend, closed + [seg(A, "S", ISN_A + 100000)])[0]
    assert len(recs) == 2
    first, second = sorted(recs, key=lambda r: int(r["ts_first_ns"]))
    assert state(first) == ConnState.SF and int(first["end_reason"]) == EndReason.CLOSED
    assert state(second) == ConnState.S0 and int(second["flow_id"]) != int(first["flow_id"])


def test_reuse_after_reject(backend) -> None:
    frames = [
        seg(A, "S", ISN_A),
        seg(B, "RA", 0, ISN_A + 1),
        seg(A, "S", ISN_A + 50),
        seg(B, "RA", 0, ISN_A + 51),
    ]
    recs = run_engine(backend, frames)[0]
    assert [state(r) for r in recs] == [ConnState.REJ, ConnState.REJ]


def test_retransmission_history_and_bytes(backend) -> None:
    frames = handshake() + [seg(A, "PA", ISN_A + 1, ISN_B + 1, b"hello")]
    r = one(backend, frames)
    assert "T" in hist(r) and int(r["orig_bytes"]) == 5 and int(r["orig_pkts"]) == 4


def test_sequence_wrap(backend) -> None:
    isn = 0xFFFFFFF0
    frames = [
        seg(A, "S", isn),
        seg(B, "SA", ISN_B, (isn + 1) & 0xFFFFFFFF),
        seg(A, "PA", (isn + 1) & 0xFFFFFFFF, ISN_B + 1, b"x" * 40),
        seg(B, "A", ISN_B + 1, (isn + 41) & 0xFFFFFFFF),
    ]
    assert int(one(backend, frames)["orig_bytes"]) == 40


def test_gap_counts_missed_bytes(backend) -> None:
    frames = handshake() + [
        seg(A, "PA", ISN_A + 106, ISN_B + 1, b"z" * 10),  # 100 bytes never seen
        seg(B, "A", ISN_B + 1, ISN_A + 116),
    ]
    r = one(backend, frames)
    assert int(r["missed_bytes"]) == 100 and "g" not in hist(r) and "G" in hist(r)


def test_attempt_timer_splits_half_open(backend) -> None:
    t0 = 10**18
    frames = [(t0, seg(A, "S", ISN_A)), (t0 + 10 * 10**9, seg(A, "PA", ISN_A + 1, 1, b"late"))]
    recs = run_engine(backend, frames)[0]
    assert [state(r) for r in sorted(recs, key=lambda r: int(r["ts_first_ns"]))] == [
        ConnState.S0,
        ConnState.OTH,
    ]


def test_udp_inactivity_timeout(backend) -> None:
    t0 = 10**18
    u = raw(Ether() / IP(src=A, dst=B) / UDP(sport=AP, dport=BP) / b"x")
    frames = [(t0, u), (t0 + 5 * 10**9, u), (t0 + 200 * 10**9, u)]
    recs = run_engine(backend, frames, config=EngineConfig(udp_timeout=60))[0]
    assert sorted(int(r["orig_pkts"]) for r in recs) == [1, 2]
    assert sorted(int(r["end_reason"]) for r in recs) == [EndReason.IDLE, EndReason.EOF]


def test_active_timeout_interim_records(backend) -> None:
    t0 = 10**18
    u = raw(Ether() / IP(src=A, dst=B) / UDP(sport=AP, dport=BP) / b"x")
    frames = [(t0 + i * 10 * 10**9, u) for i in range(7)]  # one packet every 10 s, 60 s
    recs = run_engine(backend, frames, config=EngineConfig(active_timeout=25, udp_timeout=60))[0]
    interim = [r for r in recs if int(r["flags"]) & FlowFlags.INTERIM]
    final = [r for r in recs if not int(r["flags"]) & FlowFlags.INTERIM]
    assert len(interim) == 2 and len(final) == 1
    assert len({int(r["flow_id"]) for r in recs}) == 1
    assert int(final[0]["orig_pkts"]) == 7


def test_flow_table_eviction(backend) -> None:
    frames = [raw(Ether() / IP(src=A, dst=B) / UDP(sport=AP + i, dport=BP)) for i in range(5)]
    recs, _, st, _ = run_engine(backend, frames, config=EngineConfig(max_flows=2))
    assert len(recs) == 5 and st["flows_evicted"] == 3
    evicted = [r for r in recs if int(r["end_reason"]) == EndReason.EVICTED]
    assert sorted(int(r["orig_port"]) for r in evicted) == [AP, AP + 1, AP + 2]  # oldest first


def test_packet_summaries(backend) -> None:
    frames = handshake()
    _, _, _, ps = run_engine(backend, frames, pktsum=True)
    ev = [int(e) for e in ps["events"]]
    assert ev[0] & PktEvent.NEW_FLOW and not ev[1] & PktEvent.NEW_FLOW
    assert ev[1] & PktEvent.REPLY and ev[1] & PktEvent.FIRST_REPLY
    assert not ev[4] & PktEvent.FIRST_REPLY
    assert len({int(f) for f in ps["flow_id"]}) == 1 and int(ps["flow_id"][0]) != 0
    assert int(ps["payload_len"][3]) == 5 and int(ps["tcp_flags"][0]) == 0x02


def test_flow_end_event_on_closing_packet(backend) -> None:
    frames = handshake() + [seg(A, "FA", ISN_A + 6, ISN_B + 1), seg(B, "FA", ISN_B + 1, ISN_A + 7)]
    _, _, _, ps = run_engine(backend, frames, pktsum=True)
    ends = [i for i, e in enumerate(ps["events"]) if int(e) & PktEvent.FLOW_END]
    assert ends == [len(frames) - 1]


@pytest.mark.semantics(4)
def test_reassembly_gives_up_above_unacked_hole(backend) -> None:
    """Zeek stops reassembling (and reporting gaps) once more than 16 KiB sit above a hole
    while nothing was acked yet."""
    frames = [seg(A, "S", ISN_A), seg(B, "SA", ISN_B, ISN_A + 1), seg(A, "A", ISN_A + 1, ISN_B + 1)]
    for i in range(14):  # 14 x 1400 bytes above a 100-byte hole, no ack from B
        frames.append(seg(A, "PA", ISN_A + 101 + i * 1400, ISN_B + 1, b"q" * 1400))
    frames.append(seg(B, "A", ISN_B + 1, ISN_A + 101 + 14 * 1400))
    r = one(backend, frames)
    assert int(r["missed_bytes"]) == 0 and "G" not in hist(r)
    assert int(r["orig_bytes"]) == 100 + 14 * 1400


@pytest.mark.semantics(5)
def test_close_waits_for_pending_data(backend) -> None:
    """Both sides FIN while the originator's data has an unacked hole: Zeek defers the
    closes, so a later packet still extends the connection's duration."""
    t0 = 10**18
    ms = 10**6
    frames = [
        (t0, seg(A, "S", ISN_A)),
        (t0 + 1 * ms, seg(B, "SA", ISN_B, ISN_A + 1)),
        (t0 + 2 * ms, seg(A, "A", ISN_A + 1, ISN_B + 1)),
        (t0 + 3 * ms, seg(A, "PA", ISN_A + 101, ISN_B + 1, b"x" * 10)),  # 100 bytes missing
        (t0 + 4 * ms, seg(A, "FA", ISN_A + 111, ISN_B + 1)),
        (t0 + 5 * ms, seg(B, "FA", ISN_B + 1, ISN_A + 1)),  # acks nothing of A's data
        (t0 + 2000 * ms, seg(A, "A", ISN_A + 112, ISN_B + 2)),
    ]
    r = one(backend, frames)
    assert state(r) == ConnState.SF
    assert int(r["ts_last_ns"]) - int(r["ts_first_ns"]) == 2000 * ms


@pytest.mark.semantics(7)
@pytest.mark.parametrize(
    "proto,port,flipped",
    [
        ("tcp", 443, True),
        ("tcp", 110, False),
        ("udp", 443, True),
        ("udp", 68, False),
        ("udp", 4789, True),
    ],
)
def test_likely_server_ports(backend, proto: str, port: int, flipped: bool) -> None:
    """Zeek's default likely_server_ports decide the flip of a connection seen mid-stream."""
    l4 = (
        TCP(sport=port, dport=50000, flags="PA", seq=1, ack=1)
        if proto == "tcp"
        else UDP(sport=port, dport=50000)
    )
    r = one(backend, [raw(Ether() / IP(src=B, dst=A) / l4 / b"data")])
    assert (addr(r, "orig") == A) is flipped
