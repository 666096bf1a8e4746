"""Modbus/TCP records: the parsed request and response PDUs and the transaction event that pairs them.

A :class:`ModbusTransaction` is what leaves the dissector (``event_type = "modbus"``); it satisfies
:class:`sensor.records.AppEvent`. Its ``status`` says how it ended:

=============  ====================================================================
``ok``         a request and its normal response
``exception``  a request (or none, mid-stream) answered with ``function | 0x80`` + code
``unanswered`` a request whose response never came (flow closed, or timed out by packet time)
``unsolicited`` a response with no pending request (mid-stream pickup, T8)
=============  ====================================================================

Addresses are the 0-based PDU addresses of the spec (MODBUS v1.1b3 §4.4), not "40001"-style numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sensor.dissectors.modbus import codes
from sensor.records import FlowRef


@dataclass(frozen=True, slots=True)
class DeviceIdentification:
    """FC 43 / MEI 14 Read Device Identification (MODBUS v1.1b3 §6.21).

    In a request only ``read_device_id_code`` and ``object_id`` are set; a response adds the
    conformity level, the more-follows flag, the next object id and the objects as ``(id, text)``.
    """

    read_device_id_code: int
    object_id: int = 0
    conformity_level: int | None = None
    more_follows: bool | None = None
    next_object_id: int | None = None
    objects: tuple[tuple[int, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "read_device_id_code": self.read_device_id_code,
            "read_device_id": codes.READ_DEVICE_ID_CODES.get(self.read_device_id_code, "unknown"),
            "object_id": self.object_id,
        }
        if self.conformity_level is not None:
            out["conformity_level"] = self.conformity_level
            out["more_follows"] = bool(self.more_follows)
            out["next_object_id"] = self.next_object_id
            out["objects"] = {codes.device_id_object_name(oid): value for oid, value in self.objects}
        return out

    def object(self, name: str) -> str | None:
        """Value of a named object (e.g. ``"VendorName"``), if the response carried it."""
        for oid, value in self.objects:
            if codes.device_id_object_name(oid) == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One sub-request/response of FC 20/21 (MODBUS v1.1b3 §6.14, §6.15)."""

    reference_type: int
    file_number: int | None = None
    record_number: int | None = None
    record_length: int | None = None
    values: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference_type": self.reference_type}
        if self.file_number is not None:
            out["file_number"] = self.file_number
            out["record_number"] = self.record_number
            out["record_length"] = self.record_length
        if self.values:
            out["values"] = list(self.values)
        return out


class ModbusRequest(NamedTuple):
    """A parsed request PDU (client -> server). Unset fields stay ``None`` / empty.

    ``values`` holds coils/discrete inputs as bools and registers as ints. ``valid`` is False
    when a check failed (quantity out of range, count mismatch, malformed body): the values are
    recorded for the analyst but must not be trusted, e.g. by the register map (hostile input M8).
    ``raw`` keeps a bounded copy of a body the parser does not interpret (user-defined codes,
    diagnostics data, malformed PDUs); ``raw_length`` is the full length.

    PDUs and transactions are built for every Modbus packet, so they are NamedTuples (immutable
    like the frozen dataclasses elsewhere, at a quarter of the cost to build).
    """

    function: int
    address: int | None = None
    quantity: int | None = None
    byte_count: int | None = None
    values: tuple[int, ...] = ()  # bools are ints: coils are stored as bool
    subfunction: int | None = None
    write_address: int | None = None  # FC 23 write part
    write_quantity: int | None = None
    write_values: tuple[int, ...] = ()
    and_mask: int | None = None  # FC 22
    or_mask: int | None = None
    mei_type: int | None = None  # FC 43
    device_id: DeviceIdentification | None = None
    file_records: tuple[FileRecord, ...] = ()
    raw: bytes = b""
    raw_length: int = 0
    valid: bool = True

    def as_dict(self) -> dict[str, Any]:
        return _pdu_dict(self)


