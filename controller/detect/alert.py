"""The alert record: what a detector says, in the words issue 10 fixes.

An alert names its ``kind`` (exact strings such as ``port_scan``), the ``attacker`` (an IP
address, a MAC for layer-2 attacks, ``None`` when the sources are spoofed or are
reflectors), the ``victims``, a ``score`` 0-100 (how bad), a ``confidence`` 0-1 (how sure),
``first_seen`` and ``detected_at`` (capture-time epoch seconds), the ATT&CK technique id,
the ``evidence`` that drove it (numbers next to their learnt reference, a few flow uids), a
one-sentence ``summary`` and the detector's name and version.

``to_detection()`` turns it into the ``controller.detection.Detection`` policy reads. Alerts
without an IP attacker (spoofed floods, reflection, ARP spoofing by MAC) give ``None``: the
response to them is a rate limit or upstream advice, never a ban of forged sources.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from controller.detection import Detection
from netwarden.errors import ConfigError


@dataclass(slots=True)
class Alert:
    kind: str
    attacker: str | None
    victims: list[str]
    score: float
    confidence: float
    first_seen: float
    detected_at: float
    mitre: str
    evidence: dict[str, Any]
    summary: str
    detector: str
    detector_version: str
    extra: dict[str, Any] = field(default_factory=dict)  # not serialised: detector scratch

    def __post_init__(self) -> None:
        if not self.kind:
            raise ConfigError("alert kind must not be empty")
        self.score = float(min(100.0, max(0.0, self.score)))
        self.confidence = float(min(1.0, max(0.0, self.confidence)))
        self.first_seen = float(self.first_seen)
        self.detected_at = float(self.detected_at)
        self.victims = [str(v) for v in self.victims]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "alert",
            "kind": self.kind,
            "attacker": self.attacker,
            "victims": list(self.victims),
            "score": round(self.score, 1),
            "confidence": round(self.confidence, 3),
            "first_seen": self.first_seen,
            "detected_at": self.detected_at,
            "mitre": self.mitre,
            "evidence": _plain(self.evidence),
            "summary": self.summary,
            "detector": self.detector,
            "detector_version": self.detector_version,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Alert:
        return cls(
            d["kind"], d.get("attacker"), list(d.get("victims", ())), d.get("score", 0.0),
            d.get("confidence", 0.0), d.get("first_seen", 0.0), d.get("detected_at", 0.0),
            d.get("mitre", ""), dict(d.get("evidence", {})), d.get("summary", ""),
            d.get("detector", ""), str(d.get("detector_version", "")),
        )  # fmt: skip

    def evidence_id(self) -> str:
        uids = self.evidence.get("flow_uids") or []
        head = ",".join(str(u) for u in uids[:3])
        return f"{self.detector}@{self.detected_at:.3f}" + (f":{head}" if head else "")

    def to_detection(self) -> Detection | None:
        """The policy record, or ``None`` when there is no IP to act on (spoofed sources,
        reflectors, a MAC)."""
        if not self.attacker:
            return None
        try:
            ipaddress.ip_address(self.attacker)
        except ValueError:
            return None
        victims = []
        for v in self.victims:
            try:
                victims.append(str(ipaddress.ip_address(v)))
            except ValueError:
                continue  # subnets / MACs are kept in detail only
        return Detection.make(
            self.kind, self.attacker, victims, self.score, self.confidence, self.evidence_id(),
            detail={"summary": self.summary, "mitre": self.mitre, "victims": self.victims,
                    "first_seen": self.first_seen, "detected_at": self.detected_at},
        )  # fmt: skip


def _plain(v: Any) -> Any:
    """Evidence as JSON-safe values (numpy scalars and arrays become Python ones)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist"):
        return _plain(v.tolist())
    if isinstance(v, float):
        return round(v, 4)
    return v
