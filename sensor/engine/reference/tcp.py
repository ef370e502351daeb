"""Zeek's TCP endpoint state machine, sequence accounting and history (reference twin).

A transcription of the rules of Zeek's TCP session adapter (endpoint states INACTIVE,
SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET; relative sequence numbers
with 32-bit wrap counting; size = max(last_seq, ack_seq) - start_seq minus the SYN and FIN
octets; history letters with per-direction "seen" masks and the 1, 10, 100... scaling of
C/T/W/G), written as plain functions over slot objects so the compiled twin can mirror it.
Gaps: a simplified reassembler per endpoint (contiguous edge + at most MAX_BLOCKS pending
blocks above it); an ACK beyond the contiguous edge reports the unfilled ranges as gaps
(history G/g and missed_bytes), as Zeek's content_gap does.
"""

from __future__ import annotations

# Endpoint states (Zeek's TCP_ENDPOINT_*).
INACTIVE = 0
SYN_SENT = 1
SYN_ACK_SENT = 2
PARTIAL = 3
ESTABLISHED = 4
CLOSED = 5
RESET = 6

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20

HIST_SYN = 0x1
HIST_FIN = 0x2
HIST_RST = 0x4
HIST_FIN_RST = 0x8
HIST_DATA = 0x10
HIST_ACK = 0x20
HIST_MULTI = 0x40

TOO_LARGE_SEQ_DELTA = 1048576
MAX_BLOCKS = 64
MAX_ABOVE_HOLE_WITHOUT_ACKS = 16384
MAX_BUFFERED_WITHOUT_ACKS = 10 * 1024 * 1024
MASK32 = 0xFFFFFFFF


def seq_delta(a: int, b: int) -> int:
    """Signed 32-bit difference a - b."""
    d = (a - b) & MASK32
    return d - 0x100000000 if d & 0x80000000 else d


class Endpoint:
    __slots__ = (
        "ack_seq",
        "ack_wraps",
        "blocks",
        "chk_cnt",
        "chk_thresh",
        "did_close",
        "did_eof",
        "fin_cnt",
        "fin_seq",
        "gap_cnt",
        "gap_thresh",
        "hist_last_fin",
        "hist_last_rst",
        "hist_last_syn",
        "is_orig",
        "last_seq",
        "missed",
        "prev_state",
        "reassem_seq",
        "rst_cnt",
        "rxmt_cnt",
        "rxmt_thresh",
        "seq_wraps",
        "skip",
        "start_seq",
        "state",
        "trim_seq",
        "win0_cnt",
        "win0_thresh",
        "window_scale",
    )

    def __init__(self, is_orig: bool) -> None:
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start_seq = 0  # 32-bit ISN (or ISN guess)
        self.last_seq = 0
        self.ack_seq = 0
        self.seq_wraps = 0
        self.ack_wraps = 0
        self.fin_cnt = 0
        self.rst_cnt = 0
        self.fin_seq = 0
        self.did_close = False
        self.is_orig = is_orig
        self.hist_last_syn = 0
        self.hist_last_fin = 0
        self.hist_last_rst = 0
        self.rxmt_cnt = 0
        self.rxmt_thresh = 1
        self.win0_cnt = 0
        self.win0_thresh = 1
        self.gap_cnt = 0
        self.gap_thresh = 1
        self.chk_cnt = 0
        self.chk_thresh = 1
        self.window_scale = 0
        self.reassem_seq = 1
        self.trim_seq = 1
        self.blocks: list[list[int]] = []  # sorted [start, end) relative ranges
        self.missed = 0
        self.skip = False  # reassembly given up (Zeek's skip_deliveries): no more gaps
        self.did_eof = False  # all of this side's data delivered after its FIN/RST

    def set_state(self, s: int) -> None:
        if s != self.state:
            self.prev_state = self.state
            self.state = s

    def start32(self) -> int:
        return self.start_seq & MASK32

    def size(self, peer: Endpoint) -> int:
        if (
            self.prev_state == SYN_SENT
            and self.state == RESET
            and peer.state == INACTIVE
            and not self.no_data_acked()
        ):
            return 0
        last64 = (self.seq_wraps << 32) + self.last_seq
        ack64 = (self.ack_wraps << 32) + self.ack_seq
        if last64 > ack64:
            size = last64 - self.start_seq
        else:
            size = ack64 - self.start_seq
        size &= 0xFFFFFFFFFFFFFFFF
        if size != 0:
            size -= 1
        if self.fin_cnt > 0 and size != 0:
            size -= 1
        return size

    def no_data_acked(self) -> bool:
        ack = (self.ack_wraps << 32) + self.ack_seq
        return ack == self.start_seq or ack == self.start_seq + 1

    def update_last_seq(self, seq: int) -> None:
        if seq < self.last_seq:
            self.seq_wraps += 1
        self.last_seq = seq

    def update_ack_seq(self, seq: int) -> None:
        if seq < self.ack_seq:
            self.ack_wraps += 1
        self.ack_seq = seq

    def to_relative(self, seq: int, wraps: int) -> int:
        return (wraps << 32) + seq - self.start_seq


