"""The one versioned record schema shared by sensor and controller.

Every record type is a numpy structured dtype (``align=True``) mirrored field for field by a
C struct in ``netwarden/records/records.h``. The Cython hot path checks sizes and offsets against these
dtypes at import (see ``check_layout``), and every bus message carries ``SCHEMA_VERSION`` and
``dtype_hash`` so a controller never misreads a sensor built from another schema.

Bump ``SCHEMA_VERSION`` on any change to a dtype below.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SCHEMA_VERSION = 2  # 2: sensor + session identity in every record

#: Maximum stored lengths of fixed-size text fields (bytes, NUL padded).
HISTORY_LEN = 40
QNAME_LEN = 64
FIRST_PKTS = 16


class ConnState(enum.IntEnum):
    """Zeek's conn_state values (0 = unset)."""

    UNSET = 0
    S0 = 1
    S1 = 2
    SF = 3
    REJ = 4
    S2 = 5
    S3 = 6
    RSTO = 7
    RSTR = 8
    RSTOS0 = 9
    RSTRH = 10
    SH = 11
    SHR = 12
    OTH = 13


class TunnelType(enum.IntEnum):
    """Encapsulation an inner flow arrived in (Zeek's Tunnel::Type names)."""

    NONE = 0
    IP = 1  # IP-in-IP / 6in4 / 4in6
    GRE = 2  # includes ERSPAN carried over GRE
    VXLAN = 3
    GENEVE = 4
    GTPV1 = 5
    TEREDO = 6
    AYIYA = 7


class EndReason(enum.IntEnum):
    """Why a flow record was emitted."""

    ACTIVE = 0  # interim record of a still-live flow (active timeout)
    IDLE = 1  # inactivity timeout
    CLOSED = 2  # FIN/RST seen both ways (or RST) and a new connection reused the tuple
    EOF = 3  # end of input / shutdown flush
    EVICTED = 4  # flow table full, oldest flow evicted


class FlowFlags(enum.IntFlag):
    INTERIM = 1  # more records for this flow_id will follow
    FLIPPED = 2  # originator chosen by port heuristic / SYN-ACK, not by first packet
    BAD_CHECKSUM = 4  # at least one packet failed checksum validation (when enabled)
    FRAGMENTED = 8  # at least one packet was reassembled from IP fragments


#: Bit positions in ``*_flag_counts`` (TCP header flag order).
TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")

#: Bits of ``dns_qtype_mask``.
DNS_QTYPE_BITS = {
    1: 0,  # A
    2: 1,  # NS
    5: 2,  # CNAME
    6: 3,  # SOA
    10: 4,  # NULL
    12: 5,  # PTR
    15: 6,  # MX
    16: 7,  # TXT
    28: 8,  # AAAA
    33: 9,  # SRV
    35: 10,  # NAPTR
    43: 11,  # DS
    46: 12,  # RRSIG
    47: 13,  # NSEC
    48: 14,  # DNSKEY
    255: 15,  # ANY
    64: 16,  # SVCB
    65: 17,  # HTTPS
    99: 18,  # SPF
    252: 19,  # AXFR
}
DNS_QTYPE_OTHER_BIT = 31

