"""TCP reassembly of one direction of a connection (RFC 9293), bounded and first-wins.

Each direction of a flow has a :class:`TcpStream`. Positions are kept in two spaces:

* ``next_seq``: the next expected sequence number, modulo 2**32 (what the wire carries);
* ``base``: the same position unwrapped into a plain growing integer (0 = the initial sequence
  number + 1 after a SYN, or the first sequence seen on mid-stream pickup). Queued out-of-order
  segments are keyed by unwrapped offsets, so wraparound past 2**32 (HOSTILE_INPUTS T6) is handled
  once, where a wire sequence is turned into a signed distance from ``next_seq``.

The in-order fast path (a segment at ``next_seq`` with nothing queued) is inlined in
``FlowTable.track``: it hands the payload bytes on untouched. Everything else comes here:

======================  ===========================================================================
case                    behaviour
======================  ===========================================================================
ahead of ``next_seq``   queued (sorted, non-overlapping) within ``max_stream_buffer`` bytes and
                        ``max_segments_per_direction`` segments per direction, and the global
                        ``max_reassembly_bytes`` memcap shared by all streams
overlap with queued     the bytes that arrived first win; different bytes -> ``tcp.overlap_diff``
or last delivered data  anomaly (T5); identical -> counted ``tcp.retransmission``
entirely old            dropped, counted ``tcp.retransmission`` (compared with the last delivered
                        segment, so a retransmission with different bytes is still reported)
keep-alive              ``seq == next_seq - 1`` with 0-1 bytes (RFC 9293 §3.8.4): ignored, counted
hole                    when more than ``gap_wait_bytes`` wait behind it, when a cap is hit, or when
                        the flow closes: ``StreamGap(size)`` then the queued bytes (T7)
======================  ===========================================================================

SYN and FIN each consume one sequence number; zero-window probes carry the real next byte and are
ordinary in-order data.
"""

from __future__ import annotations

import collections
from bisect import bisect_left, bisect_right

from sensor.limits import Limits
from sensor.records import FlowRef, FlowSummary, ProtocolAnomaly, StreamClosed, StreamData, StreamGap

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_SEQ_HALF = 1 << 31

TCP_OPTION_EOL = 0
TCP_OPTION_NOP = 1
TCP_OPTION_WINDOW_SCALE = 3  # RFC 7323 §2
TCP_OPTION_MD5 = 19  # RFC 2385
_MAX_WINDOW_SCALE = 14  # RFC 7323 §2.3

# everything the flow table emits; reassembly appends the first three kinds to the same list
FlowOutput = StreamData | StreamGap | ProtocolAnomaly | StreamClosed | FlowSummary


def seq_diff(seq: int, reference: int) -> int:
    """Signed distance from ``reference`` to ``seq`` in sequence space (RFC 9293 §3.4 modular compare)."""
    distance = (seq - reference) & SEQ_MASK
    return distance - SEQ_MOD if distance >= _SEQ_HALF else distance


def tcp_option(options: bytes, wanted: int) -> bytes | None:
    """Value of the first TCP option of kind ``wanted`` (RFC 9293 §3.2), or None.

    Options are ``kind | length | value`` except EOL (0) and NOP (1), which are one byte.
    A malformed list simply ends the walk.
    """
    pos = 0
    end = len(options)
    while pos < end:
        kind = options[pos]
        if kind == TCP_OPTION_EOL:
            return None
        if kind == TCP_OPTION_NOP:
            pos += 1
            continue
        if pos + 1 >= end:
            return None
        length = options[pos + 1]
        if length < 2 or pos + length > end:
            return None
        if kind == wanted:
            return options[pos + 2 : pos + length]
        pos += length
    return None


def window_scale(options: bytes) -> int:
    """Shift count of the window scale option of a SYN (RFC 7323 §2.2), 0 when absent."""
    value = tcp_option(options, TCP_OPTION_WINDOW_SCALE)
    return min(value[0], _MAX_WINDOW_SCALE) if value else 0


# An acknowledgement further ahead than this is not taken as proof of lost bytes (RFC 9293 allows
# windows of up to 2**30 bytes; anything beyond is a bogus or spoofed ACK).
_MAX_ACK_JUMP = 1 << 30


class ReassemblyContext:
    """What all streams of one flow table share: limits, counters and the global memcap."""

    __slots__ = ("counters", "limits", "used")

    def __init__(self, limits: Limits, counters: collections.Counter[str]) -> None:
        self.limits = limits
        self.counters = counters
        self.used = 0  # out-of-order bytes queued by all streams together


