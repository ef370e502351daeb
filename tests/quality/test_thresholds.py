"""``[detect.thresholds]`` in the stack: an alert scoring below its kind's threshold is not
raised (and counted), one at or above it is, other kinds are untouched; the config loader
refuses what ``config check`` refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from controller.detect import Alert, DetectionStack
from controller.detect.thresholds import load
from netwarden.errors import ConfigError


class Fixed:
    """Raises the given (kind, score) alerts on its first advance."""

    name: ClassVar[str] = "fixed"
    version: ClassVar[str] = "1"

    def __init__(self, alerts: list[tuple[str, float]]) -> None:
        self.alerts = alerts

    def observe(self, record_type: str, batch: Any) -> None:
        pass

    def advance(self, now_ns: int) -> list[Alert]:
        out = [Alert(k, f"192.0.2.{i + 1}", ["198.51.100.1"], s, 0.9, 1.0, now_ns / 1e9, "T1046",
                     {}, "test", self.name, self.version) for i, (k, s) in enumerate(self.alerts)]  # fmt: skip
        self.alerts = []
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state(self, d: dict[str, Any]) -> None:
        pass


def test_stack_drops_alerts_below_their_kind_threshold(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detect.thresholds]\nport_scan = 60\nhost_sweep = 40\n")
    th = load(cfg)
    alerts = [("port_scan", 59.9), ("port_scan", 60.0), ("host_sweep", 39.0), ("syn_flood", 1.0)]
    stack = DetectionStack([Fixed(alerts)], thresholds=th)  # type: ignore[list-item]
    got = sorted((a.kind, a.score) for a in stack.advance(2_000_000_000))
    assert got == [("port_scan", 60.0), ("syn_flood", 1.0)]
    assert stack.status()["below_threshold"] == 2
    plain = DetectionStack([Fixed(alerts)])  # type: ignore[list-item]
    assert len(plain.advance(2_000_000_000)) == len(alerts)


@pytest.mark.parametrize("body", ["[detect.thresholds]\nport_scna = 60\n",
                                  "[detect.thresholds]\nport_scan = -1\n",
                                  "[detect.thresholds]\nport_scan = true\n"])  # fmt: skip
def test_bad_thresholds_refused(tmp_path: Path, body: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError, match="detect.thresholds.port_sc"):
        load(cfg)
