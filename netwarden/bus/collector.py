"""Controller side of the bus: receive record batches from many sensors.

The collector binds a ROUTER socket; sensors connect DEALER sockets (see
``netwarden/bus/publisher.py`` for why this pattern and how the acknowledgement protocol works).
For every message it:

1. decodes it with ``netwarden.bus.wire.decode`` (strict msgpack limits, ``np.frombuffer``); a
   rejected message bumps ``rejected[reason]`` and logs one line (rate-limited per reason),
   and never raises;
2. tracks the sender by sensor id and session: a new session is a sensor restart, not a
   gap; the header's ``base`` says which sequence numbers the sensor no longer holds, so
   numbers below it that never arrived are counted lost (a gap); numbers already delivered
   are duplicates (resends), numbers ahead of the next expected one are out of order and
   discarded (the sensor resends them in order: go-back-N);
3. acknowledges cumulatively, once per sensor, when the caller comes back for more (the
   next ``poll()`` or ``commit()``), so the sensor frees its buffer only once the batches
   were handled; ``rs`` in the ack asks it to resend at once after an out-of-order arrival.

A sensor is *up* while it was heard from within ``3 * heartbeat`` (its own interval, from
its headers) or ``down_after`` seconds when given. With ``curve`` set, the socket is a CURVE
server and a ZAP handler (``zmq.auth.ThreadAuthenticator``) admits only the public keys in
the authorised-keys directory; refused handshakes are counted.

Delivery is at-least-once on the wire and exactly-once per session to the caller of
``poll()``; a caller killed while handling a batch gets it again after restarting, so across
a controller restart delivery is at-least-once and nothing within the sensor's buffer is lost.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import zmq

from netwarden.bus import limits as bus_limits
from netwarden.bus import wire
from netwarden.bus.curve import read_key_file
from netwarden.errors import BusError, ConfigError, FrameRejected
from netwarden.logs import event

log = logging.getLogger("netwarden.collector")

#: File names inside a controller's CURVE key directory.
SERVER_KEY_NAME = "server"
AUTHORIZED_DIR = "authorized"

#: Counters for events that are not decoder rejects.
_EXTRA_REJECTS = ("sensor_limit", "impersonation", "implausible")
#: sensor ids one CURVE key may hold (a compromised key cannot fill the table)
MAX_IDS_PER_KEY = 64


@dataclass(frozen=True)
class CurveServerKeys:
    """The controller's CURVE key pair and the directory of authorised sensor public keys."""

    public: bytes
    secret: bytes
    authorized_dir: Path

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> CurveServerKeys:
        """Load ``server.key_secret``; authorised sensors' ``*.key`` files live in
        ``authorized/``."""
        d = Path(directory)
        secret_file = d / f"{SERVER_KEY_NAME}.key_secret"
        auth = d / AUTHORIZED_DIR
        public, secret = read_key_file(secret_file, secret=True)
        if not auth.is_dir():
            raise ConfigError(f"CURVE keys: {auth} (authorised sensor keys) is missing")
        return cls(public=public, secret=secret, authorized_dir=auth)


def _peer_ip(frame: zmq.Frame) -> str:
    """The sender's IP address (ZeroMQ's Peer-Address metadata), or "" for ipc/inproc."""
    try:
        addr = frame.get("Peer-Address")
    except (zmq.ZMQError, AttributeError):
        return ""
    try:
        ip = ipaddress.ip_address(str(addr).split("%")[0])
    except ValueError:
        return ""
    mapped = getattr(ip, "ipv4_mapped", None)  # a v4 peer on a dual-stack socket
    return str(mapped or ip)