FLOW_DTYPE = np.dtype(
    [
        ("flow_id", "<u8"),  # unique per engine run (sensor + session): uid, see identity
        ("parent_id", "<u8"),  # flow_id of the enclosing tunnel flow, 0 if none
        ("sensor", "<u8"),  # the sensor's identity: netwarden.records.identity.sensor_hash
        ("session", "<u8"),  # the engine run: start epoch (us) << 12 | worker, see identity
        ("ts_first_ns", "<i8"),
        ("ts_last_ns", "<i8"),
        ("orig_bytes", "<u8"),  # payload bytes (TCP: from sequence numbers)
        ("resp_bytes", "<u8"),
        ("missed_bytes", "<u8"),
        ("orig_pkts", "<u8"),
        ("resp_pkts", "<u8"),
        ("orig_ip_bytes", "<u8"),
        ("resp_ip_bytes", "<u8"),
        ("orig_len_mean", "<f8"),  # IP packet length statistics per direction
        ("orig_len_std", "<f8"),
        ("resp_len_mean", "<f8"),
        ("resp_len_std", "<f8"),
        ("orig_iat_min", "<f8"),  # inter-arrival times per direction, seconds
        ("orig_iat_max", "<f8"),
        ("orig_iat_mean", "<f8"),
        ("orig_iat_std", "<f8"),
        ("resp_iat_min", "<f8"),
        ("resp_iat_max", "<f8"),
        ("resp_iat_mean", "<f8"),
        ("resp_iat_std", "<f8"),
        ("orig_len_min", "<u4"),
        ("orig_len_max", "<u4"),
        ("resp_len_min", "<u4"),
        ("resp_len_max", "<u4"),
        ("orig_flag_counts", "<u4", (8,)),  # TCP_FLAG_NAMES order
        ("resp_flag_counts", "<u4", (8,)),
        ("dns_queries", "<u4"),
        ("dns_responses", "<u4"),
        ("dns_answers", "<u4"),  # sum of answer RR counts
        ("dns_distinct_names", "<u4"),
        ("dns_nxdomain", "<u4"),
        ("dns_qtype_mask", "<u4"),
        ("dns_label_entropy_max", "<f4"),  # Shannon entropy (bits/char) of the longest label
        ("dns_rcode_mask", "<u2"),
        ("dns_longest_label", "<u2"),
        ("dns_max_name_len", "<u2"),
        ("orig_port", "<u2"),  # ICMP: type
        ("resp_port", "<u2"),  # ICMP: code
        ("vlan", "<u2"),
        ("inner_vlan", "<u2"),
        ("first_sizes", "<u2", (FIRST_PKTS,)),  # IP lengths of the first packets
        ("first_dirs", "<u2"),  # bit i set: packet i went resp -> orig
        ("n_first", "u1"),
        ("ip_version", "u1"),  # 4 or 6
        ("proto", "u1"),  # IP protocol number
        ("conn_state", "u1"),  # ConnState
        ("tunnel_type", "u1"),  # TunnelType
        ("end_reason", "u1"),  # EndReason
        ("flags", "u1"),  # FlowFlags
        ("iface", "u1"),  # pcapng interface index / fanout worker
        ("orig_addr", "u1", (16,)),  # IPv4 in the first 4 bytes
        ("resp_addr", "u1", (16,)),
        ("orig_mac", "u1", (6,)),
        ("resp_mac", "u1", (6,)),
        ("history", f"S{HISTORY_LEN}"),
        ("dns_qname", f"S{QNAME_LEN}"),  # first query name seen (truncated)
    ],
    align=True,
)

ARP_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("sensor", "<u8"),  # the sensor's identity: netwarden.records.identity.sensor_hash
        ("session", "<u8"),  # the engine run: start epoch (us) << 12 | worker, see identity
        ("op", "<u2"),  # 1 request, 2 reply
        ("vlan", "<u2"),
        ("sender_mac", "u1", (6,)),
        ("target_mac", "u1", (6,)),
        ("eth_src", "u1", (6,)),  # Ethernet source, differs from sender_mac when forged
        ("sender_ip", "u1", (4,)),
        ("target_ip", "u1", (4,)),
        ("iface", "u1"),
    ],
    align=True,
)


def struct_fields(dtype: np.dtype) -> dict[str, tuple[np.dtype, int]]:
    """A structured dtype's fields as ``{name: (dtype, offset)}`` in order ({} for a plain dtype)."""
    fields: Mapping[str, tuple[Any, ...]] = dtype.fields or {}
    return {name: (fields[name][0], fields[name][1]) for name in dtype.names or ()}


