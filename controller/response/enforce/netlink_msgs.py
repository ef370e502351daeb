"""Hand-packed nf_tables netlink messages and a small batch socket.

Why not pyroute2's message classes for everything: its high-level set helpers are broken in
0.9.7 (see KERNEL_NOTES) and its generic encoder costs ~58 us per set element, which makes a
100k-ban commit take seconds. The nf_tables wire format is small and stable (linux
``include/uapi/linux/netfilter/nf_tables.h``); packing it with ``struct`` costs ~2 us per
element. pyroute2 still reads the table/chain/set schema back in ``nftables.py`` as an
independent check.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netwarden.errors import EnforcementError

# --- netlink / nfnetlink constants -----------------------------------------------------
NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11

NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10

# nf_tables message types
NEWTABLE, GETTABLE, DELTABLE = 0, 1, 2
NEWCHAIN, GETCHAIN, DELCHAIN = 3, 4, 5
NEWRULE, GETRULE, DELRULE = 6, 7, 8
NEWSET, GETSET, DELSET = 9, 10, 11
NEWSETELEM, GETSETELEM, DELSETELEM = 12, 13, 14
DESTROYSETELEM = 30

# attributes
TABLE_NAME = 1
CHAIN_TABLE, CHAIN_NAME, CHAIN_HOOK, CHAIN_POLICY, CHAIN_TYPE = 1, 3, 4, 5, 7
HOOK_HOOKNUM, HOOK_PRIORITY = 1, 2
RULE_TABLE, RULE_CHAIN, RULE_EXPRESSIONS, RULE_USERDATA = 1, 2, 4, 7
SET_TABLE, SET_NAME, SET_FLAGS, SET_KEY_TYPE, SET_KEY_LEN, SET_ID = 1, 2, 3, 4, 5, 10
SET_F_INTERVAL, SET_F_TIMEOUT, SET_F_EVAL = 0x4, 0x10, 0x20
ELEM_LIST_TABLE, ELEM_LIST_SET, ELEM_LIST_ELEMENTS = 1, 2, 3
ELEM_KEY, ELEM_FLAGS, ELEM_TIMEOUT, ELEM_EXPIRATION, ELEM_USERDATA = 1, 3, 4, 5, 6
ELEM_F_INTERVAL_END = 0x1
LIST_ELEM = 1
DATA_VALUE, DATA_VERDICT = 1, 2
VERDICT_CODE = 1
EXPR_NAME, EXPR_DATA = 1, 2
NF_DROP, NF_ACCEPT = 0, 1
NFT_REG_VERDICT, NFT_REG_1 = 0, 1
META_NFPROTO = 15
PAYLOAD_NETWORK_HEADER = 1
LIMIT_F_INV = 1
UDATA_COMMENT = 0  # nftnl userdata TLV type for comments (rule and element alike)
COMMENT_MAX = 128

#: nft datatype ids for set keys
TYPE_IPADDR, TYPE_IP6ADDR = 7, 8

#: one element-list message must stay below the u16 attribute length (KERNEL_NOTES)
MAX_ELEMS_BYTES = 60_000
#: bytes per sendmsg: a transaction must be one skb; keep well under SO_SNDBUF
MAX_BATCH_BYTES = 4 << 20

_MSG_NAMES = {
    NEWTABLE: "NEWTABLE",
    DELTABLE: "DELTABLE",
    NEWCHAIN: "NEWCHAIN",
    DELCHAIN: "DELCHAIN",
    NEWRULE: "NEWRULE",
    DELRULE: "DELRULE",
    NEWSET: "NEWSET",
    DELSET: "DELSET",
    NEWSETELEM: "NEWSETELEM",
    DELSETELEM: "DELSETELEM",
    DESTROYSETELEM: "DESTROYSETELEM",
}
_HDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")


def nft_type(msg: int) -> int:
    return (NFNL_SUBSYS_NFTABLES << 8) | msg


# --- attribute encoding ----------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (-n % 4)


def nest(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def strz(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def be32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">i" if value < 0 else ">I", value))


def be64(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">Q", value))


def udata_comment(text: str) -> bytes:
    """nftnl userdata TLV so ``nft list`` shows the comment too."""
    raw = text.encode()[: COMMENT_MAX - 1] + b"\0"
    return bytes((UDATA_COMMENT, len(raw))) + raw


def parse_udata_comment(blob: bytes) -> str:
    i = 0
    while i + 2 <= len(blob):
        kind, n = blob[i], blob[i + 1]
        if kind == UDATA_COMMENT:
            return blob[i + 2 : i + 2 + n].rstrip(b"\0").decode(errors="replace")
        i += 2 + n
    return ""


# --- expressions -------------------------------------------------------------------------
def expr(name: str, *attrs: bytes) -> bytes:
    return nest(LIST_ELEM, strz(EXPR_NAME, name), nest(EXPR_DATA, *attrs))


def ex_meta_nfproto() -> bytes:
    return expr("meta", be32(1, NFT_REG_1), be32(2, META_NFPROTO))


def ex_cmp_eq(value: bytes) -> bytes:
    return expr("cmp", be32(1, NFT_REG_1), be32(2, 0), nest(3, attr(DATA_VALUE, value)))


def ex_saddr(v6: bool) -> bytes:
    offset, length = (8, 16) if v6 else (12, 4)
    return expr(
        "payload",
        be32(1, NFT_REG_1),
        be32(2, PAYLOAD_NETWORK_HEADER),
        be32(3, offset),
        be32(4, length),
    )


def ex_lookup(set_name: str) -> bytes:
    return expr("lookup", strz(1, set_name), be32(2, NFT_REG_1))


def ex_counter() -> bytes:
    return expr("counter", be64(1, 0), be64(2, 0))


def _limit_over(rate_per_s: int, burst: int) -> bytes:
    """``limit rate over N/second burst B packets`` as an unlisted expression (the meter's)."""
    attrs = be64(1, rate_per_s), be64(2, 1), be32(3, burst), be32(4, 0), be32(5, LIMIT_F_INV)
    return strz(EXPR_NAME, "limit") + nest(EXPR_DATA, *attrs)


def ex_meter_over(set_name: str, rate_per_s: int, burst: int, timeout_ms: int) -> bytes:
    """``update @set { saddr limit rate over ... }``: one limiter per source (a meter).

    A dynset keeps a per-key instance of its inner expression; the limit breaks the rule
    while the source is under its rate, so the following drop hits only the excess.
    """
    return expr(
        "dynset",
        strz(1, set_name),  # NFTA_DYNSET_SET_NAME
        be32(3, 1),  # NFTA_DYNSET_OP = NFT_DYNSET_OP_UPDATE (refresh the entry's timeout)
        be32(4, NFT_REG_1),  # NFTA_DYNSET_SREG_KEY
        be64(6, timeout_ms),  # NFTA_DYNSET_TIMEOUT
        nest(7, _limit_over(rate_per_s, burst)),  # NFTA_DYNSET_EXPR
    )


def ex_verdict(code: int) -> bytes:
    return expr(
        "immediate",
        be32(1, NFT_REG_VERDICT),
        nest(2, nest(DATA_VERDICT, be32(VERDICT_CODE, code))),
    )


# --- messages --------------------------------------------------------------------------
def message(msg: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    payload = struct.pack("=BB", family, 0) + struct.pack(">H", res_id) + body
    return _HDR.pack(_HDR.size + len(payload), msg, flags, seq, 0) + payload


def element(key: bytes, timeout_ms: int | None, comment: str, flags: int = 0) -> bytes:
    parts = [nest(ELEM_KEY, attr(DATA_VALUE, key))]
    if flags:
        parts.append(be32(ELEM_FLAGS, flags))
    if timeout_ms is not None:
        parts.append(be64(ELEM_TIMEOUT, timeout_ms))
    if comment:
        parts.append(attr(ELEM_USERDATA, udata_comment(comment)))
    return nest(LIST_ELEM, *parts)


def element_list_bodies(table: str, set_name: str, elements: Iterable[bytes]) -> Iterator[bytes]:
    """Split encoded elements into message bodies that respect the 64 KiB nest limit."""
    head = strz(ELEM_LIST_TABLE, table) + strz(ELEM_LIST_SET, set_name)
    chunk: list[bytes] = []
    size = 0
    for el in elements:
        if size + len(el) > MAX_ELEMS_BYTES and chunk:
            yield head + nest(ELEM_LIST_ELEMENTS, *chunk)
            chunk, size = [], 0
        chunk.append(el)
        size += len(el)
    if chunk:
        yield head + nest(ELEM_LIST_ELEMENTS, *chunk)


# --- decoding ----------------------------------------------------------------------------
def iter_attrs(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    end = len(buf) if end is None else end
    i = start
    while i + 4 <= end:
        n, kind = _NLA.unpack_from(buf, i)
        if n < 4:
            break
        yield kind & NLA_TYPE_MASK, buf[i + 4 : i + n]
        i += (n + 3) & ~3


@dataclass(frozen=True, slots=True)
class DumpedElement:
    key: bytes
    flags: int
    timeout_ms: int | None
    expiration_ms: int | None
    comment: str


def decode_elements(body: bytes) -> Iterator[DumpedElement]:
    """Decode one NEWSETELEM body (after nfgenmsg) into its elements."""
    for kind, payload in iter_attrs(body):
        if kind != ELEM_LIST_ELEMENTS:
            continue
        for _, el in iter_attrs(payload):
            key = b""
            flags = 0
            timeout = expiration = None
            comment = ""
            for k, v in iter_attrs(el):
                if k == ELEM_KEY:
                    for kk, vv in iter_attrs(v):
                        if kk == DATA_VALUE:
                            key = vv
                elif k == ELEM_FLAGS:
                    flags = struct.unpack(">I", v)[0]
                elif k == ELEM_TIMEOUT:
                    timeout = struct.unpack(">Q", v)[0]
                elif k == ELEM_EXPIRATION:
                    expiration = struct.unpack(">Q", v)[0]
                elif k == ELEM_USERDATA:
                    comment = parse_udata_comment(v)
            yield DumpedElement(key, flags, timeout, expiration, comment)


# --- socket ------------------------------------------------------------------------------
class NftSocket:
    """A NETLINK_NETFILTER socket that sends atomic batches and runs dumps."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        for opt_force, opt in ((33, socket.SO_SNDBUF), (32, socket.SO_RCVBUF)):
            try:  # SO_SNDBUFFORCE / SO_RCVBUFFORCE: root may exceed wmem_max
                self.sock.setsockopt(socket.SOL_SOCKET, opt_force, 16 << 20)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 16 << 20)
        self.sock.bind((0, 0))
        self.sock.settimeout(timeout_s)
        self.seq = int.from_bytes(os.urandom(2), "big") << 8

    def close(self) -> None:
        self.sock.close()

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0x7FFFFFFF
        return self.seq

    def transaction(self, items: list[tuple[int, int, int, bytes]]) -> None:
        """Send (msg, flags, family, body) items as atomic batches; raise on any error.

        Items are split into several transactions only when they exceed MAX_BATCH_BYTES
        (bulk element loads); each piece is all-or-nothing.
        """
        pending: list[bytes] = []
        size = 0
        for msg, flags, family, body in items:
            m = message(nft_type(msg), flags | NLM_F_REQUEST | NLM_F_ACK, 0, family, body)
            if size + len(m) > MAX_BATCH_BYTES and pending:
                self._send_batch(pending)
                pending, size = [], 0
            pending.append(m)
            size += len(m)
        if pending:
            self._send_batch(pending)

    def _send_batch(self, raw_msgs: list[bytes]) -> None:
        begin_seq = self._next_seq()
        out = [
            message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin_seq, 0, b"", NFNL_SUBSYS_NFTABLES)
        ]
        seqs: set[int] = set()
        kinds: dict[int, int] = {}
        for m in raw_msgs:
            seq = self._next_seq()
            seqs.add(seq)
            kinds[seq] = struct.unpack_from("=H", m, 4)[0] & 0xFF
            out.append(m[:8] + struct.pack("=I", seq) + m[12:])
        out.append(
            message(
                NFNL_MSG_BATCH_END, NLM_F_REQUEST, self._next_seq(), 0, b"", NFNL_SUBSYS_NFTABLES
            )
        )
        self.sock.send(b"".join(out))
        errors: list[tuple[int, int]] = []
        while seqs:
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError as exc:
                raise EnforcementError(f"nftables: no answer for {len(seqs)} messages") from exc
            for mtype, _flags, seq, payload in _iter_msgs(data):
                if mtype != NLMSG_ERROR:
                    continue
                code = -struct.unpack_from("=i", payload)[0]
                if seq == begin_seq or seq not in seqs and code:
                    errors.append((seq, code))
                    seqs.clear()  # the whole batch was refused
                    break
                seqs.discard(seq)
                if code:
                    errors.append((seq, code))
        if errors:
            names = sorted(
                {
                    f"{errno.errorcode.get(c, str(c))} on {_MSG_NAMES.get(kinds.get(s, -1), 'batch')}"
                    for s, c in errors
                }
            )
            raise EnforcementError(
                f"nftables transaction refused ({len(errors)} errors: {', '.join(names)})",
            )

    def _answers(self, seq: int, what: str) -> Iterator[tuple[int, bytes]]:
        """(message type, payload) of every message answering ``seq``, until the caller
        stops reading; a silent kernel is an ``EnforcementError``."""
        while True:
            try:
                data = self.sock.recv(4 << 20)
            except TimeoutError as exc:
                raise EnforcementError(f"nftables: {what} timed out") from exc
            for mtype, _flags, mseq, payload in _iter_msgs(data):
                if mseq == seq:
                    yield mtype, payload

    def dump(self, msg: int, family: int, body: bytes) -> Iterator[tuple[int, bytes]]:
        """Yield (message type, body after nfgenmsg) of a dump."""
        seq = self._next_seq()
        self.sock.send(message(nft_type(msg), NLM_F_REQUEST | NLM_F_DUMP, seq, family, body))
        for mtype, payload in self._answers(seq, "dump"):
            if mtype == NLMSG_DONE:
                return
            if mtype == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code == 0:
                    continue
                raise OSError(code, f"nftables dump: {os.strerror(code)}")
            yield mtype & 0xFF, payload[4:]

    def get(self, msg: int, family: int, body: bytes) -> tuple[list[bytes], int]:
        """A plain GET (not a dump): the replies (bodies after nfgenmsg) and the final
        error code (0 = every requested object answered)."""
        seq = self._next_seq()
        self.sock.send(message(nft_type(msg), NLM_F_REQUEST | NLM_F_ACK, seq, family, body))
        replies: list[bytes] = []
        for mtype, payload in self._answers(seq, "get"):
            if mtype == NLMSG_ERROR:
                return replies, -struct.unpack_from("=i", payload)[0]
            replies.append(payload[4:])
        raise AssertionError("unreachable: _answers only ends by raising")


def _iter_msgs(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    i = 0
    while i + _HDR.size <= len(data):
        n, mtype, flags, seq, _pid = _HDR.unpack_from(data, i)
        if n < _HDR.size:
            break
        yield mtype, flags, seq, data[i + _HDR.size : i + n]
        i += (n + 3) & ~3
