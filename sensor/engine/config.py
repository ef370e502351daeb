"""Flow engine configuration: a frozen dataclass validated once, before any work starts."""

from __future__ import annotations

from dataclasses import dataclass

from netwarden.errors import ConfigError

#: Timeouts become int64 nanoseconds added to packet timestamps: ~31 years keeps that sum
#: far from overflow (and rejects inf/NaN).
MAX_TIMEOUT_S = 1e9


@dataclass(frozen=True)
class EngineConfig:
    """Timeouts are in seconds of network time (packet timestamps), as Zeek uses them."""

    tcp_timeout: float = 300.0  # Zeek tcp_inactivity_timeout
    udp_timeout: float = 60.0  # Zeek udp_inactivity_timeout
    icmp_timeout: float = 60.0  # Zeek icmp_inactivity_timeout
    other_timeout: float = 60.0  # unknown_transport
    active_timeout: float = 1800.0  # interim record for flows alive this long; 0 = never
    max_flows: int = 1 << 20  # flow table capacity; the oldest flow is evicted when full
    frag_timeout: float = 30.0  # IP fragment reassembly timeout
    max_frag_datagrams: int = 1024  # datagrams under reassembly at once
    validate_checksums: bool = False  # drop packets with bad IP/TCP/UDP/ICMP checksums
    decode_tunnels: bool = True  # GRE, ERSPAN, VXLAN, Geneve, GTP-U, Teredo, AYIYA
    dns: bool = True  # per-flow DNS summaries on port 53
    # Record identity stamped on every record (netwarden.records.identity): the sensor's
    # name hash and this engine run's session (start epoch and worker). 0 = anonymous.
    sensor: int = 0
    session: int = 0

    def __post_init__(self) -> None:
        for name in ("tcp_timeout", "udp_timeout", "icmp_timeout", "other_timeout", "frag_timeout"):
            if not 0 < getattr(self, name) <= MAX_TIMEOUT_S:
                raise ConfigError(f"{name} must be > 0 and <= {MAX_TIMEOUT_S:.0f} seconds, "
                                  f"got {getattr(self, name)!r}")  # fmt: skip
        if not 0 <= self.active_timeout <= MAX_TIMEOUT_S:
            raise ConfigError(f"active_timeout must be >= 0 and <= {MAX_TIMEOUT_S:.0f} seconds, "
                              f"got {self.active_timeout!r}")  # fmt: skip
        if not 1 <= self.max_flows <= 1 << 26:
            raise ConfigError(f"max_flows must be in 1..{1 << 26}, got {self.max_flows!r}")
        if not 1 <= self.max_frag_datagrams <= 1 << 20:
            raise ConfigError(f"max_frag_datagrams out of range: {self.max_frag_datagrams!r}")
        for name in ("sensor", "session"):
            if not 0 <= getattr(self, name) < 1 << 64:
                raise ConfigError(f"{name} must be a 64-bit unsigned integer")
