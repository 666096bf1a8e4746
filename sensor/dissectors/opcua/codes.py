"""Names and numbers of OPC UA Binary (OPC 10000-6, OPC 10000-4, OPC 10000-7).

Small hand-kept tables; the big ones (encoding NodeIds, status codes) are generated into
``nodeids_generated.py`` and ``statuscodes_generated.py`` by ``gen_nodeids.py``.
"""

from __future__ import annotations

from sensor.dissectors.opcua.nodeids_generated import BINARY_ENCODINGS, SERVICE_ENCODINGS
from sensor.dissectors.opcua.statuscodes_generated import STATUS_CODES

# OPC 10000-6 §7.1.2.2 Table 50: MessageType of the 8-byte message header.
MSG_HEL = b"HEL"
MSG_ACK = b"ACK"
MSG_ERR = b"ERR"
MSG_RHE = b"RHE"
MSG_OPN = b"OPN"
MSG_MSG = b"MSG"
MSG_CLO = b"CLO"
MESSAGE_TYPES: frozenset[bytes] = frozenset({MSG_HEL, MSG_ACK, MSG_ERR, MSG_RHE, MSG_OPN, MSG_MSG, MSG_CLO})
SECURE_MESSAGE_TYPES: frozenset[bytes] = frozenset({MSG_OPN, MSG_MSG, MSG_CLO})
# Chunk types (IsFinal): F final, C intermediate, A abort. HEL/ACK/ERR/RHE always carry F.
CHUNK_TYPES: frozenset[int] = frozenset(b"FCA")

HEADER_SIZE = 8
# OPC 10000-6 §7.1.2.3: the smallest buffer a stack may announce is 8192 bytes.
MIN_BUFFER_SIZE = 8192

# OPC 10000-4 §7.20 MessageSecurityMode
SECURITY_MODES = {0: "Invalid", 1: "None", 2: "Sign", 3: "SignAndEncrypt"}
MODE_NONE = "None"
MODE_SIGN = "Sign"
MODE_SIGN_ENCRYPT = "SignAndEncrypt"

# OPC 10000-4 §7.41 UserTokenType
USER_TOKEN_TYPES = {0: "Anonymous", 1: "UserName", 2: "Certificate", 3: "IssuedToken"}
# OPC 10000-4 §7.4 ApplicationType
APPLICATION_TYPES = {0: "Server", 1: "Client", 2: "ClientAndServer", 3: "DiscoveryServer"}
# OPC 10000-4 §5.5.2 SecurityTokenRequestType
REQUEST_TYPES = {0: "Issue", 1: "Renew"}
# OPC 10000-4 §7.40 TimestampsToReturn
TIMESTAMPS_TO_RETURN = {0: "Source", 1: "Server", 2: "Both", 3: "Neither", 4: "Invalid"}
# OPC 10000-4 §7.5 BrowseDirection
BROWSE_DIRECTIONS = {0: "Forward", 1: "Inverse", 2: "Both", 3: "Invalid"}
# OPC 10000-3 §8.29 NodeClass (bit values)
NODE_CLASSES = {
    0: "Unspecified",
    1: "Object",
    2: "Variable",
    4: "Method",
    8: "ObjectType",
    16: "VariableType",
    32: "ReferenceType",
    64: "DataType",
    128: "View",
}
# OPC 10000-4 §7.21 MonitoringMode
MONITORING_MODES = {0: "Disabled", 1: "Sampling", 2: "Reporting"}

# OPC 10000-6 Table A.1 / OPC 10000-3 §5.9: attribute ids
ATTRIBUTE_IDS = {
    1: "NodeId",
    2: "NodeClass",
    3: "BrowseName",
    4: "DisplayName",
    5: "Description",
    6: "WriteMask",
    7: "UserWriteMask",
    8: "IsAbstract",
    9: "Symmetric",
    10: "InverseName",
    11: "ContainsNoLoops",
    12: "EventNotifier",
    13: "Value",
    14: "DataType",
    15: "ValueRank",
    16: "ArrayDimensions",
    17: "AccessLevel",
    18: "UserAccessLevel",
    19: "MinimumSamplingInterval",
    20: "Historizing",
    21: "Executable",
    22: "UserExecutable",
    23: "DataTypeDefinition",
    24: "RolePermissions",
    25: "UserRolePermissions",
    26: "AccessRestrictions",
    27: "AccessLevelEx",
}

