"""Service request/response bodies (OPC 10000-4 §5, encoded per OPC 10000-6 §5.2.6).

A reassembled plain-text message body is ``TypeId NodeId | RequestHeader or ResponseHeader | fields``.
:func:`decode_service` identifies the service from the encoding NodeId (generated table) and decodes
the fields that matter for security and inventory into JSON-safe dicts. Secrets are never kept:
passwords and issued tokens are reduced to their length, the session AuthenticationToken is skipped.

RequestHeader (§7.32): AuthenticationToken NodeId | Timestamp DateTime | RequestHandle UInt32 |
ReturnDiagnostics UInt32 | AuditEntryId String | TimeoutHint UInt32 | AdditionalHeader ExtensionObject

ResponseHeader (§7.33): Timestamp DateTime | RequestHandle UInt32 | ServiceResult StatusCode |
ServiceDiagnostics DiagnosticInfo | StringTable String[] | AdditionalHeader ExtensionObject
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sensor.dissectors.base import Reader
from sensor.dissectors.opcua import codes
from sensor.dissectors.opcua.encoding import JSON, Decoder
from sensor.errors import Malformed, Truncated


@dataclass(slots=True)
class ServiceBody:
    """What one decoded service message says. Mutable while it is being filled in."""

    type_id: int | None  # numeric encoding NodeId (ns=0), None when not numeric / not ns 0
    type_text: str  # NodeId text form
    name: str  # "ReadRequest", "ServiceFault", or "" when the NodeId is unknown
    is_request: bool | None  # None when unknown
    request_handle: int | None = None
    service_result: int | None = None
    fields: dict[str, JSON] = field(default_factory=dict)
    # (source, DER, ApplicationUri announced next to it or None, presenter_is_server)
    certificates: list[tuple[str, bytes, str | None, bool]] = field(default_factory=list)
    # (security mode name, policy URI, user token types) of every endpoint advertised
    advertised: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    error: str = ""  # Malformed reason when the fields stopped decoding part-way
    bad_utf8: bool = False
    bad_matrix: bool = False

    @property
    def service(self) -> str:
        return codes.service_base(self.name) if self.name else ""


def _request_header(d: Decoder, body: ServiceBody) -> None:
    d.nodeid_parts()  # AuthenticationToken: a session secret, not kept
    body.fields["timestamp"] = d.datetime()
    body.request_handle = d.uint32()
    d.uint32()  # ReturnDiagnostics
    d.string()  # AuditEntryId
    d.uint32()  # TimeoutHint
    d.extension_object()


def _response_header(d: Decoder, body: ServiceBody) -> None:
    body.fields["timestamp"] = d.datetime()
    body.request_handle = d.uint32()
    body.service_result = d.uint32()
    diag = d.diagnostic_info()
    if diag:
        body.fields["service_diagnostics"] = diag
    d.string_array()
    d.extension_object()


# --- shared structures -------------------------------------------------------------------------


def _application_description(d: Decoder) -> dict[str, JSON]:
    """ApplicationDescription (OPC 10000-4 §7.2)."""
    return {
        "application_uri": d.string(),
        "product_uri": d.string(),
        "application_name": d.localized_text(),
        "application_type": codes.APPLICATION_TYPES.get(d.uint32(), "Unknown"),
        "gateway_server_uri": d.string(),
        "discovery_profile_uri": d.string(),
        "discovery_urls": d.string_array(),
    }


def _user_token_policy(d: Decoder) -> dict[str, JSON]:
    """UserTokenPolicy (OPC 10000-4 §7.42)."""
    return {
        "policy_id": d.string(),
        "token_type": codes.USER_TOKEN_TYPES.get(d.uint32(), "Unknown"),
        "issued_token_type": d.string(),
        "issuer_endpoint_url": d.string(),
        "security_policy_uri": d.string(),
    }


def _endpoint_description(d: Decoder, body: ServiceBody) -> dict[str, JSON]:
    """EndpointDescription (OPC 10000-4 §7.14); its server certificate is observed."""
    url = d.string()
    server = _application_description(d)
    cert = d.bytestring_raw()
    mode = codes.SECURITY_MODES.get(d.uint32(), "Invalid")
    policy = d.string()
    tokens = d.array_of(lambda: _user_token_policy(d), 4) or []
    transport = d.string()
    level = d.byte()
    if cert:
        body.certificates.append(("opcua.endpoint", cert, server.get("application_uri"), True))
    body.advertised.append((mode, policy or "", tuple(str(t.get("token_type")) for t in tokens)))
    return {
        "endpoint_url": url,
        "server": server,
        "server_certificate_bytes": len(cert) if cert else 0,
        "security_mode": mode,
        "security_policy_uri": policy,
        "user_identity_tokens": tokens,
        "transport_profile_uri": transport,
        "security_level": level,
    }


def _signature_data(d: Decoder) -> None:
    d.string()
    d.bytestring_len()


def _signed_software_certificate(d: Decoder) -> None:
    d.bytestring_len()
    d.bytestring_len()


def _read_value_id(d: Decoder) -> dict[str, JSON]:
    node = d.nodeid()
    attr = d.uint32()
    out: dict[str, JSON] = {"node_id": node, "attribute": codes.ATTRIBUTE_IDS.get(attr, attr)}
    index_range = d.string()
    if index_range:
        out["index_range"] = index_range
    d.qualified_name()
    return out


def _extension_token(d: Decoder, channel_mode: str) -> dict[str, JSON]:
    """UserIdentityToken (OPC 10000-4 §7.36): the type, the user name, never the secret."""
    type_id, reader, text = d.extension_object_open()
    name = codes.encoding_name(type_id) if type_id is not None else None
    out: dict[str, JSON] = {"type": name or text}
    if reader is None:
        return out
    sub = Decoder(reader, max_depth=d.max_depth, max_array=d.max_array, max_chars=d.max_chars)
    out["policy_id"] = sub.string()
    if type_id == codes.ENC_ANONYMOUS_TOKEN:
        out["token_type"] = "Anonymous"
    elif type_id == codes.ENC_USERNAME_TOKEN:
        out["token_type"] = "UserName"
        out["user_name"] = sub.string()
        out["password_bytes"] = max(sub.bytestring_len(), 0)
        algorithm = sub.string()
        out["encryption_algorithm"] = algorithm
        out["password_encrypted"] = bool(algorithm)
    elif type_id == codes.ENC_X509_TOKEN:
        out["token_type"] = "Certificate"
        out["certificate_bytes"] = max(sub.bytestring_len(), 0)
    elif type_id == codes.ENC_ISSUED_TOKEN:
        out["token_type"] = "IssuedToken"
        out["token_bytes"] = max(sub.bytestring_len(), 0)
        out["encryption_algorithm"] = sub.string()
    d.bad_utf8 = d.bad_utf8 or sub.bad_utf8
    d.bad_matrix = d.bad_matrix or sub.bad_matrix
    return out


def _browse_result(d: Decoder) -> dict[str, JSON]:
    status = d.status_code()
    cp = d.bytestring_len()

    def reference() -> dict[str, JSON]:
        ref_type = d.nodeid()
        forward = d.boolean()
        node = d.expanded_nodeid()
        browse_name = d.qualified_name()
        display = d.localized_text()
        node_class = codes.NODE_CLASSES.get(d.uint32(), "Unknown")
        type_def = d.expanded_nodeid()
        return {
            "reference_type": ref_type,
            "is_forward": forward,
            "node_id": node,
            "browse_name": browse_name,
            "display_name": display,
            "node_class": node_class,
            "type_definition": type_def,
        }

    refs = d.array_of(reference, 10)
    return {"status": status, "continuation_point": cp > 0, "references": refs}


def _notification(d: Decoder) -> dict[str, JSON]:
    """NotificationData ExtensionObject: DataChange (values), Event fields, StatusChange."""
    type_id, reader, text = d.extension_object_open()
    name = codes.encoding_name(type_id) if type_id is not None else None
    out: dict[str, JSON] = {"type": name or text}
    if reader is None:
        return out
    sub = Decoder(reader, max_depth=d.max_depth - d.depth, max_array=d.max_array, max_chars=d.max_chars)
    if type_id == codes.ENC_DATA_CHANGE_NOTIFICATION:

        def item() -> dict[str, JSON]:
            return {"client_handle": sub.uint32(), "value": sub.data_value()}

        out["monitored_items"] = sub.array_of(item, 5)
    elif type_id == codes.ENC_EVENT_NOTIFICATION_LIST:

        def event() -> dict[str, JSON]:
            handle = sub.uint32()
            return {"client_handle": handle, "fields": sub.array_of(sub.variant, 1)}

        out["events"] = sub.array_of(event, 8)
    elif type_id == codes.ENC_STATUS_CHANGE_NOTIFICATION:
        out["status"] = sub.status_code()
    d.bad_utf8 = d.bad_utf8 or sub.bad_utf8
    d.bad_matrix = d.bad_matrix or sub.bad_matrix
    return out


# --- per-service field decoders -----------------------------------------------------------------

FieldDecoder = Callable[[Decoder, ServiceBody, str], None]


def _open_secure_channel_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["client_protocol_version"] = d.uint32()
    b.fields["request_type"] = codes.REQUEST_TYPES.get(d.uint32(), "Unknown")
    b.fields["security_mode"] = codes.SECURITY_MODES.get(d.uint32(), "Invalid")
    b.fields["client_nonce_bytes"] = max(d.bytestring_len(), 0)
    b.fields["requested_lifetime"] = d.uint32()


def _open_secure_channel_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["server_protocol_version"] = d.uint32()
    b.fields["channel_id"] = d.uint32()
    b.fields["token_id"] = d.uint32()
    b.fields["created_at"] = d.datetime()
    b.fields["revised_lifetime"] = d.uint32()
    b.fields["server_nonce_bytes"] = max(d.bytestring_len(), 0)


def _get_endpoints_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["endpoint_url"] = d.string()
    b.fields["locale_ids"] = d.string_array()
    b.fields["profile_uris"] = d.string_array()


def _get_endpoints_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["endpoints"] = d.array_of(lambda: _endpoint_description(d, b), 20)


def _find_servers_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["endpoint_url"] = d.string()
    b.fields["locale_ids"] = d.string_array()
    b.fields["server_uris"] = d.string_array()


def _find_servers_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["servers"] = d.array_of(lambda: _application_description(d), 20)


def _create_session_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    client = _application_description(d)
    b.fields["client_description"] = client
    b.fields["server_uri"] = d.string()
    b.fields["endpoint_url"] = d.string()
    b.fields["session_name"] = d.string()
    d.bytestring_len()  # client nonce
    cert = d.bytestring_raw()
    if cert:
        b.certificates.append(("opcua.create_session", cert, client.get("application_uri"), False))
    b.fields["client_certificate_bytes"] = len(cert) if cert else 0
    b.fields["requested_session_timeout"] = d.double()
    b.fields["max_response_message_size"] = d.uint32()


def _create_session_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["session_id"] = d.nodeid()
    d.nodeid_parts()  # AuthenticationToken: secret
    b.fields["revised_session_timeout"] = d.double()
    d.bytestring_len()  # server nonce
    cert = d.bytestring_raw()
    if cert:
        b.certificates.append(("opcua.create_session", cert, None, True))
    b.fields["server_certificate_bytes"] = len(cert) if cert else 0
    b.fields["server_endpoints"] = d.array_of(lambda: _endpoint_description(d, b), 20)
    d.array_of(lambda: _signed_software_certificate(d), 8)
    _signature_data(d)
    b.fields["max_request_message_size"] = d.uint32()


def _activate_session_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    _signature_data(d)
    d.array_of(lambda: _signed_software_certificate(d), 8)
    b.fields["locale_ids"] = d.string_array()
    b.fields["user_identity_token"] = _extension_token(d, mode)
    _signature_data(d)


def _activate_session_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    d.bytestring_len()
    b.fields["results"] = d.status_code_array()
    d.diagnostic_info_array()


def _close_session_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["delete_subscriptions"] = d.boolean()


def _read_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["max_age"] = d.double()
    b.fields["timestamps_to_return"] = codes.TIMESTAMPS_TO_RETURN.get(d.uint32(), "Invalid")
    b.fields["nodes_to_read"] = d.array_of(lambda: _read_value_id(d), 16)


def _read_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["results"] = d.array_of(d.data_value, 1)
    d.diagnostic_info_array()


def _write_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    def write_value() -> dict[str, JSON]:
        node = d.nodeid()
        attr = d.uint32()
        index_range = d.string()
        out: dict[str, JSON] = {
            "node_id": node,
            "attribute": codes.ATTRIBUTE_IDS.get(attr, attr),
            "value": d.data_value(),
        }
        if index_range:
            out["index_range"] = index_range
        return out

    b.fields["nodes_to_write"] = d.array_of(write_value, 11)


def _status_results_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["results"] = d.status_code_array()
    d.diagnostic_info_array()


def _browse_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    view = d.nodeid()
    d.datetime()
    d.uint32()
    if view != "i=0":
        b.fields["view"] = view
    b.fields["requested_max_references_per_node"] = d.uint32()

    def description() -> dict[str, JSON]:
        node = d.nodeid()
        direction = codes.BROWSE_DIRECTIONS.get(d.uint32(), "Invalid")
        ref_type = d.nodeid()
        d.boolean()
        d.uint32()
        d.uint32()
        return {"node_id": node, "direction": direction, "reference_type": ref_type}

    b.fields["nodes_to_browse"] = d.array_of(description, 17)


def _browse_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["results"] = d.array_of(lambda: _browse_result(d), 12)
    d.diagnostic_info_array()


def _browse_next_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["release_continuation_points"] = d.boolean()
    n = d.array_length(4)
    for _ in range(max(n, 0)):
        d.bytestring_len()
    b.fields["continuation_points"] = max(n, 0)


def _call_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    def method() -> dict[str, JSON]:
        return {"object_id": d.nodeid(), "method_id": d.nodeid(), "input_arguments": d.array_of(d.variant, 1)}

    b.fields["methods_to_call"] = d.array_of(method, 8)


def _call_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    def result() -> dict[str, JSON]:
        status = d.status_code()
        d.status_code_array()
        d.diagnostic_info_array()
        return {"status": status, "output_arguments": d.array_of(d.variant, 1)}

    b.fields["results"] = d.array_of(result, 16)
    d.diagnostic_info_array()


def _create_subscription_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["requested_publishing_interval"] = d.double()
    b.fields["requested_lifetime_count"] = d.uint32()
    b.fields["requested_max_keep_alive_count"] = d.uint32()
    b.fields["max_notifications_per_publish"] = d.uint32()
    b.fields["publishing_enabled"] = d.boolean()
    b.fields["priority"] = d.byte()


def _create_subscription_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["subscription_id"] = d.uint32()
    b.fields["revised_publishing_interval"] = d.double()
    b.fields["revised_lifetime_count"] = d.uint32()
    b.fields["revised_max_keep_alive_count"] = d.uint32()


def _create_monitored_items_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["subscription_id"] = d.uint32()
    b.fields["timestamps_to_return"] = codes.TIMESTAMPS_TO_RETURN.get(d.uint32(), "Invalid")

    def item() -> dict[str, JSON]:
        out = _read_value_id(d)
        out["monitoring_mode"] = codes.MONITORING_MODES.get(d.uint32(), "Unknown")
        out["client_handle"] = d.uint32()
        out["sampling_interval"] = d.double()
        flt = d.extension_object()
        if flt:
            out["filter"] = flt.get("type")
        out["queue_size"] = d.uint32()
        d.boolean()
        return out

    b.fields["items_to_create"] = d.array_of(item, 30)


def _create_monitored_items_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    def result() -> dict[str, JSON]:
        status = d.status_code()
        item_id = d.uint32()
        d.double()
        d.uint32()
        d.extension_object()
        return {"status": status, "monitored_item_id": item_id}

    b.fields["results"] = d.array_of(result, 23)
    d.diagnostic_info_array()


def _publish_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    def ack() -> dict[str, JSON]:
        return {"subscription_id": d.uint32(), "sequence_number": d.uint32()}

    b.fields["subscription_acknowledgements"] = d.array_of(ack, 8)


def _publish_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    b.fields["subscription_id"] = d.uint32()
    b.fields["available_sequence_numbers"] = d.uint32_array()
    b.fields["more_notifications"] = d.boolean()
    b.fields["sequence_number"] = d.uint32()
    b.fields["publish_time"] = d.datetime()
    b.fields["notifications"] = d.array_of(lambda: _notification(d), 3)
    b.fields["results"] = d.status_code_array()
    d.diagnostic_info_array()


def _history_read_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    details = d.extension_object()
    b.fields["details"] = details.get("type") if details else None
    b.fields["timestamps_to_return"] = codes.TIMESTAMPS_TO_RETURN.get(d.uint32(), "Invalid")
    b.fields["release_continuation_points"] = d.boolean()

    def node() -> dict[str, JSON]:
        node_id = d.nodeid()
        d.string()
        d.qualified_name()
        d.bytestring_len()
        return {"node_id": node_id}

    b.fields["nodes_to_read"] = d.array_of(node, 13)


def _history_read_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    def result() -> dict[str, JSON]:
        status = d.status_code()
        cp = d.bytestring_len()
        data = d.extension_object()
        return {"status": status, "continuation_point": cp > 0, "history_data": data}

    b.fields["results"] = d.array_of(result, 8)
    d.diagnostic_info_array()


def _add_nodes_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    def item() -> dict[str, JSON]:
        parent = d.expanded_nodeid()
        ref_type = d.nodeid()
        new_id = d.expanded_nodeid()
        browse_name = d.qualified_name()
        node_class = codes.NODE_CLASSES.get(d.uint32(), "Unknown")
        d.extension_object()
        type_def = d.expanded_nodeid()
        return {
            "parent_node_id": parent,
            "reference_type": ref_type,
            "requested_new_node_id": new_id,
            "browse_name": browse_name,
            "node_class": node_class,
            "type_definition": type_def,
        }

    b.fields["nodes_to_add"] = d.array_of(item, 15)


def _add_nodes_response(d: Decoder, b: ServiceBody, mode: str) -> None:
    def result() -> dict[str, JSON]:
        return {"status": d.status_code(), "added_node_id": d.nodeid()}

    b.fields["results"] = d.array_of(result, 6)
    d.diagnostic_info_array()


def _delete_nodes_request(d: Decoder, b: ServiceBody, mode: str) -> None:
    def item() -> dict[str, JSON]:
        return {"node_id": d.nodeid(), "delete_target_references": d.boolean()}

    b.fields["nodes_to_delete"] = d.array_of(item, 3)


def _nothing(d: Decoder, b: ServiceBody, mode: str) -> None:
    return None


FIELD_DECODERS: dict[str, FieldDecoder] = {
    "OpenSecureChannelRequest": _open_secure_channel_request,
    "OpenSecureChannelResponse": _open_secure_channel_response,
    "CloseSecureChannelRequest": _nothing,
    "CloseSecureChannelResponse": _nothing,
    "GetEndpointsRequest": _get_endpoints_request,
    "GetEndpointsResponse": _get_endpoints_response,
    "FindServersRequest": _find_servers_request,
    "FindServersResponse": _find_servers_response,
    "CreateSessionRequest": _create_session_request,
    "CreateSessionResponse": _create_session_response,
    "ActivateSessionRequest": _activate_session_request,
    "ActivateSessionResponse": _activate_session_response,
    "CloseSessionRequest": _close_session_request,
    "CloseSessionResponse": _nothing,
    "ReadRequest": _read_request,
    "ReadResponse": _read_response,
    "WriteRequest": _write_request,
    "WriteResponse": _status_results_response,
    "BrowseRequest": _browse_request,
    "BrowseResponse": _browse_response,
    "BrowseNextRequest": _browse_next_request,
    "BrowseNextResponse": _browse_response,
    "CallRequest": _call_request,
    "CallResponse": _call_response,
    "CreateSubscriptionRequest": _create_subscription_request,
    "CreateSubscriptionResponse": _create_subscription_response,
    "CreateMonitoredItemsRequest": _create_monitored_items_request,
    "CreateMonitoredItemsResponse": _create_monitored_items_response,
    "PublishRequest": _publish_request,
    "PublishResponse": _publish_response,
    "HistoryReadRequest": _history_read_request,
    "HistoryReadResponse": _history_read_response,
    "AddNodesRequest": _add_nodes_request,
    "AddNodesResponse": _add_nodes_response,
    "DeleteNodesRequest": _delete_nodes_request,
    "DeleteNodesResponse": _status_results_response,
    "ServiceFault": _nothing,
}


def decode_service(d: Decoder, channel_mode: str = "") -> ServiceBody:
    """Decode one reassembled message body. Raises ``Malformed``/``Truncated`` only when even the
    type NodeId cannot be read; later failures are kept in ``ServiceBody.error`` so the caller still
    learns which service it was (OPC 10000-6 §5.2.6 / OPC 10000-4 §5)."""
    ns, ident, text = d.nodeid_parts()
    name = (codes.encoding_name(ident) or "") if (ns == 0 and ident is not None) else ""
    if ns != 0 or ident is None or not codes.is_service_encoding(ident):
        raise Malformed("unknown_service", text)
    is_request = name.endswith("Request")
    body = ServiceBody(ident, text, name, is_request)
    try:
        if is_request:
            _request_header(d, body)
        else:
            _response_header(d, body)
        decoder = FIELD_DECODERS.get(name)
        if decoder is not None:
            decoder(d, body, channel_mode)
    except Malformed as exc:
        body.error = exc.reason
        body.fields["decode_error"] = exc.reason
    except Truncated:
        body.error = "truncated"
        body.fields["decode_error"] = "truncated"
    body.bad_utf8 = d.bad_utf8
    body.bad_matrix = d.bad_matrix
    return body


def open_decoder(buf: bytes, max_depth: int, max_array: int, max_chars: int) -> Decoder:
    return Decoder(Reader(buf), max_depth=max_depth, max_array=max_array, max_chars=max_chars)
