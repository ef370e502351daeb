"""Pure-Python capture reader (reference twin of the compiled reader).

Formats:
* classic pcap: magic a1b2c3d4 (usec) / a1b23c4d (nsec), either byte order;
* pcapng: SHB (either byte order, one per section), IDB (linktype, if_tsresol,
  if_tsoffset), EPB, SPB (interface 0, timestamp 0),
  OPB (obsolete packet block); every other block type is skipped by its length.

Fault rule: every packet read before a fault is yielded, then ``CaptureFormatError(msg,
path, offset)`` is raised with the file offset of the record or block that failed. A record
whose captured length exceeds ``MAX_CAPLEN`` is a format error (bounded memory).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import numpy as np

from netwarden.errors import CaptureError, CaptureFormatError, UnsupportedLinkType
from sensor.capture.batch import PacketBatch

#: Link types the decoders understand (see ``decode.decode_link``).
SUPPORTED_LINKTYPES = frozenset((0, 1, 9, 10, 12, 14, 50, 101, 105, 108, 113, 127, 228, 229, 276))

MAX_CAPLEN = 256 * 1024  # larger records are treated as corruption
MAX_BLOCK = 16 * 1024 * 1024  # pcapng blocks above this are corruption
MAX_IFACES = 4096  # pcapng interfaces per section (as the compiled reader)

PCAP_USEC = 0xA1B2C3D4
PCAP_NSEC = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
BYTE_ORDER_MAGIC = 0x1A2B3C4D


class _Accum:
    """Collects packets of one batch (offsets into one bytes buffer)."""

    __slots__ = ("caps", "chunks", "ifs", "lts", "offs", "size", "tss", "wires")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.offs: list[int] = []
        self.caps: list[int] = []
        self.wires: list[int] = []
        self.tss: list[int] = []
        self.lts: list[int] = []
        self.ifs: list[int] = []

    def add(self, data: bytes, wirelen: int, ts_ns: int, linktype: int, iface: int) -> None:
        self.offs.append(self.size)
        self.caps.append(len(data))
        self.wires.append(wirelen)
        self.tss.append(ts_ns)
        self.lts.append(linktype)
        self.ifs.append(iface & 0xFF)
        self.chunks.append(data)
        self.size += len(data)

    def __len__(self) -> int:
        return len(self.offs)

    def batch(self) -> PacketBatch:
        n = len(self.offs)
        b = PacketBatch(
            buffer=b"".join(self.chunks),
            offset=np.array(self.offs, np.uint64),
            caplen=np.array(self.caps, np.uint32),
            wirelen=np.array(self.wires, np.uint32),
            ts_ns=np.array(self.tss, np.int64),
            linktype=np.array(self.lts, np.uint16),
            iface=np.array(self.ifs, np.uint8),
            count=n,
        )
        self.__init__()  # type: ignore[misc]
        return b


class PcapReader:
    """Read a classic pcap or pcapng file in batches of raw packets."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        if not os.path.exists(self.path):
            raise CaptureError(f"{self.path}: no such file")
        self.packets = 0

    def batches(self, max_packets: int = 4096) -> Iterator[PacketBatch]:
        try:
            with open(self.path, "rb") as fh:
                # As much as the file's size says, never more: /dev/zero or a pipe reads
                # as empty (as the compiled reader's mmap), not forever.
                data = fh.read(os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            raise CaptureError(f"{self.path}: {exc.strerror or exc}") from exc
        acc = _Accum()
        if len(data) < 4:
            raise CaptureFormatError("file too short for a capture header", self.path, 0)
        magic_le = struct.unpack_from("<I", data, 0)[0]
        if magic_le == PCAPNG_SHB:
            gen = self._pcapng(data, acc, max_packets)
        else:
            gen = self._pcap(data, acc, max_packets)
        yield from gen
        if len(acc):
            yield acc.batch()

    # -- classic pcap -------------------------------------------------------------------
    def _pcap(self, data: bytes, acc: _Accum, maxp: int) -> Iterator[PacketBatch]:
        if len(data) < 24:
            raise CaptureFormatError("truncated pcap file header", self.path, 0)
        m_le = struct.unpack_from("<I", data, 0)[0]
        m_be = struct.unpack_from(">I", data, 0)[0]
        if m_le in (PCAP_USEC, PCAP_NSEC):
            bo, magic = "<", m_le
        elif m_be in (PCAP_USEC, PCAP_NSEC):
            bo, magic = ">", m_be
        else:
            raise CaptureFormatError("not a pcap or pcapng file (bad magic)", self.path, 0)
        scale = 1 if magic == PCAP_NSEC else 1000
        # Upper bits carry FCS information (libpcap's LT_LINKTYPE mask).
        linktype = struct.unpack_from(bo + "I", data, 20)[0] & 0x03FFFFFF
        if linktype not in SUPPORTED_LINKTYPES:
            raise UnsupportedLinkType(f"unsupported link type {linktype}", self.path, 20)
        rec = struct.Struct(bo + "IIII")
        pos = 24
        end = len(data)
        while pos < end:
            if pos + 16 > end:
                yield from self._drain(acc)
                raise CaptureFormatError("truncated pcap record header", self.path, pos)
            sec, frac, caplen, wirelen = rec.unpack_from(data, pos)
            if caplen > MAX_CAPLEN:
                yield from self._drain(acc)
                raise CaptureFormatError(
                    "pcap record length exceeds the maximum snapshot length", self.path, pos
                )
            if pos + 16 + caplen > end:
                yield from self._drain(acc)
                raise CaptureFormatError("truncated pcap record", self.path, pos)
            acc.add(
                data[pos + 16 : pos + 16 + caplen],
                wirelen,
                sec * 1_000_000_000 + frac * scale,
                linktype,
                0,
            )
            self.packets += 1
            pos += 16 + caplen
            if len(acc) >= maxp:
                yield acc.batch()

    def _drain(self, acc: _Accum) -> Iterator[PacketBatch]:
        if len(acc):
            yield acc.batch()

    # -- pcapng ---------------------------------------------------------------------------
    def _pcapng(self, data: bytes, acc: _Accum, maxp: int) -> Iterator[PacketBatch]:
        pos = 0
        end = len(data)
        bo = "<"
        ifaces: list[tuple[int, int, int]] = []  # (linktype, ticks per second, offset s)
        while pos < end:
            if pos + 12 > end:
                yield from self._drain(acc)
                raise CaptureFormatError("truncated pcapng block header", self.path, pos)
            btype_raw = data[pos : pos + 4]
            if struct.unpack_from("<I", btype_raw)[0] == PCAPNG_SHB:
                bom = data[pos + 8 : pos + 12]
                if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC:
                    bo = "<"
                elif struct.unpack(">I", bom)[0] == BYTE_ORDER_MAGIC:
                    bo = ">"
                else:
                    yield from self._drain(acc)
                    raise CaptureFormatError(
                        "pcapng section header with a bad byte-order magic", self.path, pos
                    )
                ifaces = []  # interface ids are per section
            btype, blen = struct.unpack_from(bo + "II", data, pos)
            if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                yield from self._drain(acc)
                raise CaptureFormatError("pcapng block with an invalid length", self.path, pos)
            if pos + blen > end:
                yield from self._drain(acc)
                raise CaptureFormatError("truncated pcapng block", self.path, pos)
            body = pos + 8
            bend = pos + blen - 4
            if btype == 1:  # IDB
                if bend - body < 8:
                    yield from self._drain(acc)
                    raise CaptureFormatError(
                        "pcapng interface description block too short", self.path, pos
                    )
                if len(ifaces) >= MAX_IFACES:
                    yield from self._drain(acc)
                    raise CaptureFormatError("too many pcapng interfaces", self.path, pos)
                lt = struct.unpack_from(bo + "H", data, body)[0]
                if lt not in SUPPORTED_LINKTYPES:
                    yield from self._drain(acc)
                    raise UnsupportedLinkType(f"unsupported link type {lt}", self.path, pos)
                tps, offset_s = self._idb_options(data, body + 8, bend, bo)
                ifaces.append((lt, tps, offset_s))
            elif btype in (6, 2):  # EPB, OPB
                if bend - body < 20:
                    yield from self._drain(acc)
                    what = "enhanced packet block" if btype == 6 else "packet block"
                    raise CaptureFormatError(f"pcapng {what} too short", self.path, pos)
                if btype == 6:
                    ifid, hi, lo, caplen, wirelen = struct.unpack_from(bo + "IIIII", data, body)
                else:
                    ifid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(
                        bo + "HHIIII", data, body
                    )
                if ifid >= len(ifaces):
                    yield from self._drain(acc)
                    raise CaptureFormatError(
                        "pcapng packet names an undeclared interface", self.path, pos
                    )
                if caplen > MAX_CAPLEN or body + 20 + caplen > bend:
                    yield from self._drain(acc)
                    raise CaptureFormatError("pcapng packet data exceeds its block", self.path, pos)
                lt, tps, offset_s = ifaces[ifid]
                ticks = (hi << 32) | lo
                ts_ns = _ticks_to_ns(ticks, tps) + offset_s * 1_000_000_000
                if not -(1 << 63) <= ts_ns < 1 << 63:  # does not fit the int64 ns field
                    yield from self._drain(acc)
                    raise CaptureFormatError("pcapng timestamp out of range", self.path, pos)
                acc.add(data[body + 20 : body + 20 + caplen], wirelen, ts_ns, lt, ifid)
                self.packets += 1
            elif btype == 3:  # SPB: interface 0, no timestamp
                if not ifaces:
                    yield from self._drain(acc)
                    raise CaptureFormatError(
                        "pcapng simple packet block before any interface", self.path, pos
                    )
                wirelen = struct.unpack_from(bo + "I", data, body)[0]
                caplen = min(wirelen, bend - body - 4)
                if caplen > MAX_CAPLEN:
                    yield from self._drain(acc)
                    raise CaptureFormatError("pcapng simple packet block too large", self.path, pos)
                acc.add(data[body + 4 : body + 4 + caplen], wirelen, 0, ifaces[0][0], 0)
                self.packets += 1
            pos += blen
            if len(acc) >= maxp:
                yield acc.batch()

    @staticmethod
    def _idb_options(data: bytes, pos: int, end: int, bo: str) -> tuple[int, int]:
        """(ticks per second, offset in seconds) from if_tsresol / if_tsoffset options."""
        tps = 1_000_000
        offset_s = 0
        while pos + 4 <= end:
            code, olen = struct.unpack_from(bo + "HH", data, pos)
            if code == 0:
                break
            if code == 9 and olen >= 1 and pos + 5 <= end:
                v = data[pos + 4]
                exp = min(v & 0x7F, 60)
                tps = (2**exp) if v & 0x80 else (10**exp)
            elif code == 14 and olen == 8 and pos + 12 <= end:
                offset_s = struct.unpack_from(bo + "q", data, pos + 4)[0]
            pos += 4 + ((olen + 3) & ~3)
        return tps, offset_s


def _ticks_to_ns(ticks: int, tps: int) -> int:
    if tps == 1_000_000_000:
        return ticks
    if tps == 1_000_000:
        return ticks * 1000
    return (ticks * 1_000_000_000) // tps