@dataclass
class SensorStatus:
    """What the controller knows about one sensor (a snapshot; see ``Collector.sensors``)."""

    sensor_id: str
    session: int = 0
    up: bool = True
    stopped: bool = False  # said goodbye on a clean shutdown (down, but not a failure)
    key: str = ""  # CURVE public key (Z85) the sensor id is bound to, when CURVE is on
    peer_address: str = ""  # IP address the sensor's last message came from (tcp only)
    first_seen: float = 0.0  # wall clock, seconds
    last_seen: float = 0.0
    heartbeat_s: float = 1.0
    next_seq: int = 0  # next data sequence number expected
    received_messages: int = 0
    received_records: int = 0
    received_bytes: int = 0
    heartbeats: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    gaps: int = 0
    lost_messages: int = 0
    restarts: int = 0
    last_latency_s: float = 0.0  # receive time minus the header's send time
    drops: dict[str, int] = field(default_factory=dict)  # latest cumulative counters
    records_by_type: dict[str, int] = field(default_factory=dict)
    last_seen_mono: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "last_seen_mono"}
        d["drops"] = dict(self.drops)
        d["records_by_type"] = dict(self.records_by_type)
        return d


class _RateLimitedLog:
    """One log line per key per interval; the next line says how many were suppressed."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        if n:
            log.warning(msg + " (%d similar suppressed)", *args, n)
        else:
            log.warning(msg, *args)


class Collector:
    """Bind ``endpoint`` (or several) and receive batches from sensors.

    Use ``poll(timeout_ms)`` in a loop; or register ``collector.socket`` in a ``zmq.Poller``,
    or ``collector.fileno()`` in a selector, and call ``drain()`` when it is readable. ``sensors()`` and ``stats()``
    are cheap snapshots.
    """

    def __init__(
        self,
        endpoint: str | Iterable[str],
        *,
        curve: CurveServerKeys | None = None,
        max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
        down_after: float | None = None,
        max_sensors: int = 4096,
        max_per_poll: int = 1024,
        rcvhwm: int = 1000,
        log_interval_s: float = 1.0,
        max_queued_bytes_per_peer: int = bus_limits.MAX_QUEUED_BYTES_PER_PEER,
    ) -> None:
        endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        for ep in endpoints:
            wire.check_endpoint(ep)
        if not endpoints:
            raise ConfigError("collector needs at least one endpoint")
        self.max_message_bytes = max_message_bytes
        self.down_after = down_after
        self.max_sensors = max_sensors
        self.max_per_poll = max_per_poll
        self._rlog = _RateLimitedLog(log_interval_s)
        self._sensors: dict[str, SensorStatus] = {}
        self._rejected = dict.fromkeys(wire.REJECT_REASONS + _EXTRA_REJECTS, 0)
        self._c = dict.fromkeys(
            (
                "received_messages", "received_records", "received_bytes", "heartbeats",
                "duplicates", "out_of_order", "gaps", "lost_messages", "connections",
                "disconnects", "auth_refused", "handshake_failed", "acks_sent",
                "sensors_evicted", "sensors_expired",
            ),
            0,
        )  # fmt: skip
        self._closed = False
        self._acks: dict[bytes, tuple[int, int, bool]] = {}  # routing id -> pending ack
        self._ctx = zmq.Context()
        self._auth: Any = None
        self._curve = curve
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Frames up to 1.25 x the limit are received and counted as "oversized" by the
        # decoder (a 17 MiB message against 16 MiB); ZeroMQ cuts off a peer sending a
        # larger one before we see it. Queued bytes per peer are bounded:
        # HWM x largest frame <= max_queued_bytes_per_peer.
        hard_limit = max_message_bytes + max_message_bytes // 4
        sock.setsockopt(zmq.MAXMSGSIZE, hard_limit)
        sock.setsockopt(
            zmq.RCVHWM, bus_limits.peer_hwm(hard_limit, rcvhwm, max_queued_bytes_per_peer)
        )
        if any(wire.is_ipv6_endpoint(ep) for ep in endpoints):
            sock.setsockopt(zmq.IPV6, 1)  # else tcp://[::1]:P cannot bind
        try:
            if curve is not None:
                from zmq.auth.thread import ThreadAuthenticator

                self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("zmq.auth"))
                self._auth.start()
                self.reload_keys()
                sock.curve_server = True
                sock.curve_publickey = curve.public
                sock.curve_secretkey = curve.secret
            self._monitor = sock.get_monitor_socket(
                zmq.EVENT_ACCEPTED
                | zmq.EVENT_DISCONNECTED
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            )
            self.endpoints = []
            for ep in endpoints:
                sock.bind(ep)
                # Report the bound address (resolves tcp://...:* to the chosen port).
                self.endpoints.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        except zmq.ZMQError as exc:
            self._teardown(sock)
            raise BusError(f"cannot bind {endpoints!r}: {exc}") from None
        self._sock = sock
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    # ---- daemon integration -----------------------------------------------------------

    @property
    def socket(self) -> zmq.Socket:
        """The ROUTER socket, for the daemon's own ``zmq.Poller``."""
        return self._sock

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    def fileno(self) -> int:
        """ZeroMQ's notification fd, for a selector loop. It is edge-triggered: when it
        fires, call ``drain()``, which reads until ZeroMQ has nothing queued. Also call
        ``drain()`` periodically (say every second): that sends pending acks and notices
        silent sensors even when no traffic wakes the loop::

            daemon.add_reader(collector.fileno(), lambda: handle(collector.drain()))
            daemon.add_periodic(1.0, lambda: handle(collector.drain()))
        """
        return int(self._sock.getsockopt(zmq.FD))

    def readable(self) -> bool:
        """A message is queued. Ask after sending (``commit``): the ``fileno`` fd is
        edge-triggered, and a send may take in what arrived without a new edge."""
        return bool(int(self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def drain(self, max_rounds: int = 64) -> list[wire.Batch]:
        """``poll(0)`` until the socket has nothing queued (bounded to ``max_rounds`` rounds
        of ``max_per_poll`` messages, so a flood cannot starve the caller's other work)."""
        out: list[wire.Batch] = []
        for _ in range(max_rounds):
            out.extend(self.poll(0))
            if not int(self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                break
        return out

    def reload_keys(self) -> None:
        """Re-read the authorised-keys directory (after adding or revoking a sensor)."""
        if self._auth is not None and self._curve is not None:
            self._auth.configure_curve(domain="*", location=str(self._curve.authorized_dir))

    # ---- receiving ----------------------------------------------------------------------

    def poll(self, timeout_ms: int = 0) -> list[wire.Batch]:
        """Acknowledge what the previous call returned, wait up to ``timeout_ms`` for
        traffic, read what is queued (at most ``max_per_poll`` messages) and return the new
        data batches, in order per sensor. Never raises on a bad message."""
        if self._closed:
            raise BusError("collector is closed")
        self.commit()
        out: list[wire.Batch] = []
        acks = self._acks
        events = dict(self._poller.poll(timeout_ms))
        if self._monitor in events:
            self._on_monitor()
        if self._sock in events or int(self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            for _ in range(self.max_per_poll):
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message(frames, out, acks)
        self._update_liveness()
        return out

    def commit(self) -> None:
        """Acknowledge every batch returned so far. ``poll()`` does this when called again:
        a caller that dies while handling a batch gets it redelivered by the sensor."""
        for rid, (session, ack, resend) in self._acks.items():
            try:
                self._sock.send_multipart([rid, wire.encode_ack(session, ack, resend)], zmq.NOBLOCK)
                self._c["acks_sent"] += 1
            except zmq.ZMQError:
                pass  # peer gone; it will resend after reconnecting
        self._acks.clear()

    def _on_message(
        self,
        frames: list[Any],
        out: list[wire.Batch],
        acks: dict[bytes, tuple[int, int, bool]],
    ) -> None:
        rid = frames[0].bytes
        try:
            batch = wire.decode(frames[1:], max_message_bytes=self.max_message_bytes)
        except FrameRejected as exc:
            self._reject(exc.reason, rid, exc.detail)
            return
        h = batch.header
        # With CURVE, the ZAP handler vouches for the sender's key: bind each sensor id to
        # the first key that used it, so one authorised sensor cannot pose as another.
        key = frames[1].get("User-Id") if self._curve is not None else ""
        st = self._sensors.get(h.sensor_id)
        now, mono = time.time(), time.monotonic()
        if st is not None and st.key != key:
            self._reject("impersonation", rid, f"sensor id {h.sensor_id!r} is bound to another key")
            return
        why = bus_limits.implausible(
            h, None if st is None or st.session != h.session else st.next_seq, wire.DATA
        )
        if why:
            self._reject("implausible", rid, f"sensor {h.sensor_id!r}: {why}")
            return
        if st is None:
            if not self._admit(h.sensor_id, key, rid, mono):
                return
            # Everything up to ``acked`` was settled with an earlier collector; anything
            # between it and ``base`` was evicted unacknowledged and counts as lost below.
            st = self._sensors[h.sensor_id] = SensorStatus(
                h.sensor_id, session=h.session, first_seen=now, key=key,
                next_seq=min(h.base, h.acked + 1),
            )  # fmt: skip
            log.info("sensor %s joined (session %x)", h.sensor_id, h.session,
                     extra=event("sensor.joined", sensor=h.sensor_id, session=f"{h.session:x}"))  # fmt: skip
        elif st.session != h.session:
            st.restarts += 1
            log.warning("sensor %s restarted (session %x -> %x)", h.sensor_id, st.session, h.session,
                        extra=event("sensor.restarted", sensor=h.sensor_id, old_session=f"{st.session:x}",
                                    session=f"{h.session:x}"))  # fmt: skip
            st.session, st.next_seq = h.session, min(h.base, h.acked + 1)
        st.last_seen, st.last_seen_mono = now, mono
        st.peer_address = _peer_ip(frames[1])
        st.heartbeat_s = h.heartbeat_s
        st.drops = dict(h.drops)
        if h.sent_ns:
            st.last_latency_s = max(0.0, now - h.sent_ns / 1e9)
        if h.base > st.next_seq:
            lost = h.base - st.next_seq
            st.gaps += 1
            st.lost_messages += lost
            self._c["gaps"] += 1
            self._c["lost_messages"] += lost
            log.warning(
                "sensor %s: sequence gap, messages %d..%d lost (sensor reports %d records "
                "dropped from its buffer so far)",
                h.sensor_id, st.next_seq, h.base - 1, h.drops.get("bus_dropped_records", 0),
            )  # fmt: skip
            st.next_seq = h.base
        resend = False
        st.stopped = False
        if h.kind == wire.HEARTBEAT:
            st.heartbeats += 1
            self._c["heartbeats"] += 1
        elif h.kind == wire.BYE:
            # Messages the sensor numbered but we never got are gone with it.
            unsent = max(0, h.next_seq - st.next_seq)
            st.lost_messages += unsent
            self._c["lost_messages"] += unsent
            st.next_seq = max(st.next_seq, h.next_seq)
            st.stopped, st.up = True, False
            # A clean stop is news, not trouble, unless data was left behind.
            (log.warning if unsent else log.info)(
                "sensor %s stopped (clean shutdown%s)", h.sensor_id,
                f", {unsent} messages never delivered" if unsent else "",
                extra=event("sensor.stopped", sensor=h.sensor_id, undelivered=unsent),
            )  # fmt: skip
        elif h.seq < st.next_seq:
            st.duplicates += 1
            self._c["duplicates"] += 1
        elif h.seq > st.next_seq:
            st.out_of_order += 1
            self._c["out_of_order"] += 1
            resend = True
        else:
            st.next_seq += 1
            st.received_messages += 1
            st.received_records += h.count
            st.received_bytes += batch.records.nbytes
            st.records_by_type[h.record_type] = st.records_by_type.get(h.record_type, 0) + h.count
            self._c["received_messages"] += 1
            self._c["received_records"] += h.count
            self._c["received_bytes"] += batch.records.nbytes
            out.append(batch)
        prev = acks.get(rid)
        acks[rid] = (h.session, st.next_seq - 1, resend or bool(prev and prev[2]))

    def _admit(self, sensor_id: str, key: str, rid: bytes, mono: float) -> bool:
        """Room for a new sensor id: per-key limit, then a full table forgets a silent or
        unauthenticated entry (``bus_limits.evictable``) or refuses the newcomer."""
        if key and sum(1 for s in self._sensors.values() if s.key == key) >= MAX_IDS_PER_KEY:
            self._reject(
                "sensor_limit", rid, f"CURVE key already holds {MAX_IDS_PER_KEY} sensor ids"
            )
            return False
        if len(self._sensors) >= self.max_sensors:
            victim = bus_limits.evictable(self._sensors, mono, bool(key))
            if victim is None:
                self._reject("sensor_limit", rid, f"more than {self.max_sensors} sensors")
                return False
            del self._sensors[victim]
            self._c["sensors_evicted"] += 1
            log.info("sensor table full: forgot sensor %s to admit %s", victim, sensor_id)
        return True

    def _reject(self, reason: str, rid: bytes, detail: str) -> None:
        self._rejected[reason] = self._rejected.get(reason, 0) + 1
        self._rlog.warning(
            reason, "rejected a bus message from peer %s: %s: %s", rid.hex(), reason, detail
        )

    def _on_monitor(self) -> None:
        while True:
            try:
                ev = wire.monitor_event(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            e = ev.event
            if e == zmq.EVENT_ACCEPTED:
                self._c["connections"] += 1
            elif e == zmq.EVENT_DISCONNECTED:
                # Also how ZeroMQ reports a peer cut off for a frame over MAXMSGSIZE.
                self._c["disconnects"] += 1
            elif e == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._c["auth_refused"] += 1
                self._rlog.warning(
                    "auth", "refused a sensor on %s: unknown CURVE key (ZAP status %s)",
                    ev.endpoint.decode(errors="replace"), ev.value,
                )  # fmt: skip
            else:
                self._c["handshake_failed"] += 1
                self._rlog.warning(
                    "handshake", "bus handshake failed on %s (%s)",
                    ev.endpoint.decode(errors="replace"), e,
                )  # fmt: skip

    def _is_up(self, st: SensorStatus, mono: float) -> bool:
        if st.stopped:
            return False
        limit = self.down_after if self.down_after is not None else 3.0 * st.heartbeat_s
        return mono - st.last_seen_mono <= limit

    def _update_liveness(self) -> None:
        mono = time.monotonic()
        for sid in bus_limits.expired(self._sensors, mono):
            del self._sensors[sid]
            self._c["sensors_expired"] += 1
            log.info("sensor %s forgotten: silent for over %.0f s", sid, bus_limits.EXPIRE_SILENT_S)
        for st in self._sensors.values():
            up = self._is_up(st, mono)
            if up != st.up:
                st.up = up
                if st.stopped:
                    continue  # already logged as a clean stop
                if up:
                    log.warning(
                        "sensor %s is up again",
                        st.sensor_id,
                        extra=event("sensor.up", sensor=st.sensor_id),
                    )
                else:
                    log.warning(
                        "sensor %s is down: silent for %.1f s",
                        st.sensor_id, mono - st.last_seen_mono,
                        extra=event("sensor.down", sensor=st.sensor_id, silent_s=round(mono - st.last_seen_mono, 1)),
                    )  # fmt: skip

    # ---- status -------------------------------------------------------------------------

    def sensors(self) -> dict[str, SensorStatus]:
        """A snapshot per sensor id (``up`` evaluated now)."""
        self._update_liveness()
        return {
            k: SensorStatus(**{**v.__dict__, "drops": dict(v.drops),
                               "records_by_type": dict(v.records_by_type)})
            for k, v in self._sensors.items()
        }  # fmt: skip

    def stats(self) -> dict[str, Any]:
        s: dict[str, Any] = dict(self._c)
        s["rejected"] = dict(self._rejected)
        s["rejected_total"] = sum(self._rejected.values())
        s["sensors"] = len(self._sensors)
        s["sensors_up"] = sum(1 for v in self.sensors().values() if v.up)
        return s

    # ---- shutdown -----------------------------------------------------------------------

    def _teardown(self, sock: zmq.Socket) -> None:
        mon = getattr(self, "_monitor", None)
        try:
            sock.disable_monitor()
        except zmq.ZMQError:
            pass
        if mon is not None:
            mon.close(0)
        sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._teardown(self._sock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