class ModbusResponse(NamedTuple):
    """A parsed response PDU (server -> client): the fields of :class:`ModbusRequest` plus the
    exception code. For reads, ``address``/``quantity`` are copied from the request, because a read
    response carries no address (cisagov/icsnpp-modbus#14)."""

    function: int
    address: int | None = None
    quantity: int | None = None
    byte_count: int | None = None
    values: tuple[int, ...] = ()
    subfunction: int | None = None
    write_address: int | None = None
    write_quantity: int | None = None
    write_values: tuple[int, ...] = ()
    and_mask: int | None = None
    or_mask: int | None = None
    mei_type: int | None = None
    device_id: DeviceIdentification | None = None
    file_records: tuple[FileRecord, ...] = ()
    raw: bytes = b""
    raw_length: int = 0
    valid: bool = True
    exception_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = _pdu_dict(self)
        if self.exception_code is not None:
            out["exception_code"] = self.exception_code
        return out


def _pdu_dict(pdu: ModbusRequest | ModbusResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"function": pdu.function}
    if pdu.address is not None:
        out["address"] = pdu.address
    if pdu.quantity is not None:
        out["quantity"] = pdu.quantity
    if pdu.byte_count is not None:
        out["byte_count"] = pdu.byte_count
    if pdu.values:
        out["values"] = list(pdu.values)
    if pdu.subfunction is not None:
        out["subfunction"] = pdu.subfunction
        out["subfunction_name"] = codes.subfunction_name(pdu.subfunction)
    if pdu.write_address is not None:
        out["write_address"] = pdu.write_address
        out["write_quantity"] = pdu.write_quantity
        out["write_values"] = list(pdu.write_values)
    if pdu.and_mask is not None:
        out["and_mask"] = pdu.and_mask
        out["or_mask"] = pdu.or_mask
    if pdu.mei_type is not None:
        out["mei_type"] = pdu.mei_type
        out["mei_name"] = codes.MEI_NAMES.get(pdu.mei_type, f"mei_{pdu.mei_type}")
    if pdu.device_id is not None:
        out["device_identification"] = pdu.device_id.as_dict()
    if pdu.file_records:
        out["file_records"] = [r.as_dict() for r in pdu.file_records]
    if pdu.raw_length:
        out["raw"] = pdu.raw.hex()
        out["raw_length"] = pdu.raw_length
    if not pdu.valid:
        out["valid"] = False
    return out


class ModbusTransaction(NamedTuple):
    """A request paired with its response, or one of them alone (see module docstring).

    ``function`` is the function code without the exception bit; ``ts`` is the packet time at
    which the transaction completed (the response, or the moment it was declared unanswered).
    """

    ts: float
    flow: FlowRef | None
    transaction_id: int
    unit_id: int
    function: int
    function_name: str
    category: str
    code_class: str
    status: str
    request: ModbusRequest | None = None
    response: ModbusResponse | None = None
    exception_code: int | None = None
    exception_name: str | None = None
    request_ts: float | None = None
    response_ts: float | None = None

    @property
    def event_type(self) -> str:
        return "modbus"

    @property
    def to_server(self) -> bool:
        return True

    @property
    def app_proto(self) -> str:
        return "modbus"

    def eve_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "transaction_id": self.transaction_id,
            "unit_id": self.unit_id,
            "function": self.function,
            "function_name": self.function_name,
            "category": self.category,
            "code_class": self.code_class,
            "status": self.status,
        }
        if self.exception_code is not None:
            body["exception_code"] = self.exception_code
            body["exception_name"] = self.exception_name
        if self.request is not None:
            body["request"] = self.request.as_dict()
        if self.response is not None:
            body["response"] = self.response.as_dict()
        if self.request_ts is not None:
            body["request_ts"] = self.request_ts
        if self.response_ts is not None:
            body["response_ts"] = self.response_ts
        return {"modbus": body}
