"""The detector seam: what every detector implements, and helpers they share.

A detector is river's shape made batch-sized. It sees the sensor's record batches as numpy
structured arrays (``observe``), is told where network time stands (``advance``: capture
time in ``netwarden replay``, wall time in ``netwarden controller``) and answers with the
alerts that became due, and it saves and reloads its learnt state so baselines survive a
restart. Scoring is the detector's job; deciding what to do is policy's.

Record types (``netwarden.records.schema.RECORD_TYPES``): ``"flow"`` (one per ended or interim flow),
``"host"`` (one per host per telemetry window), ``"pair"`` (one per directed host pair per
window) and ``"arp"`` (one per ARP packet). A detector ignores the types it does not use.

Hot paths are vectorised: a detector handles a batch with numpy operations, never a Python
loop per record; Python loops are fine over the few rows that already crossed a threshold.
"""

from __future__ import annotations

import functools
import ipaddress
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from netwarden.records.schema import join_records

if TYPE_CHECKING:
    from controller.detect.alert import Alert

#: Record types a detector may be handed.
RECORD_TYPES = ("flow", "host", "pair", "arp")

#: A host address as one comparable value: IPv4 as IPv4-mapped IPv6, 16 bytes.
ADDR_KEY = np.dtype("V16")
_V4_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], np.uint8)
_V4_WORD = np.frombuffer(bytes(_V4_PREFIX[8:12]), "<u4")[0]  # bytes 8-11 of a v4 key


