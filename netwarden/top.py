"""Top talkers of a state dir: the hosts moving the most bytes, opening the most flows, or
named by the most alerts, over a recent span of time.

Traffic comes from the per-host telemetry windows in the state dir's record archive (a
controller archives every batch its sensors send; a replay with ``--state-dir`` archives
its own), so the ranking follows the latest window of a live sensor rather than waiting
for flows to end. Alerts come from the incident store. The span is measured on the state's
own clock (``status._state_clock``: a replay's capture time, a stopped controller's last
write) or on the wall clock when a controller is running.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netwarden.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

BY = ("bytes", "flows", "alerts")


@dataclass
class Talker:
    addr: str
    bytes_out: int  # IP bytes it sent
    bytes_in: int  # IP bytes it received
    flows_out: int  # flows it opened
    flows_in: int  # flows others opened towards it
    alerts_as_source: int
    alerts_as_target: int

    @property
    def bytes(self) -> int:
        return self.bytes_out + self.bytes_in

    @property
    def alerts(self) -> int:
        return self.alerts_as_source + self.alerts_as_target

    def to_json(self) -> dict[str, Any]:
        return {"type": "talker", "addr": self.addr, "bytes": self.bytes, "bytes_out": self.bytes_out,
                "bytes_in": self.bytes_in, "flows_out": self.flows_out, "flows_in": self.flows_in,
                "alerts": self.alerts, "alerts_as_source": self.alerts_as_source,
                "alerts_as_target": self.alerts_as_target}  # fmt: skip


@dataclass
class TopView:
    state_dir: Path
    since: float
    until: float
    live: bool
    windows: int  # host-window records read
    talkers: list[Talker]


def _archive(state_dir: Path) -> Any:
    from controller.ingest.archive import RecordArchive

    root = state_dir / "archive"
    return RecordArchive(root) if root.is_dir() else None


def _alert_counts(state_dir: Path, since: float) -> tuple[dict[str, int], dict[str, int]]:
    from controller.incidents.store import IncidentStore
    from controller.state.store import Store

    store = Store(state_dir, readonly=True)
    try:
        try:
            alerts = IncidentStore(store.db).alerts(since=since)
        except Exception:  # noqa: BLE001 - a state dir made before incidents existed
            alerts = []
    finally:
        store.close()
    src: dict[str, int] = {}
    dst: dict[str, int] = {}
    for a in alerts:
        if a.get("attacker"):
            src[a["attacker"]] = src.get(a["attacker"], 0) + 1
        for v in a.get("victims") or []:
            dst[v] = dst.get(v, 0) + 1
    return src, dst


def rank(hosts: np.ndarray, alerts_src: dict[str, int], alerts_dst: dict[str, int], by: str,
         n: int) -> list[Talker]:  # fmt: skip
    """The ``n`` biggest hosts by ``by``; host windows summed per address."""
    import numpy as np

    from netwarden.records.schema import addr_to_str

    if by not in BY:
        raise ConfigError(f"--by {by!r}: expected one of {', '.join(BY)}")
    talkers: dict[str, Talker] = {}
    if len(hosts):
        keys = np.concatenate([hosts["addr"], hosts["ip_version"][:, None]], axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.reshape(-1)

        def total(field: str) -> np.ndarray:
            return np.bincount(inv, weights=hosts[field].astype(np.float64), minlength=len(uniq))

        sums = {f: total(f) for f in ("out_bytes", "in_bytes", "out_flows", "in_flows")}
        for i in range(len(uniq)):
            addr = addr_to_str(uniq[i, :16], int(uniq[i, 16]))
            talkers[addr] = Talker(addr, int(sums["out_bytes"][i]), int(sums["in_bytes"][i]),
                                   int(sums["out_flows"][i]), int(sums["in_flows"][i]), 0, 0)  # fmt: skip
    for addr in {*alerts_src, *alerts_dst}:
        t = talkers.setdefault(addr, Talker(addr, 0, 0, 0, 0, 0, 0))
        t.alerts_as_source, t.alerts_as_target = alerts_src.get(addr, 0), alerts_dst.get(addr, 0)

    def key(t: Talker) -> tuple[int, int, int, str]:
        main = {"bytes": t.bytes, "flows": t.flows_out, "alerts": t.alerts}[by]
        return (-main, -t.bytes, -t.flows_out, t.addr)

    return sorted(talkers.values(), key=key)[:n]


def top(state_dir: Path, by: str = "bytes", n: int = 10, since_text: str | None = None,
        live: bool = False, archive: Any = None) -> TopView:  # fmt: skip
    """The top ``n`` talkers of ``state_dir`` since ``since_text`` (an age counts back from
    the end of the newest traffic in the archive; default the last 5 minutes of it).
    ``archive``: the running controller's own (it holds records not yet on disk)."""
    import time

    import numpy as np

    from controller.state.store import DB_NAME
    from netwarden.commands.incidents import parse_since
    from netwarden.records.schema import RECORD_TYPES

    if not (state_dir / DB_NAME).is_file():
        raise ConfigError(
            f"no NetWarden state in {state_dir} (run a controller or `netwarden replay ... --state-dir {state_dir}`)"
        )
    if archive is None:
        archive = _archive(state_dir)
    newest = archive.newest("host") if archive is not None else np.zeros(0, RECORD_TYPES["host"])
    until = float(newest["ts_end_ns"].max()) / 1e9 if len(newest) else time.time()
    since = parse_since(since_text or "5m", now=until)
    assert since is not None
    hosts = archive.read("host", int(since * 1e9)) if archive is not None else newest[:0]
    src, dst = _alert_counts(state_dir, since)
    return TopView(state_dir, since, until, live, len(hosts), rank(hosts, src, dst, by, n))


def top_op(state_dir: Path, archive: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The controller's ``top`` operation: ``top`` over its own archive, as JSON."""
    n = int(args.get("n", 10))
    if n < 1:
        raise ConfigError("-n must be >= 1")
    v = top(Path(state_dir), str(args.get("by", "bytes")), n, args.get("since"), True, archive)
    return {
        "since": v.since,
        "until": v.until,
        "windows": v.windows,
        "talkers": [t.to_json() for t in v.talkers],
    }


def from_op(state_dir: Path, result: dict[str, Any]) -> TopView:
    """A ``TopView`` from the controller's answer."""
    talkers = [Talker(t["addr"], t["bytes_out"], t["bytes_in"], t["flows_out"], t["flows_in"],
                      t["alerts_as_source"], t["alerts_as_target"]) for t in result["talkers"]]  # fmt: skip
    return TopView(state_dir, result["since"], result["until"], True, result["windows"], talkers)
