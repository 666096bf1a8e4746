"""Modbus/TCP session: framing by MBAP length, resync, request/response pairing (DESIGN.md §3).

Per direction the session is in one of two framing states::

    state     input                                   action                               next
    --------  --------------------------------------  -----------------------------------  -------
    hunting   segment starts with pid 0, length         frame from the segment start         synced
              2..254, function != 0
    synced    >= 7 bytes, pid 0, length 2..254        wait for 6 + length bytes, dispatch  synced
    synced    pid != 0 (M1) or length 0, 1 (M2),      anomaly, skip 6 + length bytes       synced
              the ADU ending exactly with the segment
    synced    pid != 0 or length 0, 1, otherwise      modbus.invalid_protocol_id/_length   hunting
    synced    length > 254 (M3)                       modbus.invalid_length (no waiting)   hunting
    hunting   plausible MBAP header found             (silently) frame from there          synced
    hunting   no plausible header                     keep <= 7 tail bytes                 hunting
    any       gap()                                   drop partial bytes                   hunting
    any       > max_pending_transactions open (M9)    modbus.flooded, drop state           flooded

A "plausible header" for resync has protocol id 0, length 2..254, a named function code for the
direction (exception bit allowed towards the client) and a length that fits that function.

While synced, at most one incomplete ADU (< 260 bytes) is buffered per direction; while hunting, at
most 7 bytes. Whole ADUs inside a segment are parsed in place (offsets into the segment, no copy).

Requests (``to_server=True``) wait in a pending table keyed by (transaction id, unit id) until their
response; a response with no pending request is ``unsolicited`` (mid-stream pickup, T8). A request
whose response does not come within ``Limits.transaction_timeout`` (packet time) or by the end of the
flow is ``unanswered``. More than ``Limits.max_pending_transactions`` open requests is a flood (M9,
CVE-2024-38534): one ``modbus.flooded`` anomaly, pending requests flushed as unanswered, and the flow
is no longer parsed, so memory stays flat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from sensor.dissectors.base import DissectorSession, Reader
from sensor.dissectors.modbus import codes
from sensor.dissectors.modbus.events import ModbusRequest, ModbusResponse, ModbusTransaction
from sensor.dissectors.modbus.frames import MBAP, RAW_PREVIEW, parse_exception, parse_request, parse_response
from sensor.errors import Malformed, Truncated
from sensor.limits import Limits
from sensor.records import AppEvent, FlowRef, ProtocolAnomaly

log = logging.getLogger(__name__)

_EMPTY: Final[tuple[AppEvent, ...]] = ()
MODBUS_PORT: Final = 502
_ZEROS3: Final = b"\x00\x00\x00"  # protocol id (2 bytes) + high byte of a length <= 254

# Function codes accepted when hunting for a header or probing: everything the spec names.
KNOWN_FUNCTIONS: Final = codes.PUBLIC_ASSIGNED | codes.USER_DEFINED | codes.RESERVED

# (min, max) MBAP length (unit id + PDU) of a well-formed ADU, per function and direction.
_REQUEST_LENGTHS: Final[dict[int, tuple[int, int]]] = {
    1: (6, 6), 2: (6, 6), 3: (6, 6), 4: (6, 6), 5: (6, 6), 6: (6, 6),
    7: (2, 2), 8: (4, 254), 11: (2, 2), 12: (2, 2), 15: (8, 254), 16: (9, 254), 17: (2, 2),
    20: (10, 254), 21: (10, 254), 22: (8, 8), 23: (13, 254), 24: (4, 4), 43: (3, 254),
}  # fmt: skip
_RESPONSE_LENGTHS: Final[dict[int, tuple[int, int]]] = {
    1: (3, 254), 2: (3, 254), 3: (3, 254), 4: (3, 254), 5: (6, 6), 6: (6, 6),
    7: (3, 3), 8: (4, 254), 11: (6, 6), 12: (9, 254), 15: (6, 6), 16: (6, 6), 17: (3, 254),
    20: (3, 254), 21: (3, 254), 22: (8, 8), 23: (3, 254), 24: (6, 254), 43: (3, 254),
}  # fmt: skip


def plausible_header(data: bytes, p: int, to_server: bool) -> bool | None:
    """Could an ADU start at ``data[p]``? ``None`` when fewer than 8 bytes are there to tell.

    Used to resync after garbage or a gap and by the detection probe, so it is strict: protocol
    id 0, length 2..254, a function code the spec names for this direction, and a length that fits
    the function (and, for counted bodies, the byte count when it is already in ``data``).
    """
    n = len(data)
    if n - p < 8:
        return None
    if data[p + 2] or data[p + 3] or data[p + 4]:
        return False
    length = data[p + 5]
    if length < codes.MIN_LENGTH or length > codes.MAX_LENGTH:
        return False
    fc = data[p + 7]
    if to_server:
        if fc not in KNOWN_FUNCTIONS:
            return False
        bounds = _REQUEST_LENGTHS.get(fc)
        if bounds is not None and not bounds[0] <= length <= bounds[1]:
            return False
        if fc in (15, 16) and n > p + 12:
            return length == 7 + data[p + 12]
        return True
    if fc & codes.EXCEPTION_BIT:
        return (fc & 0x7F) in KNOWN_FUNCTIONS and length == 3
    if fc not in KNOWN_FUNCTIONS:
        return False
    bounds = _RESPONSE_LENGTHS.get(fc)
    if bounds is not None and not bounds[0] <= length <= bounds[1]:
        return False
    if fc in (1, 2, 3, 4, 23) and n > p + 8:
        return length == 3 + data[p + 8]
    return True


def _segment_start_header(data: bytes, p: int) -> bool:
    """Looser check at the start of a TCP segment: protocol id 0, length 2..254, function != 0."""
    return (
        len(data) - p >= 8
        and not (data[p + 2] or data[p + 3] or data[p + 4])
        and codes.MIN_LENGTH <= data[p + 5] <= codes.MAX_LENGTH
        and data[p + 7] & 0x7F != 0
    )


def _fc_info(fc: int) -> tuple[str, str, str]:
    return codes.function_name(fc), codes.category(fc), codes.code_class(fc)


_FC_INFO: Final[tuple[tuple[str, str, str], ...]] = tuple(_fc_info(fc) for fc in range(128))
_WRITES: Final = frozenset(fc for fc in range(128) if codes.category(fc) == "write")


# A parsed PDU and the anomalies its parse found: (kind with the "modbus." prefix, detail).
_Parsed = tuple[ModbusRequest, tuple[tuple[str, str], ...]]
_ParsedResponse = tuple[ModbusResponse, tuple[tuple[str, str], ...]]


def parse_request_pdu(pdu: bytes) -> _Parsed:
    """A request PDU (function code and data), with the anomalies found; never raises.

    A PDU shorter than its function's fixed fields, or malformed, is kept raw (``valid=False``)."""
    fc = pdu[0]
    try:
        req, issues = parse_request(Reader(pdu, 1), fc)
    except (Truncated, Malformed) as exc:
        raw = pdu[1 : 1 + RAW_PREVIEW]
        return ModbusRequest(fc, raw=raw, raw_length=len(pdu) - 1, valid=False), _failure(fc, len(pdu), exc)
    return req, _named(fc, issues)


