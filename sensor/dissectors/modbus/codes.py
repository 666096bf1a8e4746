"""Modbus function, sub-function, exception and identification codes, as facts from the spec.

Sources: MODBUS Application Protocol Specification v1.1b3 §5 (function code categories), §6 (public
function codes), §6.8.1 (diagnostics sub-functions), §6.21 (Read Device Identification objects),
§7 (exception codes) and Annex A (reserved function codes). Historical Modicon codes (program / poll
commands of the 484/584/984/884 controllers, Concept, Unity/UMAS, firmware replacement) are named
because a monitor must recognise them: they reprogram a PLC.

Two classifications are kept per function code:

* ``category`` — what the operation does, for policy and detection: ``read``, ``write``,
  ``diagnostic``, ``program`` or ``other``;
* ``code_class`` — where the code sits in the spec's numbering (§5, Annex A), the classes Suricata's
  ``modbus: function`` keyword exposes: ``public_assigned``, ``public_unassigned``, ``user_defined``,
  ``reserved``; plus ``invalid`` for 0 and 128..255 (an exception response is classified by its
  original code).
"""

from __future__ import annotations

from typing import Final

EXCEPTION_BIT: Final = 0x80

# --- function codes (§6 and Annex A) -----------------------------------------------------------

READ_COILS: Final = 1
READ_DISCRETE_INPUTS: Final = 2
READ_HOLDING_REGISTERS: Final = 3
READ_INPUT_REGISTERS: Final = 4
WRITE_SINGLE_COIL: Final = 5
WRITE_SINGLE_REGISTER: Final = 6
READ_EXCEPTION_STATUS: Final = 7
DIAGNOSTICS: Final = 8
GET_COMM_EVENT_COUNTER: Final = 11
GET_COMM_EVENT_LOG: Final = 12
WRITE_MULTIPLE_COILS: Final = 15
WRITE_MULTIPLE_REGISTERS: Final = 16
REPORT_SERVER_ID: Final = 17
READ_FILE_RECORD: Final = 20
WRITE_FILE_RECORD: Final = 21
MASK_WRITE_REGISTER: Final = 22
READ_WRITE_MULTIPLE_REGISTERS: Final = 23
READ_FIFO_QUEUE: Final = 24
ENCAPSULATED_INTERFACE_TRANSPORT: Final = 43
UNITY_PROGRAM: Final = 90  # 0x5A, Schneider Unity (UMAS) programming
FIRMWARE_REPLACEMENT: Final = 125  # 0x7D
PROGRAM_584_984_2: Final = 126  # 0x7E, Modicon programming (584/984 panel software)

FUNCTION_NAMES: Final[dict[int, str]] = {
    READ_COILS: "read_coils",
    READ_DISCRETE_INPUTS: "read_discrete_inputs",
    READ_HOLDING_REGISTERS: "read_holding_registers",
    READ_INPUT_REGISTERS: "read_input_registers",
    WRITE_SINGLE_COIL: "write_single_coil",
    WRITE_SINGLE_REGISTER: "write_single_register",
    READ_EXCEPTION_STATUS: "read_exception_status",
    DIAGNOSTICS: "diagnostics",
    9: "program_484",
    10: "poll_484",
    GET_COMM_EVENT_COUNTER: "get_comm_event_counter",
    GET_COMM_EVENT_LOG: "get_comm_event_log",
    13: "program_584_984",
    14: "poll_584_984",
    WRITE_MULTIPLE_COILS: "write_multiple_coils",
    WRITE_MULTIPLE_REGISTERS: "write_multiple_registers",
    REPORT_SERVER_ID: "report_server_id",
    18: "program_884_u84",
    19: "reset_comm_link_884_u84",
    READ_FILE_RECORD: "read_file_record",
    WRITE_FILE_RECORD: "write_file_record",
    MASK_WRITE_REGISTER: "mask_write_register",
    READ_WRITE_MULTIPLE_REGISTERS: "read_write_multiple_registers",
    READ_FIFO_QUEUE: "read_fifo_queue",
    40: "program_concept",
    41: "multiple_function_codes",
    42: "reserved_42",
    ENCAPSULATED_INTERFACE_TRANSPORT: "encapsulated_interface_transport",
    UNITY_PROGRAM: "unity_program",
    91: "object_messaging",
    FIRMWARE_REPLACEMENT: "firmware_replacement",
    PROGRAM_584_984_2: "program_584_984_2",
    127: "report_local_address",
}

_READ: Final = frozenset({1, 2, 3, 4, 20, 24})
_WRITE: Final = frozenset({5, 6, 15, 16, 21, 22, 23})
_DIAGNOSTIC: Final = frozenset({7, 8, 11, 12, 17, 19, 43, 127})
_PROGRAM: Final = frozenset({9, 10, 13, 14, 18, 40, 90, 125, 126})

# §5 / Annex A
PUBLIC_ASSIGNED: Final = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43})
USER_DEFINED: Final = frozenset(range(65, 73)) | frozenset(range(100, 111))
RESERVED: Final = frozenset({9, 10, 13, 14, 41, 42, 90, 91, 125, 126, 127})
# Annex A also reserves diagnostics sub-function 19 and 21..65535.
RESERVED_DIAGNOSTIC_SUBFUNCTIONS_FROM: Final = 21
RESERVED_DIAGNOSTIC_SUBFUNCTION: Final = 19

