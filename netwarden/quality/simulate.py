"""``netwarden simulate``: a policy change rehearsed on captures before it is live.

The captures are replayed through detection (each config's ``[detect.thresholds]``) and
the alerts go through each config's whole response path in dry run, as ``netwarden
replay --state-dir`` does (incidents, copilot, policy, approvals; a throwaway state dir
per config). Each target ends up with one effect per config: ``block`` or ``rate limit``
(what policy would enforce at once), ``approval`` (a ban waiting for a person),
``recommend``/``observe`` (logged only), ``refused`` (anti-lockout, allow-list), or
``advice`` (rate limits at a victim, upstream filtering: what the copilot recommends and
nothing enforces), or the copilot's ``investigate``/``monitor`` when policy was not asked.

The blast radius is who would be hurt if a containment were wrong, read from the same
captures' flow records: the target is an internal host (inside ``policy.internal_networks``
of that config, or a private address outside them), a busy server (distinct clients that
opened flows to it, against ``policy.busy_clients``), a range wider than one address, and
how many peers and flows its traffic involved.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.detect import Alert
from netwarden.quality.replaying import record, replay_run

CONTAINING = ("block", "rate limit", "approval")


@dataclass(frozen=True)
class Effect:
    target: str
    effect: str  # block | rate limit | approval | recommend | observe | refused | advice
    kinds: tuple[str, ...]
    reason: str
    ttl_s: float | None = None
    incident: str = ""

    def text(self) -> str:
        ttl = f" {self.ttl_s:g} s" if self.ttl_s and self.effect in ("block", "rate limit") else ""
        return f"{self.effect}{ttl} ({self.reason})" if self.reason else f"{self.effect}{ttl}"


@dataclass
class Outcome:
    """What one config would have done."""

    config: str
    alerts: int
    effects: dict[str, Effect]  # target -> its strongest effect
    incidents: int


@dataclass
class Radius:
    target: str
    internal: str = ""  # why it is internal, or ""
    clients: int = 0  # distinct originators that opened flows to it
    busy: bool = False
    range_size: int = 1
    peers: int = 0
    flows: int = 0

    def harms(self) -> list[str]:
        out = []
        if self.internal:
            out.append(f"internal host ({self.internal})")
        if self.busy:
            out.append(f"busy server ({self.clients} clients)")
        if self.range_size > 1:
            out.append(f"range of {self.range_size} addresses")
        out.append(
            f"traffic with {self.peers} peer(s) in {self.flows} flow(s) would be cut or slowed"
        )
        return out


@dataclass
class Simulation:
    captures: list[str]
    current: Outcome
    candidate: Outcome
    radius: dict[str, Radius] = field(default_factory=dict)

    def differences(self) -> list[tuple[str, Effect | None, Effect | None]]:
        targets = sorted(set(self.current.effects) | set(self.candidate.effects))
        out = []
        for t in targets:
            a, b = self.current.effects.get(t), self.candidate.effects.get(t)
            if (a and (a.effect, a.ttl_s)) != (b and (b.effect, b.ttl_s)):
                out.append((t, a, b))
        return out


_RANK = {"block": 8, "rate limit": 7, "approval": 6, "recommend": 5, "advice": 4, "investigate": 3,
         "observe": 2, "monitor": 1, "refused": 0}  # fmt: skip


def _effect_of_decision(d: dict[str, Any]) -> str:
    v = d["verdict"]
    if v == "act":
        return "rate limit" if d.get("action") == "ratelimit" else "block"
    return {"pending": "approval"}.get(v, v)


def outcome(config: str | None, alerts: list[Alert], end_time: float) -> Outcome:
    """``alerts`` through the response path of ``config`` in dry run."""
    from controller.incidents.session import replay_triage

    copies = [dataclasses.replace(a, evidence=dict(a.evidence), extra={}) for a in alerts]
    with tempfile.TemporaryDirectory(prefix="netwarden-simulate-") as tmp:
        tri = replay_triage(copies, tmp, config, end_time)
    effects: dict[str, Effect] = {}

    def put(e: Effect) -> None:
        old = effects.get(e.target)
        if old is None or _RANK[e.effect] > _RANK[old.effect]:
            effects[e.target] = e

    for d in tri["decisions"]:
        put(Effect(str(d["target"]).removesuffix("/32").removesuffix("/128"), _effect_of_decision(d),
                   (d.get("detector_kind", ""),), d.get("reason", ""), d.get("ttl_s"), d["incident"]))  # fmt: skip
    for inc in tri["incidents"]:
        rec = inc.recommendation or {}
        for att in inc.attackers:  # the copilot's verdict where policy was not asked
            if rec.get("action") in ("investigate", "monitor"):
                put(Effect(att, rec["action"], tuple(inc.kinds), f"incident risk {inc.risk:g}",
                           incident=inc.id))  # fmt: skip
        for s in (inc.recommendation or {}).get("steps", []):
            if not s.get("enforce"):
                put(Effect(s["target"], "advice", (s.get("kind", ""),), s["do"].replace("_", " "),
                           incident=inc.id))  # fmt: skip
    return Outcome(config or "(defaults)", len(alerts), effects, len(tri["incidents"]))


def _internal_nets(config: str | None) -> tuple[Any, ...]:
    from controller import config as ccfg

    return ccfg.load(config).policy.internal_networks


def _key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> np.ndarray:
    raw = np.zeros(16, np.uint8)
    packed = np.frombuffer(addr.packed, np.uint8)
    raw[: len(packed)] = packed
    return raw


def blast_radius(target: str, flows: np.ndarray, internal_nets: tuple[Any, ...],
                 busy_clients: int) -> Radius:  # fmt: skip
    """Who would be hurt by containing ``target``, from the captures' flow records."""
    r = Radius(target)
    try:
        net = ipaddress.ip_network(target, strict=False)
    except ValueError:
        return r  # a MAC: layer 2, no flows by IP
    r.range_size = net.num_addresses
    inside = [n for n in internal_nets if n.version == net.version and n.overlaps(net)]
    if inside:
        r.internal = f"in policy.internal_networks {inside[0]}"
    elif net.network_address.is_private:
        r.internal = "private address outside policy.internal_networks"
    if not len(flows):
        return r
    ver = flows["ip_version"] == net.version
    if net.num_addresses == 1:
        k = _key(net.network_address)
        as_orig = ver & (flows["orig_addr"] == k).all(axis=1)
        as_resp = ver & (flows["resp_addr"] == k).all(axis=1)
    else:  # a range: compare the prefix bytes that the mask covers fully (coarse, cheap)
        nbytes = net.prefixlen // 8
        k = _key(net.network_address)[:nbytes]
        as_orig = ver & (flows["orig_addr"][:, :nbytes] == k).all(axis=1)
        as_resp = ver & (flows["resp_addr"][:, :nbytes] == k).all(axis=1)
    clients = {bytes(a) for a in flows["orig_addr"][as_resp]}
    peers = clients | {bytes(a) for a in flows["resp_addr"][as_orig]}
    r.clients = len(clients)
    r.busy = r.clients >= busy_clients
    r.peers = len(peers)
    r.flows = len(np.unique(flows["flow_id"][as_orig | as_resp]))
    return r


def simulate(captures: list[Path], candidate: str, current: str | None = None,
             backend: str | None = "c") -> Simulation:  # fmt: skip
    """The captures through detection and the dry-run policy of both configs."""
    from controller import config as ccfg
    from controller.detect.thresholds import load as load_thresholds

    outcomes = []
    for cfg in (current, candidate):
        th = load_thresholds(cfg)
        alerts: list[Alert] = []
        end = 0.0
        for p in captures:
            run = replay_run([p], th, backend)
            alerts += run.alerts
            end = max(end, run.t_last)
        outcomes.append(outcome(cfg, alerts, end))
    sim = Simulation([str(p) for p in captures], outcomes[0], outcomes[1])
    batches = [b for p in captures for b in record((str(p),), backend).batches("flow")]
    flows = np.concatenate(batches) if batches else np.zeros(0)
    busy = ccfg.load(candidate).policy.busy_clients
    nets = _internal_nets(candidate)
    for out in (sim.current, sim.candidate):
        for t, e in out.effects.items():
            if e.effect in CONTAINING and t not in sim.radius:
                sim.radius[t] = blast_radius(t, flows, nets, busy)
    return sim
