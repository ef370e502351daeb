"""Options of ``netwarden flows`` and ``netwarden sensor``: flow timeouts reach the engine
exactly as ``EngineConfig`` would set them, and bad values (timeouts, live capture options,
telemetry window) are one-line errors given before anything is opened, captured or
connected, so an existing ``-o`` file is left untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netwarden.errors import ConfigError
from sensor.engine.config import MAX_TIMEOUT_S, EngineConfig
from tests.conftest import BACKEND_PARAMS, REPO

pytest.importorskip("scapy")
from scapy.all import IP, UDP, Ether, wrpcap


def _netwarden(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "netwarden", *args], capture_output=True,
                          text=True, check=False, cwd=REPO, env=env, timeout=120)  # fmt: skip


@pytest.fixture()
def spaced_udp(tmp_path: Path) -> Path:
    """One UDP 5-tuple: packets 10 s apart, then 40 s apart (capture time)."""
    pkts = []
    for i, t in enumerate((0.0, 10.0, 50.0)):
        p = Ether() / IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=40000, dport=9999) / bytes([i])
        p.time = 1_600_000_000 + t
        pkts.append(p)
    path = tmp_path / "spaced.pcap"
    wrpcap(str(path), pkts)
    return path


def _iso_ns(text: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 UTC time (``...Z``)."""
    import datetime as dt

    return round(dt.datetime.fromisoformat(text).timestamp() * 1e6) * 1000


def _engine_flows(backend_name: str, path: Path, config: EngineConfig) -> list[tuple[int, int]]:
    from sensor.flows import iter_flow_records

    recs = [
        r
        for arr in iter_flow_records([str(path)], backend=backend_name, config=config)
        for r in arr
    ]
    return sorted((int(r["ts_first_ns"]), int(r["orig_pkts"])) for r in recs)


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
@pytest.mark.parametrize("udp_timeout", [5.0, 30.0])
def test_udp_timeout_option_reaches_the_engine(
    spaced_udp: Path, backend_name: str, udp_timeout: float
) -> None:
    proc = _netwarden("flows", "--format", "json", "--backend", backend_name,
                      "--udp-timeout", str(udp_timeout), str(spaced_udp))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = sorted(
        (_iso_ns(f["ts"]), f["orig_pkts"]) for f in map(json.loads, proc.stdout.splitlines())
    )
    want = _engine_flows(backend_name, spaced_udp, EngineConfig(udp_timeout=udp_timeout))
    assert got == want
    # The option changed something: the default (60 s) keeps all three packets in one flow.
    default = _engine_flows(backend_name, spaced_udp, EngineConfig())
    assert len(default) == 1 and len(got) > 1


@pytest.mark.parametrize(
    "option, value",
    [("--udp-timeout", "-1"), ("--tcp-timeout", "0"), ("--icmp-timeout", "nan"),
     ("--other-timeout", "inf"), ("--active-timeout", "-5"), ("--tcp-timeout", "1e12")],
)  # fmt: skip
def test_bad_timeouts_are_one_line_errors_and_touch_no_output(
    spaced_udp: Path, tmp_path: Path, option: str, value: str
) -> None:
    out = tmp_path / "conn.log"
    out.write_text("previous run\n")
    proc = _netwarden("flows", option, value, "-o", str(out), str(spaced_udp))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"netwarden flows: error: {option} "), (
        proc.stderr
    )
    assert out.read_text() == "previous run\n"


@pytest.mark.parametrize(
    "source, extra, word",
    [("pcap", ["--tcp-timeout", "-3"], "--tcp-timeout"),
     ("pcap", ["--window", "0"], "window"),  # 0 must not quietly mean the default
     ("iface", ["--window", "0"], "window"),
     ("iface", ["--workers", "0"], "--workers"),
     ("iface", ["--filter", "tcp port nosuchservice"], "filter"),
     ("iface", ["--ring-blocks", "1"], "ring block count"),
     ("iface", ["--duration", "-2"], "--duration")],
)  # fmt: skip
def test_sensor_refuses_bad_options_before_connecting(
    spaced_udp: Path, tmp_path: Path, source: str, extra: list[str], word: str
) -> None:
    if source == "iface" and word != "window":
        pytest.importorskip("sensor.live", reason="live capture is not built (make build)")
    src = ["--pcap", str(spaced_udp)] if source == "pcap" else ["--iface", "lo"]
    proc = _netwarden("sensor", *src, "--connect", f"ipc://{tmp_path}/none.sock", *extra)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    # One line and no bus summary: the publisher was never created, nothing was captured.
    assert len(lines) == 1 and lines[0].startswith("netwarden sensor: error: "), proc.stderr
    assert word in lines[0]


@pytest.mark.parametrize(
    "extra",
    [["--workers", "0"], ["--workers", "many"], ["--filter", "tcp port nosuchservice"],
     ["--ring-blocks", "0"], ["--duration", "-1"]],
)  # fmt: skip
def test_bad_live_options_touch_no_output(tmp_path: Path, extra: list[str]) -> None:
    pytest.importorskip("sensor.live", reason="live capture is not built (make build)")
    out = tmp_path / "conn.log"
    out.write_text("previous run\n")
    proc = _netwarden("flows", "--iface", "lo", "-o", str(out), *extra)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netwarden flows: error: "), proc.stderr
    assert out.read_text() == "previous run\n"


def test_unknown_interface_touches_no_output(tmp_path: Path) -> None:
    out = tmp_path / "conn.log"
    out.write_text("previous run\n")
    proc = _netwarden("flows", "--iface", "nw-no-such-if0", "-o", str(out))
    assert proc.returncode != 0
    assert "nw-no-such-if0" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert out.read_text() == "previous run\n"


@pytest.mark.parametrize("field", ["tcp_timeout", "udp_timeout", "icmp_timeout", "other_timeout",
                                   "frag_timeout", "active_timeout"])  # fmt: skip
@pytest.mark.parametrize("value", [float("inf"), float("nan"), MAX_TIMEOUT_S * 10])
def test_engine_config_refuses_timeouts_that_overflow_nanoseconds(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        EngineConfig(**{field: value})


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_largest_timeouts_fit_both_engines(spaced_udp: Path, backend_name: str) -> None:
    big = MAX_TIMEOUT_S
    cfg = EngineConfig(tcp_timeout=big, udp_timeout=big, icmp_timeout=big, other_timeout=big,
                       frag_timeout=big, active_timeout=big)  # fmt: skip
    flows = _engine_flows(backend_name, spaced_udp, cfg)
    assert len(flows) == 1 and flows[0][1] == 3  # nothing timed out


def test_parser_is_built_without_the_heavy_libraries() -> None:
    """Every command pays for building the parser: it must not load numpy, pyarrow or
    DuckDB (help texts and choices come from light catalogues)."""
    code = (
        "import sys; from netwarden.cli import build_parser; build_parser(); "
        "print(sorted({'numpy', 'pyarrow', 'duckdb'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout  # fmt: skip
    assert out.strip() == "[]"