CATEGORIES: Final = ("read", "write", "diagnostic", "program", "other")
CODE_CLASSES: Final = ("public_assigned", "public_unassigned", "user_defined", "reserved", "invalid")


def function_name(function: int) -> str:
    """snake_case name of a function code (exception bit ignored); unnamed codes by class."""
    fc = function & 0x7F if function & EXCEPTION_BIT else function
    name = FUNCTION_NAMES.get(fc)
    if name is not None:
        return name
    if fc == 0:
        return "invalid_0"
    return f"{code_class(fc)}_{fc}"


def category(function: int) -> str:
    """``read`` | ``write`` | ``diagnostic`` | ``program`` | ``other`` (exception bit ignored)."""
    fc = function & 0x7F
    if fc in _READ:
        return "read"
    if fc in _WRITE:
        return "write"
    if fc in _DIAGNOSTIC:
        return "diagnostic"
    if fc in _PROGRAM:
        return "program"
    return "other"


def code_class(function: int, subfunction: int | None = None) -> str:
    """Spec class of a (non-exception) function code, MODBUS v1.1b3 §5.1 and Annex A."""
    if function <= 0 or function >= EXCEPTION_BIT:
        return "invalid"
    if (
        function == DIAGNOSTICS
        and subfunction is not None
        and (
            subfunction == RESERVED_DIAGNOSTIC_SUBFUNCTION
            or subfunction >= RESERVED_DIAGNOSTIC_SUBFUNCTIONS_FROM
        )
    ):
        return "reserved"
    if function in PUBLIC_ASSIGNED:
        return "public_assigned"
    if function in USER_DEFINED:
        return "user_defined"
    if function in RESERVED:
        return "reserved"
    return "public_unassigned"


# --- diagnostics sub-functions (§6.8.1) ---------------------------------------------------------

FORCE_LISTEN_ONLY_MODE: Final = 0x0004

DIAGNOSTIC_SUBFUNCTIONS: Final[dict[int, str]] = {
    0x00: "return_query_data",
    0x01: "restart_communications_option",
    0x02: "return_diagnostic_register",
    0x03: "change_ascii_input_delimiter",
    FORCE_LISTEN_ONLY_MODE: "force_listen_only_mode",
    0x0A: "clear_counters_and_diagnostic_register",
    0x0B: "return_bus_message_count",
    0x0C: "return_bus_communication_error_count",
    0x0D: "return_bus_exception_error_count",
    0x0E: "return_server_message_count",
    0x0F: "return_server_no_response_count",
    0x10: "return_server_nak_count",
    0x11: "return_server_busy_count",
    0x12: "return_bus_character_overrun_count",
    0x14: "clear_overrun_counter_and_flag",
}


def subfunction_name(subfunction: int) -> str:
    return DIAGNOSTIC_SUBFUNCTIONS.get(subfunction, f"subfunction_{subfunction}")


# --- exception codes (§7) ----------------------------------------------------------------------

EXCEPTION_NAMES: Final[dict[int, str]] = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "server_device_failure",
    5: "acknowledge",
    6: "server_device_busy",
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_device_failed_to_respond",
}


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, f"unknown_exception_{code}")


# --- MEI types of FC 43 (§6.19-§6.21) ----------------------------------------------------------

MEI_CANOPEN_GENERAL_REFERENCE: Final = 13
MEI_READ_DEVICE_IDENTIFICATION: Final = 14

MEI_NAMES: Final[dict[int, str]] = {
    MEI_CANOPEN_GENERAL_REFERENCE: "canopen_general_reference",
    MEI_READ_DEVICE_IDENTIFICATION: "read_device_identification",
}

# Read Device ID codes (§6.21)
READ_DEVICE_ID_CODES: Final[dict[int, str]] = {1: "basic", 2: "regular", 3: "extended", 4: "specific"}

# Basic and regular objects (§6.21, object ids 0x00..0x06); 0x07..0x7F reserved, 0x80.. private.
DEVICE_ID_OBJECT_NAMES: Final[dict[int, str]] = {
    0x00: "VendorName",
    0x01: "ProductCode",
    0x02: "MajorMinorRevision",
    0x03: "VendorUrl",
    0x04: "ProductName",
    0x05: "ModelName",
    0x06: "UserApplicationName",
}


def device_id_object_name(object_id: int) -> str:
    return DEVICE_ID_OBJECT_NAMES.get(object_id, f"object_{object_id:#04x}")


# --- quantity limits (§6.1-§6.17) --------------------------------------------------------------

MAX_READ_BITS: Final = 2000  # FC1, FC2
MAX_READ_REGISTERS: Final = 125  # FC3, FC4, FC23 read part
MAX_WRITE_COILS: Final = 1968  # FC15
MAX_WRITE_REGISTERS: Final = 123  # FC16
MAX_RW_WRITE_REGISTERS: Final = 121  # FC23 write part
MAX_FIFO_COUNT: Final = 31  # FC24

COIL_ON: Final = 0xFF00
COIL_OFF: Final = 0x0000

# --- MBAP (Modbus Messaging on TCP/IP Implementation Guide v1.0b §3.1.3) ------------------------

MBAP_SIZE: Final = 7
MIN_LENGTH: Final = 2  # unit id + function code
MAX_LENGTH: Final = 254  # unit id + 253-byte PDU
MAX_ADU: Final = 6 + MAX_LENGTH  # 260
