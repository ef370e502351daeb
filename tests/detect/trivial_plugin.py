"""A trivial detector for testing the seam (imported as a ``--detector-plugin``): it alerts
``test_many_flows`` once an originator has opened ``THRESHOLD`` flows."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from controller.detect import Alert, DetectorBase, register
from controller.detect.base import addr_keys, key_to_str

THRESHOLD = 20


@register
class ManyFlows(DetectorBase):
    name: ClassVar[str] = "test_many_flows"
    version: ClassVar[str] = "1"

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[bytes, int] = {}
        self.first: dict[bytes, int] = {}
        self.victims: dict[bytes, str] = {}
        self.alerted: set[bytes] = set()

    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if record_type != "flow":
            return
        keys = addr_keys(batch["orig_addr"], batch["ip_version"])
        uniq, idx, n = np.unique(keys, return_index=True, return_counts=True)
        for k, i, c in zip(uniq, idx, n, strict=True):  # one row per distinct originator
            kb = bytes(k)
            self.counts[kb] = self.counts.get(kb, 0) + int(c)
            self.first.setdefault(kb, int(batch["ts_first_ns"][i]))
            self.victims.setdefault(
                kb,
                key_to_str(
                    addr_keys(batch["resp_addr"][i : i + 1], batch["ip_version"][i : i + 1])[0]
                ),
            )
        self._tick(int(batch["ts_last_ns"].max()))

    def advance(self, now_ns: int) -> list[Alert]:
        out = []
        for kb, c in sorted(self.counts.items()):
            if c >= THRESHOLD and kb not in self.alerted:
                self.alerted.add(kb)
                att = key_to_str(np.frombuffer(kb, "V16")[0])
                out.append(Alert(
                    "test_many_flows", att, [self.victims[kb]], 50, 0.9, self.first[kb] / 1e9,
                    now_ns / 1e9, "T1046", {"flows": c, "threshold": THRESHOLD},
                    f"{att} opened {c} flows.", self.name, self.version,
                ))  # fmt: skip
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "counts": {k: v for k, v in self.counts.items()}}

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        self.counts = {bytes(k): int(v) for k, v in d.get("counts", {}).items()}
