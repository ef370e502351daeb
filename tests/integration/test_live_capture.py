"""Live capture on a veth in throwaway namespaces: tcpreplay a corpus capture into one end,
capture on the other (``python -m sensor.live``), and compare with reading the file.

Flows are compared on what does not depend on timing: the 5-tuple with direction, packets
and IP bytes per direction (timestamps are the capture's, and replay compresses time).
Packet counts come from the corpus manifests, read at test time.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from netns_live import VethPair, have_root, live_capture_command, missing_tools, wait_ready

from netwarden.records.schema import FlowFlags
from sensor.engine import load_backend
from sensor.engine.config import EngineConfig

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("NETWARDEN_SHARED", REPO.parent / "shared")) / "corpus"
PPS = 50_000

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not have_root(), reason="live capture needs root (AF_PACKET, netns)"),
    pytest.mark.skipif(
        bool(missing_tools("ip", "tcpreplay")),
        reason=f"missing tools: {missing_tools('ip', 'tcpreplay')}",
    ),
]


def _ring_built() -> bool:
    try:
        import sensor.capture._ring  # noqa: F401

        return True
    except ImportError:
        return False


def _engine():
    mod = load_backend()
    if not hasattr(mod, "FlowEngine") or not hasattr(mod, "PcapReader"):
        pytest.skip("no flow engine backend with FlowEngine yet")
    return mod


def _manifest_packets(table: Path, key: str, name: str) -> int:
    with table.open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row[key] == name:
                return int(row["packets"])
    raise LookupError(f"{name} not in {table}")


CAPTURES = {
    # one Zeek corpus trace with real two-way TCP (and frames up to ~5.8 kB: MTU 9000)
    "ssh_many": (
        CORPUS / "zeek" / "ssh_many" / "trace.pcap",
        lambda: _manifest_packets(CORPUS / "zeek" / "MANIFEST.tsv", "name", "ssh_many"),
    ),
    # a big one: ~38k packets, ~38k flows, a second of traffic at 50 kpps
    "synflood": (
        CORPUS / "attacks" / "syn_flood" / "synflood_spoofed_to_10.10.10.10.pcap",
        lambda: _manifest_packets(
            CORPUS / "attacks" / "LABELS.tsv",
            "file",
            "syn_flood/synflood_spoofed_to_10.10.10.10.pcap",
        ),
    ),
}


@pytest.fixture(scope="module")
def veth():
    if not _ring_built():
        pytest.skip("sensor.capture._ring is not built (make build)")
    pair = VethPair()
    try:
        yield pair
    finally:
        pair.close()


def live_capture(
    veth: VethPair,
    tmp_path: Path,
    pcap: Path,
    *,
    workers: int = 1,
    bpf: str | None = None,
    pps: int = PPS,
    extra: list[str] | None = None,
    during=None,
    loopback: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, int], str]:
    """Capture on vethB while tcpreplay sends ``pcap`` into vethA; stop with SIGTERM.
    With ``loopback``, both capture and replay use ``lo`` of the capture namespace.

    ``during(proc)`` runs around the replay: it is called once before (``phase="before"``)
    and once after (``phase="after"``)."""
    ready = tmp_path / f"ready-{workers}-{time.monotonic_ns()}"
    out = tmp_path / f"live-{workers}-{time.monotonic_ns()}.npz"
    iface = "lo" if loopback else veth.IF_B
    cmd = live_capture_command(veth.prefix(veth.ns_b), iface, ready, out, "--workers", str(workers))
    if bpf:
        cmd += ["--filter", bpf]
    cmd += extra or []
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(ready, proc)
        if during:
            during(proc, "before")
        replay_ns, replay_if = (veth.ns_b, "lo") if loopback else (veth.ns_a, veth.IF_A)
        replay = subprocess.run(
            veth.prefix(replay_ns) + ["tcpreplay", "-i", replay_if, f"--pps={pps}", str(pcap)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert replay.returncode == 0, replay.stderr
        if during:
            during(proc, "after")
        proc.send_signal(signal.SIGTERM)  # a clean stop: drain the ring, flush live flows
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    z = np.load(out)
    records = {k: z[k] for k in z.files if k != "stats"}
    stats = json.loads(bytes(z["stats"]).decode())
    return records, stats, replay.stdout


def file_flows(pcap: Path) -> np.ndarray:
    mod = _engine()
    engine = mod.FlowEngine(EngineConfig())
    for batch in mod.PcapReader(str(pcap)).batches(max_packets=4096):
        engine.feed(batch)
    engine.flush()
    parts = []
    buf = np.zeros(4096, dtype=_flow_dtype())
    while (k := engine.drain_flows(buf)) > 0:
        parts.append(buf[:k].copy())
    return np.concatenate(parts) if parts else buf[:0]


def _flow_dtype():
    from netwarden.records.schema import FLOW_DTYPE

    return FLOW_DTYPE


def flow_keys(flows: np.ndarray) -> Counter:
    """Multiset of (proto, orig, orig_port, resp, resp_port, pkts and IP bytes each way)."""
    return Counter(flow_keys_list(flows))


def flow_keys_list(flows: np.ndarray) -> list[tuple]:
    return [
        (
            int(f["proto"]),
            bytes(f["orig_addr"]),
            int(f["orig_port"]),
            bytes(f["resp_addr"]),
            int(f["resp_port"]),
            int(f["orig_pkts"]),
            int(f["resp_pkts"]),
            int(f["orig_ip_bytes"]),
            int(f["resp_ip_bytes"]),
        )
        for f in flows
    ]


def _sent(replay_stdout: str) -> int:
    m = re.search(r"Successful packets:\s+(\d+)", replay_stdout)
    return int(m.group(1)) if m else -1


@pytest.mark.parametrize("name", list(CAPTURES))
def test_live_flows_equal_file_flows(veth: VethPair, tmp_path: Path, name: str) -> None:
    _engine()
    pcap, packets = CAPTURES[name]
    expected_packets = packets()
    recs, stats, replay = live_capture(veth, tmp_path, pcap)
    assert _sent(replay) == expected_packets
    assert stats["kernel_drops"] == 0 and stats["ring_freezes"] == 0
    assert stats["packets"] == expected_packets  # nothing lost, nothing extra on the veth
    assert stats["queue_overruns"] == 0
    live, ref = flow_keys(recs["flow"]), flow_keys(file_flows(pcap))
    assert sum(ref.values()) > 0
    assert live == ref, (
        f"only live: {list((live - ref).items())[:3]} only file: {list((ref - live).items())[:3]}"
    )


def test_loopback_capture_sees_each_packet_once(tmp_path: Path) -> None:
    """On lo every packet passes the tap twice (leaving, then arriving); the ring drops the
    PACKET_OUTGOING copy, so the capture matches the file packet for packet."""
    _engine()
    if not _ring_built():
        pytest.skip("sensor.capture._ring is not built (make build)")
    pcap, packets = CAPTURES["ssh_many"]
    expected_packets = packets()
    with VethPair() as fresh:  # a namespace of its own: nothing else talks on its lo
        recs, stats, replay = live_capture(
            fresh, tmp_path, pcap, loopback=True, extra=["--no-telemetry"]
        )
    assert _sent(replay) == expected_packets
    assert stats["kernel_drops"] == 0
    assert stats["packets"] == expected_packets
    live, ref = flow_keys(recs["flow"]), flow_keys(file_flows(pcap))
    assert sum(ref.values()) > 0
    assert live == ref, (
        f"only live: {list((live - ref).items())[:3]} only file: {list((ref - live).items())[:3]}"
    )


def _json_flow_keys(lines: list[str]) -> Counter:
    keys = Counter()
    for line in lines:
        f = json.loads(line)
        keys[(f["ip_proto"], f["orig_h"], f["orig_p"], f["resp_h"], f["resp_p"],
              f["orig_pkts"], f["resp_pkts"], f["orig_ip_bytes"], f["resp_ip_bytes"])] += 1  # fmt: skip
    return keys


def test_flows_command_live_with_filter_workers_and_ring_options(
    veth: VethPair, tmp_path: Path
) -> None:
    """``netwarden flows --iface`` with two fanout workers, a BPF filter and ring options
    writes the same UDP flows as ``netwarden flows`` on the file, and no TCP ones."""
    _engine()
    pcap = CORPUS / "zeek" / "wikipedia" / "trace.pcap"
    out = tmp_path / "live.json"
    proc = subprocess.Popen(
        veth.prefix(veth.ns_b)
        + [sys.executable, "-m", "netwarden", "flows", "--iface", veth.IF_B, "--format", "json",
           "-o", str(out), "--workers", "2", "--filter", "udp", "--promisc",
           "--ring-blocks", "8", "--ring-block-size", str(1 << 18), "--block-timeout", "10"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        # The first stats line comes from the running capture: every worker's ring is open.
        for line in proc.stderr:
            if line.startswith("capture:"):
                break
        else:
            pytest.fail(f"flows --iface exited early (rc {proc.wait()})")
        veth.exec_a("tcpreplay", "-i", veth.IF_A, "--pps=5000", str(pcap))
        proc.send_signal(signal.SIGTERM)
        err = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    ref = subprocess.run(
        [sys.executable, "-m", "netwarden", "flows", "--format", "json", str(pcap)],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    want = Counter({k: n for k, n in _json_flow_keys(ref).items() if k[0] == 17})
    got = _json_flow_keys(out.read_text().splitlines())
    assert sum(want.values()) > 0 and len(want) < len(_json_flow_keys(ref))  # filter matters
    assert got == want


@pytest.mark.parametrize("name", ["q_in_q", "vlan_mpls", "mpls_in_vlan"])
def test_vlan_tags_stripped_by_the_kernel_are_restored(
    veth: VethPair, tmp_path: Path, name: str
) -> None:
    """The receive path strips the outer 802.1Q/802.1ad tag into tp_vlan_tci; the ring puts
    it back, so live flows keep their VLAN ids exactly as read from the file."""
    _engine()
    pcap = CORPUS / "zeek" / name / "trace.pcap"

    def keys(flows: np.ndarray) -> Counter:
        return Counter(
            (k, int(f["vlan"]), int(f["inner_vlan"]))
            for k, f in zip(flow_keys_list(flows), flows, strict=True)
        )

    recs, stats, replay = live_capture(veth, tmp_path, pcap, pps=5000)
    ref = file_flows(pcap)
    assert stats["packets"] == _sent(replay) > 0
    assert (ref["vlan"] > 0).any()
    assert keys(recs["flow"]) == keys(ref)


def test_fanout_union_equals_single_worker(veth: VethPair, tmp_path: Path) -> None:
    _engine()
    pcap, packets = CAPTURES["synflood"]
    single, s1, _ = live_capture(veth, tmp_path, pcap, workers=1)
    fanned, s2, _ = live_capture(veth, tmp_path, pcap, workers=2)
    assert s1["kernel_drops"] == 0 and s2["kernel_drops"] == 0
    assert s2["packets"] == packets()  # each packet reached exactly one worker
    assert flow_keys(fanned["flow"]) == flow_keys(single["flow"])
    # the flow hash really spread the work: both workers own flows
    assert set(np.unique(fanned["flow"]["iface"]).tolist()) == {0, 1}


def test_fanout_keeps_ip_fragments_with_their_flow(veth: VethPair, tmp_path: Path) -> None:
    """Non-first fragments carry no ports, so a flow hash alone would scatter a datagram
    over workers; the fanout group defragments first and the flows still match the file."""
    _engine()
    pcap = CORPUS / "zeek" / "gtp_outer_ip_frag" / "trace.pcap"
    ref = file_flows(pcap)
    assert (ref["flags"] & FlowFlags.FRAGMENTED).any()
    recs, stats, _ = live_capture(veth, tmp_path, pcap, workers=2)
    assert stats["kernel_drops"] == 0
    assert flow_keys(recs["flow"]) == flow_keys(ref)


def test_live_telemetry_sees_spoofed_flood_victim(veth: VethPair, tmp_path: Path) -> None:
    _engine()
    pcap, _ = CAPTURES["synflood"]
    with (CORPUS / "attacks" / "LABELS.tsv").open() as fh:
        row = next(r for r in csv.DictReader(fh, delimiter="\t") if r["class"] == "syn_flood")
    victim = bytes(int(x) for x in row["victim_ips"].split()[0].split(".")) + bytes(12)
    recs, stats, _ = live_capture(veth, tmp_path, pcap, workers=1)
    hosts = recs["host"]
    assert len(hosts) > 0 and stats["host_records"] == len(hosts)
    top = hosts[int(np.argmax(hosts["in_src_hosts"]))]
    assert bytes(top["addr"]) == victim
    assert int(hosts["in_syn"][[bytes(a) == victim for a in hosts["addr"]]].sum()) == int(
        stats["packets"]
    )


def test_live_bpf_filter(veth: VethPair, tmp_path: Path) -> None:
    _engine()
    pcap = CORPUS / "zeek" / "wikipedia" / "trace.pcap"
    recs, stats, _ = live_capture(veth, tmp_path, pcap, bpf="udp")
    ref = file_flows(pcap)
    ref = ref[ref["proto"] == 17]
    assert len(ref) > 0
    assert stats["kernel_drops"] == 0
    assert flow_keys(recs["flow"]) == flow_keys(ref)


def test_loss_is_counted_when_the_reader_stalls(veth: VethPair, tmp_path: Path) -> None:
    """Freeze the capture process (SIGSTOP) while a small ring overflows: every packet sent
    is either captured or counted as a kernel drop."""
    _engine()
    pcap, packets = CAPTURES["synflood"]

    def stall(proc: subprocess.Popen, phase: str) -> None:
        proc.send_signal(signal.SIGSTOP if phase == "before" else signal.SIGCONT)

    recs, stats, replay = live_capture(
        veth,
        tmp_path,
        pcap,
        extra=["--ring-blocks", "4", "--ring-block-size", "65536"],
        during=stall,
    )
    sent = _sent(replay)
    assert sent == packets()
    assert stats["kernel_drops"] > 0 and stats["ring_freezes"] > 0
    assert stats["packets"] > 0
    assert stats["packets"] + stats["kernel_drops"] == sent
    assert stats["kernel_packets"] == sent  # the kernel's own count: received + dropped
    assert (
        int(recs["flow"]["orig_pkts"].sum() + recs["flow"]["resp_pkts"].sum()) == stats["packets"]
    )


def _promiscuity(veth: VethPair) -> int:
    out = subprocess.run(
        veth.prefix(veth.ns_b) + ["ip", "-d", "link", "show", veth.IF_B],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"promiscuity (\d+)", out)
    assert m, out
    return int(m.group(1))


def test_promiscuous_mode_lasts_as_long_as_the_capture(veth: VethPair, tmp_path: Path) -> None:
    _engine()
    before = _promiscuity(veth)
    seen: list[int] = []

    def probe(proc: subprocess.Popen, phase: str) -> None:
        if phase == "before":
            seen.append(_promiscuity(veth))

    pcap = CORPUS / "zeek" / "wikipedia" / "trace.pcap"
    live_capture(veth, tmp_path, pcap, extra=["--promisc", "--no-telemetry"], during=probe)
    assert seen == [before + 1]
    assert _promiscuity(veth) == before  # released with the socket


def test_idle_wire_still_expires_flows(veth: VethPair, tmp_path: Path) -> None:
    """With 1 s timeouts and the wire silent for longer after the replay, flows end by
    inactivity (the worker advances the engine's clock when no packet comes), not at exit."""
    _engine()
    from netwarden.records.schema import EndReason

    pcap = CORPUS / "zeek" / "wikipedia" / "trace.pcap"

    def wait_idle(proc: subprocess.Popen, phase: str) -> None:
        if phase == "after":
            time.sleep(3.0)  # three timeouts of silence

    recs, _, _ = live_capture(veth, tmp_path, pcap, extra=["--idle-timeout", "1"], during=wait_idle)
    reasons = set(recs["flow"]["end_reason"].tolist())
    assert len(recs["flow"]) > 0
    assert int(EndReason.IDLE) in reasons
    assert int(EndReason.EOF) not in reasons  # nothing was left for the exit flush


_SET_GRO = """
import ctypes, fcntl, socket, struct, sys
val = ctypes.create_string_buffer(struct.pack("=II", 0x2C, int(sys.argv[2])), 8)  # SGRO
req = struct.pack("=16sQ16x", sys.argv[1].encode(), ctypes.addressof(val))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(sock.fileno(), 0x8946, req)
"""


def test_merging_offloads_are_reported(veth: VethPair, tmp_path: Path) -> None:
    """GRO merges packets before any capture socket sees them: the sensor says so."""
    _engine()
    code = "import sys; from sensor.live import receive_offloads as r; print(r(sys.argv[1]))"
    probe = [sys.executable, "-c", code, veth.IF_B]

    def gro() -> bool:
        out = subprocess.run(
            veth.prefix(veth.ns_b) + probe, cwd=REPO, capture_output=True, text=True, check=True
        )
        return "'gro': True" in out.stdout

    assert not gro()
    veth.exec_b(sys.executable, "-c", _SET_GRO, veth.IF_B, "1")
    try:
        assert gro()
        ready, out = tmp_path / "ready", tmp_path / "out.npz"
        proc = subprocess.Popen(
            veth.prefix(veth.ns_b)
            + [sys.executable, "-m", "sensor.live", "--iface", veth.IF_B, "--ready-file",
               str(ready), "--out", str(out), "--duration", "0.5"],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "GRO on" in err
    finally:
        veth.exec_b(sys.executable, "-c", _SET_GRO, veth.IF_B, "0")
    assert not gro()


def test_link_flap_is_survived_and_counted(veth: VethPair, tmp_path: Path) -> None:
    _engine()
    pcap = CORPUS / "zeek" / "wikipedia" / "trace.pcap"

    def flap(proc: subprocess.Popen, phase: str) -> None:
        if phase == "before":
            veth.exec_b("ip", "link", "set", veth.IF_B, "down")
            time.sleep(0.3)  # let the capture see the link go down
            veth.exec_b("ip", "link", "set", veth.IF_B, "up")

    recs, stats, replay = live_capture(veth, tmp_path, pcap, during=flap)
    assert stats["link_down"] >= 1
    assert stats["packets"] == _sent(replay) and stats["kernel_drops"] == 0
    assert flow_keys(recs["flow"]) == flow_keys(file_flows(pcap))


@pytest.mark.parametrize("workers", [1, 2])
def test_removed_interface_stops_with_error_and_flushes(tmp_path: Path, workers: int) -> None:
    _engine()
    if not _ring_built():
        pytest.skip("sensor.capture._ring is not built (make build)")
    pcap = CORPUS / "zeek" / "wikipedia" / "trace.pcap"
    with VethPair() as pair:
        ready, out = tmp_path / "ready", tmp_path / "out.npz"
        proc = subprocess.Popen(
            live_capture_command(
                pair.prefix(pair.ns_b), pair.IF_B, ready, out, "--workers", str(workers)
            ),
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_ready(ready, proc)
            pair.exec_a("tcpreplay", "-i", pair.IF_A, "--pps=5000", str(pcap))
            time.sleep(0.2)  # past the ring's block timeout: every packet reached the ring
            pair.exec_b("ip", "link", "del", pair.IF_B)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert "was removed" in err
    flows = np.load(out)["flow"]
    assert flow_keys(flows) == flow_keys(file_flows(pcap))  # live flows were flushed


@pytest.mark.parametrize("workers", [1, 2])
def test_sensor_command_publishes_live_records_on_the_bus(
    veth: VethPair, tmp_path: Path, workers: int
) -> None:
    """``netwarden sensor --iface`` in namespace B, a collector here (ipc:// crosses network
    namespaces): the bus carries the same flows as the file, telemetry, and loss counters."""
    _engine()
    import threading

    from netwarden.bus.collector import Collector

    pcap, packets = CAPTURES["ssh_many"]
    lines: list[str] = []
    got = []
    with Collector(f"ipc://{tmp_path}/bus.sock") as col:
        proc = subprocess.Popen(
            veth.prefix(veth.ns_b)
            + [sys.executable, "-m", "netwarden", "sensor", "--iface", veth.IF_B, "--connect",
               col.endpoint, "--sensor-id", "live", "--workers", str(workers)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            # the first per-second stats line comes once every ring is open
            while not any(ln.startswith("capture:") for ln in lines):
                assert proc.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "".join(lines)
                got.extend(col.poll(50))
            veth.exec_a("tcpreplay", "-i", veth.IF_A, f"--pps={PPS}", str(pcap))
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None:
                assert time.monotonic() < deadline + 60, "".join(lines)
                got.extend(col.poll(50))
            got.extend(col.poll(200))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=10)
        status = col.sensors()["live"]
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "0 unacknowledged at exit" in err and status.gaps == 0
    by_type: dict[str, list[np.ndarray]] = {}
    for b in got:
        by_type.setdefault(b.record_type, []).append(b.records)
    flows = np.concatenate(by_type["flow"])
    assert flow_keys(flows) == flow_keys(file_flows(pcap))
    hosts = np.concatenate(by_type["host"])
    assert int(hosts["out_pkts"].sum()) == packets()  # every IP packet counted once
    last = max(got, key=lambda b: b.header.seq).header.drops
    assert last["kernel_drops"] == 0 and last["queue_overruns"] == 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
