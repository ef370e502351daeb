# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""TCP on a flow (twin of tcpflow.pxi): reuse, history, the endpoint state machine; endpoint arithmetic in tcp.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netwarden.records.schema import (
    FlowFlags,
)
from sensor.engine.reference import decode as D
from sensor.engine.reference import tcp as T
from sensor.engine.reference.engine import (
    TCP_ATTEMPT_DELAY,
    TCP_CLOSE_DELAY,
    TCP_RESET_DELAY,
    TCP_SESSION_TIMER,
    TM_ATTEMPT,
    TM_DELETE,
    TM_EXPIRE,
    TM_RESET,
)
from sensor.engine.reference.flow import Flow

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine


class TcpFlowMixin:
    # --- TCP --------------------------------------------------------------------------------
    def _tcp_is_reuse(self: FlowEngine, f: Flow, b: bytes, l4: int, tflags: int) -> bool:
        if b[l4 + 12] >> 4 < 5:
            return False
        if not tflags & T.TH_SYN:
            return False
        conn_orig = f.eo
        if tflags & T.TH_ACK:
            if f.eo.state != T.INACTIVE:
                return False
            conn_orig = f.er
        closed = self._tcp_is_closed(f)
        if not closed:
            seq = D.u32(b, l4 + 4)
            if seq == conn_orig.start32():
                return False
            if (
                not tflags & T.TH_ACK
                and conn_orig.state == T.SYN_ACK_SENT
                and f.er.state == T.INACTIVE
                and seq == f.er.start32()
            ):
                return False
        return True

    @staticmethod
    def _tcp_is_closed(f: Flow) -> bool:
        # Zeek's IsClosed(): either endpoint has closed (FIN or RST reported).
        return f.eo.did_close or f.er.did_close

    @staticmethod
    def _tcp_is_done(f: Flow) -> bool:
        """Both sides closed, or a reset: the packet that makes this true ends the flow."""
        eo, er = f.eo, f.er
        return (eo.did_close and er.did_close) or eo.state == T.RESET or er.state == T.RESET

    def _tcp_packet(
        self: FlowEngine, f: Flow, b: bytes, end: int, p: Any, is_orig: bool, ts: int
    ) -> tuple[bool, bool, int]:
        l4 = p.l4_off
        hlen = (b[l4 + 12] >> 4) * 4
        if hlen < 20 or hlen > p.l4_len or l4 + hlen > end:
            return False, is_orig, 0
        length = p.l4_len - hlen
        ep = f.eo if is_orig else f.er
        if (
            self.cfg.validate_checksums
            and end - l4 >= p.l4_len
            and not D.l4_checksum_ok(b, p, l4, p.l4_len)
        ):
            ep.chk_cnt, ep.chk_thresh = f.scaled(ep.is_orig, "C", ep.chk_cnt, ep.chk_thresh)
            f.flags |= FlowFlags.BAD_CHECKSUM
            return False, is_orig, 0
        flags = b[l4 + 13]
        base_seq = D.u32(b, l4 + 4)
        ack_seq = D.u32(b, l4 + 8)
        window = D.u16(b, l4 + 14)
        captured = end - l4 - hlen
        self._tcp_process(f, ep, is_orig, flags, base_seq, ack_seq, window, length, captured, ts)
        # The connection may have flipped under us (SYN-ACK start): recompute direction.
        is_orig = ep is f.eo
        return True, is_orig, length

    def _tcp_process(
        self: FlowEngine,
        f: Flow,
        ep: T.Endpoint,
        is_orig: bool,
        flags: int,
        base_seq: int,
        ack_seq: int,
        window: int,
        length: int,
        captured: int,
        ts: int,
    ) -> None:
        peer = f.er if ep is f.eo else f.eo
        syn = flags & T.TH_SYN
        fin = flags & T.TH_FIN
        rst = flags & T.TH_RST
        ack = flags & T.TH_ACK
        # SetPartialStatus
        if ep.is_orig:
            if not f.first_packet_seen & 1:
                f.is_partial = (not syn) or bool(ack)
        else:
            if not f.first_packet_seen & 2 and not f.is_partial:
                f.is_partial = not syn
        seg_len = length + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= length
        seq_end = (base_seq + seg_len) & T.MASK32
        T.init_endpoint(ep, flags, base_seq, seq_end)
        rel_seq, underflow = T.get_relative_seq(ep, base_seq, ep.last_seq, ep.seq_wraps)
        self._tcp_update_history(f, ep, flags, rel_seq, length)
        # Zero-window accounting (W/w): not on RST, not after the peer's FIN, not when reset.
        if window == 0 and not rst and peer.state != T.CLOSED and ep.state != T.RESET:
            ep.win0_cnt, ep.win0_thresh = f.scaled(ep.is_orig, "W", ep.win0_cnt, ep.win0_thresh)
        if not f.eo.did_close or not f.er.did_close:
            f.last_ns = ts
        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        if rst:
            ep.rst_cnt += 1
        rel_ack = 0
        if ack:
            if peer.state == T.INACTIVE:
                rel_ack = 1
                # init_peer: number the peer as if we had seen its SYN.
                peer.start_seq = (ack_seq - 1) & T.MASK32
                peer.ack_seq = (ack_seq - 1) & T.MASK32
                peer.last_seq = (ack_seq - 1) & T.MASK32
            else:
                rel_ack, ack_under = T.get_relative_seq(peer, ack_seq, peer.ack_seq, peer.ack_wraps)
                if ack_under:
                    rel_ack = 0
                elif not rst:
                    T.update_ack_seq(peer, ack_seq)
        delta_last = T.update_last_seq(ep, seq_end, flags, length)
        if not (  # noqa: SIM102 -- Zeek's branch structure
            (flags & (T.TH_SYN | T.TH_RST))
            and (delta_last > T.TOO_LARGE_SEQ_DELTA or delta_last < -T.TOO_LARGE_SEQ_DELTA)
        ):
            if not (fin and ep.last_seq == ((ep.start_seq + 1) & T.MASK32)) and ep.state != T.RESET:  # noqa: SIM102 -- Zeek's branch structure
                if delta_last <= 0 and length > 0:
                    ep.rxmt_cnt, ep.rxmt_thresh = f.scaled(
                        ep.is_orig, "T", ep.rxmt_cnt, ep.rxmt_thresh
                    )
        do_close, _gen_event = self._tcp_state_machine(
            f, ep, peer, flags, base_seq, ack_seq, length, delta_last, ts
        )
        if ack and T.ack_received(peer, rel_ack, f.is_partial, f):
            self._tcp_check_eof(f, peer)
        rel_data_seq = rel_seq + 1 if syn else rel_seq
        if length > 0 and not rst and not underflow and captured >= length:
            # Snaplen-truncated payload never reaches the reassembler (acks then show gaps).
            T.data_sent(ep, rel_data_seq, length)
        self._tcp_check_eof(f, ep)
        if do_close:
            self._tcp_connection_closed(f, ep, peer)

    def _tcp_check_eof(self: FlowEngine, f: Flow, ep: T.Endpoint) -> None:
        """Zeek's CheckEOF/EndpointEOF: once a closed or reset side has no data pending, a
        close that was deferred because of pending data is carried out (for this side)."""
        if ep.did_eof or not (ep.fin_cnt > 0 or ep.state == T.CLOSED or ep.state == T.RESET):
            return
        peer = f.er if ep is f.eo else f.eo
        if T.data_pending(ep, peer):
            return
        ep.did_eof = True
        if f.close_deferred:
            self._tcp_connection_closed(f, ep, peer)
            f.close_deferred = False

    def _tcp_update_history(
        self: FlowEngine, f: Flow, ep: T.Endpoint, flags: int, rel_seq: int, length: int
    ) -> None:
        syn = flags & T.TH_SYN
        fin = flags & T.TH_FIN
        rst = flags & T.TH_RST
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            if fin and rst:
                f.tcp_check(ep, T.HIST_FIN_RST, "I")
            else:
                f.tcp_check(ep, T.HIST_MULTI, "Q")
        elif bits == 1:
            if syn:
                code = "H" if flags & T.TH_ACK else "S"
                if f.tcp_check(ep, T.HIST_SYN, code) and rel_seq != ep.hist_last_syn:
                    f.add(ep.is_orig, code)
                ep.hist_last_syn = rel_seq
            if fin:
                if f.tcp_check(ep, T.HIST_FIN, "F") and rel_seq + length != ep.hist_last_fin:
                    f.add(ep.is_orig, "F")
                ep.hist_last_fin = rel_seq + length
            if rst:
                if f.tcp_check(ep, T.HIST_RST, "R") and rel_seq != ep.hist_last_rst:
                    f.add(ep.is_orig, "R")
                ep.hist_last_rst = rel_seq
        else:
            if length:
                f.tcp_check(ep, T.HIST_DATA, "D")
            elif flags & T.TH_ACK:
                f.tcp_check(ep, T.HIST_ACK, "A")

    def _tcp_state_machine(
        self: FlowEngine,
        f: Flow,
        ep: T.Endpoint,
        peer: T.Endpoint,
        flags: int,
        base_seq: int,
        ack_seq: int,
        length: int,
        delta_last: int,
        ts: int,
    ) -> tuple[bool, bool]:
        syn = flags & T.TH_SYN
        fin = flags & T.TH_FIN
        rst = flags & T.TH_RST
        ack = flags & T.TH_ACK
        do_close = False
        gen_event = False
        st = ep.state
        is_orig = ep.is_orig
        if st == T.INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(T.SYN_ACK_SENT if ack else T.SYN_SENT)
                    self._add_timer(ts + TCP_ATTEMPT_DELAY, TM_ATTEMPT, f)
                else:
                    if not ack and peer.state == T.SYN_ACK_SENT and base_seq == ep.start32():
                        # SYN/SYN-ACK reversal: flip and establish.
                        f.flip_roles()
                        f.is_partial = False
                        peer.set_state(T.ESTABLISHED)
                        f.first_packet_seen |= 1
                    if peer.state == T.SYN_SENT:
                        peer.set_state(T.ESTABLISHED)
                    ep.set_state(T.ESTABLISHED)
            if fin:
                ep.set_state(T.CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(T.RESET)
                do_close = True
            if ep.state == T.INACTIVE:
                if not is_orig and length == 0 and f.eo.state == T.SYN_SENT:
                    pass
                elif ack and peer.state == T.ESTABLISHED:
                    ep.set_state(T.ESTABLISHED)
                    f.is_partial = False
                    f.first_packet_seen |= 1 if ep.is_orig else 2
                else:
                    ep.set_state(T.PARTIAL)
        elif st == T.SYN_SENT or st == T.SYN_ACK_SENT:
            if fin:
                ep.set_state(T.CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(T.RESET)
                do_close = True
        elif st == T.ESTABLISHED or st == T.PARTIAL:
            if syn and st == T.PARTIAL and peer.state == T.INACTIVE and not ack:
                ep.set_state(T.SYN_SENT)
            if fin and not rst:
                ep.set_state(T.CLOSED)
                if peer.state == T.RESET and peer.prev_state == T.CLOSED:
                    peer.set_state(T.CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(T.RESET)
                do_close = True
        elif st == T.CLOSED:  # noqa: SIM102 -- Zeek's branch structure
            if rst and peer.state != T.CLOSED:
                ep.set_state(T.RESET)
                if not ep.did_close:
                    do_close = True
                self._add_timer(ts + TCP_RESET_DELAY, TM_RESET, f)
        return do_close, gen_event

    def _tcp_connection_closed(self: FlowEngine, f: Flow, ep: T.Endpoint, peer: T.Endpoint) -> None:
        if T.data_pending(ep, peer):
            # Zeek defers the close until the data is delivered (or given up as a gap).
            f.close_deferred = True
            return
        f.close_deferred = False
        if ep.did_close:
            return
        ep.did_close = True
        complete = ep.state == T.RESET or peer.did_close or peer.state == T.INACTIVE
        if complete:
            self._add_timer(f.last_ns + TCP_CLOSE_DELAY, TM_DELETE, f)
        elif ep.prev_state != T.INACTIVE:
            self._add_timer(f.last_ns + TCP_SESSION_TIMER, TM_EXPIRE, f)
