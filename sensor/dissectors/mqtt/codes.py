"""MQTT constants: packet types, protocol levels, return/reason codes and property identifiers.

Sources: MQTT 3.1.1 (OASIS Standard, 2014) §2.2.1 (packet types), §3.2.2.3 (CONNACK return codes),
§3.9.3 (SUBACK return codes); MQTT 5.0 (OASIS Standard, 2019) §2.1.2 (packet types, AUTH = 15),
§2.4 (reason codes), §2.2.2.2 (property identifiers and where each may appear).
"""

from __future__ import annotations

from typing import Final

# --- packet types (MQTT 3.1.1 §2.2.1, MQTT 5.0 §2.1.2) ------------------------------------------------

RESERVED: Final = 0
CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14
AUTH: Final = 15  # version 5 only; reserved in 3.1 and 3.1.1

PACKET_TYPE_NAMES: Final[tuple[str, ...]] = (
    "RESERVED",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
)
PACKET_TYPE_NUMBERS: Final[dict[str, int]] = {name: n for n, name in enumerate(PACKET_TYPE_NAMES)}

# Fixed-header flags that are not free (3.1.1 §2.2.2 table 2.2, 5.0 §2.1.3): PUBREL, SUBSCRIBE and
# UNSUBSCRIBE carry 0b0010, every other type but PUBLISH 0b0000.
REQUIRED_FLAGS: Final[tuple[int, ...]] = (0, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)

# Which side may send each type (3.1.1 §2.2.1 "Direction of flow"): True = client to server only,
# False = server to client only, None = both.
DIRECTION: Final[tuple[bool | None, ...]] = (
    None, True, False, None, None, None, None, None, True, False, True, False, True, False, None, None,
)  # fmt: skip

# --- protocol name / level (3.1.1 §3.1.2.1-2, 5.0 §3.1.2.1-2; 3.1 used "MQIsdp" level 3) ----------

PROTOCOL_NAMES: Final[dict[bytes, frozenset[int]]] = {
    b"MQTT": frozenset({4, 5}),
    b"MQIsdp": frozenset({3}),
}
VERSION_NAMES: Final[dict[int, str]] = {3: "3.1", 4: "3.1.1", 5: "5.0"}

# --- CONNACK return codes, 3.1 / 3.1.1 (§3.2.2.3) -------------------------------------------------

CONNACK_V3_NAMES: Final[dict[int, str]] = {
    0: "accepted",
    1: "unacceptable_protocol_version",
    2: "identifier_rejected",
    3: "server_unavailable",
    4: "bad_user_name_or_password",
    5: "not_authorized",
}

SUBACK_V3_NAMES: Final[dict[int, str]] = {
    0: "granted_qos_0",
    1: "granted_qos_1",
    2: "granted_qos_2",
    0x80: "failure",
}

# --- MQTT 5.0 reason codes (§2.4, table 2-6) ------------------------------------------------------

REASON_CODE_NAMES: Final[dict[int, str]] = {
    0x00: "success",
    0x01: "granted_qos_1",
    0x02: "granted_qos_2",
    0x04: "disconnect_with_will_message",
    0x10: "no_matching_subscribers",
    0x11: "no_subscription_existed",
    0x18: "continue_authentication",
    0x19: "re_authenticate",
    0x80: "unspecified_error",
    0x81: "malformed_packet",
    0x82: "protocol_error",
    0x83: "implementation_specific_error",
    0x84: "unsupported_protocol_version",
    0x85: "client_identifier_not_valid",
    0x86: "bad_user_name_or_password",
    0x87: "not_authorized",
    0x88: "server_unavailable",
    0x89: "server_busy",
    0x8A: "banned",
    0x8B: "server_shutting_down",
    0x8C: "bad_authentication_method",
    0x8D: "keep_alive_timeout",
    0x8E: "session_taken_over",
    0x8F: "topic_filter_invalid",
    0x90: "topic_name_invalid",
    0x91: "packet_identifier_in_use",
    0x92: "packet_identifier_not_found",
    0x93: "receive_maximum_exceeded",
    0x94: "topic_alias_invalid",
    0x95: "packet_too_large",
    0x96: "message_rate_too_high",
    0x97: "quota_exceeded",
    0x98: "administrative_action",
    0x99: "payload_format_invalid",
    0x9A: "retain_not_supported",
    0x9B: "qos_not_supported",
    0x9C: "use_another_server",
    0x9D: "server_moved",
    0x9E: "shared_subscriptions_not_supported",
    0x9F: "connection_rate_exceeded",
    0xA0: "maximum_connect_time",
    0xA1: "subscription_identifiers_not_supported",
    0xA2: "wildcard_subscriptions_not_supported",
}