# OPC 10000-6 §5.1.2 Table 1: built-in type ids used in Variant encoding masks.
BUILTIN_TYPES = {
    0: "Null",
    1: "Boolean",
    2: "SByte",
    3: "Byte",
    4: "Int16",
    5: "UInt16",
    6: "Int32",
    7: "UInt32",
    8: "Int64",
    9: "UInt64",
    10: "Float",
    11: "Double",
    12: "String",
    13: "DateTime",
    14: "Guid",
    15: "ByteString",
    16: "XmlElement",
    17: "NodeId",
    18: "ExpandedNodeId",
    19: "StatusCode",
    20: "QualifiedName",
    21: "LocalizedText",
    22: "ExtensionObject",
    23: "DataValue",
    24: "Variant",
    25: "DiagnosticInfo",
}

# Security policies (OPC 10000-7 security profiles; deprecation per OPC 10000-7 v1.04+).
POLICY_PREFIX = "http://opcfoundation.org/UA/SecurityPolicy#"
POLICY_NONE = POLICY_PREFIX + "None"
DEPRECATED_POLICIES: frozenset[str] = frozenset({POLICY_PREFIX + "Basic128Rsa15", POLICY_PREFIX + "Basic256"})
# Grade of a policy on a small scale (higher is better); unknown policies grade 2.
POLICY_GRADES: dict[str, int] = {
    POLICY_NONE: 0,
    POLICY_PREFIX + "Basic128Rsa15": 1,
    POLICY_PREFIX + "Basic256": 1,
    POLICY_PREFIX + "Basic256Sha256": 2,
    POLICY_PREFIX + "Aes128_Sha256_RsaOaep": 3,
    POLICY_PREFIX + "Aes256_Sha256_RsaPss": 3,
}
# Size of the symmetric signature appended to every chunk in Sign / SignAndEncrypt mode (HMAC length,
# OPC 10000-7 security policies): SHA-1 policies 20 bytes, SHA-256 policies 32 bytes.
SYMMETRIC_SIGNATURE_SIZES: dict[str, int] = {
    POLICY_PREFIX + "Basic128Rsa15": 20,
    POLICY_PREFIX + "Basic256": 20,
    POLICY_PREFIX + "Basic256Sha256": 32,
    POLICY_PREFIX + "Aes128_Sha256_RsaOaep": 32,
    POLICY_PREFIX + "Aes256_Sha256_RsaPss": 32,
}

# Services usable before a session exists (OPC 10000-4 §5.4): running them on a None channel is normal
# discovery, not a posture finding.
DISCOVERY_SERVICES: frozenset[str] = frozenset(
    {
        "GetEndpoints",
        "FindServers",
        "FindServersOnNetwork",
        "RegisterServer",
        "RegisterServer2",
        "OpenSecureChannel",
        "CloseSecureChannel",
    }
)

# Status codes whose repetition is a posture finding (OPC 10000-4 §7.39).
BAD_USER_ACCESS_CODES: frozenset[str] = frozenset(
    {"BadUserAccessDenied", "BadIdentityTokenRejected", "BadIdentityTokenInvalid"}
)
REPEATED_RESULT_THRESHOLD = 3

# ExtensionObject bodies the service decoder looks into (DefaultBinary encoding ids).
ENC_ANONYMOUS_TOKEN = 321
ENC_USERNAME_TOKEN = 324
ENC_X509_TOKEN = 327
ENC_ISSUED_TOKEN = 940
ENC_DATA_CHANGE_NOTIFICATION = 811
ENC_STATUS_CHANGE_NOTIFICATION = 820
ENC_EVENT_NOTIFICATION_LIST = 916


def status_name(code: int) -> str:
    """Symbolic name of a StatusCode; info bits (low 16) are ignored when looking it up."""
    name = STATUS_CODES.get(code) or STATUS_CODES.get(code & 0xFFFF0000)
    if name is not None:
        return name
    severity = code >> 30
    return ("Good", "Uncertain", "Bad", "Bad")[severity] + f"_0x{code:08X}"


def encoding_name(numeric_id: int) -> str | None:
    """Structure name of a namespace-0 DefaultBinary encoding NodeId (631 -> "ReadRequest")."""
    return BINARY_ENCODINGS.get(numeric_id)


def is_service_encoding(numeric_id: int) -> bool:
    return numeric_id in SERVICE_ENCODINGS


def service_base(name: str) -> str:
    """ "ReadRequest" / "ReadResponse" -> "Read"; "ServiceFault" stays."""
    for suffix in ("Request", "Response"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
