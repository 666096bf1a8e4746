"""Hostile inputs U1-U13 and G2 (../shared/HOSTILE_INPUTS.md): no exception, no hang, bounded memory,
a named anomaly, and the flow keeps being decoded."""

from __future__ import annotations

import dataclasses
import struct

from asyncua import ua
from opcua_wire import (
    FLOW,
    POLICY_B256SHA256,
    TS,
    chunks_of,
    conversation,
    encode,
    err,
    feed,
    feed_all_ways,
    header,
    hel,
    kinds,
    messages,
    msg,
    opn,
    opn_request,
    opn_response,
    read_request,
)

from sensor.dissectors.opcua import OpcUaDissector
from sensor.dissectors.opcua.events import OpcUaChannelEvent
from sensor.limits import DEFAULT_LIMITS
from sensor.records import CertificateObservation

CH = 7
HANDSHAKE = conversation(CH)[:4]
READ_PAIR = conversation(CH)[4:6]


def response_with_payload(payload: bytes) -> bytes:
    """A ReadResponse whose single DataValue carries ``payload`` as its value (after the 0x01 mask)."""
    head = encode(ua.ReadResponse())
    # ReadResponse = header ... Results (Int32 count) DiagnosticInfos (Int32 count): replace the tail
    assert head.endswith(struct.pack("<ii", 0, 0)) or head.endswith(struct.pack("<ii", 0, -1))
    return head[:-8] + struct.pack("<i", 1) + b"\x01" + payload + struct.pack("<i", -1)


def pair_with(payload: bytes) -> list[tuple[bool, bytes]]:
    return [
        *HANDSHAKE,
        (True, msg(CH, 2, 2, read_request(1, [ua.NodeId(1, 0)]))),
        (False, msg(CH, 2, 2, response_with_payload(payload))),
    ]


def test_U1_message_size_zero_or_below_8_resyncs_without_loop() -> None:
    for bad in (b"MSGF\x00\x00\x00\x00", b"HELF\x07\x00\x00\x00"):
        events = feed_all_ways([*HANDSHAKE, (True, bad), *READ_PAIR])
        assert kinds(events).count("opcua.bad_message_size") == 1
        assert [m.service for m in messages(events)][-1] == "Read"


def test_U2_huge_or_over_negotiated_size_rejected_never_buffered() -> None:
    sess = OpcUaDissector().session(FLOW, DEFAULT_LIMITS)
    for d, b in HANDSHAKE:
        sess.feed(b, d, TS)
    out = list(sess.feed(b"MSGF\xff\xff\xff\xff" + b"\x00" * 5000, True, TS))
    assert kinds(out) == ["opcua.bad_message_size"]
    assert len(sess.dirs[True].buf) < 16  # nothing buffered towards 4 GiB
    # 70000 > the 65536 ReceiveBufferSize the ACK announced (fresh session: the first one is hunting)
    sess = OpcUaDissector().session(FLOW, DEFAULT_LIMITS)
    for d, b in HANDSHAKE:
        sess.feed(b, d, TS)
    out = list(sess.feed(b"MSGF" + struct.pack("<I", 70000) + b"\x00" * 100, True, TS))
    assert kinds(out) == ["opcua.bad_message_size"]
    assert len(sess.dirs[True].buf) < 16


