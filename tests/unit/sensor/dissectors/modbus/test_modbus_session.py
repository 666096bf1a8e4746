"""Session-level behaviour: framing, resync, pairing, timeouts, and the hostile-input rows
M1..M11, T8 and T11 of HOSTILE_INPUTS.md (one test per row, named after it)."""

from __future__ import annotations

import dataclasses
import random
import tracemalloc

from modbus_testlib import FLOW, adu, feed_chunks, feed_ways, session, split, strip_ts

from sensor.dissectors.base import Probe
from sensor.dissectors.modbus import ModbusDissector, ModbusSession
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.limits import Limits
from sensor.records import AppEvent, FlowRef, ProtocolAnomaly

H = bytes.fromhex
READ3 = H("03 0000 0002")
READ3_RESP = H("03 04 0001 0002")


def kinds(events: list[AppEvent] | tuple[AppEvent, ...]) -> list[str]:
    return [e.kind for e in events if isinstance(e, ProtocolAnomaly)]


def txs(events: list[AppEvent] | tuple[AppEvent, ...]) -> list[ModbusTransaction]:
    return [e for e in events if isinstance(e, ModbusTransaction)]


def test_M1_protocol_id_1_is_invalid_and_probe_refuses() -> None:
    data = H("00 00 00 01 00 06 00 01 78 90 00 13")
    events = feed_chunks([(True, data)], close=True)
    assert kinds(events) == ["modbus.invalid_protocol_id"]
    assert not txs(events)
    assert ModbusDissector().probe(data, True) is Probe.NO


def test_M2_length_0_or_1_is_invalid_without_zero_progress_loop() -> None:
    for length in (0, 1):
        bad = adu(1, 1, b"", length=length) + b"\x03"
        events = feed_chunks([(True, bad + adu(2, 1, READ3)), (False, adu(2, 1, READ3_RESP))])
        assert kinds(events) == ["modbus.invalid_length"]
        assert [t.transaction_id for t in txs(events)] == [2]


def test_M3_length_over_254_rejected_immediately() -> None:
    # Suricata EXCEEDED_LEN_WR_MULT_REG_REQ: length 0xFFFA, quantity 0x7FF9, byte count 0xFF
    data = H("00 0a 00 00 ff fa 00 10 00 00 7f f9 ff") + bytes(100)
    s = session()
    events = list(s.feed(data, True, 0.0))
    assert kinds(events) == ["modbus.invalid_length"]
    for i in range(1000):  # no waiting for 65 KB: a valid ADU right after is decoded
        events += s.feed(bytes(60), True, float(i))
        assert s.buffered <= 260
    events += s.feed(adu(5, 1, READ3), True, 2000.0)
    events += s.feed(adu(5, 1, READ3_RESP), False, 2000.0)
    assert [t.transaction_id for t in txs(events)] == [5]
    assert kinds(events) == ["modbus.invalid_length"]  # one anomaly for the whole desync


def test_M4_fc16_data_arriving_later_then_count_disagreement() -> None:
    # INVALID_LEN_WR_MULT_REG_REQ: length 9, FC16, byte count 4; data in a later segment
    head = H("00 0a 00 00 00 09 00 10 00 01 00 02 04")
    s = session()
    assert list(s.feed(head, True, 0.0)) == []
    events = list(s.feed(H("00 0a"), True, 1.0))  # only 2 of 4 data bytes, but the ADU is complete
    events += s.feed(adu(0x0A, 0, H("10 0001 0002")), False, 2.0)
    assert kinds(events) == ["modbus.invalid_length"]
    (tx,) = txs(events)
    assert tx.request is not None and not tx.request.valid and tx.request.values == (10,)


def test_M5_zero_length_pdu_fc16() -> None:
    events = feed_chunks([(True, adu(1, 0, H("10"))), (False, adu(1, 0, H("90 03")))])
    assert kinds(events) == ["modbus.invalid_length"]
    (tx,) = txs(events)
    assert (
        tx.status == "exception"
        and tx.exception_code == 3
        and tx.request is not None
        and not tx.request.valid
    )