def get_relative_seq(ep: Endpoint, cur: int, last: int, wraps: int) -> tuple[int, bool]:
    """Relative 64-bit sequence of ``cur``; second value: underflow below the ISN."""
    delta = seq_delta(cur, last)
    if delta < 0:
        if wraps and cur > last:
            wraps -= 1
    elif delta > 0:  # noqa: SIM102 -- Zeek's branch structure
        if cur < last:
            wraps += 1
    if wraps == 0:
        d = seq_delta(cur, ep.start32())
        return d, d < 0
    return ep.to_relative(cur, wraps), False


def init_endpoint(ep: Endpoint, flags: int, first_seq: int, last_seq: int) -> None:
    syn = flags & TH_SYN
    st = ep.state
    if st == INACTIVE:
        if syn:
            ep.ack_seq = first_seq
            ep.start_seq = first_seq
        else:
            ep.ack_seq = (first_seq - 1) & MASK32
            ep.start_seq = (first_seq - 1) & MASK32  # 32-bit arithmetic, as Zeek
            last_seq = first_seq
        ep.last_seq = last_seq
    elif st == SYN_SENT or st == SYN_ACK_SENT:
        if syn and first_seq != ep.start32():
            ep.start_seq = first_seq
            ep.ack_seq = first_seq
            ep.last_seq = last_seq
    elif st == ESTABLISHED or st == PARTIAL:
        if syn:
            ep.start_seq = first_seq
            ep.ack_seq = first_seq
            ep.last_seq = last_seq
    elif st == RESET:  # noqa: SIM102 -- Zeek's branch structure
        if syn and ep.prev_state == INACTIVE:
            ep.start_seq = first_seq
            ep.ack_seq = first_seq
            ep.last_seq = last_seq


def update_last_seq(ep: Endpoint, last_seq: int, flags: int, length: int) -> int:
    """Advance the endpoint's highest sequence; returns the signed delta (Zeek's rules).
    A non-advancing segment with payload is a retransmission (caller adds T/t)."""
    delta = seq_delta(last_seq, ep.last_seq)
    if (flags & (TH_SYN | TH_RST)) and (
        delta > TOO_LARGE_SEQ_DELTA or delta < -TOO_LARGE_SEQ_DELTA
    ):
        pass
    elif (flags & TH_FIN) and ep.last_seq == ((ep.start_seq + 1) & MASK32):
        ep.update_last_seq(last_seq)
    elif ep.state == RESET:
        pass
    elif delta > 0:
        ep.update_last_seq(last_seq)
    return delta


def update_ack_seq(ep: Endpoint, ack: int) -> None:
    delta = seq_delta(ack, ep.ack_seq)
    if ack == 0 and delta > TOO_LARGE_SEQ_DELTA:
        return
    if delta > 0:
        ep.update_ack_seq(ack)


