"""Per-host telemetry, pure-Python reference: the slow, obvious twin of ``_telemetry.pyx``.

Consumes the ``PKTSUM_DTYPE`` rows the flow engine fills for each batch and keeps two fixed
tables (hosts, directed host pairs). Every ``window`` seconds of packet time it emits one
``HOST_DTYPE`` record per active host and one ``PAIR_DTYPE`` record per active pair.

Both backends must give identical records, so everything here is spelt out the way the
C code does it: the same 64-bit hash, the same table probing and eviction order, the same
floating-point operations in the same order.

What a packet summary adds (``out_*`` to its source host, ``in_*`` to its destination, and
the directed pair): packets, IP and payload bytes, per-protocol counts, TCP SYN / SYN-ACK /
RST, first TCP replies (for "SYN without reply"), ICMP unreachables, DNS queries and
responses. A new flow (``NEW_FLOW``) also feeds the distinct-count sketches: destination
hosts and ports of its originator, local ports of its responder; every packet feeds the
destination's distinct-sources sketch. ARP packets only touch ARP counters (and a sweeping
sender's distinct destination hosts). Sketches are HyperLogLog with 256 registers; window
sketches restart every window, ``*_long`` ones every ``long_window``.

Decayed statistics are kept relative to a landmark, the start of the 1 s epoch of their
latest packet: a packet at ``x`` seconds into its epoch adds ``2^(x/h)`` (the same for every
entry it touches, so computed once per packet), and an entry's sums are scaled down by
``2^(-k/h)`` when it is next touched ``k`` epochs later. The value at time ``t`` is the
sum times ``2^(-(t - landmark)/h)``: the same exponentially weighted count as decaying at
every packet, for a few ``exp2`` per packet instead of one per half-life per entry.
A packet older than the entry's latest one counts as if it came at that latest time.

Tables: open addressing, power-of-two capacity, a key may sit in one of ``PROBE`` slots
after its hash. Insertion takes the first free slot in that range, else evicts the entry
seen least recently (its partial window is emitted first, flagged EVICTED, and counted).
An entry idle for ``idle_timeout`` before the start of a window that closed is expired:
free for reuse from then on (found as free when next probed; ``stats()`` counts it as
expired at once). Active entries are emitted at a window's end in slot order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from netwarden.records.schema import (
    DECAY_HALF_LIVES,
    FLOW_INTERVAL_HALF_LIFE,
    HOST_DTYPE,
    PAIR_DTYPE,
    PKTSUM_DTYPE,
    PktEvent,
    TelemetryFlags,
    struct_fields,
)

M64 = (1 << 64) - 1
PROBE = 16
HLL_P = 8
HLL_M = 1 << HLL_P
NDECAY = len(DECAY_HALF_LIVES)
SALT_HOST = 0x51ED27A1C3B5F00D
SALT_PORT = 0x2545F4914F6CDD1D
GOLDEN = 0x9E3779B97F4A7C15
LN2 = math.log(2.0)
#: Decayed sums are relative to the start of an epoch of this length (see the module doc).
EPOCH_NS = 1_000_000_000

EMPTY, USED = 0, 1

_NEW_FLOW = int(PktEvent.NEW_FLOW)
_FIRST_REPLY = int(PktEvent.FIRST_REPLY)
_UNREACH = int(PktEvent.ICMP_UNREACH)
_DNS_Q = int(PktEvent.DNS_QUERY)
_DNS_R = int(PktEvent.DNS_RESPONSE)
_ARP = int(PktEvent.ARP)

#: Window counters of a host, in HOST_DTYPE field order (the C struct mirrors this list).
HOST_COUNTERS = (
    "out_bytes",
    "in_bytes",
    "out_payload",
    "in_payload",
    "in_udp_bytes",
    "in_dns_bytes",
    "out_pkts",
    "in_pkts",
    "out_flows",
    "in_flows",
    "out_syn",
    "in_syn",
    "out_synack",
    "in_synack",
    "out_rst",
    "in_rst",
    "out_unreach",
    "in_unreach",
    "out_udp_pkts",
    "in_udp_pkts",
    "out_icmp_pkts",
    "in_icmp_pkts",
    "out_dns_queries",
    "in_dns_queries",
    "out_dns_responses",
    "in_dns_responses",
    "arp_req_out",
    "arp_rep_out",
    "arp_req_in",
    "arp_rep_in",
    "out_tcp_replies",
    "in_tcp_replies",
)


U32 = 0xFFFFFFFF
#: Counters saturate at their field's maximum rather than wrap.
_LIMIT = {
    n: (M64 if struct_fields(HOST_DTYPE)[n][0].itemsize == 8 else U32) for n in HOST_COUNTERS[:-2]
}


def mix64(z: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit mix."""
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def addr_hash(addr: bytes, version: int) -> int:
    a = int.from_bytes(addr[0:8], "little")
    b = int.from_bytes(addr[8:16], "little")
    return mix64(a ^ mix64(b ^ ((version * GOLDEN) & M64)))


