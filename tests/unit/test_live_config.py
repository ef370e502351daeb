"""Live capture and telemetry settings are validated before any socket or process exists."""

from __future__ import annotations

import os

import pytest

from netwarden.bus import wire
from netwarden.errors import ConfigError, InterfaceError
from sensor.live import (
    COUNTERS,
    CaptureStats,
    LiveCapture,
    RingConfig,
    drop_counters,
    resolve_workers,
)
from sensor.telemetry import TelemetryConfig


def test_workers_auto_is_cores_minus_one_at_least_one() -> None:
    assert resolve_workers("auto") == max(1, (os.cpu_count() or 1) - 1)
    assert resolve_workers("AUTO") == resolve_workers("auto")
    assert resolve_workers("3") == 3
    assert resolve_workers(2) == 2
    assert resolve_workers(None) == 1


@pytest.mark.parametrize("bad", ["0", "-1", "many", "65", 0])
def test_bad_worker_counts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="workers"):
        resolve_workers(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"block_size": 5000}, "block size"),
        ({"block_count": 1}, "block count"),
        ({"retire_ms": 0}, "timeout"),
        ({"batch_packets": 0}, "batch"),
        ({"telemetry_window": 0}, "window"),
    ],
)
def test_ring_settings_are_validated(kwargs: dict, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        RingConfig(**kwargs)


def test_unknown_interface_is_an_interface_error() -> None:
    with pytest.raises(InterfaceError, match="no such interface"):
        LiveCapture("nw-no-such-if0")


def test_bad_filter_fails_before_capture_starts() -> None:
    with pytest.raises(ConfigError, match="bad capture filter"):
        LiveCapture("lo", bpf="tcp port")


@pytest.mark.parametrize(
    "kwargs",
    [{"host_capacity": 1000}, {"pair_capacity": 32}, {"window": 0}, {"long_window": 0.5},
     {"idle_timeout": 0}, {"iface": 256}],
)  # fmt: skip
def test_telemetry_settings_are_validated(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        TelemetryConfig(**kwargs)


def test_loss_counters_fit_a_bus_header() -> None:
    drops = drop_counters(CaptureStats())
    assert set(drops) <= set(COUNTERS)
    assert {"kernel_drops", "ring_freezes", "queue_overruns", "decode_errors"} <= set(drops)
    assert len(drops) <= wire.MAX_DROP_COUNTERS
    assert all(len(k) <= wire.MAX_COUNTER_NAME_LEN for k in drops)


def test_receive_offloads_reports_booleans_for_loopback() -> None:
    from sensor.live import receive_offloads

    got = receive_offloads("lo")
    assert set(got) <= {"gro", "lro"}
    assert all(isinstance(v, bool) for v in got.values())
    assert receive_offloads("nw-no-such-if0") == {}


def test_is_loopback_asks_the_kernel() -> None:
    from sensor.capture.afpacket import is_loopback

    assert is_loopback("lo") is True
    with pytest.raises(InterfaceError):
        is_loopback("nw-no-such-if0")


@pytest.mark.parametrize("command", ["flows", "sensor"])
def test_live_capture_options_reach_the_ring(command: str) -> None:
    from netwarden.cli import build_parser
    from sensor.capture.afpacket import RingConfig
    from sensor.live import resolve_workers, ring_from_options

    extra = ["--connect", "ipc:///nonexistent"] if command == "sensor" else []
    args = build_parser().parse_args(
        [command, "--iface", "lo", *extra, "--workers", "auto", "--filter", "udp port 53",
         "--promisc", "--ring-blocks", "8", "--ring-block-size", str(RingConfig.block_size * 2),
         "--block-timeout", "5", "--duration", "2.5"]
    )  # fmt: skip
    assert (args.workers, args.filter, args.duration) == ("auto", "udp port 53", 2.5)
    assert resolve_workers(args.workers) >= 1
    ring = ring_from_options(args)
    assert (ring.block_count, ring.block_size, ring.retire_ms, ring.promisc) == (
        8, RingConfig.block_size * 2, 5, True
    )  # fmt: skip
    defaults = ring_from_options(build_parser().parse_args([command, "--iface", "lo", *extra]))
    assert defaults == RingConfig()


def test_out_of_range_ring_options_are_refused() -> None:
    from netwarden.cli import build_parser
    from sensor.live import ring_from_options

    args = build_parser().parse_args(["flows", "--iface", "lo", "--ring-blocks", "1"])
    with pytest.raises(ConfigError):
        ring_from_options(args)
