"""Pure parsers of Modbus/TCP frames (MODBUS Application Protocol v1.1b3; Messaging on TCP/IP v1.0b).

An ADU on TCP is an MBAP header followed by a PDU (Messaging on TCP/IP §3.1.3)::

    offset  size  field
    ------  ----  -------------------------------------------------------------
       0     2    transaction id         (big-endian, echoed by the server)
       2     2    protocol id            (0 = Modbus; anything else is not Modbus)
       4     2    length                 (bytes that follow: unit id + PDU, 2..254)
       6     1    unit id                (server behind a gateway; 0xFF/0 on plain TCP)
       7     1    function code          (| 0x80 in an exception response)
       8    ...   function data          (length - 2 bytes)

The parsers here read one PDU's *function data* through a :class:`~sensor.dissectors.base.Reader`
bounded to that PDU (the session frames the stream by the MBAP length, so "more bytes" can never
arrive for a framed PDU). They raise only :class:`Truncated` (the PDU is shorter than the function's
fixed fields) or :class:`Malformed`; softer violations of the spec (quantity out of range, byte count
disagreeing with the quantity, a body longer or shorter than its byte count) are returned as
:data:`Issue` tuples next to the record, so the values are still recorded but flagged
(``valid=False``).
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple, TypeVar

from sensor.dissectors.base import Reader
from sensor.dissectors.modbus import codes
from sensor.dissectors.modbus.events import DeviceIdentification, FileRecord, ModbusRequest, ModbusResponse
from sensor.errors import Malformed, Truncated

__all__ = [
    "MBAP",
    "Issue",
    "Malformed",
    "MbapHeader",
    "Truncated",
    "parse_exception",
    "parse_mbap",
    "parse_request",
    "parse_response",
]

MBAP: Final = struct.Struct(">HHHB")
_U16: Final = struct.Struct(">H")
_U16X2: Final = struct.Struct(">HH")
_U16X3: Final = struct.Struct(">HHH")
_U16X2_U8: Final = struct.Struct(">HHB")
_U16X4_U8: Final = struct.Struct(">HHHHB")

_PduT = TypeVar("_PduT", ModbusRequest, ModbusResponse)

RAW_PREVIEW: Final = 64  # bytes of an uninterpreted body kept in a record

# (anomaly kind without the "modbus." prefix, detail)
Issue = tuple[str, str]

# Coil/discrete-input bytes -> 8 bools, least significant bit first (§6.1).
_BITS: Final[tuple[tuple[bool, ...], ...]] = tuple(
    tuple(bool(b >> i & 1) for i in range(8)) for b in range(256)
)


class MbapHeader(NamedTuple):
    transaction_id: int
    protocol_id: int
    length: int
    unit_id: int


def parse_mbap(r: Reader) -> MbapHeader:
    """MBAP header (Messaging on TCP/IP §3.1.3); protocol id must be 0 and length 2..254."""
    r.need(codes.MBAP_SIZE)
    tid, pid, length, unit = MBAP.unpack_from(r.buf, r.pos)
    r.pos += codes.MBAP_SIZE
    if pid != 0:
        raise Malformed("invalid_protocol_id", f"protocol id {pid}")
    if not codes.MIN_LENGTH <= length <= codes.MAX_LENGTH:
        raise Malformed("invalid_length", f"MBAP length {length} outside 2..254")
    return MbapHeader(tid, pid, length, unit)


# --- helpers -----------------------------------------------------------------------------------


def _bits(r: Reader, n: int) -> tuple[bool, ...]:
    buf, p = r.buf, r.pos
    r.skip(n)
    if n == 1:
        return _BITS[buf[p]]
    out: list[bool] = []
    for b in bytes(buf[p : p + n]):
        out.extend(_BITS[b])
    return tuple(out)


def _registers(r: Reader, count: int) -> tuple[int, ...]:
    r.need(2 * count)
    values: tuple[int, ...] = struct.unpack_from(f">{count}H", r.buf, r.pos)
    r.pos += 2 * count
    return values


def _raw(r: Reader) -> tuple[bytes, int]:
    n = r.remaining
    data = r.bytes(min(n, RAW_PREVIEW))
    r.pos = r.end
    return data, n


def _quantity_issue(name: str, q: int, hi: int) -> Issue | None:
    if 1 <= q <= hi:
        return None
    return ("invalid_value", f"{name} {q} outside 1..{hi}")


def _trailing(r: Reader, issues: list[Issue]) -> None:
    if r.remaining:
        issues.append(("invalid_length", f"{r.remaining} bytes after the function's fields"))


def _counted_body(r: Reader, byte_count: int, issues: list[Issue]) -> int:
    """Bytes of a counted body actually present; flags data length != byte count (M4/M5)."""
    avail = r.remaining
    if avail != byte_count:
        issues.append(("invalid_length", f"byte count {byte_count} but {avail} data bytes"))
    return min(avail, byte_count)


def _device_id_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


# --- requests ----------------------------------------------------------------------------------

_READ_LIMITS: Final[dict[int, tuple[str, int]]] = {
    codes.READ_COILS: ("quantity", codes.MAX_READ_BITS),
    codes.READ_DISCRETE_INPUTS: ("quantity", codes.MAX_READ_BITS),
    codes.READ_HOLDING_REGISTERS: ("quantity", codes.MAX_READ_REGISTERS),
    codes.READ_INPUT_REGISTERS: ("quantity", codes.MAX_READ_REGISTERS),
}

_REGISTER_READS: Final = frozenset(
    {codes.READ_HOLDING_REGISTERS, codes.READ_INPUT_REGISTERS, codes.READ_WRITE_MULTIPLE_REGISTERS}
)

_NO_DATA: Final = frozenset(
    {
        codes.READ_EXCEPTION_STATUS,
        codes.GET_COMM_EVENT_COUNTER,
        codes.GET_COMM_EVENT_LOG,
        codes.REPORT_SERVER_ID,
    }
)


def parse_request(r: Reader, function: int) -> tuple[ModbusRequest, tuple[Issue, ...]]:
    """Request PDU body of ``function`` (MODBUS v1.1b3 §6.1-§6.21); ``r`` spans the bytes after the
    function code. Unknown, user-defined and reserved codes are kept raw (not a failure)."""
    issues: list[Issue] = []
    fc = function
    if fc in _READ_LIMITS:  # §6.1-§6.4
        r.need(4)
        address, quantity = _U16X2.unpack_from(r.buf, r.pos)
        r.pos += 4
        if 1 <= quantity <= _READ_LIMITS[fc][1] and r.pos == r.end:
            return ModbusRequest(fc, address, quantity), ()  # the polling case: nothing to flag
        issue = _quantity_issue("quantity", quantity, _READ_LIMITS[fc][1])
        if issue:
            issues.append(issue)
        _trailing(r, issues)
        return ModbusRequest(fc, address=address, quantity=quantity, valid=not issues), tuple(issues)
    if fc == codes.WRITE_SINGLE_COIL:  # §6.5
        r.need(4)
        address, value = _U16X2.unpack_from(r.buf, r.pos)
        r.pos += 4
        _trailing(r, issues)
        if value == codes.COIL_ON or value == codes.COIL_OFF:
            req = ModbusRequest(fc, address=address, quantity=1, values=(value == codes.COIL_ON,))
        else:
            issues.append(("invalid_value", f"coil value {value:#06x} is neither 0x0000 nor 0xFF00"))
            req = ModbusRequest(fc, address=address, quantity=1, raw=_U16.pack(value), raw_length=2)
        return (req if not issues else _invalid(req)), tuple(issues)
    if fc == codes.WRITE_SINGLE_REGISTER:  # §6.6
        r.need(4)
        address, value = _U16X2.unpack_from(r.buf, r.pos)
        r.pos += 4
        _trailing(r, issues)
        return ModbusRequest(fc, address=address, quantity=1, values=(value,), valid=not issues), tuple(
            issues
        )
    if fc in _NO_DATA:  # §6.7, §6.9, §6.10, §6.13
        _trailing(r, issues)
        return ModbusRequest(fc, valid=not issues), tuple(issues)
    if fc == codes.DIAGNOSTICS:  # §6.8
        return _diagnostics(r, fc, ModbusRequest), ()
    if fc == codes.WRITE_MULTIPLE_COILS:  # §6.11
        r.need(5)
        address, quantity, byte_count = _U16X2_U8.unpack_from(r.buf, r.pos)
        r.pos += 5
        issue = _quantity_issue("quantity", quantity, codes.MAX_WRITE_COILS)
        if issue:
            issues.append(issue)
        if byte_count != (quantity + 7) // 8:
            issues.append(("value_mismatch", f"byte count {byte_count} for {quantity} coils"))
        n = _counted_body(r, byte_count, issues)
        bits = _bits(r, n)[:quantity]
        r.pos = r.end
        req = ModbusRequest(fc, address=address, quantity=quantity, byte_count=byte_count, values=bits)
        return (req if not issues else _invalid(req)), tuple(issues)
    if fc == codes.WRITE_MULTIPLE_REGISTERS:  # §6.12
        r.need(5)
        address, quantity, byte_count = _U16X2_U8.unpack_from(r.buf, r.pos)
        r.pos += 5
        issue = _quantity_issue("quantity", quantity, codes.MAX_WRITE_REGISTERS)
        if issue:
            issues.append(issue)
        if byte_count != 2 * quantity:
            issues.append(("value_mismatch", f"byte count {byte_count} for {quantity} registers"))
        n = _counted_body(r, byte_count, issues)
        regs = _registers(r, min(n // 2, quantity))
        r.pos = r.end
        req = ModbusRequest(fc, address=address, quantity=quantity, byte_count=byte_count, values=regs)
        return (req if not issues else _invalid(req)), tuple(issues)
    if fc == codes.READ_FILE_RECORD:  # §6.14
        byte_count = r.u8()
        if not 0x07 <= byte_count <= 0xF5:
            issues.append(("invalid_value", f"byte count {byte_count} outside 7..245"))
        n = _counted_body(r, byte_count, issues)
        body = r.sub(n)
        records: list[FileRecord] = []
        while body.remaining >= 7:
            ref, file_no, rec_no, rec_len = struct.unpack_from(">BHHH", body.buf, body.pos)
            body.pos += 7
            if ref != 6:
                issues.append(("invalid_value", f"reference type {ref} (must be 6)"))
            records.append(FileRecord(ref, file_no, rec_no, rec_len))
        if body.remaining:
            issues.append(("invalid_length", f"{body.remaining} bytes left in the sub-requests"))
        r.pos = r.end
        return ModbusRequest(fc, byte_count=byte_count, file_records=tuple(records), valid=not issues), tuple(
            issues
        )
    if fc == codes.WRITE_FILE_RECORD:  # §6.15
        byte_count = r.u8()
        n = _counted_body(r, byte_count, issues)
        records = _write_file_records(r.sub(n), issues)
        r.pos = r.end
        return ModbusRequest(fc, byte_count=byte_count, file_records=tuple(records), valid=not issues), tuple(
            issues
        )
    if fc == codes.MASK_WRITE_REGISTER:  # §6.16
        return _mask_write(r, fc, ModbusRequest)
    if fc == codes.READ_WRITE_MULTIPLE_REGISTERS:  # §6.17
        r.need(9)
        read_address, read_qty, write_address, write_qty, byte_count = _U16X4_U8.unpack_from(r.buf, r.pos)
        r.pos += 9
        for issue in (
            _quantity_issue("read quantity", read_qty, codes.MAX_READ_REGISTERS),
            _quantity_issue("write quantity", write_qty, codes.MAX_RW_WRITE_REGISTERS),
        ):
            if issue:
                issues.append(issue)
        if byte_count != 2 * write_qty:
            issues.append(("value_mismatch", f"write byte count {byte_count} for {write_qty} registers"))
        n = _counted_body(r, byte_count, issues)
        regs = _registers(r, min(n // 2, write_qty))
        r.pos = r.end
        req = ModbusRequest(
            fc,
            address=read_address,
            quantity=read_qty,
            byte_count=byte_count,
            write_address=write_address,
            write_quantity=write_qty,
            write_values=regs,
        )
        return (req if not issues else _invalid(req)), tuple(issues)
    if fc == codes.READ_FIFO_QUEUE:  # §6.18
        address = r.u16be()
        _trailing(r, issues)
        return ModbusRequest(fc, address=address, valid=not issues), tuple(issues)
    if fc == codes.ENCAPSULATED_INTERFACE_TRANSPORT:  # §6.19-§6.21
        mei = r.u8()
        if mei == codes.MEI_READ_DEVICE_IDENTIFICATION:
            r.need(2)
            code, object_id = r.buf[r.pos], r.buf[r.pos + 1]
            r.pos += 2
            if code not in codes.READ_DEVICE_ID_CODES:
                issues.append(("invalid_value", f"read device id code {code}"))
            _trailing(r, issues)
            dev = DeviceIdentification(code, object_id)
            return ModbusRequest(fc, mei_type=mei, device_id=dev, valid=not issues), tuple(issues)
        raw, raw_len = _raw(r)
        return ModbusRequest(fc, mei_type=mei, raw=raw, raw_length=raw_len), ()
    # user-defined, reserved, unassigned: a raw record, not a failure
    raw, raw_len = _raw(r)
    return ModbusRequest(fc, raw=raw, raw_length=raw_len), ()


def _invalid(req: ModbusRequest) -> ModbusRequest:
    return req._replace(valid=False)


def _write_file_records(body: Reader, issues: list[Issue]) -> list[FileRecord]:
    """Sub-requests of FC 21 (also echoed by its response): ref, file, record, length, 2*length bytes."""
    records: list[FileRecord] = []
    while body.remaining >= 7:
        ref, file_no, rec_no, rec_len = struct.unpack_from(">BHHH", body.buf, body.pos)
        body.pos += 7
        if ref != 6:
            issues.append(("invalid_value", f"reference type {ref} (must be 6)"))
        avail = body.remaining // 2
        if rec_len > avail:
            issues.append(("invalid_length", f"record length {rec_len} but {avail} registers left"))
        regs = _registers(body, min(rec_len, avail))
        records.append(FileRecord(ref, file_no, rec_no, rec_len, regs))
    if body.remaining:
        issues.append(("invalid_length", f"{body.remaining} bytes left in the sub-requests"))
        body.pos = body.end
    return records


def _mask_write(r: Reader, fc: int, cls: type[_PduT]) -> tuple[_PduT, tuple[Issue, ...]]:
    """FC 22 (§6.16): reference address, AND mask, OR mask; the same in the request and its echo."""
    issues: list[Issue] = []
    r.need(6)
    address, and_mask, or_mask = _U16X3.unpack_from(r.buf, r.pos)
    r.pos += 6
    _trailing(r, issues)
    return cls(fc, address=address, and_mask=and_mask, or_mask=or_mask, valid=not issues), tuple(issues)


def _diagnostics(r: Reader, fc: int, cls: type[_PduT]) -> _PduT:
    """FC 8 (§6.8): sub-function u16 + data; a missing sub-function is malformed (M10)."""
    if r.remaining < 2:
        raise Malformed("malformed", f"diagnostics sub-function truncated ({r.remaining} bytes)")
    sub = r.u16be()
    n = r.remaining
    words: tuple[int, ...] = ()
    if n and n % 2 == 0 and n <= 2 * 16:
        words = _registers(r, n // 2)
        r.pos -= n
    raw, raw_len = _raw(r)
    return cls(fc, subfunction=sub, values=words, raw=raw, raw_length=raw_len)


# --- responses ---------------------------------------------------------------------------------


def parse_response(
    r: Reader, function: int, request: ModbusRequest | None = None
) -> tuple[ModbusResponse, tuple[Issue, ...]]:
    """Normal (non-exception) response body of ``function`` (MODBUS v1.1b3 §6.1-§6.21).

    ``request`` is the paired request of the same function, when known: a read response has no
    address of its own, so address and quantity are taken from the request, and its byte count is
    checked against the requested quantity (``value_mismatch``).
    """
    issues: list[Issue] = []
    fc = function
    if fc == codes.READ_COILS or fc == codes.READ_DISCRETE_INPUTS:  # §6.1, §6.2
        byte_count = r.u8()
        n = _counted_body(r, byte_count, issues)
        bits = _bits(r, n)
        r.pos = r.end
        address = quantity = None
        if request is not None and request.quantity is not None:
            address, quantity = request.address, request.quantity
            if byte_count != (quantity + 7) // 8:
                issues.append(("value_mismatch", f"byte count {byte_count} for {quantity} bits requested"))
            bits = bits[:quantity]
        return ModbusResponse(
            fc, address=address, quantity=quantity, byte_count=byte_count, values=bits, valid=not issues
        ), tuple(issues)
    if fc in _REGISTER_READS:  # §6.3, §6.4, §6.17: byte count u8 | registers
        # The commonest PDU of all (polling), so read in place: same checks as r.u8(),
        # _counted_body and _registers, without their calls.
        buf, p, end = r.buf, r.pos, r.end
        if p >= end:
            r.need(1)  # raises Truncated
        byte_count = buf[p]
        p += 1
        n = end - p
        if n != byte_count:
            issues.append(("invalid_length", f"byte count {byte_count} but {n} data bytes"))
            if byte_count < n:
                n = byte_count
        if byte_count % 2:
            issues.append(("invalid_length", f"odd register byte count {byte_count}"))
        regs: tuple[int, ...] = struct.unpack_from(f">{n // 2}H", buf, p)
        r.pos = end
        address = quantity = None
        if request is not None and request.quantity is not None:
            address, quantity = request.address, request.quantity
            if byte_count != 2 * quantity:
                issues.append(
                    ("value_mismatch", f"byte count {byte_count} for {quantity} registers requested")
                )
        return ModbusResponse(
            fc, address=address, quantity=quantity, byte_count=byte_count, values=regs, valid=not issues
        ), tuple(issues)
    if fc == codes.WRITE_SINGLE_COIL or fc == codes.WRITE_SINGLE_REGISTER:  # §6.5, §6.6: echo
        r.need(4)
        address, value = _U16X2.unpack_from(r.buf, r.pos)
        r.pos += 4
        _trailing(r, issues)
        values: tuple[int, ...] = (value,)
        if fc == codes.WRITE_SINGLE_COIL:
            if value == codes.COIL_ON or value == codes.COIL_OFF:
                values = (value == codes.COIL_ON,)
            else:
                issues.append(("invalid_value", f"coil value {value:#06x} is neither 0x0000 nor 0xFF00"))
                values = ()
        if request is not None and (request.address != address or (values and request.values != values)):
            issues.append(("value_mismatch", "write echo differs from the request"))
        return ModbusResponse(fc, address=address, quantity=1, values=values, valid=not issues), tuple(issues)
    if fc == codes.READ_EXCEPTION_STATUS:  # §6.7
        status = r.u8()
        _trailing(r, issues)
        return ModbusResponse(fc, values=(status,), valid=not issues), tuple(issues)
    if fc == codes.DIAGNOSTICS:  # §6.8
        resp = _diagnostics(r, fc, ModbusResponse)
        if request is not None and request.subfunction != resp.subfunction:
            return _flag_response(resp), (("value_mismatch", "diagnostics sub-function echo differs"),)
        return resp, ()
    if fc == codes.GET_COMM_EVENT_COUNTER:  # §6.9
        r.need(4)
        status, count = _U16X2.unpack_from(r.buf, r.pos)
        r.pos += 4
        _trailing(r, issues)
        return ModbusResponse(fc, values=(status, count), valid=not issues), tuple(issues)
    if fc == codes.GET_COMM_EVENT_LOG:  # §6.10
        byte_count = r.u8()
        n = _counted_body(r, byte_count, issues)
        body = r.sub(n)
        r.pos = r.end
        body.need(6)
        status, event_count, message_count = _U16X3.unpack_from(body.buf, body.pos)
        body.pos += 6
        raw, raw_len = _raw(body)
        return ModbusResponse(
            fc,
            byte_count=byte_count,
            values=(status, event_count, message_count),
            raw=raw,
            raw_length=raw_len,
            valid=not issues,
        ), tuple(issues)
    if fc in (codes.WRITE_MULTIPLE_COILS, codes.WRITE_MULTIPLE_REGISTERS):  # §6.11, §6.12: echo
        r.need(4)
        address, quantity = _U16X2.unpack_from(r.buf, r.pos)
        r.pos += 4
        _trailing(r, issues)
        if request is not None and (request.address, request.quantity) != (address, quantity):
            issues.append(("value_mismatch", "write echo differs from the request"))
        return ModbusResponse(fc, address=address, quantity=quantity, valid=not issues), tuple(issues)
    if fc == codes.REPORT_SERVER_ID:  # §6.13: server id, run indicator, device specific data
        byte_count = r.u8()
        n = _counted_body(r, byte_count, issues)
        raw, raw_len = _raw(r.sub(n))
        r.pos = r.end
        return ModbusResponse(
            fc, byte_count=byte_count, raw=raw, raw_length=raw_len, valid=not issues
        ), tuple(issues)
    if fc == codes.READ_FILE_RECORD:  # §6.14
        byte_count = r.u8()
        n = _counted_body(r, byte_count, issues)
        body = r.sub(n)
        r.pos = r.end
        records: list[FileRecord] = []
        while body.remaining >= 2:
            sub_len, ref = body.buf[body.pos], body.buf[body.pos + 1]
            body.pos += 2
            data_len = max(sub_len - 1, 0)
            if data_len > body.remaining:
                issues.append(("invalid_length", f"file response length {sub_len} past the data"))
                data_len = body.remaining
            regs = _registers(body, data_len // 2)
            body.pos += data_len % 2
            records.append(FileRecord(ref, values=regs))
        if body.remaining:
            issues.append(("invalid_length", f"{body.remaining} bytes left in the sub-responses"))
        return ModbusResponse(
            fc, byte_count=byte_count, file_records=tuple(records), valid=not issues
        ), tuple(issues)
    if fc == codes.WRITE_FILE_RECORD:  # §6.15: echo of the request
        byte_count = r.u8()
        n = _counted_body(r, byte_count, issues)
        records = _write_file_records(r.sub(n), issues)
        r.pos = r.end
        return ModbusResponse(
            fc, byte_count=byte_count, file_records=tuple(records), valid=not issues
        ), tuple(issues)
    if fc == codes.MASK_WRITE_REGISTER:  # §6.16: the response echoes the request
        return _mask_write(r, fc, ModbusResponse)
    if fc == codes.READ_FIFO_QUEUE:  # §6.18
        r.need(4)
        byte_count, fifo_count = _U16X2.unpack_from(r.buf, r.pos)
        r.pos += 4
        if fifo_count > codes.MAX_FIFO_COUNT:
            issues.append(("invalid_value", f"FIFO count {fifo_count} above {codes.MAX_FIFO_COUNT}"))
        if byte_count != 2 + 2 * fifo_count:
            issues.append(("value_mismatch", f"byte count {byte_count} for {fifo_count} FIFO registers"))
        avail = r.remaining // 2
        if avail != fifo_count:
            issues.append(("invalid_length", f"FIFO count {fifo_count} but {avail} registers present"))
        regs = _registers(r, min(avail, fifo_count))
        r.pos = r.end
        address = request.address if request is not None else None
        return ModbusResponse(
            fc, address=address, quantity=fifo_count, byte_count=byte_count, values=regs, valid=not issues
        ), tuple(issues)
    if fc == codes.ENCAPSULATED_INTERFACE_TRANSPORT:
        mei = r.u8()
        if mei == codes.MEI_READ_DEVICE_IDENTIFICATION:
            return _device_identification_response(r, fc, mei)
        raw, raw_len = _raw(r)
        return ModbusResponse(fc, mei_type=mei, raw=raw, raw_length=raw_len), ()
    raw, raw_len = _raw(r)
    return ModbusResponse(fc, raw=raw, raw_length=raw_len), ()


def _flag_response(resp: ModbusResponse) -> ModbusResponse:
    return resp._replace(valid=False)


def _device_identification_response(r: Reader, fc: int, mei: int) -> tuple[ModbusResponse, tuple[Issue, ...]]:
    """FC 43 / MEI 14 response (§6.21)::

        read dev id code u8 | conformity u8 | more follows u8 | next object id u8 | n objects u8
        then n x (object id u8 | object length u8 | value)

    An object whose length runs past the PDU is kept as the bytes that are there and flagged
    ``malformed`` (M10); parsing stops there.
    """
    issues: list[Issue] = []
    r.need(5)
    buf, p = r.buf, r.pos
    code, conformity, more, next_id, count = buf[p], buf[p + 1], buf[p + 2], buf[p + 3], buf[p + 4]
    r.pos += 5
    if more not in (0x00, 0xFF):
        issues.append(("invalid_value", f"more follows {more:#04x}"))
    objects: list[tuple[int, str]] = []
    for _ in range(count):
        if r.remaining < 2:
            issues.append(("malformed", f"{count} objects announced, {len(objects)} present"))
            break
        oid, olen = r.buf[r.pos], r.buf[r.pos + 1]
        r.pos += 2
        if olen > r.remaining:
            issues.append(
                ("malformed", f"object {oid:#04x} length {olen} past the data ({r.remaining} left)")
            )
            objects.append((oid, _device_id_text(r.rest())))
            break
        objects.append((oid, _device_id_text(r.bytes(olen))))
    _trailing(r, issues)
    dev = DeviceIdentification(
        code,
        object_id=objects[0][0] if objects else 0,
        conformity_level=conformity,
        more_follows=more == 0xFF,
        next_object_id=next_id,
        objects=tuple(objects),
    )
    return ModbusResponse(fc, mei_type=mei, device_id=dev, valid=not issues), tuple(issues)


def parse_exception(r: Reader, function: int) -> tuple[ModbusResponse, tuple[Issue, ...]]:
    """Exception response (§7): ``function | 0x80`` then one exception code byte.

    The record's ``function`` is the original code (exception bit cleared)."""
    code = r.u8()
    issues: list[Issue] = []
    if code not in codes.EXCEPTION_NAMES:
        issues.append(("invalid_exception_code", f"exception code {code}"))
    _trailing(r, issues)
    return ModbusResponse(function & 0x7F, exception_code=code, valid=not issues), tuple(issues)