def pair_hash(hs: int, hd: int) -> int:
    return mix64(hs ^ ((hd * GOLDEN + 1) & M64))


class Hll:
    """HyperLogLog with 256 one-byte registers. The sum of 2^-register and the number of
    empty registers are kept up to date on every change, so an estimate costs O(1) (a
    flood evicts a host per packet, and each eviction emits an estimate)."""

    __slots__ = ("regs", "z", "zeros")

    def __init__(self) -> None:
        self.regs = bytearray(HLL_M)
        self.z = float(HLL_M)
        self.zeros = HLL_M

    def reset(self) -> None:
        self.regs[:] = bytes(HLL_M)
        self.z = float(HLL_M)
        self.zeros = HLL_M

    def add(self, x: int) -> None:
        x = mix64(x)
        idx = x & (HLL_M - 1)
        w = x >> HLL_P
        rank = ((w & -w).bit_length()) if w else 64 - HLL_P + 1
        old = self.regs[idx]
        if rank > old:
            self.z = self.z - math.ldexp(1.0, -old) + math.ldexp(1.0, -rank)
            if old == 0:
                self.zeros -= 1
            self.regs[idx] = rank

    def estimate(self) -> int:
        if self.zeros == HLL_M:
            return 0
        m = float(HLL_M)
        est = (0.7213 / (1.0 + 1.079 / m)) * m * m / self.z
        if est <= 2.5 * m and self.zeros > 0:
            est = m * math.log(m / self.zeros)
        est = min(est, 4e9)
        return int(est + 0.5)


def gains(x_ns: int) -> list[float]:
    """``2^(x/h)`` per half-life: the weight of a packet ``x_ns`` after its epoch's start."""
    x = x_ns * 1e-9
    return [math.exp2(x / h) for h in DECAY_HALF_LIVES]


def decays(x_ns: int) -> list[float]:
    """``2^(-x/h)`` per half-life: what ``x_ns`` of time leaves of a decayed sum."""
    x = x_ns * 1e-9
    return [math.exp2(-x / h) for h in DECAY_HALF_LIVES]


