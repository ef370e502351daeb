"""Password guessing against authentication services: ``<service>_bruteforce``.

Reads ended flow records. An *attempt* is a TCP session the flow's originator (Zeek's
rules: the side that sent the SYN, or the client side by port when the SYN was missed)
opened to an authentication port, that the service answered, and that stayed small and
short, as a failed login does. Attempts are counted per (client, server, port):

* fast: ``FAST_COUNT`` attempts within ``FAST_S`` seconds;
* slow: ``SLOW_COUNT`` attempts within ``SLOW_S`` (20 minutes), more than one a minute (a
  monitoring poll once a minute stays below);

and most attempts must look alike (sizes within a tolerance of their median), as scripted
guesses do; an operator's sessions, a git or rsync loop, vary. Web and mail ports carry
much legitimate repeated traffic, so their counts are ``BUSY_FACTOR`` times higher.

The attacker is the originator, never the responder: the server that answered 700 failed
logins is the victim. A capture whose frames appear twice (time jumping back) adds attempts
to the same (client, server) key; it cannot swap them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import (
    DetectorBase,
    addr_keys,
    flow_uids,
    in_sorted,
    key_to_str,
    pack_keys,
    unpack_keys,
)
from controller.detect.stack import register
from netwarden.records.schema import FlowFlags, join_records

NS = 1_000_000_000

#: port -> service name used in the kind (``<service>_bruteforce``)
SERVICES: dict[int, str] = {
    22: "ssh", 21: "ftp", 23: "telnet", 3389: "rdp", 445: "smb", 139: "smb",
    3306: "mysql", 5432: "postgresql", 1433: "mssql", 110: "pop3", 995: "pop3",
    143: "imap", 993: "imap", 25: "smtp", 465: "smtp", 587: "smtp",
    80: "http-auth", 8080: "http-auth", 8000: "http-auth", 8008: "http-auth",
    8888: "http-auth",
    **{p: "vnc" for p in range(5900, 5911)},
}  # fmt: skip
#: HTTPS (443, 8443) is left out: the login is invisible in TLS, and devices that retry a
#: failing TLS connection to their cloud every few seconds look exactly like guessing.
#: services with much legitimate repetition: higher counts
BUSY = {"http-auth", "smtp"}
_BUSY_PORTS = np.array(sorted(p for p, name in SERVICES.items() if name in BUSY), np.int64)
MITRE = "T1110.001"

ATTEMPT_DTYPE = np.dtype(
    [("key", "V34"), ("ts_ns", "<i8"), ("first_ns", "<i8"), ("orig_bytes", "<u8"),
     ("resp_bytes", "<u8"), ("flow_id", "<u8"), ("sensor", "<u8"), ("session", "<u8")]
)  # fmt: skip


@register
class BruteforceDetector(DetectorBase):
    name: ClassVar[str] = "bruteforce"
    version: ClassVar[str] = "2"  # 2: attempts carry the flows' identity (uids in evidence)

    FAST_S = 60.0
    FAST_COUNT = 6
    SLOW_S = 1200.0
    SLOW_COUNT = 30  # 1.5 a minute: above a poller checking the service every minute
    BUSY_FACTOR = 4
    MAX_DURATION_S = 120.0  # a failed login is over quickly
    MAX_BYTES = 32_768  # each way
    ALIKE_SHARE = 0.6  # share of attempts within tolerance of the median size
    ALIKE_TOL = 0.3  # relative tolerance (or ALIKE_ABS bytes, whichever is larger)
    ALIKE_ABS = 64
    SUPPRESS_S = 1800.0
    MAX_ROWS = 1 << 18

    def __init__(self) -> None:
        super().__init__()
        self.att = np.zeros(0, ATTEMPT_DTYPE)
        self._new: list[np.ndarray] = []  # attempts observed since ``att`` was last brought up
        self._fresh: list[np.ndarray] = []  # keys of the attempts observed since the last look
        self._cands: np.ndarray | None = None  # keys over a count at the last look (None: unknown)
        self._dirty = False
        self._alerted: dict[bytes, int] = {}

    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if record_type != "flow" or not len(batch):
            return
        self._data_tick(int(batch["ts_last_ns"].max()))
        port = batch["resp_port"].astype(np.int64)
        known = np.isin(port, np.fromiter(SERVICES, np.int64))
        dur = (batch["ts_last_ns"] - batch["ts_first_ns"]) / NS
        m = (
            known
            & (batch["proto"] == 6)
            & ((batch["flags"] & FlowFlags.INTERIM) == 0)
            & (batch["orig_pkts"] > 0)
            & (batch["resp_pkts"] > 0)
            & (batch["resp_bytes"] > 0)  # the service spoke (banner, prompt, refusal)
            & (dur <= self.MAX_DURATION_S)
            & (batch["orig_bytes"] <= self.MAX_BYTES)
            & (batch["resp_bytes"] <= self.MAX_BYTES)
        )
        if not m.any():
            return
        f = batch[m]
        o = addr_keys(f["orig_addr"], f["ip_version"]).view(np.uint8).reshape(-1, 16)
        r = addr_keys(f["resp_addr"], f["ip_version"]).view(np.uint8).reshape(-1, 16)
        p = f["resp_port"].astype("<u2").view(np.uint8).reshape(-1, 2)
        rows = np.zeros(len(f), ATTEMPT_DTYPE)
        rows["key"] = np.ascontiguousarray(np.hstack([o, r, p])).view("V34").reshape(-1)
        rows["ts_ns"] = f["ts_last_ns"]
        rows["first_ns"] = f["ts_first_ns"]
        rows["orig_bytes"] = f["orig_bytes"]
        rows["resp_bytes"] = f["resp_bytes"]
        rows["flow_id"] = f["flow_id"]
        rows["sensor"], rows["session"] = f["sensor"], f["session"]
        self._new.append(rows)
        self._fresh.append(rows["key"])
        self._dirty = True

    def _attempts(self) -> np.ndarray:
        """The attempts of the last ``SLOW_S`` of data time, at most ``MAX_ROWS`` (the newest).
        New ones are appended here, once per tick, not on every batch: appending to the whole
        window on every batch copied it every time (quadratic under an attack)."""
        if self._new:
            self.att = join_records([self.att, *self._new])
            self._new = []
            cut = self.now_ns - int(self.SLOW_S * NS)
            if self.att["ts_ns"].min() < cut:
                self.att = self.att[self.att["ts_ns"] >= cut]
            if len(self.att) > self.MAX_ROWS:
                self.att = self.att[-self.MAX_ROWS :]
        return self.att

    def on_clock_reset(self) -> None:
        self.att = self.att[:0]
        self._new, self._fresh = [], []
        self._cands = None
        self._alerted = {}

    def advance(self, now_ns: int) -> list[Alert]:
        if not self._dirty:
            return []
        fresh, self._fresh = self._fresh, []
        if not len(self._attempts()):
            return []
        self._dirty = False
        a = self.att
        t = self.now_ns
        # Counts only fall between two looks unless new attempts come in, so a candidate now
        # was one at the last look or has new attempts: count those keys' rows only (the
        # same alerts as counting every key, without sorting the whole window every tick).
        if self._cands is not None:
            look = np.unique(np.concatenate([*fresh, self._cands]))
            if len(look) * 16 < len(a):
                # by hash (a collision only adds a key to count; rows group by the key)
                a = a[in_sorted(_key_hash(a["key"]), np.sort(_key_hash(look)))]
        fast = a["ts_ns"] >= t - int(self.FAST_S * NS)
        u, inv = np.unique(a["key"], return_inverse=True)
        n_slow = np.bincount(inv, minlength=len(u))
        n_fast = np.bincount(inv, weights=fast, minlength=len(u))
        ports = np.ascontiguousarray(u.view(np.uint8).reshape(-1, 34)[:, 32:34]).view("<u2")
        busy = np.isin(ports.reshape(-1), _BUSY_PORTS)
        mult = np.where(busy, self.BUSY_FACTOR, 1)
        cand = (n_fast >= self.FAST_COUNT * mult) | (n_slow >= self.SLOW_COUNT * mult)
        self._cands = u[cand]
        out = []
        for j in np.flatnonzero(cand):  # (client, server, port) over a count: few
            kb = bytes(u[j])
            if t < self._alerted.get(kb, 0):
                continue
            rows = a[inv == j]
            if not (_alike(rows["orig_bytes"], self) and _alike(rows["resp_bytes"], self)):
                continue
            self._alerted[kb] = t + int(self.SUPPRESS_S * NS)
            out.append(self._alert(kb, rows, int(n_fast[j]), int(n_slow[j]), int(mult[j]), now_ns))
        for al in out:
            self.protect(al.attacker, self.now_ns)
        return out

    def _alert(
        self, kb: bytes, rows: np.ndarray, n_fast: int, n_slow: int, mult: int, now_ns: int
    ) -> Alert:
        att = key_to_str(np.frombuffer(kb[:16], "V16")[0])
        vic = key_to_str(np.frombuffer(kb[16:32], "V16")[0])
        port = int(np.frombuffer(kb[32:34], "<u2")[0])
        svc = SERVICES[port]
        span = (int(rows["ts_ns"].max()) - int(rows["first_ns"].min())) / NS
        fast = n_fast >= self.FAST_COUNT * mult
        n, lim, win = (n_fast, self.FAST_COUNT * mult, self.FAST_S) if fast else (
            n_slow, self.SLOW_COUNT * mult, self.SLOW_S)  # fmt: skip
        rate = len(rows) / max(span / 60.0, 1 / 60)
        return Alert(
            f"{svc}_bruteforce", att, [vic], min(100.0, 50 + 5 * np.sqrt(len(rows))),
            min(0.95, 0.55 + 0.02 * len(rows)), int(rows["first_ns"].min()) / NS, now_ns / NS,
            MITRE,
            {
                "attempts": n, "window_s": win, "threshold": lim, "service_port": port,
                "attempts_seen": len(rows), "span_s": round(span, 1),
                "attempts_per_min": round(rate, 2),
                "median_client_bytes": int(np.median(rows["orig_bytes"])),
                "median_server_bytes": int(np.median(rows["resp_bytes"])),
                "reference": f"{lim} short alike sessions in {win:.0f} s",
                "flow_uids": flow_uids(rows),
            },
            f"{att} opened {len(rows)} short, alike {svc} sessions to {vic}:{port} over "
            f"{span:.0f} s ({rate:.1f}/min), the pattern of password guessing.",
            self.name, self.version,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "attempts": self._attempts().copy(),
            "dirty": self._dirty,
            "alerted": pack_keys(self._alerted),
        }

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        if "attempts" in d and d["attempts"].dtype == ATTEMPT_DTYPE:
            self.att = d["attempts"]
        self._new, self._fresh = [], []
        self._cands = None  # not saved: the first look after a restart counts every key
        self._dirty = bool(d.get("dirty", False))
        self._alerted = unpack_keys(d.get("alerted", []))


def _key_hash(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each ``V34`` attempt key (vectorised: comparing void keys one by one
    is slow)."""
    b = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 34)
    words = np.ascontiguousarray(b[:, :32]).view("<u8")
    h = np.ascontiguousarray(b[:, 32:]).view("<u2").reshape(-1).astype(np.uint64)
    for i in range(4):
        h = (h ^ words[:, i]) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
    return h


def _alike(v: np.ndarray, cfg: BruteforceDetector) -> bool:
    """Most values within tolerance of their median (scripted guesses look alike)."""
    v = v.astype(float)
    med = float(np.median(v))
    tol = max(cfg.ALIKE_TOL * med, cfg.ALIKE_ABS)
    return bool((np.abs(v - med) <= tol).mean() >= cfg.ALIKE_SHARE)
