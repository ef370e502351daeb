"""Dry-run backend: records what would be done, same contract as the kernel backends.

The default until an operator turns enforcement on. Its "kernel" is a JSON file in the
state dir (so a restart reconciles exactly as with nftables) plus a JSON-lines journal of
every would-be change for the operator to review.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from controller.response.enforce.base import (
    Action,
    ApplyResult,
    BanSpec,
    Enforcer,
    IPNetwork,
    KernelBan,
    Target,
    collapse,
    target,
)
from controller.state.files import open_private
from netwarden.errors import EnforcementError


class DryRunEnforcer(Enforcer):
    name = "dryrun"

    def __init__(self, state_dir: Path | None = None, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        self.path = None if state_dir is None else Path(state_dir) / "dryrun-state.json"
        self.journal = None if state_dir is None else Path(state_dir) / "dryrun.jsonl"
        #: (addr, action) -> (expires_at or None, decision id)
        self.bans: dict[tuple[Target, Action], tuple[float | None, str]] = {}
        self.allow: list[IPNetwork] = []
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            for row in data.get("bans", []):
                key = (target(row["addr"]), Action(row["action"]))
                self.bans[key] = (row["expires_at"], row["decision_id"])
            self.allow = [ipaddress.ip_network(n) for n in data.get("allow", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EnforcementError(
                f"{self.path}: unreadable dry-run state ({type(exc).__name__}: {exc}); move it aside to start "
                "with an empty dry-run kernel (the controller re-adds the stored bans)"
            ) from exc

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "bans": [
                {"addr": str(a), "action": act.value, "expires_at": exp, "decision_id": did}
                for (a, act), (exp, did) in self.bans.items()
            ],
            "allow": [str(n) for n in self.allow],
        }
        tmp = self.path.with_suffix(".tmp")
        with open_private(tmp, "w") as fh:
            fh.write(json.dumps(data))
        os.replace(tmp, self.path)

    def _note(self, op: str, **fields: object) -> None:
        if self.journal is None:
            return
        with open_private(self.journal) as fh:
            fh.write(json.dumps({"ts": self.clock(), "would": op, **fields}) + "\n")

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, (exp, _) in self.bans.items() if exp is not None and exp <= now]:
            del self.bans[key]

    def setup(self) -> None:
        self._note("setup")

    def apply(
        self, add: Sequence[BanSpec] = (), remove: Sequence[tuple[Target, Action]] = ()
    ) -> ApplyResult:
        t0 = time.perf_counter()
        self._expire()
        for addr, action in remove:
            self.bans.pop((addr, action), None)
            self._note("unban", addr=str(addr), action=action.value)
        now = self.clock()
        for spec in add:
            exp = None if spec.ttl_s is None else now + spec.ttl_s
            self.bans[(spec.addr, spec.action)] = (exp, spec.decision_id)
            self._note(
                "ban",
                addr=str(spec.addr),
                action=spec.action.value,
                ttl=spec.ttl_s,
                decision=spec.decision_id,
            )
        self._save()
        return ApplyResult(len(add), len(remove), time.perf_counter() - t0)

    def list_bans(self) -> list[KernelBan]:
        self._expire()
        now = self.clock()
        return [
            KernelBan(a, act, None if exp is None else max(0.0, exp - now), did)
            for (a, act), (exp, did) in self.bans.items()
        ]

    def set_allow(self, networks: Iterable[IPNetwork]) -> None:
        v4, v6 = collapse(networks)
        self.allow = [*v4, *v6]
        self._note("allow", networks=[str(n) for n in self.allow])
        self._save()

    def list_allow(self) -> list[IPNetwork]:
        return list(self.allow)

    def teardown(self) -> None:
        self.bans.clear()
        self.allow = []
        self._save()