def parse_response_pdu(buf: bytes, start: int, end: int, request: ModbusRequest | None) -> _ParsedResponse:
    """The response PDU ``buf[start:end]`` (function code and data, read in place: every response is
    new), in the context of ``request`` (the request of the same function, if any: a read response
    carries no address); never raises. Exceptions (fc | 0x80) carry their code."""
    fc = buf[start]
    r = Reader(buf, start + 1, end)
    try:
        if fc & codes.EXCEPTION_BIT:
            resp, issues = parse_exception(r, fc)
        else:
            resp, issues = parse_response(r, fc, request)
    except (Truncated, Malformed) as exc:
        raw = buf[start + 1 : min(end, start + 1 + RAW_PREVIEW)]
        failed = ModbusResponse(fc & 0x7F, raw=raw, raw_length=end - start - 1, valid=False)
        return failed, _failure(fc, end - start, exc)
    return resp, _named(fc, issues)


def _failure(fc: int, length: int, exc: Truncated | Malformed) -> tuple[tuple[str, str], ...]:
    """The anomaly of a ``length``-byte PDU its parser could not read (the record keeps it raw)."""
    if isinstance(exc, Truncated):
        return (("modbus.invalid_length", f"function {fc}: {length}-byte PDU too short"),)
    return ((f"modbus.{exc.reason}", f"function {fc}: {exc.detail}"),)