# --- simplified reassembly: contiguous edge + pending blocks ------------------------------
def data_sent(ep: Endpoint, seq: int, length: int) -> None:
    if ep.skip:
        return
    ack = ep.to_relative(ep.ack_seq, ep.ack_wraps)
    upper = seq + length
    if seq < ack:
        if upper <= ack:
            return
        seq = ack
    if upper <= ep.reassem_seq:
        return
    if seq <= ep.reassem_seq:
        ep.reassem_seq = upper
        merge_blocks(ep)
        return
    insert_block(ep, seq, upper)
    # Zeek gives up reassembly on data far above a hole that nobody acks
    # (tcp_max_above_hole_without_any_acks) or on too much buffered data
    # (tcp_excessive_data_without_further_acks).
    if ep.blocks and (
        (ep.no_data_acked() and ep.blocks[-1][1] - ep.reassem_seq > MAX_ABOVE_HOLE_WITHOUT_ACKS)
        or buffered_bytes(ep) > MAX_BUFFERED_WITHOUT_ACKS
    ):
        ep.blocks.clear()
        ep.skip = True


def buffered_bytes(ep: Endpoint) -> int:
    n = 0
    for blk in ep.blocks:
        n += blk[1] - blk[0]
    return n


def insert_block(ep: Endpoint, start: int, end: int) -> None:
    blocks = ep.blocks
    i = 0
    while i < len(blocks) and blocks[i][0] < start:
        i += 1
    blocks.insert(i, [start, end])
    # Coalesce overlapping neighbours.
    j = 0
    while j + 1 < len(blocks):
        if blocks[j + 1][0] <= blocks[j][1]:
            blocks[j][1] = max(blocks[j][1], blocks[j + 1][1])
            del blocks[j + 1]
        else:
            j += 1
    if len(blocks) > MAX_BLOCKS:
        del blocks[-1]  # bounded memory: forget the highest block


def merge_blocks(ep: Endpoint) -> None:
    blocks = ep.blocks
    while blocks and blocks[0][0] <= ep.reassem_seq:
        ep.reassem_seq = max(ep.reassem_seq, blocks[0][1])
        del blocks[0]


def undelivered(ep: Endpoint, up_to: int, is_partial: bool, hist: HistorySink) -> None:
    """Everything below ``up_to`` was acked: the unfilled ranges are content gaps."""
    if up_to <= 2 and is_partial:
        return
    if ep.skip:
        ep.reassem_seq = max(ep.reassem_seq, up_to)
        return
    blocks = ep.blocks
    while blocks and blocks[0][0] < up_to:
        b0 = blocks[0]
        if b0[0] > ep.reassem_seq:
            gap(ep, b0[0] - ep.reassem_seq, hist)
        ep.reassem_seq = max(ep.reassem_seq, b0[1])
        del blocks[0]
    if up_to > ep.reassem_seq:
        gap(ep, up_to - ep.reassem_seq, hist)
        ep.reassem_seq = up_to


def ack_received(ep: Endpoint, seq: int, is_partial: bool, hist: HistorySink) -> bool:
    """The peer acked ``seq`` of ep's data; returns whether the ack advanced (the caller
    then checks ep for end of data, as Zeek's reassembler does)."""
    if ep.fin_cnt > 0 and seq >= ep.fin_seq:
        seq = ep.fin_seq - 1
    if seq <= ep.trim_seq:
        return False
    if seq > ep.reassem_seq:
        undelivered(ep, seq, is_partial, hist)
    ep.trim_seq = seq
    return True


def data_pending(ep: Endpoint, peer: Endpoint) -> bool:
    """Zeek's TCP_Reassembler::DataPending: ep's data is not all delivered (a hole below
    its highest sequence), or the peer still buffers data above a hole."""
    if ep.skip:
        return False
    delivered = ep.start_seq + ep.reassem_seq
    last = (ep.seq_wraps << 32) + ep.last_seq
    if last < delivered:
        return False
    if delivered != last - 1 and delivered != last:
        return True
    return ep.state != RESET and len(peer.blocks) > 0


def gap(ep: Endpoint, length: int, hist: HistorySink) -> None:
    ep.missed += length
    ep.gap_cnt, ep.gap_thresh = hist.scaled(ep.is_orig, "G", ep.gap_cnt, ep.gap_thresh)


class HistorySink:
    """The flow side of history: implemented by the flow object (``sensor.engine.reference.flow.Flow``)."""

    __slots__ = ()

    def add(self, is_orig: bool, code: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def check(self, is_orig: bool, mask: int, code: str) -> bool:  # pragma: no cover
        raise NotImplementedError

    def scaled(
        self, is_orig: bool, code: str, cnt: int, thresh: int
    ) -> tuple[int, int]:  # pragma: no cover
        raise NotImplementedError