def packet_gains(ts: int) -> list[float]:
    """The weights of a packet at ``ts`` in its own epoch (shared by the entries it touches)."""
    return gains(ts - (ts // EPOCH_NS) * EPOCH_NS)


class Decay:
    """Decayed count, linear sum and squared sum of packet sizes for each half-life, scaled
    to the start of ``epoch`` (see the module docstring)."""

    __slots__ = ("epoch", "ls", "ss", "t", "w")

    def __init__(self) -> None:
        self.w = [0.0] * NDECAY
        self.ls = [0.0] * NDECAY
        self.ss = [0.0] * NDECAY
        self.t = 0  # latest packet time added (0: none yet)
        self.epoch = 0

    def add(self, ts: int, size: float, g: list[float]) -> None:
        """Add a packet of ``size`` at ``ts``; ``g`` is ``packet_gains(ts)``."""
        if self.t and ts < self.t:  # late: counted at the latest time seen
            ts = self.t
            g = packet_gains(ts)
        e = ts // EPOCH_NS
        if not self.t:
            self.epoch = e
        elif e > self.epoch:
            f = decays((e - self.epoch) * EPOCH_NS)
            for i in range(NDECAY):
                self.w[i] *= f[i]
                self.ls[i] *= f[i]
                self.ss[i] *= f[i]
            self.epoch = e
        for i in range(NDECAY):
            self.w[i] += g[i]
            self.ls[i] += g[i] * size
            self.ss[i] += g[i] * size * size
        self.t = ts

    def write(self, now: int, rate: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        at = max(self.t, now)
        f = decays(at - self.epoch * EPOCH_NS)
        for i in range(NDECAY):
            h = DECAY_HALF_LIVES[i]
            w = self.w[i]
            rate[i] = w * f[i] * LN2 / h
            if w > 0.0:
                mu = self.ls[i] / w
                var = self.ss[i] / w - mu * mu
                mean[i] = mu
                std[i] = math.sqrt(var) if var > 0.0 else 0.0
            else:
                mean[i] = 0.0
                std[i] = 0.0


class Host:
    __slots__ = (
        "active",
        "addr",
        "c",
        "din",
        "dout",
        "dst_hosts",
        "dst_ports",
        "in_ports",
        "key",
        "last",
        "long",
        "src_hosts",
        "version",
    )

    def __init__(self, key: int, addr: bytes, version: int) -> None:
        self.key = key
        self.addr = addr
        self.version = version
        self.last = 0
        self.c = dict.fromkeys(HOST_COUNTERS, 0)
        self.dst_hosts = Hll()
        self.dst_ports = Hll()
        self.src_hosts = Hll()
        self.in_ports = Hll()
        self.long = (Hll(), Hll(), Hll())  # dst_hosts, dst_ports, src_hosts over long_window
        self.dout = Decay()
        self.din = Decay()
        self.active = False

    def reset_window(self) -> None:
        self.c = dict.fromkeys(HOST_COUNTERS, 0)
        for sketch in (self.dst_hosts, self.dst_ports, self.src_hosts, self.in_ports):
            sketch.reset()
        self.active = False


class Pair:
    __slots__ = (
        "active",
        "bytes",
        "dec",
        "dst",
        "fi_ls",
        "fi_ss",
        "fi_t",
        "fi_w",
        "flows",
        "key",
        "last",
        "last_flow",
        "payload",
        "pkts",
        "src",
        "version",
    )

    def __init__(self, key: int, src: bytes, dst: bytes, version: int) -> None:
        self.key = key
        self.src = src
        self.dst = dst
        self.version = version
        self.last = 0
        self.pkts = self.bytes = self.payload = self.flows = 0
        self.dec = Decay()
        self.fi_w = self.fi_ls = self.fi_ss = 0.0
        self.fi_t = 0
        self.last_flow = 0
        self.active = False

    def reset_window(self) -> None:
        self.pkts = self.bytes = self.payload = self.flows = 0
        self.active = False

    def new_flow(self, ts: int) -> None:
        if self.last_flow and ts > self.last_flow:
            iv = (ts - self.last_flow) * 1e-9
            dt = (ts - self.fi_t) * 1e-9 if self.fi_t and ts > self.fi_t else 0.0
            f = 2.0 ** (-dt / FLOW_INTERVAL_HALF_LIFE)
            self.fi_w = self.fi_w * f + 1.0
            self.fi_ls = self.fi_ls * f + iv
            self.fi_ss = self.fi_ss * f + iv * iv
            self.fi_t = ts
        self.last_flow = max(self.last_flow, ts)


class _Table:
    """Fixed open-addressing table; see the module docstring for the probing rules."""

    def __init__(self, capacity: int) -> None:
        self.cap = capacity
        self.state = [EMPTY] * capacity
        self.slots: list[Any] = [None] * capacity
        self.used: set[int] = set()  # USED slots (expired ones included until reused)
        self.active: set[int] = set()  # slots whose entry became active this window
        self.dead_before = -(1 << 62)  # entries with last < this are expired

    def dead(self, s: int) -> bool:
        return bool(self.state[s] == USED and self.slots[s].last < self.dead_before)

    def find(self, key: int, match: Any, protect: int = -1) -> tuple[int, bool]:
        """(slot, found). When not found, slot is where to insert and may hold a victim;
        slot ``protect`` (the source host of the packet being counted) is never a victim."""
        mask = self.cap - 1
        free = -1
        oldest = -1
        for j in range(PROBE):
            s = (key + j) & mask
            st = self.state[s]
            if st == EMPTY:
                return (free if free >= 0 else s), False
            if self.dead(s):  # expired: free for reuse
                if free < 0:
                    free = s
                continue
            e = self.slots[s]
            if e.key == key and match(e):
                return s, True
            if s != protect and (oldest < 0 or e.last < self.slots[oldest].last):
                oldest = s
        return (free if free >= 0 else oldest), False

    def put(self, s: int, entry: Any) -> None:
        self.slots[s] = entry
        self.state[s] = USED
        self.used.add(s)

    def touch(self, s: int, e: Any, ts: int) -> None:
        """Entry ``e`` in slot ``s`` saw a packet at ``ts``."""
        if not e.active:
            e.active = True
            self.active.add(s)
        e.last = max(e.last, ts)

    def expired_now(self) -> int:
        return sum(1 for s in self.used if self.dead(s))


class HostTelemetry:
    """Reference implementation; see ``sensor.telemetry`` for the public entry point."""

    def __init__(self, config: Any) -> None:
        self.window_ns = round(config.window * 1e9)
        self.long_ns = round(config.long_window * 1e9)
        self.cur_long = -1  # current long window index
        self.idle_ns = round(config.idle_timeout * 1e9)
        self.iface = int(config.iface) & 0xFF
        self.hosts = _Table(config.host_capacity)
        self.pairs = _Table(config.pair_capacity)
        self.cur = -1  # current window index (ts // window_ns)
        self.evictions = 0
        self.pair_evictions = 0
        self.host_partial = 0  # evictions of hosts active in the window (EVICTED records)
        self.pair_partial = 0
        self.expired = 0  # expired entries whose slot was reused
        self.packets = 0
        self._host_out: list[np.ndarray] = []
        self._pair_out: list[np.ndarray] = []

    # -- tables ---------------------------------------------------------------------------
    def _reclaim(self, table: _Table, s: int, ts: int) -> None:
        """Slot ``s`` is about to get a new entry: count what was there (an expired entry,
        or a live one evicted, whose partial window is emitted first)."""
        if table.state[s] != USED:
            return
        if table.dead(s):
            self.expired += 1
            return
        victim = table.slots[s]
        hosts = table is self.hosts
        if victim.active:
            if hosts:
                self._emit_host(victim, int(TelemetryFlags.EVICTED), ts)
                self.host_partial += 1
            else:
                self._emit_pair(victim, int(TelemetryFlags.EVICTED), ts)
                self.pair_partial += 1
        if hosts:
            self.evictions += 1
        else:
            self.pair_evictions += 1

    def _host(self, addr: bytes, version: int, ts: int, protect: int = -1) -> tuple[Host, int]:
        key = addr_hash(addr, version)
        s, found = self.hosts.find(key, lambda e: e.addr == addr and e.version == version, protect)
        if found:
            return self.hosts.slots[s], s
        self._reclaim(self.hosts, s, ts)
        h = Host(key, addr, version)
        h.last = max(ts, 0)  # not expired before it is counted
        self.hosts.put(s, h)
        return h, s

    def _pair(
        self, hs: int, hd: int, src: bytes, dst: bytes, version: int, ts: int
    ) -> tuple[Pair, int]:
        key = pair_hash(hs, hd)
        s, found = self.pairs.find(
            key, lambda e: e.src == src and e.dst == dst and e.version == version
        )
        if found:
            return self.pairs.slots[s], s
        self._reclaim(self.pairs, s, ts)
        p = Pair(key, src, dst, version)
        p.last = max(ts, 0)
        self.pairs.put(s, p)
        return p, s

    # -- records --------------------------------------------------------------------------
    def _bounds(self) -> tuple[int, int]:
        start = self.cur * self.window_ns
        return start, start + self.window_ns

    def _emit_host(self, h: Host, flags: int, now: int) -> None:
        arr = np.zeros(1, HOST_DTYPE)
        r = arr[0]
        start, end = self._bounds()
        r["ts_start_ns"], r["ts_end_ns"], r["ts_last_ns"] = start, end, h.last
        c = h.c
        for name in HOST_COUNTERS[:-2]:
            r[name] = min(c[name], _LIMIT[name])
        r["out_syn_noreply"] = max(0, c["out_syn"] - c["in_tcp_replies"])
        r["in_syn_noreply"] = max(0, c["in_syn"] - c["out_tcp_replies"])
        r["out_dst_hosts"] = h.dst_hosts.estimate()
        r["out_dst_ports"] = h.dst_ports.estimate()
        r["in_src_hosts"] = h.src_hosts.estimate()
        r["in_dst_ports"] = h.in_ports.estimate()
        r["out_dst_hosts_long"] = h.long[0].estimate()
        r["out_dst_ports_long"] = h.long[1].estimate()
        r["in_src_hosts_long"] = h.long[2].estimate()
        r["ts_long_start_ns"] = self.cur_long * self.long_ns
        at = min(now, end)
        h.dout.write(at, r["out_rate"], r["out_size_mean"], r["out_size_std"])
        h.din.write(at, r["in_rate"], r["in_size_mean"], r["in_size_std"])
        r["addr"] = np.frombuffer(h.addr, np.uint8)
        r["ip_version"], r["flags"], r["iface"] = h.version, flags, self.iface
        self._host_out.append(arr)
        h.reset_window()

    def _emit_pair(self, p: Pair, flags: int, now: int) -> None:
        arr = np.zeros(1, PAIR_DTYPE)
        r = arr[0]
        start, end = self._bounds()
        r["ts_start_ns"], r["ts_end_ns"], r["ts_last_ns"] = start, end, p.last
        r["bytes"], r["payload"] = p.bytes, p.payload
        r["pkts"], r["flows"] = min(p.pkts, U32), min(p.flows, U32)
        p.dec.write(min(now, end), r["rate"], r["size_mean"], r["size_std"])
        if p.fi_w > 0.0:
            mu = p.fi_ls / p.fi_w
            var = p.fi_ss / p.fi_w - mu * mu
            r["flow_interval_mean"] = mu
            r["flow_interval_std"] = math.sqrt(var) if var > 0.0 else 0.0
        r["src"] = np.frombuffer(p.src, np.uint8)
        r["dst"] = np.frombuffer(p.dst, np.uint8)
        r["ip_version"], r["flags"], r["iface"] = p.version, flags, self.iface
        self._pair_out.append(arr)
        p.reset_window()

    def _close_window(self) -> None:
        """Emit every active entry in slot order; entries idle for ``idle_timeout`` before
        this window's start are expired from now on."""
        start, end = self._bounds()
        for table, emit in ((self.hosts, self._emit_host), (self.pairs, self._emit_pair)):
            for s in sorted(table.active):
                e = table.slots[s]
                if e.active:
                    emit(e, 0, end)
            table.active.clear()
            table.dead_before = max(table.dead_before, start - self.idle_ns)

    def _set_window(self, w: int) -> None:
        """Make ``w`` the current window; a new long window starts the long sketches over."""
        self.cur = w
        lw = (w * self.window_ns) // self.long_ns
        if lw != self.cur_long:
            if self.cur_long >= 0:
                for s in self.hosts.used:
                    for sketch in self.hosts.slots[s].long:
                        sketch.reset()
            self.cur_long = lw

    def _roll(self, ts: int) -> None:
        w = ts // self.window_ns
        if self.cur < 0:
            self._set_window(w)
        elif w > self.cur:
            self._close_window()
            self._set_window(w)

    # -- public API -----------------------------------------------------------------------
    def update(self, pktsum: np.ndarray, n: int) -> None:
        """Account ``pktsum[:n]`` (PKTSUM_DTYPE rows from ``engine.feed``)."""
        if pktsum.dtype != PKTSUM_DTYPE:
            raise TypeError("update() needs a PKTSUM_DTYPE array")
        if not 0 <= n <= len(pktsum):
            raise ValueError("n is out of range for pktsum")
        for i in range(int(n)):
            self._packet(pktsum[i])

    def _packet(self, r: Any) -> None:
        ev = int(r["events"])
        ver = int(r["ip_version"])
        ts = int(r["ts_ns"])
        if not ev & _ARP and ver not in (4, 6):
            return
        self._roll(ts)
        self.packets += 1
        src = bytes(r["src"])
        dst = bytes(r["dst"])
        if ev & _ARP:
            op = int(r["sport"])
            slot = -1
            if src[:4] != b"\0\0\0\0":
                s, slot = self._host(src, 4, ts)
                self.hosts.touch(slot, s, ts)
                if op == 1:
                    s.c["arp_req_out"] += 1
                    s.dst_hosts.add(addr_hash(dst, 4) ^ SALT_HOST)
                    s.long[0].add(addr_hash(dst, 4) ^ SALT_HOST)
                elif op == 2:
                    s.c["arp_rep_out"] += 1
            if dst[:4] != b"\0\0\0\0":
                d, dslot = self._host(dst, 4, ts, slot)
                self.hosts.touch(dslot, d, ts)
                if op == 1:
                    d.c["arp_req_in"] += 1
                elif op == 2:
                    d.c["arp_rep_in"] += 1
            return
        ip_len = int(r["ip_len"])
        payload = int(r["payload_len"])
        proto = int(r["proto"])
        flags = int(r["tcp_flags"])
        dport = int(r["dport"])
        hs = addr_hash(src, ver)
        hd = addr_hash(dst, ver)
        s, slot = self._host(src, ver, ts)
        d, dslot = self._host(dst, ver, ts, slot)
        p, pslot = self._pair(hs, hd, src, dst, ver, ts)
        sc, dc = s.c, d.c
        self.hosts.touch(slot, s, ts)
        self.hosts.touch(dslot, d, ts)
        self.pairs.touch(pslot, p, ts)
        sc["out_pkts"] += 1
        dc["in_pkts"] += 1
        sc["out_bytes"] += ip_len
        dc["in_bytes"] += ip_len
        sc["out_payload"] += payload
        dc["in_payload"] += payload
        p.pkts += 1
        p.bytes += ip_len
        p.payload += payload
        if proto == 6:
            if flags & 0x02:
                if flags & 0x10:
                    sc["out_synack"] += 1
                    dc["in_synack"] += 1
                else:
                    sc["out_syn"] += 1
                    dc["in_syn"] += 1
            if flags & 0x04:
                sc["out_rst"] += 1
                dc["in_rst"] += 1
            if ev & _FIRST_REPLY:
                sc["out_tcp_replies"] += 1
                dc["in_tcp_replies"] += 1
        elif proto == 17:
            sc["out_udp_pkts"] += 1
            dc["in_udp_pkts"] += 1
            dc["in_udp_bytes"] += ip_len
        elif proto == 1 or proto == 58:
            sc["out_icmp_pkts"] += 1
            dc["in_icmp_pkts"] += 1
        if ev & _UNREACH:
            sc["out_unreach"] += 1
            dc["in_unreach"] += 1
        if ev & _NEW_FLOW:
            sc["out_flows"] += 1
            dc["in_flows"] += 1
            s.dst_hosts.add(hd ^ SALT_HOST)
            s.dst_ports.add(dport + SALT_PORT)
            d.in_ports.add(dport + SALT_PORT)
            s.long[0].add(hd ^ SALT_HOST)
            s.long[1].add(dport + SALT_PORT)
            p.flows += 1
            p.new_flow(ts)
        d.src_hosts.add(hs ^ SALT_HOST)
        d.long[2].add(hs ^ SALT_HOST)
        if ev & _DNS_Q:
            sc["out_dns_queries"] += 1
            dc["in_dns_queries"] += 1
        if ev & _DNS_R:
            sc["out_dns_responses"] += 1
            dc["in_dns_responses"] += 1
            dc["in_dns_bytes"] += ip_len
        g = packet_gains(ts)
        s.dout.add(ts, float(ip_len), g)
        d.din.add(ts, float(ip_len), g)
        p.dec.add(ts, float(ip_len), g)

    def advance(self, now_ns: int) -> None:
        """Close the current window if ``now_ns`` (network time) is past its end."""
        if self.cur >= 0 and now_ns // self.window_ns > self.cur:
            self._close_window()
            self._set_window(now_ns // self.window_ns)

    def flush(self) -> None:
        """End of input: emit the current (partial) window."""
        if self.cur >= 0:
            self._close_window()

    def drain(self) -> list[tuple[str, np.ndarray]]:
        """Records emitted since the last call, as ``[("host", a), ("pair", b)]``."""
        out = []
        for kind, parts, dt in (
            ("host", self._host_out, HOST_DTYPE),
            ("pair", self._pair_out, PAIR_DTYPE),
        ):
            out.append((kind, np.concatenate(parts) if parts else np.zeros(0, dt)))
            parts.clear()
        return out

    def stats(self) -> dict[str, int]:
        """Counters; ``hosts``/``pairs`` are the live entries (occupancy of ``*_capacity``),
        ``*_evictions`` live entries pushed out of a full probe range, ``*_partial`` those of
        them that were active (their window went out early, flagged EVICTED), ``expired``
        entries idle for ``idle_timeout``."""
        dead_h, dead_p = self.hosts.expired_now(), self.pairs.expired_now()
        return {
            "packets": self.packets,
            "hosts": len(self.hosts.used) - dead_h,
            "pairs": len(self.pairs.used) - dead_p,
            "host_capacity": self.hosts.cap,
            "pair_capacity": self.pairs.cap,
            "host_evictions": self.evictions,
            "pair_evictions": self.pair_evictions,
            "host_partial": self.host_partial,
            "pair_partial": self.pair_partial,
            "expired": self.expired + dead_h + dead_p,
        }