@runtime_checkable
class Detector(Protocol):
    """What the detection stack drives. ``name`` is unique in the registry; ``version``
    changes when the detector's logic or state layout changes (a state saved by another
    version is dropped, not misread)."""

    name: ClassVar[str]
    version: ClassVar[str]

    def observe(self, record_type: str, batch: np.ndarray) -> None:
        """Take one batch of records of ``record_type`` (numpy structured array)."""

    def advance(self, now_ns: int) -> list[Alert]:
        """Network time is now ``now_ns``; return the alerts that became due."""

    def state_dict(self) -> dict[str, Any]:
        """Learnt state as plain values and numpy arrays (saved by the stack)."""

    def load_state(self, d: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class DetectorBase:
    """Convenience base: keeps network time and a protect list (river's
    ``protect_anomaly_detector``): hosts that raised an alert are not learnt as normal
    until ``protect_s`` after their last alert.

    Operator feedback: a false positive on one of the kinds in ``LEARNS_FROM_FEEDBACK``
    vouches for the hosts it was about (``vouch_hosts``): for ``VOUCH_S`` after the
    feedback their windows are learnt, all of them, even those that raise an alert or
    that a recent alert protects (``learnable``), so the learnt levels rise to what the
    operator called benign."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    protect_s: ClassVar[float] = 600.0
    LEARNS_FROM_FEEDBACK: ClassVar[tuple[str, ...]] = ()
    VOUCH_S: ClassVar[float] = 86400.0

    def __init__(self) -> None:
        self.now_ns = 0  # latest network time seen (records or advance)
        self._protected: dict[str, int] = {}  # address -> until ns
        self._vouched: dict[str, int] = {}  # address -> learnt as normal until ns

    #: network time jumping back by more than this is a new clock (a capture from another
    #: day after this one, a sensor whose clock was reset): windows and buffers restart
    CLOCK_RESET_S: ClassVar[float] = 3600.0

    # --- time ---------------------------------------------------------------------------
    def _tick(self, ts_ns: int) -> None:
        """Network time moves forward to ``ts_ns`` (never back)."""
        if ts_ns > self.now_ns:
            self.now_ns = int(ts_ns)

    def _data_tick(self, ts_ns: int) -> None:
        """Like ``_tick`` for the times *in records* only: a jump back of more than
        ``CLOCK_RESET_S`` restarts the clock (``on_clock_reset``). Not for ``advance``'s
        ``now_ns``, which is wall time in a live controller."""
        if ts_ns < self.now_ns - self.CLOCK_RESET_S * 1e9:
            self.now_ns = int(ts_ns)
            self._protected = {}
            self.on_clock_reset()
        else:
            self._tick(ts_ns)

    def on_clock_reset(self) -> None:
        """Drop short-term buffers and suppressions keyed on the old clock (learnt
        baselines stay)."""

    # --- protection from learning -------------------------------------------------------
    def feedback(
        self, verdict: str, kind: str, attacker: str | None, victims: list[str], at_ns: int
    ) -> str | None:
        """An operator's verdict (``false_positive`` or ``confirmed``) on alerts of
        ``kind`` from ``attacker`` to ``victims``, given at ``at_ns`` (wall time). Returns
        what the detector now does differently, for the audit trail; None if nothing
        changed (the same feedback again changes nothing)."""
        if verdict != "false_positive" or kind not in self.LEARNS_FROM_FEEDBACK:
            return None
        until = int(at_ns + self.VOUCH_S * 1e9)
        hosts = [h for h in self.vouch_hosts(kind, attacker, victims)
                 if _is_ip(h) and until > max(self._vouched.get(h, 0), self.now_ns)]  # fmt: skip
        if not hosts:
            return None
        for h in hosts:
            self._vouched[h] = until
            self._protected.pop(h, None)
        return (f"learns the windows of {', '.join(hosts)} as normal for "
                f"{self.VOUCH_S / 3600:g} h after the feedback, even those that raise {kind}")  # fmt: skip

    def vouch_hosts(self, kind: str, attacker: str | None, victims: list[str]) -> list[str]:
        """The hosts a false positive on ``kind`` vouches for: its source (the hosts it
        was about when it names none). A victim-centric detector vouches for the victims."""
        return [attacker] if attacker else list(victims)

    def protect(self, addr: str | None, now_ns: int) -> None:
        if addr:
            self._protected[addr] = int(now_ns + self.protect_s * 1e9)

    def _live(self, attr: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """(addresses, their keys, their sorted hashes) of the ``attr`` table (address ->
        until ns) whose time has not passed, the others dropped; the arrays are computed
        again only when the set changes (callers must not modify them)."""
        table: dict[str, int] = getattr(self, attr)
        now = self.now_ns
        live = tuple(a for a, until in table.items() if until > now)
        if len(live) != len(table):
            setattr(self, attr, {a: table[a] for a in live})
        memo = self.__dict__.get(attr + "_memo")
        if memo is None or memo[0] != live:
            keys = keys_from_strings(list(live))
            memo = self.__dict__[attr + "_memo"] = (live, keys, np.sort(hash_keys(keys)))
        return memo  # type: ignore[no-any-return]

    def _protected_now(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """The addresses protected now (``_live``)."""
        return self._live("_protected")

    def _vouched_now(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """The addresses an operator's false positive vouches for now (``_live``)."""
        return self._live("_vouched")

    def vouched_keys(self) -> np.ndarray:
        """Address keys (``ADDR_KEY``) an operator's false positive vouches for now."""
        return self._vouched_now()[1]

    def protected_keys(self) -> np.ndarray:
        """Address keys (``ADDR_KEY``) currently protected, for ``np.isin`` masks."""
        return self._protected_now()[1]

    def protected_hashes(self) -> np.ndarray:
        """``addr_hash`` values of the protected addresses (sorted)."""
        return self._protected_now()[2]

    def learnable(self, batch: np.ndarray, hk: np.ndarray, skip: np.ndarray) -> np.ndarray:
        """Rows of a host batch that may be learnt: not in ``skip`` (rows that raised
        something) and not of a protected host (``hk``: the rows' ``addr_hash``; looked up
        once per distinct host); every row of a host vouched for (``feedback``)."""
        learn = ~skip
        prot = self.protected_hashes()
        vouched = self._vouched_now()[2]
        if len(prot) or len(vouched):
            hosts, row_host = batch_addr_groups(batch, hk)
            if len(prot):
                learn &= ~in_sorted(hosts, prot)[row_host]
            if len(vouched):
                learn |= in_sorted(hosts, vouched)[row_host]
        return learn

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"now_ns": self.now_ns, "protected": dict(self._protected)}
        if self._vouched:  # (a state without feedback stays as it was)
            d["vouched"] = dict(self._vouched)
        return d

    def load_state(self, d: dict[str, Any]) -> None:
        self.now_ns = int(d.get("now_ns", 0))
        self._protected = {str(k): int(v) for k, v in d.get("protected", {}).items()}
        self._vouched = {str(k): int(v) for k, v in d.get("vouched", {}).items()}

    def observe(self, record_type: str, batch: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def advance(self, now_ns: int) -> list[Alert]:  # pragma: no cover
        raise NotImplementedError


# --- work shared by the detectors of one stack, once per batch ----------------------------
R = TypeVar("R")
#: id(batch) -> (weak reference to the batch, its shared results)
_SHARED: dict[int, tuple[weakref.ref[np.ndarray], dict[str, Any]]] = {}


def _forget(key: int, ref: weakref.ref[np.ndarray]) -> None:
    got = _SHARED.get(key)
    if got is not None and got[0] is ref:
        del _SHARED[key]


def share_batch(batch: np.ndarray) -> None:
    """Let the detectors share work on ``batch`` (``shared``) until it is freed or handed
    in again. The stack calls this before fanning a batch out; results computed before are
    dropped, so a buffer refilled in place and handed in again is not answered from stale
    work."""
    ref = weakref.ref(batch, functools.partial(_forget, id(batch)))
    _SHARED[id(batch)] = (ref, {})


def is_shared(batch: np.ndarray) -> bool:
    """True for a batch the stack handed out (``share_batch``), still alive."""
    got = _SHARED.get(id(batch))
    return got is not None and got[0]() is batch


def shared(batch: np.ndarray, name: str, fn: Callable[[], R]) -> R:
    """``fn()``, computed once per batch the stack handed out (``share_batch``) and given to
    every detector that asks for ``name`` on that batch; computed afresh for any other
    array (a concatenation, a slice, a batch fed to a detector directly). ``fn`` must depend
    on the batch only; callers must not modify what it returns."""
    got = _SHARED.get(id(batch))
    if got is None or got[0]() is not batch:
        return fn()
    memo = got[1]
    if name not in memo:
        memo[name] = fn()
    return memo[name]  # type: ignore[no-any-return]


#: record dtype -> (weak references to the parts, their join): the latest join of each type
_JOINED: dict[np.dtype, tuple[list[weakref.ref[np.ndarray]], np.ndarray]] = {}


def join_batches(parts: list[np.ndarray]) -> np.ndarray:
    """The batches ``parts`` end to end, as each detector gathers the batches of a tick. One
    part is returned as it is. Several are copied byte for byte (``join_records``: not
    field by field) once: a detector that joins the same batches the stack handed out
    (``share_batch``), as every detector of the tick does, gets the same array, which is
    shared in turn, so its columns and address hashes are also computed once. Only the
    latest join of each record type is kept, until ``release_joins``."""
    if len(parts) == 1:
        return parts[0]
    if not all(is_shared(p) for p in parts):
        return join_records(parts)
    got = _JOINED.get(parts[0].dtype)
    if (
        got is not None
        and len(got[0]) == len(parts)
        and all(r() is p for r, p in zip(got[0], parts, strict=True))
    ):
        return got[1]
    out = join_records(parts)
    share_batch(out)
    _JOINED[parts[0].dtype] = ([weakref.ref(p) for p in parts], out)
    return out


def release_joins() -> None:
    """Forget the joins kept for sharing (the stack calls this once every detector has
    advanced: a tick's records are not held until the next tick)."""
    _JOINED.clear()


def batch_column(batch: np.ndarray, name: str) -> np.ndarray:
    """One column of a record batch as a contiguous array, read once per batch for every
    detector that asks (shared; callers must not modify it)."""
    if not is_shared(batch):
        return batch[name]  # type: ignore[no-any-return]
    return shared(batch, f"column:{name}", lambda: np.ascontiguousarray(batch[name]))


def batch_addr_hash(batch: np.ndarray, field: str = "addr") -> np.ndarray:
    """``addr_hash`` of an address column of a record batch (shared per batch)."""
    return shared(batch, f"addr_hash:{field}",
                  lambda: addr_hash(batch[field], batch["ip_version"]))  # fmt: skip


def batch_addr_order(
    batch: np.ndarray, field: str = "addr", hashes: np.ndarray | None = None
) -> np.ndarray:
    """``stable_argsort`` of ``batch_addr_hash`` (shared per batch; ``hashes``: that hash
    when the caller has it): the rows grouped by host, each host's rows in batch order."""
    return shared(batch, f"addr_order:{field}", lambda: stable_argsort(
        batch_addr_hash(batch, field) if hashes is None else hashes))  # fmt: skip


def batch_addr_keys(batch: np.ndarray, field: str) -> np.ndarray:
    """``addr_keys`` of an address column of a record batch (shared per batch)."""
    return shared(batch, f"addr_keys:{field}",
                  lambda: addr_keys(batch[field], batch["ip_version"]))  # fmt: skip


def batch_addr_groups(
    batch: np.ndarray, hashes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct ``addr_hash`` values of a batch, sorted; the index of each row's value
    among them), shared per batch (``hashes``: that hash when the caller has it)."""

    def groups() -> tuple[np.ndarray, np.ndarray]:
        hk = batch_addr_hash(batch) if hashes is None else hashes
        order = batch_addr_order(batch, hashes=hk)
        ks = hk[order]
        first = np.empty(len(ks), bool)
        first[:1] = True
        np.not_equal(ks[1:], ks[:-1], out=first[1:])
        row_group = np.empty(len(ks), np.intp)
        row_group[order] = np.cumsum(first) - 1
        return ks[first], row_group

    return shared(batch, "addr_groups", groups)


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for ``uint64`` keys, faster: the row index goes
    into the low bits of each key, so the (unstable, vectorised) sort of distinct values
    gives the stable order; when two different keys share their high bits (rare), the plain
    stable sort decides."""
    n = len(keys)
    if n < 2 or keys.dtype != np.uint64:
        return np.argsort(keys, kind="stable")
    low = np.uint64((1 << (n - 1).bit_length()) - 1)
    comp = (keys & ~low) | np.arange(n, dtype=np.uint64)
    comp.sort()
    order = (comp & low).astype(np.intp)
    ks = keys[order]
    if (ks[1:] < ks[:-1]).any():
        return np.argsort(keys, kind="stable")
    return order


def in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted, non-empty ``sorted_set`` (a binary
    search per value instead of a pass over ``values`` per member)."""
    idx = np.searchsorted(sorted_set, values)
    np.minimum(idx, len(sorted_set) - 1, out=idx)
    return sorted_set[idx] == values  # type: ignore[no-any-return]


def pack_keys(d: dict[Any, int]) -> list[list[Any]]:
    """A dict with tuple/bytes keys as a list msgpack can store (``unpack_keys`` undoes)."""
    return [[list(k) if isinstance(k, tuple) else k, v] for k, v in d.items()]


def unpack_keys(rows: list[list[Any]]) -> dict[Any, int]:
    return {(tuple(k) if isinstance(k, list) else k): int(v) for k, v in rows}


# --- addresses ------------------------------------------------------------------------------
def _words(addr: np.ndarray, dtype: str) -> np.ndarray:
    """A column of 16-byte addresses as ``(n, 16 / itemsize)`` words: a view of a record
    batch's column when its bytes are contiguous per row (no byte-by-byte copy)."""
    a = np.asarray(addr)
    if a.dtype == np.uint8 and a.ndim == 2 and a.shape[1] == 16 and a.strides[1] == 1:
        return a.view(dtype)
    return np.ascontiguousarray(a, dtype=np.uint8).reshape(-1, 16).view(dtype)


def addr_keys(addr: np.ndarray, version: np.ndarray) -> np.ndarray:
    """``ADDR_KEY`` values for a column of 16-byte addresses and their IP versions (IPv4 is
    mapped to ``::ffff:a.b.c.d``, so v4 and v6 never collide). Vectorised."""
    w = _words(addr, "<u4")
    v4 = np.asarray(version) == 4
    if v4.any():
        # bytes 0-9 zero, 10-11 0xff, 12-15 the IPv4 address (its first 4 bytes)
        m = np.zeros_like(w)
        m[:, 2] = _V4_WORD
        m[:, 3] = w[:, 0]
        w = m if v4.all() else np.where(v4[:, None], m, w)
    elif np.may_share_memory(w, addr):  # the keys never alias the records
        w = w.copy()
    return w.view(ADDR_KEY).reshape(-1)


_H1, _H2, _H3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B1)