def test_M6_invalid_function_and_exception_codes() -> None:
    events = feed_chunks([(True, adu(1, 1, H("00 0000"))), (True, adu(2, 1, H("7f 0000")))])
    assert kinds(events) == ["modbus.invalid_function_code"]  # FC 0x7F is a raw, public-unassigned code
    events = feed_chunks([(True, adu(3, 1, READ3)), (False, adu(3, 1, H("83 ff")))])
    assert kinds(events) == ["modbus.invalid_exception_code"]
    assert txs(events)[0].exception_code == 0xFF
    events = feed_chunks([(True, adu(4, 1, H("80 0000")))])
    assert kinds(events) == ["modbus.invalid_function_code"]


def test_M7_byte_count_mismatches_are_value_mismatch() -> None:
    # FC23 with write_quantity * 2 > write_byte_count
    fc23 = H("17 0000 0001 0010 0004 02 0001")
    events = feed_chunks([(True, adu(1, 1, fc23))])
    assert "modbus.value_mismatch" in kinds(events)
    # FC1 response with a byte count smaller than quantity / 8
    events = feed_chunks([(True, adu(2, 1, H("01 0000 0020"))), (False, adu(2, 1, H("01 01 ff")))])
    assert kinds(events) == ["modbus.value_mismatch"]
    (tx,) = txs(events)
    assert tx.response is not None and len(tx.response.values) == 8 and not tx.response.valid


def test_M8_quantity_out_of_range_recorded_not_trusted() -> None:
    cases = [
        H("01 0000 0000"),
        H("03 0000 ffff"),
        H("0f 0000 07b1 f7") + bytes(247),  # 1969 coils
        H("10 0000 007c f8") + bytes(242)[:240],  # 124 registers
        H("17 0000 007e 0000 0001 02 0000"),  # read 126
        H("17 0000 0001 0000 007a f4") + bytes(236)[:236],  # write 122
    ]
    for pdu in cases:
        events = feed_chunks([(True, adu(1, 1, pdu[:253]))], close=True)
        assert "modbus.invalid_value" in kinds(events), pdu[:1].hex()
        (tx,) = txs(events)
        assert tx.request is not None and not tx.request.valid and tx.request.quantity is not None


def test_M9_flood_of_unanswered_requests() -> None:
    s = session(Limits(max_pending_transactions=500))
    events: list[AppEvent] = []
    tracemalloc.start()
    for i in range(10_000):
        events += s.feed(adu(i & 0xFFFF, 1, READ3), True, float(i) / 1000)
        if i == 2000:
            base = tracemalloc.get_traced_memory()[0]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert kinds(events) == ["modbus.flooded"]
    assert len(txs(events)) == 500  # the open ones, flushed as unanswered
    assert s.flooded and s.pending_count == 0 and s.buffered == 0
    assert after - base < 64 * 1024  # memory flat once flooded
    assert list(s.close(20.0)) == []


def test_M10_truncated_subfunction_and_object_past_data() -> None:
    events = feed_chunks([(True, adu(1, 1, H("08 00")))], close=True)
    assert kinds(events) == ["modbus.malformed"]
    resp = H("2b 0e 01 01 00 00 01 00 ff") + b"ACME"  # object length 255, 4 bytes there
    events = feed_chunks([(True, adu(2, 1, H("2b 0e 01 00"))), (False, adu(2, 1, resp))])
    assert kinds(events) == ["modbus.malformed"]
    (tx,) = txs(events)
    assert tx.response is not None and tx.response.device_id is not None
    assert tx.response.device_id.object("VendorName") == "ACME"