def test_U3_chunk_flood_without_final_is_capped() -> None:
    limits = dataclasses.replace(DEFAULT_LIMITS, opcua_max_chunk_count=50, opcua_max_messages_in_flight=4)
    sess = OpcUaDissector().session(FLOW, limits)
    for d, b in HANDSHAKE:
        sess.feed(b, d, TS)
    found: list[str] = []
    body_chunk = msg(CH, 0, 9, b"\x01\x00\x77\x02" + b"\x00" * 900, b"C")
    for i in range(3000):
        c = body_chunk[:16] + struct.pack("<II", i + 2, 9 + (i // 1000)) + body_chunk[24:]
        found += kinds(list(sess.feed(c, True, TS)))
        assert sess.dirs[True].partial_bytes <= 50 * 904
    assert found.count("opcua.chunk_limit") == 3  # one per flooded message, not one per chunk
    # many messages in flight at once
    for rid in range(100, 110):
        found += kinds(list(sess.feed(msg(CH, 5000 + rid, rid, b"\x01\x00\x77\x02", b"C"), True, TS)))
    assert len(sess.dirs[True].partials) <= 4
    events = list(sess.close(TS))
    st = OpcUaDissector().stats()
    for e in events:
        st.observe(e)
    assert st.section()["messages_by_type"]["MSG"] == 3010  # every chunk still counted once


def test_U3_negotiated_max_chunk_count_applies() -> None:
    from opcua_wire import ack

    items = [(True, hel()), (False, ack(max_chunks=3)), *HANDSHAKE[2:]]
    items += [(True, msg(CH, 2 + i, 4, b"\x01\x00\x77\x02", b"C")) for i in range(5)]
    assert "opcua.chunk_limit" in kinds(feed_all_ways(items))


def test_U4_nested_variant_arrays_hit_depth_cap_not_recursion_error() -> None:
    payload = b"\x98\x01\x00\x00\x00" * 10_000 + b"\x00"
    events = feed_all_ways(pair_with(payload))
    assert "opcua.nesting_exceeded" in kinds(events)
    read = messages(events)[-1]
    assert read.service == "Read" and read.response is not None
    assert read.response["decode_error"] == "nesting_exceeded"


def test_U5_diagnostic_info_inner_chain_50000_deep() -> None:
    diag = b"\x40" * 50_000 + b"\x00"
    body = encode(ua.ReadResponse())
    # ServiceDiagnostics is the byte after Timestamp(8) + RequestHandle(4) + ServiceResult(4) + TypeId(4)
    body = body[:20] + diag + body[21:]
    events = feed_all_ways([*HANDSHAKE, (False, msg(CH, 2, 2, body))])
    assert "opcua.nesting_exceeded" in kinds(events)


def test_U6_array_length_larger_than_bytes_left() -> None:
    payload = b"\x86" + struct.pack("<i", 0x7FFFFFFF) + b"\x00" * 10
    events = feed_all_ways(pair_with(payload))
    assert "opcua.bad_length" in kinds(events)


def test_U7_null_array_is_null_other_negatives_are_bad_length() -> None:
    ok = feed_all_ways(pair_with(b"\x86" + struct.pack("<i", -1)))
    assert kinds(ok).count("opcua.bad_length") == 0
    assert messages(ok)[-1].response["results"] == [{"value": {"type": "Int32", "array": None, "length": -1}}]  # type: ignore[index]
    for bad in (
        b"\x86" + struct.pack("<i", -2),
        b"\x86" + struct.pack("<i", -(2**31)),
        b"\x0c" + struct.pack("<i", -5),
    ):
        assert "opcua.bad_length" in kinds(feed_all_ways(pair_with(bad)))


def test_U8_matrix_dimensions_overflowing_or_mismatched_are_rejected() -> None:
    for dims in ([0], [65536, 65536, 65536], [-1, -4]):
        payload = (
            b"\xc6"
            + struct.pack("<i4i", 4, 1, 2, 3, 4)
            + struct.pack("<i", len(dims))
            + struct.pack(f"<{len(dims)}i", *dims)
        )
        events = feed_all_ways(pair_with(payload))
        assert "opcua.bad_matrix" in kinds(events)
        value = messages(events)[-1].response["results"][0]["value"]  # type: ignore[index]
        assert value["array"] == [1, 2, 3, 4] and "dimensions" not in value


def test_U9_malformed_utf8_replaced_and_flagged() -> None:
    payload = b"\x15" + b"\x03" + struct.pack("<i", 2) + b"\xc3\x28" + struct.pack("<i", 3) + b"a\xffb"
    events = feed_all_ways(pair_with(payload))
    assert "opcua.bad_utf8" in kinds(events)
    assert messages(events)[-1].response["results"][0]["value"]["value"] == "a\ufffdb"  # type: ignore[index]


def test_U10_diagnostic_string_table_indices_without_table() -> None:
    diag = b"\x0f" + struct.pack("<4i", 7, 8, 9, 10)  # every index, StringTable absent (null)
    body = encode(ua.ReadResponse())
    body = body[:20] + diag + body[21:]
    events = feed_all_ways([*HANDSHAKE, (False, msg(CH, 2, 2, body))])
    resp = messages(events)[-1].response
    assert resp is not None
    assert resp["service_diagnostics"] == {
        "symbolic_id": 7,
        "namespace_uri": 8,
        "locale": 9,
        "localized_text": 10,
    }
    assert kinds(events) == ["opcua.security_mode_none"] or kinds(events) == []


def test_U11_unknown_message_type_bad_chunk_type_and_long_err_reason() -> None:
    events = feed_all_ways([*HANDSHAKE, (True, b"XYZF\x10\x00\x00\x00" + b"\x00" * 8), *READ_PAIR])
    assert "opcua.unknown_message_type" in kinds(events)
    assert messages(events)[-1].service == "Read"
    events = feed_all_ways([*HANDSHAKE, (True, b"MSGQ\x20\x00\x00\x00" + b"\x00" * 24), *READ_PAIR])
    assert "opcua.bad_chunk_type" in kinds(events)
    long_err = err(0x80020000, "R" * 60_000)
    events = feed([(True, hel()), (False, long_err)])
    (e,) = [x for x in events if getattr(x, "message_type", "") == "ERR"]
    assert len(e.fields["reason"]) == DEFAULT_LIMITS.max_field_chars


def test_U12_sign_and_encrypt_with_certificate_chain_loop() -> None:
    from opcua_wire import make_cert

    a = make_cert("urn:a")
    b = make_cert("urn:b", key_size=1024)  # both self-issued "CN=test": a loop if one walked it
    req = opn(0, 1, 1, b"\xee" * 300, POLICY_B256SHA256, a + b + a, b"\x01" * 20)
    resp = opn(CH, 1, 1, b"\xee" * 300, POLICY_B256SHA256, b + a, b"\x02" * 20)
    items = [
        (True, req),
        (False, resp),
        (True, msg(CH, 2, 2, b"\xfe" * 64)),
        (False, msg(CH, 2, 2, b"\xfe" * 64)),
    ]
    events = feed_all_ways(items)
    certs = [e for e in events if isinstance(e, CertificateObservation)]
    assert {c.chain_index for c in certs} == {0, 1}
    assert len(certs) == 2  # each distinct certificate observed once per source
    modes = [e.security_mode for e in events if isinstance(e, OpcUaChannelEvent) and e.kind == "mode"]
    assert modes == ["SignAndEncrypt"]


def test_U13_open_secure_channel_flood_capped_per_host() -> None:
    limits = dataclasses.replace(DEFAULT_LIMITS, opcua_max_channels_per_host=16)
    dissector = OpcUaDissector()
    sess = dissector.session(FLOW, limits)
    found: list[str] = []
    for i in range(1, 2001):
        found += kinds(list(sess.feed(opn(0, 1, i, opn_request(handle=i)), True, TS)))
        found += kinds(list(sess.feed(opn(i, 1, i, opn_response(i, handle=i)), False, TS)))
    assert found.count("opcua.channel_limit") == 1
    assert len(sess.channels) == 16
    # a second connection from the same host is refused channels too, and says so
    other = dissector.session(dataclasses.replace(FLOW, client_port=50001), limits)
    out = list(other.feed(opn(0, 1, 1, opn_request()), True, TS)) + list(
        other.feed(opn(5000, 1, 1, opn_response(5000)), False, TS)
    )
    assert "opcua.channel_limit" in kinds(out)
    sess.close(TS)
    other.close(TS)
    assert dissector.hosts.get(FLOW.client_ip)["channels"] == 0


def test_G2_64k_application_name_truncated() -> None:
    r = ua.CreateSessionRequest()
    r.Parameters.ClientDescription.ApplicationName = ua.LocalizedText("N" * 65536)
    r.Parameters.ClientDescription.ApplicationUri = "urn:" + "u" * 70000
    chunks = chunks_of(CH, 2, 2, encode(r), 60_000)  # 134 KB: more than one 64 KiB buffer
    events = feed_all_ways([*HANDSHAKE, *[(True, c) for c in chunks]])
    desc = messages(events)[-1].request["client_description"]  # type: ignore[index]
    assert len(desc["application_name"]) == DEFAULT_LIMITS.max_field_chars
    assert len(desc["application_uri"]) == DEFAULT_LIMITS.max_field_chars


def test_random_bytes_on_the_port_never_raise() -> None:
    import random

    rng = random.Random(4840)
    sess = OpcUaDissector().session(FLOW, DEFAULT_LIMITS)
    for _ in range(200):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        sess.feed(data, rng.random() < 0.5, TS)
    sess.close(TS)
    assert header(b"HEL", b"")[:3] == b"HEL"