def dtype_hash(dtype: np.dtype) -> str:
    """A short stable digest of a dtype's layout (names, formats, offsets, size)."""
    desc = repr((dtype.descr, dtype.itemsize, [off for _, off in struct_fields(dtype).values()]))
    return hashlib.sha256(desc.encode()).hexdigest()[:16]


RECORD_TYPES: dict[str, np.dtype] = {"flow": FLOW_DTYPE, "arp": ARP_DTYPE}


def check_layout(name: str, c_size: int, c_offsets: dict[str, int]) -> None:
    """Raise SchemaError unless a C struct matches the dtype ``RECORD_TYPES[name]``."""
    from netwarden.errors import SchemaError

    dt = RECORD_TYPES[name]
    if c_size != dt.itemsize:
        raise SchemaError(f"{name}: C struct is {c_size} bytes, dtype is {dt.itemsize}")
    fields = struct_fields(dt)
    for field, off in c_offsets.items():
        if field not in fields:
            raise SchemaError(f"{name}: C field {field!r} is not in the dtype")
        if fields[field][1] != off:
            raise SchemaError(f"{name}.{field}: C offset {off}, dtype offset {fields[field][1]}")


def addr_to_str(addr: np.ndarray | bytes, version: int) -> str:
    import ipaddress

    raw = bytes(addr)
    if version == 4:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw[:16]))


class PktEvent(enum.IntFlag):
    """Bits of ``PKTSUM_DTYPE.events``: what the flow engine learnt from one packet."""

    NEW_FLOW = 1  # this packet created a flow (src is its originator)
    REPLY = 2  # packet travels resp -> orig
    FIRST_REPLY = 4  # first packet ever seen from the responder of its flow
    ICMP_UNREACH = 8  # ICMP/ICMPv6 destination unreachable
    DNS_QUERY = 16
    DNS_RESPONSE = 32
    ARP = 64  # an ARP packet: src/dst hold sender/target IPv4, sport holds the op
    FLOW_END = 128  # this packet closed its flow (RST or final FIN)


#: Per-packet summary the engine fills for each fed batch (not sent on the bus). The
#: per-host telemetry consumes these arrays batch by batch, so it needs no hook inside
#: the decode loop and both backends share it.
PKTSUM_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("flow_id", "<u8"),  # 0 for ARP and undecodable packets
        ("ip_len", "<u4"),  # IP total length (wire length for ARP)
        ("payload_len", "<u4"),  # L4 payload bytes
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("ip_version", "u1"),  # 0: not IP
        ("proto", "u1"),
        ("tcp_flags", "u1"),
        ("events", "u1"),  # PktEvent bits
        ("src", "u1", (16,)),
        ("dst", "u1", (16,)),
    ],
    align=True,
)
RECORD_TYPES["pktsum"] = PKTSUM_DTYPE


# --- Per-host telemetry (sensor/telemetry/__init__.py) -------------------------------------------

#: Half-lives, in seconds, of the time-decayed statistics (index order of the [4] fields).
DECAY_HALF_LIVES = (0.1, 1.0, 10.0, 60.0)
#: Half-life of the decayed mean/std of the interval between new flows of a host pair.
FLOW_INTERVAL_HALF_LIFE = 600.0


class TelemetryFlags(enum.IntFlag):
    EVICTED = 1  # emitted early because the table needed the slot; the window is partial


