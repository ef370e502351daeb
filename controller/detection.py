"""What a detector hands to policy: one small typed record, no decision in it.

Scoring, deciding and acting are separate steps: a detector says "kind K, attacker A hit
victims V, score S, confidence C, evidence E"; ``controller.response.policy`` decides; an
``Enforcer`` acts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from netwarden.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Detection:
    kind: str  # detector name, e.g. "portscan", "ssh-bruteforce"
    attacker: IPNetwork  # a single host is a /32 or /128
    victims: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    score: float  # 0..100, how bad
    confidence: float  # 0..1, how sure
    evidence_id: str  # e.g. incident id or flow uid range the detector saw
    #: distinct clients the attacker itself served recently (0 when unknown); a busy
    #: server makes a ban risky however bad its score
    attacker_clients: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kind:
            raise ConfigError("detection kind must not be empty")
        if not 0.0 <= self.score <= 100.0:
            raise ConfigError(f"detection score {self.score} outside 0..100")
        if not 0.0 <= self.confidence <= 1.0:
            raise ConfigError(f"detection confidence {self.confidence} outside 0..1")

    @classmethod
    def make(
        cls,
        kind: str,
        attacker: str,
        victims: list[str] | tuple[str, ...] = (),
        score: float = 0.0,
        confidence: float = 0.0,
        evidence_id: str = "",
        attacker_clients: int = 0,
        detail: dict[str, Any] | None = None,
    ) -> Detection:
        try:
            net = ipaddress.ip_network(attacker, strict=False)
            vics = tuple(ipaddress.ip_address(v) for v in victims)
        except ValueError as exc:
            raise ConfigError(f"detection: {exc}") from exc
        return cls(
            kind,
            net,
            vics,
            float(score),
            float(confidence),
            evidence_id,
            attacker_clients,
            detail or {},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "attacker": str(self.attacker),
            "victims": [str(v) for v in self.victims],
            "score": self.score,
            "confidence": self.confidence,
            "evidence_id": self.evidence_id,
            "attacker_clients": self.attacker_clients,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detection:
        return cls.make(
            d["kind"],
            d["attacker"],
            d.get("victims", ()),
            d.get("score", 0.0),
            d.get("confidence", 0.0),
            d.get("evidence_id", ""),
            d.get("attacker_clients", 0),
            d.get("detail"),
        )
