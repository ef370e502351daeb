"""Record sources: what turns packet batches into records for the bus.

The sensor loop (``sensor.runner.SensorLoop``: ``netwarden sensor`` over a file or an
interface, every live fanout worker, ``netwarden flows``) and ``netwarden replay``'s summary
feed each packet batch through an ordered list of ``RecordSource`` objects and drain the
``(kind, records)`` pairs they emit. The flow engine comes first because it fills the
per-packet summaries (``pktsum``) that per-host telemetry reads. A new record source plugs
in by implementing ``RecordSource``; ``Pipeline`` runs an ordered list of them and owns
the shared summary array.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from sensor.capture.batch import PacketBatch


class RecordSource(Protocol):
    """Something that turns packet batches into records for the bus."""

    def feed(self, batch: PacketBatch, pktsum: np.ndarray | None) -> None: ...

    def advance(self, now_ns: int) -> None: ...

    def finish(self) -> None: ...

    def drain(self) -> list[tuple[str, np.ndarray]]: ...

    def counters(self) -> dict[str, int]: ...


def _int_counters(stats: dict[str, Any]) -> dict[str, int]:
    import numpy as np

    return {k: int(v) for k, v in stats.items() if isinstance(v, (int, np.integer))}


class FlowSource:
    """The flow engine: FLOW and ARP records; fills the per-packet summaries."""

    def __init__(self, engine: Any) -> None:
        import numpy as np

        from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE, copy_records

        self.engine = engine
        self._copy = copy_records
        self._out = (("flow", np.zeros(4096, FLOW_DTYPE), engine.drain_flows),
                     ("arp", np.zeros(1024, ARP_DTYPE), engine.drain_arp))  # fmt: skip

    def feed(self, batch: PacketBatch, pktsum: np.ndarray | None) -> None:
        self.engine.feed(batch, pktsum)

    def advance(self, now_ns: int) -> None:
        self.engine.advance(now_ns)

    def finish(self) -> None:
        self.engine.flush()

    def drain(self) -> list[tuple[str, np.ndarray]]:
        out = []
        for kind, buf, drain in self._out:
            while True:
                n = int(drain(buf))
                if n:
                    out.append((kind, self._copy(buf[:n])))  # buf is reused: hand out a copy
                if n < len(buf):
                    break
        return out

    def counters(self) -> dict[str, int]:
        return _int_counters(self.engine.stats())


class TelemetrySource:
    """Per-host telemetry (``sensor.telemetry``), fed from the engine's packet summaries."""

    def __init__(
        self,
        window: float | None = None,
        *,
        iface: int = 0,
        backend: str | None = None,
        identity: tuple[int, int] = (0, 0),
    ) -> None:
        from sensor.telemetry import HostTelemetry, TelemetryConfig

        cfg = TelemetryConfig(iface=iface)
        if window is not None:
            cfg = TelemetryConfig(window=window, iface=iface)
        self.tel = HostTelemetry(cfg, backend=backend)
        # (sensor, session) stamped on host and pair records, as the engine stamps flows.
        self.identity = identity

    @property
    def evictions(self) -> int:
        """Hosts pushed out of the full table (records emitted early, not lost)."""
        return int(self.tel.evictions)

    def feed(self, batch: PacketBatch, pktsum: np.ndarray | None) -> None:
        if pktsum is not None:
            self.tel.update(pktsum, batch.count)

    def advance(self, now_ns: int) -> None:
        self.tel.advance(now_ns)

    def finish(self) -> None:
        self.tel.flush()

    def drain(self) -> list[tuple[str, np.ndarray]]:
        out = [(kind, recs) for kind, recs in self.tel.drain() if len(recs)]
        if any(self.identity):
            for _, recs in out:
                recs["sensor"], recs["session"] = self.identity
        return out

    def counters(self) -> dict[str, int]:
        stats = getattr(self.tel, "stats", None)
        if not callable(stats):
            return {}
        return _int_counters(stats())


class Pipeline:
    """An ordered list of record sources fed batch by batch, sharing one per-packet summary
    array (grown to the largest batch seen). The flow engine must come first: it fills the
    summaries the sources after it read. With a single source no summaries are written."""

    def __init__(self, sources: list[RecordSource]) -> None:
        import numpy as np

        from netwarden.records.schema import PKTSUM_DTYPE

        self.sources = sources
        self._pktsum = np.zeros(4096, PKTSUM_DTYPE) if len(sources) > 1 else None

    def feed(self, batch: PacketBatch) -> None:
        if self._pktsum is not None and len(self._pktsum) < batch.count:
            import numpy as np

            self._pktsum = np.zeros(batch.count, self._pktsum.dtype)
        for s in self.sources:
            s.feed(batch, self._pktsum)

    def advance(self, now_ns: int) -> None:
        for s in self.sources:
            s.advance(now_ns)

    def finish(self) -> None:
        for s in self.sources:
            s.finish()

    def drain(self) -> list[tuple[str, np.ndarray]]:
        return [rec for s in self.sources for rec in s.drain()]

    def counters(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for s in self.sources:
            merged.update(s.counters())
        return merged
