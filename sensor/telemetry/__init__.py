"""Per-host telemetry: choose the backend, in one place.

``HostTelemetry(config)`` consumes the per-packet summaries the flow engine writes
(``engine.feed(batch, pktsum=arr)``), batch by batch: ``update(pktsum, n)``; network time
moves with the packets and with ``advance(now_ns)`` on an idle wire; ``flush()`` ends the
input; ``drain()`` returns ``[("host", HOST_DTYPE array), ("pair", PAIR_DTYPE array)]``.
``stats()`` reports occupancy (``hosts``/``pairs`` of ``host_capacity``/``pair_capacity``),
entries pushed out of a full probe range (``host_evictions``, ``pair_evictions``: their
decayed history is lost), those of them that were active (``host_partial``,
``pair_partial``: their window went out early, flagged EVICTED) and ``expired`` idle
entries. The compiled backend
(``sensor.telemetry._telemetry``) and the reference (``sensor.telemetry.reference``) give byte-identical
records; ``NETWARDEN_BACKEND=py`` forces the reference, as for the flow engine.

Sizing: the defaults hold about 10,000 hosts and 150,000 directed host pairs (a capture with
100,000 concurrent flows, ``benchmarks/bench_sensor.py``) with almost no evictions; a table is
best kept under ~60% full (``TelemetryConfig.sized``). Memory: at most about
``host_capacity * 2.3 KiB + pair_capacity * 0.24 KiB`` (100 MiB with the defaults), touched
only as entries arrive. Cost: a few hash probes per packet, no work per table slot at a
window's end (``benchmarks/README.md`` has the per-stage profile).

With fanout each worker keeps its own tables, so one host may get a record from each worker
(``iface`` = worker) for the same window: counters add up; distinct counts add up to close
to the true count because a flow (the unit the sketches count) lives in exactly one worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from netwarden.errors import ConfigError
from sensor.engine import pick_backend

BACKENDS = {"c": "sensor.telemetry._telemetry", "py": "sensor.telemetry.reference"}


@dataclass(frozen=True)
class TelemetryConfig:
    window: float = 1.0  # seconds of packet time per record window
    long_window: float = 60.0  # seconds over which the *_long distinct counts accumulate
    host_capacity: int = 16384  # hosts tracked at once (power of two)
    pair_capacity: int = 262144  # directed host pairs tracked at once (power of two)
    idle_timeout: float = 300.0  # an entry silent this long is freed at a window end
    iface: int = 0  # written into every record (fanout worker)

    def __post_init__(self) -> None:
        if not 0.001 <= self.window <= 3600:
            raise ConfigError(f"telemetry window must be 0.001..3600 s, got {self.window!r}")
        if not self.window <= self.long_window <= 86400:
            raise ConfigError(
                f"telemetry long_window must be window..86400 s, got {self.long_window!r}"
            )
        for name in ("host_capacity", "pair_capacity"):
            v = getattr(self, name)
            if not (64 <= v <= 1 << 24 and v & (v - 1) == 0):
                raise ConfigError(f"{name} must be a power of two in 64..{1 << 24}, got {v!r}")
        if not self.idle_timeout > 0:
            raise ConfigError("telemetry idle_timeout must be > 0 seconds")
        if not 0 <= self.iface <= 255:
            raise ConfigError(f"iface must be 0..255, got {self.iface!r}")

    @classmethod
    def sized(cls, hosts: int, pairs: int, **kw: Any) -> TelemetryConfig:
        """Tables for about ``hosts`` hosts and ``pairs`` directed pairs live at once (within
        ``idle_timeout``), each at most ~60% full so probing rarely has to evict."""

        def cap(n: int) -> int:
            return max(64, 1 << max(0, math.ceil(n / 0.6) - 1).bit_length())

        return cls(host_capacity=cap(hosts), pair_capacity=cap(pairs), **kw)


def load_backend(name: str | None = None) -> ModuleType:
    """The telemetry backend, chosen like the flow engine's (``sensor.engine.pick_backend``)."""
    return pick_backend(BACKENDS, name, needs="HostTelemetry")


def HostTelemetry(config: TelemetryConfig | None = None, backend: str | None = None) -> Any:
    """A telemetry table from the selected backend."""
    return load_backend(backend).HostTelemetry(config or TelemetryConfig())