#: One record per host (IP address) per window in which it sent or received anything.
#: ``out_*``: the host as packet source; ``in_*``: as packet destination. Distinct counts
#: are HyperLogLog estimates (256 registers, ~6.5% error) over the window. ``*_rate`` (pkt/s),
#: ``*_size_mean`` and ``*_size_std`` (IP bytes) are decayed statistics at the window end,
#: one per ``DECAY_HALF_LIVES`` entry, so a record says how the host behaves right now.
HOST_DTYPE = np.dtype(
    [
        ("ts_start_ns", "<i8"),  # window start
        ("ts_end_ns", "<i8"),  # window end (exclusive)
        ("ts_last_ns", "<i8"),  # last packet of this host
        ("ts_long_start_ns", "<i8"),  # start of the long window of the *_long counts
        ("sensor", "<u8"),  # the sensor's identity: netwarden.records.identity.sensor_hash
        ("session", "<u8"),  # the engine run: start epoch (us) << 12 | worker, see identity
        ("out_bytes", "<u8"),  # IP bytes
        ("in_bytes", "<u8"),
        ("out_payload", "<u8"),  # L4 payload bytes
        ("in_payload", "<u8"),
        ("in_udp_bytes", "<u8"),
        ("in_dns_bytes", "<u8"),  # IP bytes of DNS responses received (amplification)
        ("out_pkts", "<u4"),
        ("in_pkts", "<u4"),
        ("out_flows", "<u4"),  # flows this host originated
        ("in_flows", "<u4"),  # flows others originated towards it
        ("out_syn", "<u4"),  # TCP SYN without ACK
        ("in_syn", "<u4"),
        ("out_synack", "<u4"),
        ("in_synack", "<u4"),
        ("out_rst", "<u4"),
        ("in_rst", "<u4"),
        ("out_syn_noreply", "<u4"),  # out_syn minus first TCP replies received, >= 0
        ("in_syn_noreply", "<u4"),  # in_syn minus first TCP replies sent, >= 0
        ("out_unreach", "<u4"),  # ICMP destination unreachable sent
        ("in_unreach", "<u4"),  # ... received (UDP scans, dead targets)
        ("out_udp_pkts", "<u4"),
        ("in_udp_pkts", "<u4"),
        ("out_icmp_pkts", "<u4"),
        ("in_icmp_pkts", "<u4"),
        ("out_dst_hosts", "<u4"),  # distinct hosts in new flows + ARP requests it sent
        ("out_dst_ports", "<u4"),  # distinct destination ports of new flows it originated
        ("in_src_hosts", "<u4"),  # distinct sources of packets it received
        ("in_dst_ports", "<u4"),  # distinct local ports of new flows towards it
        ("out_dns_queries", "<u4"),
        ("in_dns_queries", "<u4"),
        ("out_dns_responses", "<u4"),
        ("in_dns_responses", "<u4"),
        ("arp_req_out", "<u4"),  # ARP requests sent (sender IP = this host)
        ("arp_rep_out", "<u4"),
        ("arp_req_in", "<u4"),  # ARP requests for this IP
        ("arp_rep_in", "<u4"),
        # The same distinct counts over the current long window (default 60 s, aligned to
        # multiples of it in packet time), so slow scans and sweeps add up.
        ("out_dst_hosts_long", "<u4"),
        ("out_dst_ports_long", "<u4"),
        ("in_src_hosts_long", "<u4"),
        ("out_rate", "<f4", (4,)),
        ("out_size_mean", "<f4", (4,)),
        ("out_size_std", "<f4", (4,)),
        ("in_rate", "<f4", (4,)),
        ("in_size_mean", "<f4", (4,)),
        ("in_size_std", "<f4", (4,)),
        ("addr", "u1", (16,)),  # IPv4 in the first 4 bytes
        ("ip_version", "u1"),
        ("flags", "u1"),  # TelemetryFlags
        ("iface", "u1"),  # fanout worker
    ],
    align=True,
)

#: One record per directed host pair (src -> dst) per window in which src sent to dst.
PAIR_DTYPE = np.dtype(
    [
        ("ts_start_ns", "<i8"),
        ("ts_end_ns", "<i8"),
        ("ts_last_ns", "<i8"),
        ("sensor", "<u8"),  # the sensor's identity: netwarden.records.identity.sensor_hash
        ("session", "<u8"),  # the engine run: start epoch (us) << 12 | worker, see identity
        ("bytes", "<u8"),
        ("payload", "<u8"),
        ("pkts", "<u4"),
        ("flows", "<u4"),  # new flows src originated towards dst
        ("rate", "<f4", (4,)),  # decayed, DECAY_HALF_LIVES
        ("size_mean", "<f4", (4,)),
        ("size_std", "<f4", (4,)),
        ("flow_interval_mean", "<f4"),  # s between new flows (beaconing), decayed, 0 if < 2
        ("flow_interval_std", "<f4"),
        ("src", "u1", (16,)),
        ("dst", "u1", (16,)),
        ("ip_version", "u1"),
        ("flags", "u1"),
        ("iface", "u1"),
    ],
    align=True,
)
RECORD_TYPES["host"] = HOST_DTYPE
RECORD_TYPES["pair"] = PAIR_DTYPE


