"""Every frame parser, through the session: each vector fed whole, byte by byte, in random splits and
with a trailing partial ADU must give the same events (T11), and the values the spec says."""

from __future__ import annotations

import pytest
from modbus_testlib import adu, feed_chunks, feed_ways

from sensor.dissectors.base import Reader
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.dissectors.modbus.frames import parse_exception, parse_mbap, parse_request, parse_response
from sensor.errors import Malformed, Truncated
from sensor.records import ProtocolAnomaly

H = bytes.fromhex

# name: (request PDU, response PDU, expected (field path, value) checks)
VECTORS: dict[str, tuple[bytes, bytes, dict[str, object]]] = {
    "fc1_read_coils": (
        H("01 0013 0013"),
        H("01 03 cd 6b 05"),
        {
            "request.address": 0x13,
            "request.quantity": 19,
            "response.address": 0x13,
            "response.quantity": 19,
            "response.values": [
                True,
                False,
                True,
                True,
                False,
                False,
                True,
                True,
                True,
                True,
                False,
                True,
                False,
                True,
                True,
                False,
                True,
                False,
                True,
            ],
        },
    ),
    "fc2_read_discrete_inputs": (
        H("02 00c4 0016"),
        H("02 03 ac db 35"),
        {"response.quantity": 22, "response.address": 0xC4},
    ),
    "fc3_read_holding_registers": (
        H("03 006b 0003"),
        H("03 06 022b 0000 0064"),
        {"request.address": 0x6B, "response.values": [555, 0, 100], "response.address": 0x6B},
    ),
    "fc4_read_input_registers": (H("04 0008 0001"), H("04 02 000a"), {"response.values": [10]}),
    "fc5_write_single_coil": (
        H("05 00ac ff00"),
        H("05 00ac ff00"),
        {"request.values": [True], "request.address": 0xAC},
    ),
    "fc6_write_single_register": (H("06 0001 0003"), H("06 0001 0003"), {"request.values": [3]}),
    "fc7_read_exception_status": (H("07"), H("07 6d"), {"response.values": [0x6D]}),
    "fc8_force_listen_only": (
        H("08 0004 0000"),
        H("08 0004 0000"),
        {"request.subfunction": 4, "request.subfunction_name": "force_listen_only_mode"},
    ),
    "fc11_comm_event_counter": (H("0b"), H("0b ffff 0108"), {"response.values": [0xFFFF, 0x108]}),
    "fc12_comm_event_log": (
        H("0c"),
        H("0c 08 0000 0108 0121 2000"),
        {"response.values": [0, 0x108, 0x121], "response.raw": "2000"},
    ),
    "fc15_write_multiple_coils": (
        H("0f 0013 000a 02 cd 01"),
        H("0f 0013 000a"),
        {
            "request.values": [True, False, True, True, False, False, True, True, True, False],
            "response.quantity": 10,
        },
    ),
    "fc16_write_multiple_registers": (
        H("10 0001 0002 04 000a 0102"),
        H("10 0001 0002"),
        {"request.values": [10, 258]},
    ),
    "fc17_report_server_id": (H("11"), H("11 03 0a ff 01"), {"response.raw": "0aff01"}),
    "fc20_read_file_record": (
        H("14 0e 06 0004 0001 0002 06 0003 0009 0002"),
        H("14 0c 05 06 0df8 0020 05 06 33cd 0040"),
        {
            "request.file_records": [
                {"reference_type": 6, "file_number": 4, "record_number": 1, "record_length": 2},
                {"reference_type": 6, "file_number": 3, "record_number": 9, "record_length": 2},
            ],
            "response.file_records": [
                {"reference_type": 6, "values": [0x0DF8, 0x20]},
                {"reference_type": 6, "values": [0x33CD, 0x40]},
            ],
        },
    ),
    "fc21_write_file_record": (
        H("15 0d 06 0004 0007 0003 06af 04be 100d"),
        H("15 0d 06 0004 0007 0003 06af 04be 100d"),
        {
            "request.file_records": [
                {
                    "reference_type": 6,
                    "file_number": 4,
                    "record_number": 7,
                    "record_length": 3,
                    "values": [0x06AF, 0x04BE, 0x100D],
                }
            ]
        },
    ),
    "fc22_mask_write_register": (
        H("16 0004 00f2 0025"),
        H("16 0004 00f2 0025"),
        {"request.and_mask": 0xF2, "request.or_mask": 0x25},
    ),
    "fc23_read_write_multiple": (
        H("17 0003 0006 000e 0003 06 00ff 00ff 00ff"),
        H("17 0c 00fe 0acd 0001 0003 000d 00ff"),
        {
            "request.write_values": [255, 255, 255],
            "request.write_address": 14,
            "response.address": 3,
            "response.values": [0xFE, 0xACD, 1, 3, 0xD, 0xFF],
        },
    ),
    "fc24_read_fifo_queue": (
        H("18 04de"),
        H("18 0006 0002 01b8 1284"),
        {"response.values": [0x1B8, 0x1284], "response.quantity": 2},
    ),
    "fc43_13_canopen": (
        H("2b 0d 00 01 02"),
        H("2b 0d 00 01 02 03"),
        {"request.mei_name": "canopen_general_reference"},
    ),
    "fc43_14_device_id": (
        H("2b 0e 01 00"),
        H("2b 0e 01 01 00 00 03") + b"\x00\x04ACME" + b"\x01\x05P-100" + b"\x02\x041.02",
        {
            "response.device_identification.objects": {
                "VendorName": "ACME",
                "ProductCode": "P-100",
                "MajorMinorRevision": "1.02",
            },
            "response.device_identification.conformity_level": 1,
            "request.device_identification.read_device_id": "basic",
        },
    ),
    "fc65_user_defined": (H("41 0102 0304"), H("41 99"), {"request.raw": "01020304", "response.raw": "99"}),
    "fc90_unity_program": (H("5a 00 02"), H("5a 00 fe"), {"request.raw": "0002"}),
}