class TcpStream:
    """Reassembly state of the bytes one endpoint sends."""

    __slots__ = (
        "base",
        "datas",
        "fin_seen",
        "gaps",
        "last_base",
        "last_data",
        "next_seq",
        "queued",
        "ref",
        "starts",
        "to_server",
        "window",
        "wscale",
    )

    def __init__(self, ref: FlowRef, to_server: bool) -> None:
        self.ref = ref
        self.to_server = to_server
        self.next_seq = -1  # -1 until the SYN or the first segment (mid-stream pickup, T8) sets it
        self.base = 0
        self.starts: list[int] = []  # unwrapped offsets of queued segments, sorted
        self.datas: list[bytes] = []
        self.queued = 0
        self.last_base = 0  # the last delivered chunk, to compare retransmissions with
        self.last_data = b""
        self.window = 0  # last window this endpoint advertised (unscaled)
        self.wscale = 0
        self.fin_seen = False
        self.gaps = 0

    def init(self, seq: int) -> None:
        """Start (or restart, before any data) the stream at ``seq``."""
        self.next_seq = seq & SEQ_MASK

    @property
    def initialized(self) -> bool:
        return self.next_seq >= 0

    def consume_fin(self, fin_seq: int) -> None:
        """A FIN occupies one sequence number after the data (RFC 9293 §3.4)."""
        self.fin_seen = True
        if fin_seq == self.next_seq and not self.starts:
            self.next_seq = (self.next_seq + 1) & SEQ_MASK
            self.base += 1

    def rst_acceptable(self, seq: int, receive_window: int) -> bool:
        """RFC 5961 §3.2: a RST is acceptable only if its sequence lies in the receive window."""
        if self.next_seq < 0:
            return True  # nothing seen from this side: nothing to check against
        distance = seq_diff(seq, self.next_seq)
        return 0 <= distance <= receive_window

    # --- the slow path -------------------------------------------------------------------------

    def segment(
        self, ctx: ReassemblyContext, seq: int, data: bytes, ts: float, out: list[FlowOutput]
    ) -> None:
        """Handle a data segment that did not take the in-order fast path."""
        if self.next_seq < 0:
            self.next_seq = seq
        distance = seq_diff(seq, self.next_seq)
        if distance < 0:
            if distance == -1 and len(data) <= 1:
                ctx.counters["tcp.keepalive"] += 1
                return
            old = -distance
            ctx.counters["tcp.retransmission"] += 1
            self._compare_delivered(ctx, self.base + distance, data[:old], ts, out)
            if len(data) <= old:
                return
            data = data[old:]
            distance = 0
        start = self.base + distance
        if distance == 0 and not self.starts:
            self._deliver(data, ts, out)
            return
        if distance > 0:
            start = self._make_room(ctx, start, len(data), ts, out)
            if start < self.base:  # a declared gap moved past the head of this segment
                data = data[self.base - start :]
                start = self.base
                if not data:
                    return
            if start > self.base and not self.starts and len(data) > ctx.limits.max_stream_buffer:
                self._declare_gap(ctx, start - self.base, ts, out)
        self._insert(ctx, start, data, ts, out)
        self._drain(ctx, ts, out)
        if self.queued > ctx.limits.gap_wait_bytes:
            while self.starts and self.queued > ctx.limits.gap_wait_bytes:
                self._skip_hole(ctx, ts, out)

    def flush(self, ctx: ReassemblyContext, ts: float, out: list[FlowOutput]) -> None:
        """The flow ends: declare every remaining hole and hand over all queued bytes."""
        while self.starts:
            self._skip_hole(ctx, ts, out)

    # --- helpers ---------------------------------------------------------------------------------

    def _deliver(self, data: bytes, ts: float, out: list[FlowOutput]) -> None:
        self.last_base = self.base
        self.last_data = data
        self.base += len(data)
        self.next_seq = (self.next_seq + len(data)) & SEQ_MASK
        out.append(StreamData(self.ref, self.to_server, data, ts))

    def _make_room(
        self, ctx: ReassemblyContext, start: int, size: int, ts: float, out: list[FlowOutput]
    ) -> int:
        """Give up on holes until ``size`` more bytes fit every cap; returns ``start`` unchanged."""
        limits = ctx.limits
        counters = ctx.counters
        while self.starts:
            if self.queued + size > limits.max_stream_buffer:
                counters["tcp.stream_buffer_limit"] += 1
            elif len(self.starts) >= limits.max_segments_per_direction:
                counters["tcp.segment_limit"] += 1
            elif ctx.used + size > limits.max_reassembly_bytes:
                counters["tcp.memcap"] += 1
            else:
                break
            self._skip_hole(ctx, ts, out)
        if not self.starts and start > self.base and ctx.used + size > limits.max_reassembly_bytes:
            # the memcap is held by other streams: this one cannot queue at all, so skip to the data
            counters["tcp.memcap"] += 1
            self._declare_gap(ctx, start - self.base, ts, out)
        return start

    def acked_unseen(self, ctx: ReassemblyContext, ack: int, ts: float, out: list[FlowOutput]) -> None:
        """The peer acknowledged bytes of this stream that the sensor never saw.

        They reached the peer, so the capture lost them: waiting for them (until ``gap_wait_bytes``
        or the end of the flow) would hand the peer's answer to the parser before the question.
        Declare the gap now, up to the acknowledged byte or the first queued segment.
        """
        if self.next_seq < 0:
            return
        acked = seq_diff(ack, self.next_seq)
        if acked <= 0 or acked >= _MAX_ACK_JUMP:
            return
        missing = min(acked, self.starts[0] - self.base) if self.starts else acked
        if missing > 0:
            ctx.counters["tcp.acked_unseen"] += 1
            self._declare_gap(ctx, missing, ts, out)
            self._drain(ctx, ts, out)

    def _declare_gap(self, ctx: ReassemblyContext, missing: int, ts: float, out: list[FlowOutput]) -> None:
        ctx.counters["tcp.reassembly_gap"] += 1
        self.gaps += 1
        out.append(
            ProtocolAnomaly(
                ts, self.ref, "tcp.reassembly_gap", f"{missing} bytes never seen", self.to_server, 3
            )
        )
        out.append(StreamGap(self.ref, self.to_server, missing, ts))
        self.base += missing
        self.next_seq = (self.next_seq + missing) & SEQ_MASK

    def _skip_hole(self, ctx: ReassemblyContext, ts: float, out: list[FlowOutput]) -> None:
        """Declare the hole before the first queued segment lost, then deliver what follows it."""
        missing = self.starts[0] - self.base
        if missing > 0:
            self._declare_gap(ctx, missing, ts, out)
        self._drain(ctx, ts, out)

    def _drain(self, ctx: ReassemblyContext, ts: float, out: list[FlowOutput]) -> None:
        """Deliver queued segments that have become contiguous with ``base``."""
        starts = self.starts
        datas = self.datas
        count = 0
        freed = 0
        base = self.base
        while count < len(starts) and starts[count] <= base:
            start = starts[count]
            data = datas[count]
            freed += len(data)
            end = start + len(data)
            if end > base:
                chunk = data[base - start :] if base > start else data
                self.last_base = base
                self.last_data = chunk
                out.append(StreamData(self.ref, self.to_server, chunk, ts))
                base = end
            count += 1
        if count:
            del starts[:count]
            del datas[:count]
            self.queued -= freed
            ctx.used -= freed
            self.next_seq = (self.next_seq + base - self.base) & SEQ_MASK
            self.base = base

    def _insert(
        self, ctx: ReassemblyContext, start: int, data: bytes, ts: float, out: list[FlowOutput]
    ) -> None:
        """Queue ``data`` at unwrapped offset ``start``, keeping only bytes no queued segment holds."""
        starts = self.starts
        datas = self.datas
        end = start + len(data)
        index = max(bisect_right(starts, start) - 1, 0)
        cursor = start
        pieces: list[tuple[int, bytes]] = []
        overlapped = False
        differ = False
        while index < len(starts):
            held_start = starts[index]
            if held_start >= end:
                break
            held = datas[index]
            held_end = held_start + len(held)
            if held_end > cursor:
                if held_start > cursor:
                    pieces.append((cursor, data[cursor - start : held_start - start]))
                low = max(held_start, cursor)
                high = min(held_end, end)
                overlapped = True
                if data[low - start : high - start] != held[low - held_start : high - held_start]:
                    differ = True
                cursor = high
            index += 1
        if cursor < end:
            pieces.append((cursor, data[cursor - start :] if cursor > start else data))
        if differ:
            self._overlap_diff(ctx, start, ts, out)
        elif overlapped:
            ctx.counters["tcp.retransmission"] += 1
        added = 0
        for piece_start, piece in pieces:
            position = bisect_left(starts, piece_start)
            starts.insert(position, piece_start)
            datas.insert(position, piece)
            added += len(piece)
        self.queued += added
        ctx.used += added

    def _compare_delivered(
        self, ctx: ReassemblyContext, start: int, data: bytes, ts: float, out: list[FlowOutput]
    ) -> None:
        """Compare old bytes with the last delivered chunk, the only delivered bytes still held."""
        held = self.last_data
        held_start = self.last_base
        low = max(start, held_start)
        high = min(start + len(data), held_start + len(held))
        if low < high and data[low - start : high - start] != held[low - held_start : high - held_start]:
            self._overlap_diff(ctx, low, ts, out)

    def _overlap_diff(self, ctx: ReassemblyContext, offset: int, ts: float, out: list[FlowOutput]) -> None:
        ctx.counters["tcp.overlap_diff"] += 1
        out.append(
            ProtocolAnomaly(
                ts,
                self.ref,
                "tcp.overlap_diff",
                f"overlapping segment at stream offset {offset} carries different bytes; the first seen win",
                self.to_server,
                2,
            )
        )