def _named(fc: int, issues: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    if not issues:  # the common case: no generator to build
        return issues
    return tuple((f"modbus.{kind}", f"function {fc}: {detail}") for kind, detail in issues)


class PduMemo:
    """Parsed request PDUs by their bytes, shared by the sessions of one sensor.

    Polling sends the same requests for days, and parsing is a pure function of a PDU's bytes whose
    record is immutable: a repeated request reuses the record and the anomalies found the first time.
    Requests that write carry values, and responses carry process values: those change, so they are
    parsed every time (a table of them cost more than it saved, and held a copy of every value written).
    Bounded: the table is emptied when it reaches ``entries``; ``entries`` 0 parses every PDU.
    """

    __slots__ = ("entries", "requests")

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.requests: dict[bytes, _Parsed] = {}

    def request(self, pdu: bytes) -> _Parsed:
        parsed = self.requests.get(pdu)
        if parsed is None:
            parsed = parse_request_pdu(pdu)
            if self.entries and pdu[0] not in _WRITES:
                if len(self.requests) >= self.entries:
                    self.requests.clear()
                self.requests[pdu] = parsed
        return parsed


class _Pending:
    __slots__ = ("request", "tid", "ts", "unit")

    def __init__(self, request: ModbusRequest, tid: int, unit: int, ts: float) -> None:
        self.request = request
        self.tid = tid
        self.unit = unit
        self.ts = ts


class _Direction:
    __slots__ = ("buf", "synced")

    def __init__(self) -> None:
        self.buf = b""  # bytes of an incomplete ADU (synced) or a header candidate tail (hunting)
        self.synced = True


class ModbusSession(DissectorSession):
    """One Modbus/TCP flow. ``feed`` never raises on wire input."""

    __slots__ = ("_dirs", "_flooded", "_memo", "_pending", "_swap", "flow", "limits")

    def __init__(self, flow: FlowRef | None, limits: Limits, memo: PduMemo | None = None) -> None:
        """``memo`` is shared by the sessions of one dissector; a session alone gets its own."""
        # The Modbus server is the port-502 side (Messaging on TCP/IP §4.1.3, and tshark's rule).
        # When the flow table made the 502 side the client (its SYN came from 502), requests travel
        # "to the client": turn the directions and the flow's orientation round.
        self._swap = flow is not None and flow.client_port == MODBUS_PORT and flow.server_port != MODBUS_PORT
        if flow is not None and self._swap:
            flow = FlowRef(
                flow.flow_id,
                flow.community_id,
                flow.transport,
                flow.server_ip,
                flow.server_port,
                flow.client_ip,
                flow.client_port,
                flow.server_mac,
                flow.client_mac,
                flow.vlans,
            )
        self.flow = flow
        self.limits = limits
        self._dirs = {True: _Direction(), False: _Direction()}
        self._pending: dict[int, _Pending] = {}
        self._flooded = False
        self._memo = memo if memo is not None else PduMemo(limits.modbus_pdu_memo)

    # --- the DissectorSession contract ---------------------------------------------------------

    def feed(self, data: bytes, to_server: bool, ts: float) -> Sequence[AppEvent]:
        if self._flooded or not data:
            return _EMPTY
        if self._swap:
            to_server = not to_server
        events: list[AppEvent] = []
        if self._pending:
            self._expire(ts, events)
        d = self._dirs[to_server]
        segment_start = len(d.buf)
        if segment_start:
            data = d.buf + data
            d.buf = b""
        n = len(data)
        off = 0
        unpack = MBAP.unpack_from
        while True:
            if not d.synced:
                # Senders write whole ADUs per TCP segment, so where this segment starts an MBAP
                # header alone (not a named function code) is enough to resync.
                if off <= segment_start and _segment_start_header(data, segment_start):
                    off = segment_start
                    d.synced = True
                    continue
                off, found = self._hunt(data, off, to_server)
                if not found:
                    d.buf = data[off:]
                    return events
                d.synced = True
            if n - off < codes.MBAP_SIZE:
                break
            tid, pid, length, unit = unpack(data, off)
            if length > codes.MAX_LENGTH:
                # Never wait for the bytes a bad length announces (M3): resync right away.
                self._anomaly(events, "modbus.invalid_length", f"MBAP length {length}", to_server, ts)
                d.synced = False
                off += 1
                continue
            end = off + 6 + length
            if pid != 0 or length < codes.MIN_LENGTH:
                if pid != 0:
                    self._anomaly(events, "modbus.invalid_protocol_id", f"protocol id {pid}", to_server, ts)
                else:
                    self._anomaly(events, "modbus.invalid_length", f"MBAP length {length}", to_server, ts)
                if end == n:
                    # The bad ADU fills the segment exactly: its length still frames it (ANCHORS
                    # 4.1, skip Length bytes when plausible), so stay in step with the sender.
                    off = end
                    continue
                d.synced = False
                off += 1
                continue
            if end > n:
                break
            if to_server:
                self._request(data, off, end, tid, unit, ts, events)
                if self._flooded:
                    self._dirs[True].buf = self._dirs[False].buf = b""
                    return events
            else:
                self._response(data, off, end, tid, unit, ts, events)
            off = end
        if off < n:
            d.buf = data[off:] if off else data
        return events

    def gap(self, to_server: bool, size: int, ts: float) -> Sequence[AppEvent]:
        d = self._dirs[to_server != self._swap]
        d.buf = b""
        d.synced = False  # what follows the hole may start mid-ADU
        if self._flooded or not self._pending:
            return _EMPTY
        events: list[AppEvent] = []
        self._expire(ts, events)
        return events

    def close(self, ts: float) -> Sequence[AppEvent]:
        events: list[AppEvent] = []
        for to_server in (True, False):
            d = self._dirs[to_server]
            if d.buf and d.synced and not self._flooded:
                self._anomaly(
                    events, "modbus.truncated", f"{len(d.buf)} bytes of an incomplete ADU", to_server, ts
                )
            d.buf = b""
        for p in self._pending.values():
            events.append(self._unanswered(p, ts))
        self._pending.clear()
        return events

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def buffered(self) -> int:
        return len(self._dirs[True].buf) + len(self._dirs[False].buf)

    @property
    def flooded(self) -> bool:
        return self._flooded

    # --- framing -------------------------------------------------------------------------------

    @staticmethod
    def _hunt(data: bytes, off: int, to_server: bool) -> tuple[int, bool]:
        """Offset of the next plausible header at or after ``off`` and True; else the offset
        from which bytes must be kept (a header may start in the last 7 bytes) and False."""
        n = len(data)
        i = data.find(_ZEROS3, off + 2)
        while i != -1:
            p = i - 2
            verdict = plausible_header(data, p, to_server)
            if verdict is None:
                return p, False
            if verdict:
                return p, True
            i = data.find(_ZEROS3, i + 1)
        return max(off, n - codes.MBAP_SIZE), False

    # --- requests and responses ----------------------------------------------------------------

    def _request(
        self, data: bytes, off: int, end: int, tid: int, unit: int, ts: float, events: list[AppEvent]
    ) -> None:
        fc = data[off + 7]
        if fc == 0 or fc & codes.EXCEPTION_BIT:
            self._anomaly(events, "modbus.invalid_function_code", f"request function code {fc}", True, ts)
            return
        req, issues = self._memo.request(data[off + 7 : end])
        for kind, detail in issues:
            self._anomaly(events, kind, detail, True, ts)
        key = tid << 8 | unit
        pending = self._pending
        old = pending.pop(key, None)
        if old is not None:
            # The client reused a transaction id before the answer: the first one went unanswered.
            events.append(self._unanswered(old, ts))
        elif len(pending) >= self.limits.max_pending_transactions:
            self._flood(ts, events)
            return
        pending[key] = _Pending(req, tid, unit, ts)

    def _response(
        self, data: bytes, off: int, end: int, tid: int, unit: int, ts: float, events: list[AppEvent]
    ) -> None:
        fc = data[off + 7]
        original = fc & 0x7F
        if original == 0:
            self._anomaly(events, "modbus.invalid_function_code", f"response function code {fc}", False, ts)
            return
        entry = self._pending.pop(tid << 8 | unit, None)
        request = entry.request if entry is not None else None
        if entry is None:
            self._anomaly(
                events,
                "modbus.unsolicited_response",
                f"transaction {tid} unit {unit} function {fc}",
                False,
                ts,
            )
        elif request is not None and request.function != original:
            self._anomaly(
                events,
                "modbus.function_mismatch",
                f"request function {request.function}, response function {fc}",
                False,
                ts,
            )
        exception = fc & codes.EXCEPTION_BIT
        # A normal response is read in its request's context (a read response has no address).
        resp, issues = parse_response_pdu(
            data, off + 7, end, request if request is not None and request.function == fc else None
        )
        for kind, detail in issues:
            self._anomaly(events, kind, detail, False, ts)
        function = request.function if request is not None else original
        name, cat, klass = _FC_INFO[function]
        if function == codes.DIAGNOSTICS:
            sub = request.subfunction if request is not None else resp.subfunction
            klass = codes.code_class(function, sub)
        if entry is None:
            status = "unsolicited"
        elif exception:
            status = "exception"
        else:
            status = "ok"
        code = resp.exception_code
        # Positional, in field order (ts, flow, transaction_id, unit_id, function, function_name,
        # category, code_class, status, request, response, exception_code, exception_name,
        # request_ts, response_ts): a NamedTuple built from keywords costs twice as much.
        events.append(
            ModbusTransaction(
                ts,
                self.flow,
                tid,
                unit,
                function,
                name,
                cat,
                klass,
                status,
                request,
                resp,
                code,
                codes.exception_name(code) if code is not None else None,
                entry.ts if entry is not None else None,
                ts,
            )
        )

    def _unanswered(self, p: _Pending, ts: float) -> ModbusTransaction:
        fc = p.request.function
        name, cat, klass = _FC_INFO[fc]
        if fc == codes.DIAGNOSTICS:
            klass = codes.code_class(fc, p.request.subfunction)
        return ModbusTransaction(
            ts=ts,
            flow=self.flow,
            transaction_id=p.tid,
            unit_id=p.unit,
            function=fc,
            function_name=name,
            category=cat,
            code_class=klass,
            status="unanswered",
            request=p.request,
            request_ts=p.ts,
        )

    def _expire(self, ts: float, events: list[AppEvent]) -> None:
        """Declare requests older than the transaction timeout (packet time) unanswered."""
        pending = self._pending
        deadline = ts - self.limits.transaction_timeout
        while pending:
            key = next(iter(pending))
            p = pending[key]
            if p.ts >= deadline:
                break
            del pending[key]
            events.append(self._unanswered(p, ts))

    def _flood(self, ts: float, events: list[AppEvent]) -> None:
        limit = self.limits.max_pending_transactions
        self._anomaly(
            events,
            "modbus.flooded",
            f"more than {limit} requests without a response; no longer parsing this flow",
            True,
            ts,
            severity=2,
        )
        for p in self._pending.values():
            events.append(self._unanswered(p, ts))
        self._pending.clear()
        self._flooded = True
        log.debug("modbus flow %s flooded", self.flow)

    def _anomaly(
        self, events: list[AppEvent], kind: str, detail: str, to_server: bool, ts: float, severity: int = 3
    ) -> None:
        events.append(
            ProtocolAnomaly(
                ts=ts,
                flow=self.flow,
                kind=kind,
                detail=detail,
                to_server=to_server,
                severity=severity,
                app_proto="modbus",
            )
        )