def test_M11_http_and_tls_on_502_not_modbus() -> None:
    d = ModbusDissector()
    assert d.probe(b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n", True) is Probe.NO
    assert d.probe(b"HTTP/1.1 200 OK\r\n", False) is Probe.NO
    assert d.probe(H("16 03 01 02 00 01 00 01 fc 03 03") + bytes(40), True) is Probe.NO
    assert d.probe(b"SSH-2.0-OpenSSH_9.6\r\n", True) is Probe.NO
    assert d.probe(H("0001 0000 0006"), True) is Probe.MORE
    assert d.probe(adu(1, 1, READ3), True) is Probe.YES
    assert d.probe(adu(1, 1, READ3_RESP), False) is Probe.YES
    assert d.probe(adu(1, 1, H("83 02")), False) is Probe.YES
    assert d.probe(adu(1, 1, H("03 0000")) + b"GET /", True) is Probe.NO  # bad FC3 length, then junk
    assert d.probe(adu(1, 1, H("03 0000")) + adu(2, 1, H("03 0000")), True) is Probe.YES  # framed exactly
    assert d.probe(adu(1, 1, H("00 00")), True) is Probe.NO


def test_T8_midstream_response_without_request() -> None:
    events = feed_chunks(
        [(False, adu(9, 1, READ3_RESP)), (True, adu(10, 1, READ3)), (False, adu(10, 1, READ3_RESP))]
    )
    assert kinds(events) == ["modbus.unsolicited_response"]
    first, second = txs(events)
    assert first.status == "unsolicited" and first.request is None and first.response is not None
    assert first.response.values == (1, 2)
    assert second.status == "ok" and second.response is not None and second.response.address == 0


def test_T11_one_byte_segments_and_random_splits() -> None:
    messages = [
        (True, adu(1, 1, READ3) + adu(2, 2, H("10 0001 0002 04 000a 0102"))),
        (False, adu(2, 2, H("10 0001 0002")) + adu(1, 1, READ3_RESP)),
        (True, adu(3, 1, H("2b 0e 01 00"))),
        (False, adu(3, 1, H("2b 0e 01 01 00 00 01 00 04 41 43 4d 45"))),
        (True, adu(4, 1, H("05 0001 1234"))),  # an anomaly must also come out identically
        (False, adu(4, 1, H("85 03"))),
    ]
    ways = feed_ways(messages)
    for way, events in ways.items():
        assert events == ways["whole"], way
    stream = b"".join(m for _, m in messages)
    rng = random.Random(11)
    for _ in range(50):  # k random splits of each direction
        chunks = []
        for d, data in messages:
            chunks += [
                (d, p) for p in split(data, [rng.randrange(1, len(data)) for _ in range(rng.randrange(1, 6))])
            ]
        assert strip_ts(feed_chunks(chunks)) == ways["whole"]
    assert len(stream) > 0


def test_response_carries_request_address_and_function_mismatch() -> None:
    events = feed_chunks([(True, adu(1, 1, H("04 0010 0002"))), (False, adu(1, 1, READ3_RESP))])
    assert kinds(events) == ["modbus.function_mismatch"]
    events = feed_chunks([(True, adu(1, 1, H("03 0010 0002"))), (False, adu(1, 1, READ3_RESP))])
    (tx,) = txs(events)
    assert tx.response is not None and (tx.response.address, tx.response.quantity) == (0x10, 2)


def test_unanswered_on_close_and_on_timeout() -> None:
    s = session(Limits(transaction_timeout=10.0))
    assert list(s.feed(adu(1, 1, READ3), True, 0.0)) == []
    events = s.feed(adu(2, 1, READ3), True, 11.0)
    (tx,) = txs(list(events))
    assert (tx.transaction_id, tx.status, tx.request_ts, tx.ts) == (1, "unanswered", 0.0, 11.0)
    (tx2,) = txs(list(s.close(12.0)))
    assert tx2.transaction_id == 2 and tx2.status == "unanswered"


def test_gap_resyncs_on_next_segment() -> None:
    s = session()
    events = list(s.feed(adu(1, 1, READ3)[:5], True, 0.0))
    events += s.gap(True, 100, 1.0)
    events += s.feed(H("0203") + adu(2, 1, READ3), True, 2.0)  # garbage then a header
    events += s.feed(adu(2, 1, READ3_RESP), False, 3.0)
    assert [t.transaction_id for t in txs(events)] == [2]
    assert kinds(events) == []  # the gap is counted by the flow layer, not again here


def test_garbage_then_resync_finds_next_header() -> None:
    junk = H("de ad be ef 00 00 00 00 00 00 01 02")
    events = feed_chunks(
        [
            (True, adu(1, 1, READ3) + H("ffff0000") + junk + adu(2, 1, READ3)),
            (False, adu(1, 1, READ3_RESP) + adu(2, 1, READ3_RESP)),
        ]
    )
    assert [t.transaction_id for t in txs(events)] == [1, 2]
    assert kinds(events) == ["modbus.invalid_length"]


def test_reused_transaction_id_flushes_first_as_unanswered() -> None:
    events = feed_chunks([(True, adu(1, 1, READ3) + adu(1, 1, READ3)), (False, adu(1, 1, READ3_RESP))])
    assert [t.status for t in txs(events)] == ["unanswered", "ok"]


def test_truncated_adu_at_close_is_counted() -> None:
    s = session()
    s.feed(adu(1, 1, READ3)[:9], True, 0.0)
    assert kinds(list(s.close(1.0))) == ["modbus.truncated"]


def test_eve_body_is_json_safe() -> None:
    import json

    events = feed_chunks([(True, adu(1, 1, H("41 ff00"))), (False, adu(1, 1, H("41 00")))], close=True)
    for e in events:
        json.dumps(e.eve_body())
        assert e.flow is FLOW and e.app_proto == "modbus"


def test_flow_oriented_from_port_502_is_turned_round() -> None:
    flipped = FlowRef(1, "1:x", "tcp", "10.0.0.2", 502, "10.0.0.1", 40000)
    s = ModbusSession(flipped, Limits())
    events = list(s.feed(adu(1, 1, READ3), False, 0.0)) + list(s.feed(adu(1, 1, READ3_RESP), True, 1.0))
    (tx,) = txs(events)
    assert tx.status == "ok" and tx.flow is not None
    assert (tx.flow.server_ip, tx.flow.server_port, tx.flow.client_port) == ("10.0.0.2", 502, 40000)


# --- the request memo (PduMemo) ------------------------------------------------------------------


def _poll_then_bad_quantity() -> list[tuple[bool, bytes]]:
    """The same read three times, then the same bad read (quantity 0) three times."""
    chunks: list[tuple[bool, bytes]] = []
    for tid in range(1, 4):
        chunks += [(True, adu(tid, 1, READ3)), (False, adu(tid, 1, READ3_RESP))]
    for tid in range(4, 7):
        chunks += [(True, adu(tid, 1, H("03 0000 0000"))), (False, adu(tid, 1, H("83 03")))]
    return chunks


def test_memoised_requests_give_the_events_of_a_fresh_parse_every_time() -> None:
    chunks = _poll_then_bad_quantity()
    fresh = [e.eve_body() for e in feed_chunks(chunks, Limits(modbus_pdu_memo=0), close=True)]
    memoised = feed_chunks(chunks, Limits(modbus_pdu_memo=16), close=True)
    assert [e.eve_body() for e in memoised] == fresh
    # the anomaly the parse found is raised for every repeat, not only the first
    assert kinds(memoised) == ["modbus.invalid_value"] * 3
    requests = [t.request for t in txs(memoised)]
    assert requests[0] is requests[1] is requests[2]  # one record reused


def test_request_memo_is_shared_by_a_dissectors_sessions_and_stays_bounded() -> None:
    dissector = ModbusDissector()
    limits = Limits(modbus_pdu_memo=4)
    a = dissector.session(FLOW, limits)
    b = dissector.session(dataclasses.replace(FLOW, flow_id=2, client_port=40001), limits)
    first = txs([*a.feed(adu(1, 1, READ3), True, 0.0), *a.feed(adu(1, 1, READ3_RESP), False, 0.1)])
    second = txs([*b.feed(adu(9, 1, READ3), True, 0.0), *b.feed(adu(9, 1, READ3_RESP), False, 0.1)])
    assert first[0].request is second[0].request
    memo = a._memo
    assert memo is b._memo
    for address in range(50):  # distinct requests: the table is emptied, never grows past its size
        a.feed(adu(100 + address, 1, bytes([3, 0, address, 0, 1])), True, 1.0)
        assert len(memo.requests) <= 4
    memo.requests.clear()
    write = H("06 0001 1234")  # writes carry values, which change: parsed every time, never kept
    assert txs([*a.feed(adu(7, 1, write), True, 2.0), *a.feed(adu(7, 1, write), False, 2.1)])
    assert memo.requests == {}
