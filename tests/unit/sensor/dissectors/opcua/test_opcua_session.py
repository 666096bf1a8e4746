"""OpcUaSession: framing, channels, chunk reassembly, pairing, services and posture
(OPC 10000-6 §6.7, §7.1; OPC 10000-4 §5). Every vector is fed whole, byte by byte and with trailing
bytes (``feed_all_ways``) and must give the same events."""

from __future__ import annotations

import os
import struct

from asyncua import ua
from opcua_wire import (
    FLOW,
    POLICY_B256SHA256,
    POLICY_NONE,
    TS,
    ack,
    chunks_of,
    conversation,
    encode,
    err,
    feed,
    feed_all_ways,
    header,
    hel,
    kinds,
    make_cert,
    messages,
    msg,
    opn,
    opn_request,
    opn_response,
    read_request,
    read_response,
    s,
)

from sensor.dissectors.opcua import OpcUaDissector
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage, OpcUaTransport
from sensor.dissectors.opcua.stats import OpcUaStats
from sensor.limits import DEFAULT_LIMITS
from sensor.records import AppEvent, CertificateObservation, ProtocolAnomaly

CH = 7


def summary(events: list[AppEvent]) -> dict[str, object]:
    st = OpcUaStats()
    for e in events:
        st.observe(e)
    return st.section()


def handshake(channel: int = CH) -> list[tuple[bool, bytes]]:
    return conversation(channel)[:4]


def test_conversation_events_pairing_and_stats() -> None:
    events = feed_all_ways(conversation())
    transports = [e for e in events if isinstance(e, OpcUaTransport)]
    assert [t.message_type for t in transports] == ["HEL", "ACK"]
    assert transports[0].fields["endpoint_url"] == "opc.tcp://10.0.0.2:4840"
    msgs = messages(events)
    assert [(m.message_type, m.service) for m in msgs] == [
        ("OPN", "OpenSecureChannel"),
        ("MSG", "Read"),
        ("CLO", "CloseSecureChannel"),
    ]
    opn_pair, read, clo = msgs
    assert opn_pair.request and opn_pair.request["security_mode"] == "None"
    assert opn_pair.response and opn_pair.response["channel_id"] == CH
    assert read.request_handle == 11 and read.status == "Good" and read.to_server
    assert read.request == {
        "timestamp": read.request["timestamp"],
        "max_age": 0.0,
        "timestamps_to_return": "Source",
        "nodes_to_read": [
            {"node_id": "i=2258", "attribute": "Value"},
            {"node_id": "ns=2;s=Temp", "attribute": "Value"},
        ],
    }
    assert read.response is not None
    assert [r["value"] for r in read.response["results"]] == [
        {"type": "Double", "value": 1.5},
        {"type": "String", "value": "ok"},
    ]
    assert read.security_mode == "None" and read.security_policy == POLICY_NONE
    assert clo.response is None
    body = read.eve_body()["opcua"]
    assert body["service"] == "Read" and body["request_type_id"] == 631 and body["response_type_id"] == 634
    sec = summary(events)
    assert sec["messages_by_type"] == {"HEL": 1, "ACK": 1, "OPN": 2, "MSG": 2, "CLO": 1, "ERR": 0}
    assert sec["services_by_nodeid"] == {"446": 1, "449": 1, "452": 1, "631": 1, "634": 1}
    assert sec["security_modes"] == {"None": 1, "Sign": 0, "SignAndEncrypt": 0}
    assert sec["security_policies"] == [POLICY_NONE]
    assert sec["anomalies_by_kind"] == {"opcua.security_mode_none": 1}