# CONNACK return codes that mean "who you are was refused" rather than "come back later".
CONNACK_V3_AUTH_REFUSALS: Final = frozenset({2, 4, 5})
CONNACK_V5_AUTH_REFUSALS: Final = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})


def reason_name(code: int, packet_type: int, version: int) -> str:
    """Name of a return/reason code as the given packet type and protocol level define it."""
    if version < 5:
        if packet_type == CONNACK:
            return CONNACK_V3_NAMES.get(code, f"unknown_0x{code:02x}")
        if packet_type == SUBACK:
            return SUBACK_V3_NAMES.get(code, f"unknown_0x{code:02x}")
        return f"unknown_0x{code:02x}"
    # 0x00 reads differently per packet (5.0 §2.4 table 2-6)
    if code == 0x00:
        if packet_type == DISCONNECT:
            return "normal_disconnection"
        if packet_type == SUBACK:
            return "granted_qos_0"
    return REASON_CODE_NAMES.get(code, f"unknown_0x{code:02x}")


# --- MQTT 5.0 properties (§2.2.2.2, table 2-4) ----------------------------------------------------

# Value encodings
P_BYTE: Final = 1
P_U16: Final = 2
P_U32: Final = 3
P_VARINT: Final = 4
P_UTF8: Final = 5
P_BINARY: Final = 6
P_PAIR: Final = 7

# Pseudo packet type for the Will Properties of CONNECT (5.0 §3.1.3.2)
WILL: Final = 16

_PUB_WILL = frozenset({PUBLISH, WILL})
_ACKS_REASON = frozenset(
    {CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH}
)  # Reason String
_ALL = frozenset(range(1, 17))

# id -> (snake_case name, encoding, packet types where it may appear)
PROPERTIES: Final[dict[int, tuple[str, int, frozenset[int]]]] = {
    0x01: ("payload_format_indicator", P_BYTE, _PUB_WILL),
    0x02: ("message_expiry_interval", P_U32, _PUB_WILL),
    0x03: ("content_type", P_UTF8, _PUB_WILL),
    0x08: ("response_topic", P_UTF8, _PUB_WILL),
    0x09: ("correlation_data", P_BINARY, _PUB_WILL),
    0x0B: ("subscription_identifier", P_VARINT, frozenset({PUBLISH, SUBSCRIBE})),
    0x11: ("session_expiry_interval", P_U32, frozenset({CONNECT, CONNACK, DISCONNECT})),
    0x12: ("assigned_client_identifier", P_UTF8, frozenset({CONNACK})),
    0x13: ("server_keep_alive", P_U16, frozenset({CONNACK})),
    0x15: ("authentication_method", P_UTF8, frozenset({CONNECT, CONNACK, AUTH})),
    0x16: ("authentication_data", P_BINARY, frozenset({CONNECT, CONNACK, AUTH})),
    0x17: ("request_problem_information", P_BYTE, frozenset({CONNECT})),
    0x18: ("will_delay_interval", P_U32, frozenset({WILL})),
    0x19: ("request_response_information", P_BYTE, frozenset({CONNECT})),
    0x1A: ("response_information", P_UTF8, frozenset({CONNACK})),
    0x1C: ("server_reference", P_UTF8, frozenset({CONNACK, DISCONNECT})),
    0x1F: ("reason_string", P_UTF8, _ACKS_REASON),
    0x21: ("receive_maximum", P_U16, frozenset({CONNECT, CONNACK})),
    0x22: ("topic_alias_maximum", P_U16, frozenset({CONNECT, CONNACK})),
    0x23: ("topic_alias", P_U16, frozenset({PUBLISH})),
    0x24: ("maximum_qos", P_BYTE, frozenset({CONNACK})),
    0x25: ("retain_available", P_BYTE, frozenset({CONNACK})),
    0x26: ("user_property", P_PAIR, _ALL),
    0x27: ("maximum_packet_size", P_U32, frozenset({CONNECT, CONNACK})),
    0x28: ("wildcard_subscription_available", P_BYTE, frozenset({CONNACK})),
    0x29: ("subscription_identifier_available", P_BYTE, frozenset({CONNACK})),
    0x2A: ("shared_subscription_available", P_BYTE, frozenset({CONNACK})),
}

# Properties that may appear more than once (5.0 §3.3.2.3.8 subscription identifiers in a
# PUBLISH, §3.1.2.11.8 user properties everywhere); every other repeat is a protocol error.
REPEATABLE_PROPERTIES: Final = frozenset({0x0B, 0x26})

# Properties whose value is a secret: only the length is kept.
SECRET_PROPERTIES: Final = frozenset({0x16})
