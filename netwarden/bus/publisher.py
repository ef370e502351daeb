"""Sensor side of the bus: a reliable, bounded, reconnecting sender of record batches.

Socket pattern: DEALER (sensor, connects) -> ROUTER (controller, binds), with
application-level acknowledgements. Why not the alternatives:

* PUB/SUB drops silently at the high-water mark and loses everything a subscriber misses
  while (re)joining; a controller restart would lose data with no trace.
* PUSH/PULL fans in well but is one-way: a message handed to ZeroMQ is gone from the
  sender's view even when it dies in the kernel buffer of a connection to a controller that
  just crashed. "A controller restart loses nothing within the buffer" needs the receiver to
  say what it has.
* DEALER/ROUTER fans in many sensors to one bound controller like PUSH/PULL, and the ROUTER
  can answer each sensor on the same connection: the collector acknowledges cumulatively by
  sequence number, the sensor keeps every unacknowledged message in a bounded local buffer
  and goes back to the oldest one after a reconnect or when acks stop (go-back-N). The
  collector drops duplicates by sequence number, so delivery is exactly-once to a running
  controller, and at-least-once across a controller restart (it acknowledges a batch only
  when its caller comes back for more, so a batch being handled when it died comes again).

Bounding: the local buffer holds at most ``buffer_bytes`` of record bytes. When it is full
the *oldest* messages are evicted (the freshest telemetry matters most when a controller
comes back); evicted records and batches are counted and reported in every header's drop
counters (``bus_dropped_records``, ``bus_dropped_batches``), and the header's ``base`` moves
past them so the collector records a sequence gap. Only ``window`` messages are in flight
unacknowledged at once, and ``ZMQ_IMMEDIATE`` keeps ZeroMQ from queueing into a connection
that is not up, so the local buffer, not ZeroMQ's queue, is where data waits.

A background thread owns the socket (ZeroMQ sockets are not thread-safe): it transmits,
reads acks, resends, and sends a heartbeat every ``heartbeat_s`` so a silent sensor shows as
down on the controller while a quiet one does not, and a ``bye`` on ``close()`` so a clean
stop is not mistaken for a failure. ``send()`` only copies the records into the buffer (or,
for records handed over, keeps a view of them) and wakes the thread, so the capture loop never blocks on the network; offline input (a pcap
read flat out) calls ``wait_for_room()`` first to slow down instead of evicting.

Limits: the collector's ``max_message_bytes`` must be at least the publisher's (a larger
frame makes ZeroMQ cut the connection); one ``sensor_id`` per running sensor.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import zmq

from netwarden.bus import wire
from netwarden.bus.curve import read_key_file
from netwarden.errors import BusError, ConfigError, FrameRejected
from netwarden.records.schema import RECORD_TYPES, record_view

log = logging.getLogger("netwarden.publisher")

#: File names inside a sensor's ``--curve-keys`` directory.
CLIENT_KEY_NAME = "sensor"
SERVER_PUBLIC_FILE = "server.key"

#: Frames at least this large are handed to ZeroMQ without a copy.
_ZERO_COPY_BYTES = 64 << 10


@dataclass(frozen=True)
class CurveClientKeys:
    """A sensor's CURVE key pair and the controller's public key (Z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> CurveClientKeys:
        """Load ``sensor.key_secret`` and ``server.key`` (files written by zmq.auth /
        ``netwarden keygen``)."""
        d = Path(directory)
        public, secret = read_key_file(d / f"{CLIENT_KEY_NAME}.key_secret", secret=True)
        server_public, _ = read_key_file(d / SERVER_PUBLIC_FILE, secret=False)
        return cls(public=public, secret=secret, server_public=server_public)


@dataclass
class _Pending:
    seq: int
    record_type: str
    body: bytes | bytearray | memoryview  # record bytes, padding zeroed (a view: no copy)
    count: int
    ts_first_ns: int
    ts_last_ns: int


class Publisher:
    """Send record batches to one collector endpoint.

    ``send(record_type, records)`` copies the records into the local buffer (splitting them
    so no message exceeds ``max_message_bytes``) and returns at once. ``set_counters()``
    publishes the capture side's cumulative loss counters in every header. ``close()`` waits
    up to ``timeout`` seconds for outstanding acks, then stops.

    Cost: one copy of the record bytes per batch (none with ``owned``: the message holds a
    view, ZeroMQ sends from it), one small msgpack header per transmission; nothing per
    record.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        sensor_id: str,
        curve: CurveClientKeys | None = None,
        heartbeat_s: float = 1.0,
        buffer_bytes: int = 64 << 20,
        max_message_bytes: int = 4 << 20,
        window: int = 64,
        resend_after_s: float = 2.0,
        sndhwm: int = 1000,
    ) -> None:
        wire.check_endpoint(endpoint)
        if not sensor_id or len(sensor_id) > wire.MAX_SENSOR_ID_LEN:
            raise ConfigError(f"sensor id must be 1..{wire.MAX_SENSOR_ID_LEN} characters")
        if not 0.01 <= heartbeat_s <= 3600:
            raise ConfigError(f"heartbeat interval must be in [0.01, 3600] s, got {heartbeat_s}")
        if max_message_bytes < 64 << 10:
            raise ConfigError("max_message_bytes must be at least 64 KiB")
        if buffer_bytes < max_message_bytes:
            raise ConfigError("buffer_bytes must be at least max_message_bytes")
        if window < 1 or resend_after_s <= 0:
            raise ConfigError("window must be >= 1 and resend_after_s > 0")
        self.endpoint = endpoint
        self.sensor_id = sensor_id
        self.heartbeat_s = float(heartbeat_s)
        self.buffer_bytes = buffer_bytes
        self.max_message_bytes = max_message_bytes
        self.window = window
        self.resend_after_s = resend_after_s
        # A new session id per run: the collector tells a restarted sensor from a gap.
        self.session = secrets.randbits(63) or 1

        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # signalled when acks free the buffer
        self._buf: deque[_Pending] = deque()
        self._buffered_bytes = 0
        self._next_seq = 1
        self._send_pos = 1  # next sequence number to transmit
        self._acked = 0  # every seq <= this is confirmed by the collector
        self._last_progress = time.monotonic()
        self._last_go_back = 0.0
        self._external: dict[str, int] = {}
        self._c = dict.fromkeys(
            (
                "batches", "records", "messages_sent", "bytes_sent", "resends",
                "heartbeats_sent", "acks", "reconnects", "disconnects",
                "bus_dropped_records", "bus_dropped_batches",
            ),
            0,
        )  # fmt: skip
        self._closing = False
        self._error: BaseException | None = None

        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)  # our buffer, not ZeroMQ's, keeps unacked data
        sock.setsockopt(zmq.SNDHWM, sndhwm)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
        sock.setsockopt(zmq.MAXMSGSIZE, 1 << 16)  # acks are tiny
        if wire.is_ipv6_endpoint(endpoint):
            sock.setsockopt(zmq.IPV6, 1)  # else tcp://[::1]:P never connects
        if curve is not None:
            sock.curve_publickey = curve.public
            sock.curve_secretkey = curve.secret
            sock.curve_serverkey = curve.server_public
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        )
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._monitor.close(0)
            sock.close(0)
            self._ctx.term()
            raise BusError(f"cannot connect to {endpoint!r}: {exc}") from None
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="netwarden-publisher", daemon=True)
        self._thread.start()

    # ---- producer side (any one thread) -------------------------------------------------

    def send(
        self,
        record_type: str,
        records: np.ndarray,
        drops: Mapping[str, int] | None = None,
        *,
        owned: bool = False,
    ) -> None:
        """Queue records for sending; never blocks on the network. ``drops`` (optional)
        updates the capture-side loss counters, as ``set_counters`` does. With ``owned``
        the caller hands ``records`` over: no copy is made (``schema.record_view``: padding
        zeroed in place, the buffer holds a view until acknowledged), so the caller must not
        change the array afterwards."""
        if self._closing:
            raise BusError("publisher is closed")
        if self._error is not None:
            raise BusError(f"publisher thread failed: {self._error!r}")
        if drops is not None:
            self.set_counters(drops)
        dt = RECORD_TYPES.get(record_type)
        if dt is None:
            raise ValueError(f"unknown record type {record_type!r}")
        if records.dtype != dt:
            raise ValueError(f"{record_type!r} records must have the schema dtype")
        if not len(records):
            return
        per_msg = max(1, (self.max_message_bytes - wire.MAX_HEADER_BYTES) // dt.itemsize)
        for start in range(0, len(records), per_msg):
            chunk = records[start : start + per_msg]
            t0, t1 = wire.time_span(chunk)
            body = record_view(chunk) if owned else wire.record_bytes(chunk)
            self._enqueue(record_type, body, len(chunk), t0, t1)
        self._wake()

    def set_counters(self, counters: Mapping[str, int]) -> None:
        """Cumulative capture-side loss counters (kernel_drops, decode_errors, ...)."""
        # Checked here: a header the collector would refuse would lose every message.
        if len(counters) > wire.MAX_DROP_COUNTERS - 2:
            raise ValueError(f"at most {wire.MAX_DROP_COUNTERS - 2} loss counters")
        ext = {str(k): int(v) for k, v in counters.items()}
        for k, v in ext.items():
            if len(k) > wire.MAX_COUNTER_NAME_LEN or not 0 <= v < 1 << 64:
                raise ValueError(f"loss counter {k!r}={v}: name too long or value out of range")
        with self._lock:
            self._external = ext

    def wait_for_room(self, nbytes: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s until ``nbytes`` more fit in the buffer without evicting.

        For offline input (a pcap read flat out) that should slow down rather than drop when
        the controller is slower; live capture never waits and lets the buffer evict.
        """
        nbytes = min(nbytes, self.buffer_bytes)
        deadline = time.monotonic() + timeout
        with self._room:
            while self._buffered_bytes + nbytes > self.buffer_bytes:
                left = deadline - time.monotonic()
                if left <= 0 or self._error is not None or self._closing:
                    return False
                self._room.wait(left)
        return True

    @property
    def dropped(self) -> int:
        """Records evicted from the local buffer unacknowledged (so far)."""
        return self._c["bus_dropped_records"]

    def stats(self) -> dict[str, int]:
        with self._lock:
            s = dict(self._c)
            s["buffered_messages"] = len(self._buf)
            s["buffered_bytes"] = self._buffered_bytes
            s["buffered_records"] = sum(p.count for p in self._buf)
            s["next_seq"] = self._next_seq
            s["acked_seq"] = self._acked
        return s

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every buffered message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._buf:
                    return True
            if self._closing or self._error is not None or not self._thread.is_alive():
                return False
            if time.monotonic() >= deadline:
                return False
            self._wake()
            time.sleep(0.005)

    def close(self, timeout: float = 5.0) -> int:
        """Flush for up to ``timeout`` seconds, stop, and return the records never acked."""
        if self._closing:
            return 0
        if timeout > 0:
            self.flush(timeout)
        self._closing = True
        with self._room:
            self._room.notify_all()
        self._wake()
        self._thread.join()
        with self._lock:
            left = sum(p.count for p in self._buf)
        wake_r, wake_w = self._wake_r, self._wake_w
        self._wake_r = self._wake_w = -1  # a closed fd number may be reused: never write it
        os.close(wake_r)
        os.close(wake_w)
        self._ctx.term()
        if left:
            log.warning("closing with %d records unacknowledged by %s", left, self.endpoint)
        return left

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (pipe full) or closing

    def _enqueue(
        self, rtype: str, body: bytes | bytearray | memoryview, count: int, t0: int, t1: int
    ) -> None:
        with self._lock:
            # Evict the oldest until the new message fits: bounded memory, fresh data kept.
            while self._buf and self._buffered_bytes + len(body) > self.buffer_bytes:
                old = self._buf.popleft()
                self._buffered_bytes -= len(old.body)
                self._c["bus_dropped_records"] += old.count
                self._c["bus_dropped_batches"] += 1
            p = _Pending(self._next_seq, rtype, body, count, t0, t1)
            self._next_seq += 1
            self._buf.append(p)
            self._buffered_bytes += len(body)
            self._c["batches"] += 1
            self._c["records"] += count
            self._send_pos = max(self._send_pos, self._buf[0].seq)

    def _base(self) -> int:
        return self._buf[0].seq if self._buf else self._next_seq

    def _drops(self) -> dict[str, int]:
        d = dict(self._external)
        d["bus_dropped_records"] = self._c["bus_dropped_records"]
        d["bus_dropped_batches"] = self._c["bus_dropped_batches"]
        return d

    def _transmit(self) -> None:
        with self._lock:
            while self._buf and self._send_pos < self._next_seq:
                first = self._buf[0].seq
                if self._send_pos - first >= self.window:
                    break
                p = self._buf[self._send_pos - first]
                h = wire.Header(
                    sensor_id=self.sensor_id,
                    session=self.session,
                    seq=p.seq,
                    base=first,
                    acked=self._acked,
                    record_type=p.record_type,
                    dtype_hash=wire.record_hash(p.record_type),
                    count=p.count,
                    ts_first_ns=p.ts_first_ns,
                    ts_last_ns=p.ts_last_ns,
                    next_seq=self._next_seq,
                    heartbeat_s=self.heartbeat_s,
                    drops=self._drops(),
                )
                try:
                    self._sock.send(wire.encode_header(h), zmq.SNDMORE | zmq.NOBLOCK)
                except zmq.Again:
                    break  # not connected or at the high-water mark: data waits here
                # After the first frame ZeroMQ guarantees the rest of the message goes.
                self._sock.send(p.body, 0, copy=len(p.body) < _ZERO_COPY_BYTES)
                self._send_pos += 1
                self._c["messages_sent"] += 1
                self._c["bytes_sent"] += len(p.body)

    def _control_header(self, kind: str) -> wire.Header:
        """A header-only message (heartbeat, bye) with the current session state."""
        with self._lock:
            return wire.Header(
                sensor_id=self.sensor_id,
                session=self.session,
                seq=0,
                base=self._base(),
                acked=self._acked,
                kind=kind,
                next_seq=self._next_seq,
                heartbeat_s=self.heartbeat_s,
                drops=self._drops(),
            )

    def _heartbeat(self) -> None:
        try:
            self._sock.send(wire.encode_header(self._control_header(wire.HEARTBEAT)), zmq.NOBLOCK)
            with self._lock:
                self._c["heartbeats_sent"] += 1
        except zmq.Again:
            pass  # nobody to tell; the collector marks us down by silence anyway

    def _bye(self) -> None:
        """Tell the collector this run ends: a clean stop, not a silent sensor."""
        try:
            self._sock.send(wire.encode_header(self._control_header(wire.BYE)), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _on_ack(self, raw: bytes) -> None:
        try:
            session, ack, rs = wire.decode_ack(raw)
        except FrameRejected:
            log.warning("ignoring a malformed ack from %s", self.endpoint)
            return
        if session != self.session:
            return  # an ack meant for this sensor's previous run
        with self._lock:
            self._c["acks"] += 1
            if ack > self._acked:
                self._acked = min(ack, self._next_seq - 1)
                while self._buf and self._buf[0].seq <= self._acked:
                    old = self._buf.popleft()
                    self._buffered_bytes -= len(old.body)
                self._room.notify_all()
                self._send_pos = max(self._send_pos, self._base())
                self._last_progress = time.monotonic()
            # The collector discarded an out-of-order message: resend now rather than
            # after the ack timeout, but at most once per quarter timeout (one go-back
            # covers everything the collector will complain about meanwhile).
            recent = time.monotonic() - self._last_go_back < self.resend_after_s / 4
            want_resend = type(rs) is int and self._send_pos > rs and not recent
        if want_resend:
            self._go_back("collector asked")

    def _go_back(self, why: str) -> None:
        """Resend from the oldest unacknowledged message."""
        with self._lock:
            if self._buf and self._send_pos > self._buf[0].seq:
                self._c["resends"] += self._send_pos - self._buf[0].seq
                log.info("resending %d messages (%s)", self._send_pos - self._buf[0].seq, why)
                self._send_pos = self._buf[0].seq
            self._last_progress = self._last_go_back = time.monotonic()

    def _on_monitor(self) -> None:
        while True:
            try:
                ev = wire.monitor_event(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if ev.event == zmq.EVENT_DISCONNECTED:
                self._c["disconnects"] += 1
                log.warning("bus: disconnected from %s", self.endpoint)
            elif ev.event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self._c["disconnects"]:
                    self._c["reconnects"] += 1
                    log.warning("bus: reconnected to %s", self.endpoint)
                # Whatever was in flight on the old connection may be gone with it.
                self._go_back("connection (re)established")
                self._heartbeat()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_hb = time.monotonic()
        try:
            while not self._closing:
                now = time.monotonic()
                if now >= next_hb:
                    self._heartbeat()
                    next_hb = now + self.heartbeat_s
                with self._lock:
                    stalled = bool(self._buf) and now - self._last_progress > self.resend_after_s
                if stalled:
                    self._go_back("no acknowledgement")
                self._transmit()
                wait = max(0.0, min(next_hb - now, self.resend_after_s / 4))
                for sock, _ in poller.poll(int(wait * 1000)):
                    if sock is self._sock:
                        while True:
                            try:
                                self._on_ack(self._sock.recv(zmq.NOBLOCK))
                            except zmq.Again:
                                break
                    elif sock is self._monitor:
                        self._on_monitor()
                    else:
                        try:
                            while os.read(self._wake_r, 4096):
                                pass
                        except BlockingIOError:
                            pass
        except BaseException as exc:  # keep the reason for flush()/close() callers
            self._error = exc
            log.exception("publisher thread stopped")
        finally:
            linger = 0
            if self._closing and self._error is None:
                self._bye()
                linger = 500  # let the goodbye (and anything queued before it) leave
            self._sock.disable_monitor()
            self._monitor.close(0)
            self._sock.close(linger)