@functools.cache
@functools.lru_cache(maxsize=64)
def padding_runs(dt: np.dtype) -> tuple[tuple[int, int], ...]:
    """``(offset, length)`` of every byte of a record that belongs to no field (alignment
    padding, also inside nested structs and arrays of structs)."""

    def used(d: np.dtype) -> np.ndarray:
        if d.names:
            m = np.zeros(d.itemsize, bool)
            for fdt, off in struct_fields(d).values():
                m[off : off + fdt.itemsize] |= used(fdt)
            return m
        if d.subdtype is not None:
            base, shape = d.subdtype
            return np.tile(used(base), int(np.prod(shape)))
        return np.ones(d.itemsize, bool)

    free = np.flatnonzero(~used(dt))
    if not len(free):
        return ()
    breaks = np.flatnonzero(np.diff(free) != 1) + 1
    return tuple((int(r[0]), len(r)) for r in np.split(free, breaks))


def join_records(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Record arrays of one dtype, end to end, in new memory copied byte for byte.
    ``np.concatenate`` and ``.copy()`` go field by field (concatenate first works out a
    common dtype in Python), which is slower and leaves the padding bytes of the new memory
    uninitialised: records handed on must compare, hash and archive the same every time."""
    out = np.empty(sum(len(p) for p in parts), parts[0].dtype)
    raw = out.view(np.uint8)
    at = 0
    for p in parts:
        b = np.ascontiguousarray(p).view(np.uint8).reshape(-1)
        raw[at : at + len(b)] = b
        at += len(b)
    return out


def copy_records(records: np.ndarray) -> np.ndarray:
    """A copy of a records array, byte for byte (``join_records`` of one part)."""
    return join_records([records])


def record_bytes(records: np.ndarray) -> bytes | bytearray:
    """The bytes of ``records`` as they go on the bus and into the archive.

    Padding bytes are whatever the memory held (``np.concatenate``, ``np.empty`` and slices of
    reused buffers leave them as they were), so they are zeroed here: the same records always
    give the same bytes, and no stale memory leaves the process. Types without padding are a
    plain copy; the others one copy plus a few strided stores, never a change to ``records``.
    """
    runs = padding_runs(records.dtype)
    src = np.ascontiguousarray(records)
    if not runs:
        return src.tobytes()
    out = bytearray(src.nbytes)
    rows = np.frombuffer(out, np.uint8).reshape(len(src), src.dtype.itemsize)
    rows[...] = src.view(np.uint8).reshape(rows.shape)
    for off, n in runs:
        rows[:, off : off + n] = 0
    return out


def record_view(records: np.ndarray) -> memoryview | bytes | bytearray:
    """The bytes of ``records`` as ``record_bytes`` gives them, without a copy when possible.

    For a records array the caller hands over (C-contiguous, writable): its padding bytes
    are zeroed in place and a byte view of its memory is returned, so the array must not
    change while the view is in use (a bus message holds the view until acknowledged).
    Anything else is copied by ``record_bytes``."""
    if not len(records) or not records.flags.c_contiguous or not records.flags.writeable:
        return record_bytes(records)
    rows = records.view(np.uint8).reshape(len(records), records.dtype.itemsize)
    for off, n in padding_runs(records.dtype):
        rows[:, off : off + n] = 0
    return rows.reshape(-1).data