def addr_hash(addr: np.ndarray, version: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each (address, IP version): a fast key for per-host tables
    (``np.unique`` / ``searchsorted`` on ``uint64`` instead of 16-byte strings). Vectorised."""
    w = _words(addr, "<u8")
    with np.errstate(over="ignore"):
        h = w[:, 0] * _H1 ^ w[:, 1] * _H2 ^ np.asarray(version, np.uint64) * _H3
        h ^= h >> np.uint64(31)
        h *= _H2
        h ^= h >> np.uint64(29)
    return h


def hash_keys(keys: np.ndarray) -> np.ndarray:
    """``addr_hash`` of ``ADDR_KEY`` values (IPv4-mapped back to 4-byte form)."""
    raw = keys.view(np.uint8).reshape(-1, 16).copy()
    v4 = (raw[:, :12] == _V4_PREFIX).all(axis=1)
    raw[v4, 0:4] = raw[v4, 12:16]
    raw[v4, 4:] = 0
    return addr_hash(raw, np.where(v4, 4, 6))


def key_to_str(key: np.void | bytes) -> str:
    """The printable address of one ``ADDR_KEY`` value."""
    raw = key if isinstance(key, bytes) else key.tobytes()
    if raw[:12] == bytes(_V4_PREFIX):
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def keys_from_strings(addrs: list[str]) -> np.ndarray:
    out = np.zeros(len(addrs), ADDR_KEY)
    for i, s in enumerate(addrs):
        try:
            ip = ipaddress.ip_address(s)
        except ValueError:
            continue  # a MAC: not an IP key
        raw = bytes(_V4_PREFIX) + ip.packed if ip.version == 4 else ip.packed
        out[i] = np.frombuffer(raw, ADDR_KEY)[0]
    return out


def flow_uids(flows: np.ndarray, limit: int = 5) -> list[str]:
    """The uids of a few flow records for evidence: the ones ``netwarden flows``, the
    archive and ``netwarden hunt`` show for the same flows (``netwarden.records.identity``)."""
    from netwarden.records.identity import record_uids

    return record_uids(flows[:limit])