def _get(body: dict[str, object], path: str) -> object:
    cur: object = body
    for part in path.split("."):
        assert isinstance(cur, dict), path
        cur = cur[part]
    return cur


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_fed_every_way_gives_same_events(name: str) -> None:
    req, resp, checks = VECTORS[name]
    messages = [(True, adu(7, 1, req)), (False, adu(7, 1, resp))]
    ways = feed_ways(messages)
    whole = ways["whole"]
    assert len(whole) == 1, whole  # one transaction, no anomaly
    for way, events in ways.items():
        assert events == whole, way
    body = whole[0][2]
    assert body["status"] == "ok"
    for path, value in checks.items():
        assert _get(body, path) == value, path


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_several_adus_in_one_segment(name: str) -> None:
    req, resp, _ = VECTORS[name]
    stream = adu(1, 1, req) + adu(2, 1, req) + adu(3, 1, req)
    answers = adu(3, 1, resp) + adu(1, 1, resp) + adu(2, 1, resp)
    events = feed_chunks([(True, stream), (False, answers)])
    assert [e.transaction_id for e in events if isinstance(e, ModbusTransaction)] == [3, 1, 2]
    assert not [e for e in events if isinstance(e, ProtocolAnomaly)]


def test_parse_mbap() -> None:
    h = parse_mbap(Reader(H("0001 0000 0006 11 03")))
    assert (h.transaction_id, h.length, h.unit_id) == (1, 6, 0x11)
    with pytest.raises(Malformed) as exc:
        parse_mbap(Reader(H("0001 0001 0006 11")))
    assert exc.value.reason == "invalid_protocol_id"
    with pytest.raises(Malformed):
        parse_mbap(Reader(H("0001 0000 00ff 11")))
    with pytest.raises(Truncated):
        parse_mbap(Reader(H("0001 0000 00")))


def test_parse_request_flags_quantity_but_records_it() -> None:
    req, issues = parse_request(Reader(H("0000 07d1")), 1)
    assert req.quantity == 2001 and not req.valid
    assert [k for k, _ in issues] == ["invalid_value"]


def test_parse_response_without_request_keeps_all_bits() -> None:
    resp, issues = parse_response(Reader(H("01 05")), 1, None)
    assert resp.values == (True, False, True, False, False, False, False, False) and not issues


def test_parse_exception() -> None:
    resp, issues = parse_exception(Reader(H("02")), 0x83)
    assert (resp.function, resp.exception_code, issues) == (3, 2, ())
    with pytest.raises(Truncated):
        parse_exception(Reader(b""), 0x83)


def test_fc8_truncated_subfunction_is_malformed() -> None:
    with pytest.raises(Malformed) as exc:
        parse_request(Reader(H("00")), 8)
    assert exc.value.reason == "malformed"
