"""Function-code classes and names (MODBUS v1.1b3 §5, Annex A) and the summary section."""

from __future__ import annotations

from modbus_testlib import adu, feed_chunks, summarize

from sensor.dissectors.modbus import ModbusDissector, codes
from sensor.records import ProtocolAnomaly

H = bytes.fromhex


def test_code_classes() -> None:
    assert codes.code_class(3) == "public_assigned"
    assert codes.code_class(43) == "public_assigned"
    assert codes.code_class(65) == "user_defined" and codes.code_class(110) == "user_defined"
    assert codes.code_class(90) == "reserved" and codes.code_class(125) == "reserved"
    assert codes.code_class(8, 19) == "reserved" and codes.code_class(8, 21) == "reserved"
    assert codes.code_class(8, 4) == "public_assigned"
    assert codes.code_class(29) == "public_unassigned"
    assert codes.code_class(0) == "invalid" and codes.code_class(0x83) == "invalid"


def test_names_and_categories() -> None:
    assert codes.function_name(0x83) == "read_holding_registers"
    assert codes.function_name(90) == "unity_program" and codes.category(90) == "program"
    assert codes.function_name(125) == "firmware_replacement" and codes.category(126) == "program"
    assert codes.function_name(66) == "user_defined_66"
    assert codes.category(16) == "write" and codes.category(3) == "read" and codes.category(8) == "diagnostic"
    assert codes.subfunction_name(codes.FORCE_LISTEN_ONLY_MODE) == "force_listen_only_mode"
    assert codes.exception_name(11) == "gateway_target_device_failed_to_respond"


def test_stats_section_counts_per_pdu_like_tshark() -> None:
    events = feed_chunks(
        [
            (
                True,
                adu(1, 1, H("03 0000 0001")) + adu(2, 3, H("06 0001 0002")) + adu(3, 1, H("01 0000 0001")),
            ),
            (False, adu(1, 1, H("83 02")) + adu(2, 3, H("06 0001 0002")) + adu(9, 1, H("04 02 0000"))),
        ],
        close=True,
    )
    events.append(ProtocolAnomaly(0.0, None, "tcp.gap"))  # another layer's event is ignored
    section = summarize(events)
    assert section["requests_by_function"] == {"1": 1, "3": 1, "6": 1}
    assert section["responses_by_function"] == {"3": 1, "4": 1, "6": 1}
    assert section["exceptions_by_code"] == {"2": 1}
    assert section["units"] == [1, 3]
    assert section["transactions"] == 4
    assert section["anomalies_by_kind"] == {"modbus.unsolicited_response": 1}
    assert section["exceptions_by_function_code"] == {"3/2": 1}
    assert list(section)[:6] == [
        "requests_by_function", "responses_by_function", "exceptions_by_code", "units", "transactions",
        "anomalies_by_kind",
    ]  # fmt: skip


def test_dissector_contract() -> None:
    d = ModbusDissector()
    assert d.name == "modbus" and d.ports == frozenset({502})
    assert d.stats().section()["transactions"] == 0
