"""Record identity: which sensor, which engine run, which flow.

Every record carries ``sensor`` (``sensor_hash``: 64 bits of BLAKE2b over the sensor's
name) and ``session`` (``session_id``: the capture's start time in microseconds since the
epoch, shifted left 12 bits, or'ed with the fanout worker number). Flow ids restart at 1 in
every engine, so a flow is named by the triple (sensor, session, flow_id): fanout workers
of one capture differ in the worker bits, a restarted sensor in the start time, two sensors
in the name hash. Records made with no identity (``netwarden flows`` over a file) carry
zeros, so their uids are reproducible.

``uids()`` renders triples as Zeek-style uids: ``C`` + 17 base62 digits of a 96-bit mix of
the triple (numpy, one pass per batch; a collision needs ~2^49 flows).
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

WORKER_BITS = 12
MAX_WORKERS = 1 << WORKER_BITS
_MASK64 = (1 << 64) - 1
_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "S1")


def sensor_hash(name: str) -> int:
    """A sensor's identity in records: 64 bits of its name's hash (never 0, which means
    "no sensor")."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"netwarden-sensor")
    return int.from_bytes(digest.digest(), "little") or 1


def session_id(worker: int = 0, epoch_us: int | None = None) -> int:
    """One engine run: ``epoch_us`` (default: now) << 12 | ``worker``."""
    if not 0 <= worker < MAX_WORKERS:
        raise ValueError(f"worker must be in 0..{MAX_WORKERS - 1}, got {worker}")
    us = time.time_ns() // 1000 if epoch_us is None else epoch_us
    return ((us << WORKER_BITS) | worker) & _MASK64


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _base62(x: np.ndarray, digits: int) -> np.ndarray:
    out = np.empty((len(x), digits), "S1")
    for i in range(digits):
        x, digit = np.divmod(x, np.uint64(62))
        out[:, i] = _B62[digit.astype(np.intp)]
    return out


def uid_bytes(sensor: np.ndarray, session: np.ndarray, flow_id: np.ndarray) -> np.ndarray:
    """Zeek-style uids of (sensor, session, flow_id) triples as a ``S18`` array (no loop)."""
    s = np.asarray(sensor, np.uint64)
    e = np.asarray(session, np.uint64)
    f = np.asarray(flow_id, np.uint64)
    with np.errstate(over="ignore"):
        hi = _mix(f ^ _mix(e ^ _mix(s)))  # two lanes seeded differently: 99 bits used
        lo = _mix(s ^ _mix(f ^ np.uint64(0x9E3779B97F4A7C15)) ^ _mix(e + np.uint64(1)))
    prefix = np.full((len(s), 1), b"C", "S1")
    chars = np.concatenate([prefix, _base62(hi, 11), _base62(lo >> np.uint64(29), 6)], axis=1)
    return np.ascontiguousarray(chars).view("S18").reshape(len(s))


def uids(sensor: np.ndarray, session: np.ndarray, flow_id: np.ndarray) -> list[str]:
    """Zeek-style uids of (sensor, session, flow_id) triples, element by element."""
    return [u.decode("ascii") for u in uid_bytes(sensor, session, flow_id).tolist()]


def record_uids(records: np.ndarray, id_field: str = "flow_id") -> list[str]:
    """The uid of every flow record (``id_field="parent_id"``: of its tunnel parent)."""
    return uids(records["sensor"], records["session"], records[id_field])


def uid(sensor: int, session: int, flow_id: int) -> str:
    """One uid (``uids`` for batches)."""
    return uids(np.array([sensor]), np.array([session]), np.array([flow_id]))[0]