def test_multi_chunk_message_reassembled_in_sequence_order() -> None:
    nodes = [ua.NodeId(f"Tag{i:03d}", 2) for i in range(60)]
    body = read_request(21, nodes)
    c1, c2, c3 = chunks_of(CH, 10, 5, body, (len(body) + 2) // 3)
    # the first two C chunks arrive swapped: sequence numbers (10, 11, 12), not arrival, give the order
    items = [*handshake(), (True, c2), (True, c1), (True, c3)]
    items.append((False, msg(CH, 10, 5, read_response(21, [ua.Variant(1, ua.VariantType.Int32)] * 60))))
    events = feed_all_ways(items)
    read = messages(events)[1]
    assert read.service == "Read" and read.request is not None
    assert len(read.request["nodes_to_read"]) == 32  # kept for the event; all 60 decoded
    assert dict(read.chunks) == {"MSG": 4}
    assert summary(events)["messages_by_type"]["MSG"] == 4


def test_abort_chunk_drops_partial_message_and_next_message_decodes() -> None:
    body = read_request(30, [ua.NodeId(i, 0) for i in range(40)])
    c1, _c2 = chunks_of(CH, 10, 8, body, len(body) // 2 + 1)
    abort = msg(CH, 11, 8, struct.pack("<I", 0x80080000) + s("too large"), b"A")
    items = [*handshake(), (True, c1), (True, abort), *conversation()[4:6]]
    events = feed_all_ways(items)
    msgs = messages(events)
    aborted = [m for m in msgs if m.aborted]
    assert (
        len(aborted) == 1 and aborted[0].request_id == 8 and aborted[0].status == "BadEncodingLimitsExceeded"
    )
    assert dict(aborted[0].chunks) == {"MSG": 2}
    assert msgs[-1].service == "Read" and msgs[-1].status == "Good"
    assert summary(events)["messages_by_type"]["MSG"] == 4


def test_mid_stream_pickup_starts_at_msg_after_garbage() -> None:
    req = msg(CH, 40, 90, read_request(5, [ua.NodeId(2258, 0)]))
    resp = msg(CH, 40, 90, read_response(5, [ua.Variant(3, ua.VariantType.UInt32)]))
    items = [(True, b"\x13\x37tail of an earlier chunk" + req), (False, resp[5:9] * 3 + resp)]
    events = feed_all_ways(items)
    msgs = messages(events)
    assert [(m.service, m.status) for m in msgs] == [("Read", "Good")]
    modes = [e for e in events if isinstance(e, OpcUaChannelEvent) and e.kind == "mode"]
    assert [(m.security_mode, m.mode_source) for m in modes] == [("None", "inferred")]
    assert kinds(events) == []


def test_encrypted_channel_bodies_counted_not_decoded() -> None:
    cert = make_cert("urn:test:client")
    enc_opn_req = opn(0, 1, 1, os.urandom(256), POLICY_B256SHA256, cert, b"\x11" * 20)
    enc_opn_resp = opn(CH, 1, 1, os.urandom(256), POLICY_B256SHA256, cert, b"\x22" * 20)
    items = [(True, hel()), (False, ack()), (True, enc_opn_req), (False, enc_opn_resp)]
    for i in range(5):
        items.append((True, msg(CH, 2 + i, 2 + i, b"\xfe" + os.urandom(80))))
        items.append((False, msg(CH, 2 + i, 2 + i, b"\xfe" + os.urandom(80))))
    events = feed_all_ways(items)
    opns = messages(events)
    assert len(opns) == 1 and opns[0].encrypted and opns[0].security_policy == POLICY_B256SHA256
    modes = [e for e in events if isinstance(e, OpcUaChannelEvent) and e.kind == "mode"]
    assert [(m.secure_channel_id, m.security_mode, m.mode_source) for m in modes] == [
        (CH, "SignAndEncrypt", "encrypted")
    ]
    sec = summary(events)
    assert sec["messages_by_type"]["MSG"] == 10 and sec["messages_by_type"]["OPN"] == 2
    assert sec["encrypted_chunks"] == 10
    assert sec["services_by_nodeid"] == {}
    assert sec["security_modes"]["SignAndEncrypt"] == 1
    certs = [e for e in events if isinstance(e, CertificateObservation)]
    assert [(c.source, c.presenter_is_server) for c in certs] == [("opcua.opn", False)]
    assert certs[0].cert.san_uris == ("urn:test:client",)
    assert sec["certificates"] == 1


def test_sign_mode_channel_decodes_bodies_and_strips_signatures() -> None:
    enc_opn_req = opn(0, 1, 1, os.urandom(128), POLICY_B256SHA256)
    enc_opn_resp = opn(CH, 1, 1, os.urandom(128), POLICY_B256SHA256)
    signature = b"\xa5" * 32
    body = read_request(3, [ua.NodeId(i, 0) for i in range(30)])
    chunks = chunks_of(CH, 2, 2, body, len(body) // 2 + 1)
    signed = [c[:4] + struct.pack("<I", len(c) + 32) + c[8:] + signature for c in chunks]
    resp = msg(CH, 2, 2, read_response(3, [ua.Variant(1.0, ua.VariantType.Float)]))
    resp = resp[:4] + struct.pack("<I", len(resp) + 32) + resp[8:] + signature
    items = [(True, enc_opn_req), (False, enc_opn_resp), (True, signed[0]), (True, signed[1]), (False, resp)]
    events = feed_all_ways(items)
    read = messages(events)[-1]
    assert read.service == "Read" and read.security_mode == "Sign"
    assert read.request is not None and len(read.request["nodes_to_read"]) == 30
    assert kinds(events) == []


def test_reverse_hello_inverts_direction() -> None:
    rhe = header(b"RHE", s("urn:server") + s("opc.tcp://10.0.0.1:4840"))
    # the server opened the TCP connection, so its bytes travel to_server=True
    items = [(True, rhe), *[(not d, b) for d, b in conversation()]]
    events = feed_all_ways(items)
    rhe_event = next(e for e in events if isinstance(e, OpcUaTransport))
    assert rhe_event.message_type == "RHE" and rhe_event.fields["server_uri"] == "urn:server"
    read = messages(events)[1]
    assert read.service == "Read" and read.reverse_connect and read.to_server is False
    assert read.eve_body()["opcua"]["reverse_connect"] is True


def test_unanswered_request_emitted_on_close_and_after_timeout() -> None:
    req = msg(CH, 2, 2, read_request(1, [ua.NodeId(1, 0)]))
    events = feed([*handshake(), (True, req)])
    lone = messages(events)[-1]
    assert lone.service == "Read" and lone.response is None and lone.status is None
    sess = OpcUaDissector().session(FLOW, DEFAULT_LIMITS)
    for d, b in [*handshake(), (True, req)]:
        sess.feed(b, d, TS)
    later = sess.feed(hel(), True, TS + DEFAULT_LIMITS.transaction_timeout + 1)
    assert [m.service for m in messages(list(later))] == ["Read"]


def test_response_without_request_is_an_event() -> None:
    events = feed_all_ways([*handshake(), (False, msg(CH, 5, 77, read_response(9, [])))])
    lone = messages(events)[-1]
    assert lone.service == "Read" and lone.request is None and lone.response_type_id == 634
    assert lone.to_server is True  # the response travelled to the client: the request's side is True


def test_service_fault_pairs_with_request() -> None:
    fault = ua.ServiceFault()
    fault.ResponseHeader.ServiceResult = ua.StatusCode(0x80790000)
    items = [
        *handshake(),
        (True, msg(CH, 2, 2, encode(ua.PublishRequest()))),
        (False, msg(CH, 2, 2, encode(fault))),
    ]
    pub = messages(feed_all_ways(items))[-1]
    assert pub.service == "Publish" and pub.status == "BadNoSubscription" and pub.response_type_id == 397


def test_publish_data_change_values() -> None:
    resp = ua.PublishResponse()
    resp.Parameters.SubscriptionId = 3
    notif = ua.DataChangeNotification()
    notif.MonitoredItems = [
        ua.MonitoredItemNotification(ClientHandle=1, Value=ua.DataValue(ua.Variant(42, ua.VariantType.Int16)))
    ]
    resp.Parameters.NotificationMessage.NotificationData = [notif]
    items = [
        *handshake(),
        (True, msg(CH, 2, 2, encode(ua.PublishRequest()))),
        (False, msg(CH, 2, 2, encode(resp))),
    ]
    pub = messages(feed_all_ways(items))[-1]
    assert pub.response is not None
    (n,) = pub.response["notifications"]
    assert n["type"] == "DataChangeNotification"
    assert n["monitored_items"] == [
        {"client_handle": 1, "value": {"value": {"type": "Int16", "value": 42}, "status": "Good"}}
    ]


def test_write_call_browse_and_node_management_fields() -> None:
    write = ua.WriteRequest()
    write.Parameters.NodesToWrite = [
        ua.WriteValue(
            NodeId=ua.NodeId("Valve", 2),
            AttributeId=13,
            Value=ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)),
        )
    ]
    call = ua.CallRequest()
    call.Parameters.MethodsToCall = [
        ua.CallMethodRequest(
            ObjectId=ua.NodeId(5, 2),
            MethodId=ua.NodeId(6, 2),
            InputArguments=[ua.Variant(7, ua.VariantType.Int64)],
        )
    ]
    browse = ua.BrowseRequest()
    browse.Parameters.NodesToBrowse = [ua.BrowseDescription(NodeId=ua.NodeId(85, 0))]
    delete = ua.DeleteNodesRequest()
    delete.Parameters.NodesToDelete = [ua.DeleteNodesItem(NodeId=ua.NodeId("Old", 2))]
    items = [*handshake()] + [
        (True, msg(CH, 2 + i, 2 + i, encode(r))) for i, r in enumerate([write, call, browse, delete])
    ]
    msgs = messages(feed_all_ways(items))[1:]
    by = {m.service: m.request for m in msgs}
    assert by["Write"] == {
        "timestamp": by["Write"]["timestamp"],
        "nodes_to_write": [
            {
                "node_id": "ns=2;s=Valve",
                "attribute": "Value",
                "value": {"value": {"type": "Boolean", "value": True}, "status": "Good"},
            }
        ],
    }
    assert by["Call"]["methods_to_call"] == [
        {"object_id": "ns=2;i=5", "method_id": "ns=2;i=6", "input_arguments": [{"type": "Int64", "value": 7}]}
    ]
    assert by["Browse"]["nodes_to_browse"][0]["node_id"] == "i=85"
    assert by["DeleteNodes"]["nodes_to_delete"] == [
        {"node_id": "ns=2;s=Old", "delete_target_references": True}
    ]


def _activate(token: object) -> bytes:
    r = ua.ActivateSessionRequest()
    r.Parameters.UserIdentityToken = token
    return encode(r)


def test_cleartext_username_password_flagged_and_never_stored() -> None:
    token = ua.UserNameIdentityToken(PolicyId="user", UserName="operator", Password=b"hunter2-secret")
    events = feed_all_ways([*handshake(), (True, msg(CH, 2, 2, _activate(token)))])
    act = messages(events)[-1]
    assert act.request is not None
    tok = act.request["user_identity_token"]
    assert tok["token_type"] == "UserName" and tok["user_name"] == "operator"
    assert tok["password_bytes"] == 14 and tok["password_encrypted"] is False
    assert "hunter2" not in repr(events)
    assert "opcua.cleartext_password" in kinds(events)


def test_encrypted_password_not_flagged_and_anonymous_flagged() -> None:
    token = ua.UserNameIdentityToken(
        PolicyId="u",
        UserName="op",
        Password=b"\x00" * 64,
        EncryptionAlgorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep",
    )
    events = feed_all_ways([*handshake(), (True, msg(CH, 2, 2, _activate(token)))])
    assert "opcua.cleartext_password" not in kinds(events)
    anon = ua.AnonymousIdentityToken(PolicyId="anonymous")
    events = feed_all_ways([*handshake(), (True, msg(CH, 2, 2, _activate(anon)))])
    assert messages(events)[-1].request["user_identity_token"]["token_type"] == "Anonymous"  # type: ignore[index]
    assert "opcua.anonymous_login" in kinds(events)


def test_get_endpoints_posture_and_server_certificate() -> None:
    cert = make_cert("urn:real:server")

    def endpoint(mode: int, policy: str) -> ua.EndpointDescription:
        e = ua.EndpointDescription()
        e.EndpointUrl = "opc.tcp://10.0.0.2:4840"
        e.Server.ApplicationUri = "urn:claimed:server"
        e.ServerCertificate = cert
        e.SecurityMode = ua.MessageSecurityMode(mode)
        e.SecurityPolicyUri = policy
        e.UserIdentityTokens = [ua.UserTokenPolicy(PolicyId="anon", TokenType=ua.UserTokenType.Anonymous)]
        return e

    resp = ua.GetEndpointsResponse()
    resp.Endpoints = [
        endpoint(1, POLICY_NONE),
        endpoint(2, "http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15"),
        endpoint(3, POLICY_B256SHA256),
    ]
    items = [
        *handshake(),
        (True, msg(CH, 2, 2, encode(ua.GetEndpointsRequest()))),
        (False, msg(CH, 2, 2, encode(resp))),
    ]
    events = feed_all_ways(items)
    ge = messages(events)[-1]
    assert ge.response is not None
    assert [e["security_mode"] for e in ge.response["endpoints"]] == ["None", "Sign", "SignAndEncrypt"]
    assert ge.response["endpoints"][0]["server"]["application_uri"] == "urn:claimed:server"
    k = kinds(events)
    for expected in (
        "opcua.security_mode_none_advertised",
        "opcua.deprecated_policy",
        "opcua.anonymous_token_advertised",
        "opcua.cert_self_signed",
        "opcua.cert_uri_mismatch",
    ):
        assert expected in k
    assert "opcua.security_mode_none" not in k  # GetEndpoints on a None channel is discovery
    assert k.count("opcua.cert_uri_mismatch") == 1
    certs = [e for e in events if isinstance(e, CertificateObservation)]
    assert len(certs) == 1 and certs[0].source == "opcua.endpoint" and certs[0].presenter_is_server
    assert summary(events)["security_policies"] == sorted(
        [POLICY_NONE, POLICY_B256SHA256, "http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15"]
    )


def test_create_session_client_certificate_checks_against_packet_time() -> None:
    def create(cert: bytes) -> bytes:
        r = ua.CreateSessionRequest()
        r.Parameters.ClientDescription.ApplicationUri = "urn:test:client"
        r.Parameters.SessionName = "s1"
        r.Parameters.ClientCertificate = cert
        return encode(r)

    good = make_cert("urn:test:client", days_from=-10, days_to=10)
    events = feed_all_ways([*handshake(), (True, msg(CH, 2, 2, create(good)))])
    k = kinds(events)
    assert "opcua.cert_expired" not in k and "opcua.cert_uri_mismatch" not in k
    cs = messages(events)[-1]
    assert cs.request is not None and cs.request["client_description"]["application_uri"] == "urn:test:client"
    certs = [e for e in events if isinstance(e, CertificateObservation)]
    assert [(c.source, c.presenter_is_server) for c in certs] == [("opcua.create_session", False)]

    expired = make_cert("urn:test:client", days_from=-20, days_to=-1)
    assert "opcua.cert_expired" in kinds(feed([*handshake(), (True, msg(CH, 2, 2, create(expired)))]))
    future = make_cert("urn:test:client", days_from=1, days_to=20)
    assert "opcua.cert_not_yet_valid" in kinds(feed([*handshake(), (True, msg(CH, 2, 2, create(future)))]))
    short = make_cert("urn:test:client", key_size=1024)
    assert "opcua.cert_short_key" in kinds(feed([*handshake(), (True, msg(CH, 2, 2, create(short)))]))


def test_repeated_bad_user_access_across_connections_of_one_host() -> None:
    dissector = OpcUaDissector()
    resp = ua.ActivateSessionResponse()
    resp.ResponseHeader.ServiceResult = ua.StatusCode(0x801F0000)  # BadUserAccessDenied
    found: list[str] = []
    for _ in range(3):
        sess = dissector.session(FLOW, DEFAULT_LIMITS)
        for d, b in [
            *handshake(),
            (True, msg(CH, 2, 2, _activate(ua.AnonymousIdentityToken()))),
            (False, msg(CH, 2, 2, encode(resp))),
        ]:
            found += kinds(list(sess.feed(b, d, TS)))
        sess.close(TS)
    assert found.count("opcua.repeated_bad_user_access") == 1


def test_repeated_bad_certificate_from_err_messages() -> None:
    items = [(True, hel()), *[(False, err(0x80120000, "BadCertificateInvalid")) for _ in range(3)]]
    events = feed_all_ways(items)
    assert kinds(events).count("opcua.repeated_bad_certificate") == 1
    assert summary(events)["messages_by_type"]["ERR"] == 3


def test_gap_drops_partial_state_and_resyncs() -> None:
    sess = OpcUaDissector().session(FLOW, DEFAULT_LIMITS)
    for d, b in handshake():
        sess.feed(b, d, TS)
    req = msg(CH, 2, 2, read_request(1, [ua.NodeId(1, 0)]))
    sess.feed(req[:20], True, TS)
    assert list(sess.gap(True, 100, TS)) == []
    out = list(sess.feed(req[30:] + msg(CH, 3, 3, read_request(2, [ua.NodeId(2, 0)])), True, TS))
    out += sess.feed(msg(CH, 3, 3, read_response(2, [])), False, TS)
    assert [(m.request_handle, m.status) for m in messages(out)] == [(2, "Good")]


def test_opn_renew_keeps_channel_and_counts() -> None:
    renew = opn(CH, 5, 9, opn_request(handle=5))
    renew_resp = opn(CH, 5, 9, opn_response(CH, handle=5))
    events = feed_all_ways([*handshake(), (True, renew), (False, renew_resp)])
    assert [m.message_type for m in messages(events)] == ["OPN", "OPN"]
    assert summary(events)["security_modes"]["None"] == 1


def test_events_are_json_safe() -> None:
    import json

    events = feed_all_ways(conversation())
    for e in events:
        json.dumps(e.eve_body())
        assert e.app_proto == "opcua"
    assert all(isinstance(e, AppEvent) for e in events)
    assert {type(e) for e in events} == {OpcUaMessage, OpcUaTransport, OpcUaChannelEvent, ProtocolAnomaly}
