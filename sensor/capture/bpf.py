"""Compile a capture filter expression (tcpdump syntax) to classic BPF with libpcap.

libpcap's own compiler runs through ctypes (``pcap_open_dead`` + ``pcap_compile``), so a
filter means on the live ring exactly what it means to tcpdump. The result is a
``BpfProgram``: the raw ``struct sock_filter`` array plus helpers to attach it to a socket
(``SO_ATTACH_FILTER``) and to run it on a frame in user space (``pcap_offline_filter``,
used by tests and by ``--filter`` on capture files).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache

from netwarden.errors import ConfigError

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
SO_LOCK_FILTER = 44
DLT_EN10MB = 1
#: Big enough for any frame a ring block holds; the filter only needs a header's worth.
DEFAULT_SNAPLEN = 262144
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
#: One instruction, "ret #0": accept nothing. Used while a socket joins a fanout group so
#: it sees no packet before it is a member (see sensor/live.py); not a user filter.
DROP_ALL = struct.pack("=HBBI", 0x06, 0, 0, 0)


class _BpfInsn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _PcapPkthdr(ctypes.Structure):
    _fields_ = [
        ("tv_sec", ctypes.c_long),
        ("tv_usec", ctypes.c_long),
        ("caplen", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@lru_cache(maxsize=1)
def _libpcap() -> ctypes.CDLL:
    names = ["libpcap.so.0.8", "libpcap.so.1", ctypes.util.find_library("pcap")]
    last: OSError | None = None
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            last = exc
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(_BpfProgram),
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint32,
        ]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.restype = None
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.restype = None
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.pcap_offline_filter.argtypes = [
            ctypes.POINTER(_BpfProgram),
            ctypes.POINTER(_PcapPkthdr),
            ctypes.c_char_p,
        ]
        return lib
    raise ConfigError(f"capture filters need libpcap (libpcap0.8), which failed to load: {last}")


@dataclass(frozen=True)
class BpfProgram:
    """A compiled classic BPF program: ``instructions`` is ``count`` packed sock_filter
    structs (8 bytes each, native order), exactly what the kernel takes."""

    expression: str
    instructions: bytes
    linktype: int = DLT_EN10MB

    @property
    def count(self) -> int:
        return len(self.instructions) // 8

    def attach(self, sock: socket.socket) -> None:
        """Attach to ``sock`` (SO_ATTACH_FILTER; replaces any earlier filter)."""
        attach_raw(sock, self.instructions)

    def matches(self, frame: bytes, wirelen: int | None = None) -> bool:
        """Run the program on one frame in user space (libpcap's interpreter)."""
        lib = _libpcap()
        buf = ctypes.create_string_buffer(self.instructions, len(self.instructions))
        prog = _BpfProgram(self.count, ctypes.cast(buf, ctypes.POINTER(_BpfInsn)))
        hdr = _PcapPkthdr(0, 0, len(frame), wirelen if wirelen is not None else len(frame))
        return lib.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), frame) != 0


def attach_raw(sock: socket.socket, instructions: bytes) -> None:
    """SO_ATTACH_FILTER with a packed sock_filter array (the kernel copies it)."""
    if not instructions or len(instructions) % 8:
        raise ConfigError("a BPF program is a non-empty array of 8-byte instructions")
    buf = ctypes.create_string_buffer(instructions, len(instructions))
    fprog = _SockFprog(len(instructions) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


def detach(sock: socket.socket) -> None:
    """Remove any filter from ``sock``; an unfiltered socket is not an error."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError:
        pass


def compile_filter(
    expression: str,
    *,
    linktype: int = DLT_EN10MB,
    snaplen: int = DEFAULT_SNAPLEN,
    optimize: bool = True,
) -> BpfProgram:
    """Compile ``expression`` (tcpdump syntax); raise ConfigError naming libpcap's reason."""
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError("empty capture filter expression")
    lib = _libpcap()
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise ConfigError(f"libpcap cannot open a compiler for link type {linktype}")
    prog = _BpfProgram()
    try:
        rc = lib.pcap_compile(
            handle, ctypes.byref(prog), expression.encode(), int(optimize), PCAP_NETMASK_UNKNOWN
        )
        if rc != 0:
            reason = (lib.pcap_geterr(handle) or b"syntax error").decode(errors="replace")
            raise ConfigError(f"bad capture filter {expression!r}: {reason}")
        try:
            raw = ctypes.string_at(prog.bf_insns, prog.bf_len * ctypes.sizeof(_BpfInsn))
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)
    if len(raw) // 8 > 0xFFFF:
        raise ConfigError(f"capture filter {expression!r} is too long for the kernel")
    return BpfProgram(expression=expression, instructions=raw, linktype=linktype)
