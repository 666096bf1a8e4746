"""The zone/conduit policy as data (IEC 62443-3-2 zones and conduits; DESIGN.md §4).

A policy file names **zones** (groups of assets with a target security level, SL-T, IEC 62443-3-2
ZCR 5) and **conduits** between them (ZCR 3.4). A conduit runs from an *initiator* zone to a
*responder* zone: the initiator is the side that opens the connection (the Modbus client, the OPC UA
client, the MQTT client). Traffic between two zones that no conduit covers is denied
(``default: deny``, IEC 62443-3-3 SR 5.2 RE(1), "deny all, permit by exception"); traffic inside a zone
is allowed unless the zone says ``intra_zone: deny``, or a conduit from the zone to itself restricts
it to the operations it lists.

Every ``allow`` entry of a conduit names one protocol and, for the protocols zonewarden dissects, the
operations it permits. An operation is allowed when *any* entry of its protocol in the conduit
allows it. A field left out places no restriction; an empty list allows nothing.

Modbus addresses are the 0-based PDU addresses of MODBUS Application Protocol v1.1b3 §4.4 — the
numbers on the wire — not the 1-based "40001"-style register numbers of HMI software, nor the 1-based
addresses of Suricata's ``modbus`` keyword (the Suricata export converts). Holding register 40001 is
``holding_registers: "0"``.

Every model forbids unknown keys, so a misspelt key is an error with its line, never a rule that
silently does nothing.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from sensor.dissectors.modbus import codes as modbus_codes
from sensor.dissectors.opcua.codes import service_base
from sensor.dissectors.opcua.nodeids_generated import BINARY_ENCODINGS, SERVICE_ENCODINGS

NATIVE_PROTOCOLS = ("modbus", "opcua", "mqtt")
"""Protocols checked at operation level; any other name is checked by name and port."""

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")

MODBUS_TABLES = ("coils", "discrete_inputs", "holding_registers", "input_registers")
MODBUS_WRITABLE_TABLES = ("coils", "holding_registers")

OPCUA_SERVICES: frozenset[str] = frozenset(
    service_base(BINARY_ENCODINGS[i]) for i in SERVICE_ENCODINGS if i in BINARY_ENCODINGS
) - {"ServiceFault", "CallMethod", "MonitoredItemCreate", "MonitoredItemModify"}
OPCUA_SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
OPCUA_TOKEN_TYPES = ("Anonymous", "UserName", "Certificate", "IssuedToken")

MODBUS_FUNCTION_WORDS: frozenset[str] = frozenset(
    [*modbus_codes.FUNCTION_NAMES.values(), *modbus_codes.CATEGORIES, *modbus_codes.CODE_CLASSES, "any"]
)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- ranges --------------------------------------------------------------------------------------

RangeItem = int | str
RangeSpec = int | str | list[int | str]
"""A set of integers: ``5``, ``"0-999"``, ``"0-9, 20-29"`` or a list of those."""


def parse_ranges(spec: RangeSpec, low: int, high: int) -> list[tuple[int, int]]:
    """Parse a range spec into sorted, merged inclusive ``(lo, hi)`` pairs within ``low..high``.

    Raises ValueError with a message for a person.
    """
    items: list[int | str] = list(spec) if isinstance(spec, list) else [spec]
    pairs: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"expected a number or 'a-b' range, got {item!r}")
        parts: list[int | str] = (
            [item] if isinstance(item, int) else [p for p in item.split(",") if p.strip()]
        )
        for part in parts:
            if isinstance(part, int):
                lo = hi = part
            else:
                text = part.strip()
                m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", text)
                if m is None:
                    raise ValueError(f"not a number or 'a-b' range: {text!r}")
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) is not None else lo
            if lo > hi:
                raise ValueError(f"range {lo}-{hi} runs backwards")
            if lo < low or hi > high:
                raise ValueError(f"{lo}-{hi} is outside {low}-{high}")
            pairs.append((lo, hi))
    pairs.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in pairs:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


# --- zones ---------------------------------------------------------------------------------------


def parse_address_member(text: str) -> tuple[str, Any]:
    """Classify a zone member string: ``("network", IPv4Network|IPv6Network)``,
    ``("range", (first, last))`` or ``("mac", "aa:bb:..")``. Raises ValueError."""
    value = text.strip()
    if _MAC.match(value):
        return "mac", value.lower().replace("-", ":")
    if "-" in value:
        first_text, _, last_text = value.partition("-")
        try:
            first = ipaddress.ip_address(first_text.strip())
            last = ipaddress.ip_address(last_text.strip())
        except ValueError:
            raise ValueError(f"not an IP range 'first-last': {value!r}") from None
        if first.version != last.version:
            raise ValueError(f"IP range {value!r} mixes IPv4 and IPv6")
        if int(last) < int(first):
            raise ValueError(f"IP range {value!r} runs backwards")
        return "range", (first, last)
    try:
        return "network", ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(
                f"{value!r} has host bits set (did you mean {ipaddress.ip_network(value, strict=False)}?)"
            ) from None
        raise ValueError(f"not an IP address, CIDR, IP range or MAC address: {value!r}") from None


class AssetRef(StrictModel):
    """Membership through the asset inventory: by asset name or by tag (resolved at run time)."""

    asset: str | None = Field(default=None, min_length=1, description="asset name in the inventory")
    tag: str | None = Field(default=None, min_length=1, description="asset tag in the inventory")

    @model_validator(mode="after")
    def _exactly_one(self) -> AssetRef:
        if (self.asset is None) == (self.tag is None):
            raise ValueError("give exactly one of 'asset' or 'tag'")
        return self


def _check_address(value: str) -> str:
    parse_address_member(value)
    return value


AddressMember = Annotated[
    str, AfterValidator(_check_address), Field(description="IP, CIDR, 'first-last' IP range or MAC address")
]


def _member_tag(value: Any) -> str:
    return "asset" if isinstance(value, dict) else "address"


Member = Annotated[
    Annotated[AddressMember, Tag("address")] | Annotated[AssetRef, Tag("asset")],
    Discriminator(_member_tag),
]


class SecurityLevel(StrictModel):
    """IEC 62443-3-3 security levels, 0..4 (SL-T: target, SL-C: capability of the components)."""

    target: int = Field(ge=0, le=4, description="SL-T of the zone or conduit")
    capability: int | None = Field(default=None, ge=0, le=4, description="SL-C, if assessed")


class Zone(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    description: str = ""
    security_level: SecurityLevel | None = None
    members: list[Member] = Field(default_factory=list)
    intra_zone: Literal["allow", "deny"] = Field(
        default="allow", description="traffic between members of the zone (a conduit zone->zone overrides)"
    )

    @property
    def sl_target(self) -> int:
        return self.security_level.target if self.security_level else 0


# --- allow entries -------------------------------------------------------------------------------


def _check_ports(ports: list[int | str] | None) -> list[int | str] | None:
    if ports is not None:
        parse_ranges(ports, 0, 65535)
    return ports


def _check_function(f: int | str) -> int | str:
    if isinstance(f, bool) or (isinstance(f, int) and not 1 <= f <= 127):
        raise ValueError(f"function code {f!r} is outside 1..127")
    if isinstance(f, str) and f not in MODBUS_FUNCTION_WORDS:
        raise ValueError(f"unknown Modbus function name or category {f!r}")
    return f


class ModbusAllow(StrictModel):
    """Modbus/TCP operations (MODBUS Application Protocol v1.1b3 §6).

    ``functions`` takes codes (``6``), names (``write_single_register``, as the dissector names them),
    categories (``read``, ``write``, ``diagnostic``, ``program``, ``other``) or spec classes
    (``public_assigned``, ``user_defined``, ``reserved``...). ``addresses`` and ``values`` are per table
    and use 0-based PDU addresses; a table not listed in ``addresses`` is not restricted.
    """

    protocol: Literal["modbus"]
    description: str = ""
    functions: list[Annotated[int | str, AfterValidator(_check_function)]] | None = None
    units: RangeSpec | None = Field(default=None, description="unit ids 0..255")
    addresses: (
        dict[Literal["coils", "discrete_inputs", "holding_registers", "input_registers"], RangeSpec] | None
    ) = None
    values: dict[Literal["coils", "holding_registers"], RangeSpec] | None = Field(
        default=None, description="values a write may carry, per table (coils: 0 or 1)"
    )
    ports: list[int | str] | None = Field(default=None, description="server ports (default 502)")

    @field_validator("units")
    @classmethod
    def _units(cls, v: RangeSpec | None) -> RangeSpec | None:
        if v is not None:
            parse_ranges(v, 0, 255)
        return v

    @field_validator("addresses", "values")
    @classmethod
    def _tables(cls, v: dict[str, RangeSpec] | None) -> dict[str, RangeSpec] | None:
        for spec in (v or {}).values():
            parse_ranges(spec, 0, 65535)
        return v

    _ports = field_validator("ports")(_check_ports)


def _check_service(s: str) -> str:
    if s not in OPCUA_SERVICES:
        raise ValueError(f"unknown OPC UA service {s!r}")
    return s


def _check_node(n: str) -> str:
    if not re.fullmatch(r"(ns=\d+;)?[isgb]=.+", n):
        raise ValueError(f"not an OPC UA node id ('ns=2;i=3', 'i=2255', 'ns=1;s=Name'): {n!r}")
    return n


class OpcUaAllow(StrictModel):
    """OPC UA services (OPC 10000-4 §5) and the channel security they must run under.

    Session management and discovery (OpenSecureChannel, CloseSecureChannel, CreateSession,
    ActivateSession, CloseSession, GetEndpoints, FindServers) are implied: a client cannot use any
    service without them. ``nodes``/``namespaces`` restrict the node ids a Write writes and the
    methods a Call calls.
    """

    protocol: Literal["opcua"]
    description: str = ""
    services: list[Annotated[str, AfterValidator(_check_service)]] | None = None
    nodes: list[Annotated[str, AfterValidator(_check_node)]] | None = Field(
        default=None, description="node ids, e.g. 'ns=2;i=3' (Write, Call)"
    )
    namespaces: list[Annotated[int, Field(ge=0, le=65535)]] | None = Field(
        default=None, description="namespace indexes of nodes Write/Call may touch"
    )
    min_security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    security_policies: list[str] | None = Field(
        default=None, description="policy names (Basic256Sha256) or URIs"
    )
    user_token_types: list[Literal["Anonymous", "UserName", "Certificate", "IssuedToken"]] | None = None
    ports: list[int | str] | None = Field(default=None, description="server ports (default 4840)")

    _ports = field_validator("ports")(_check_ports)


def check_topic_filter(text: str) -> str:
    """MQTT 5.0 §4.7.1: '#' only as the whole last level, '+' only as a whole level."""
    if not text:
        raise ValueError("empty topic filter")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be the whole last level of a topic filter: {text!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level of a topic filter: {text!r}")
    return text


TopicFilter = Annotated[str, AfterValidator(check_topic_filter)]


class MqttAllow(StrictModel):
    """MQTT client operations (MQTT 3.1.1 §3, 5.0 §3): the conduit runs from client to broker."""

    protocol: Literal["mqtt"]
    description: str = ""
    publish: list[TopicFilter] | None = Field(
        default=None, description="topic filters a client may publish to"
    )
    subscribe: list[TopicFilter] | None = Field(
        default=None, description="topic filters a client may subscribe to"
    )
    qos: list[Annotated[int, Field(ge=0, le=2)]] | None = None
    retain: bool = Field(default=True, description="false: retained PUBLISH (and wills) are denied")
    client_ids: list[str] | None = Field(default=None, description="exact ids, or a prefix ending in '*'")
    require_tls: bool = False
    ports: list[int | str] | None = Field(default=None, description="cleartext broker ports (default 1883)")
    tls_ports: list[int | str] | None = Field(default=None, description="MQTT over TLS ports (default 8883)")

    _ports = field_validator("ports", "tls_ports")(_check_ports)


class OtherAllow(StrictModel):
    """Any other protocol, by name and port.

    ``protocol`` is the flow's ``app_proto`` (``tls``), a name tshark identified (``dnp3``, ``s7comm``,
    ``enip``, with ``policy check --deep``), ``unknown`` for a flow no dissector recognised, or
    ``any``.
    """

    protocol: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    transport: Literal["tcp", "udp", "icmp", "ipv6-icmp", "any"] = "any"
    ports: list[int | str] | None = Field(default=None, description="server ports")

    @field_validator("protocol")
    @classmethod
    def _not_native(cls, v: str) -> str:
        if v in NATIVE_PROTOCOLS:  # pragma: no cover - routed to the native model by the discriminator
            raise ValueError(f"{v} entries use the {v} fields")
        return v

    _ports = field_validator("ports")(_check_ports)


def _allow_tag(value: Any) -> str:
    proto = value.get("protocol") if isinstance(value, dict) else getattr(value, "protocol", None)
    return proto if proto in NATIVE_PROTOCOLS else "other"


AllowEntry = Annotated[
    Annotated[ModbusAllow, Tag("modbus")]
    | Annotated[OpcUaAllow, Tag("opcua")]
    | Annotated[MqttAllow, Tag("mqtt")]
    | Annotated[OtherAllow, Tag("other")],
    Discriminator(_allow_tag),
]


class Conduit(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    description: str = ""
    from_zone: str = Field(alias="from", description="initiator zone id")
    to_zone: str = Field(alias="to", description="responder zone id")
    security_level: SecurityLevel | None = None
    allow: list[AllowEntry] = Field(default_factory=list)


class Policy(StrictModel):
    """A whole policy file (``version: 1``)."""

    version: Literal[1]
    site: str = ""
    description: str = ""
    default: Literal["deny", "allow"] = Field(
        default="deny", description="traffic between zones (or unzoned hosts) that no conduit covers"
    )
    aggregation_window: float = Field(
        default=300.0, gt=0, le=86400, description="seconds of packet time repeated violations are merged"
    )
    zones: list[Zone] = Field(default_factory=list)
    conduits: list[Conduit] = Field(default_factory=list)

    def zone(self, zone_id: str) -> Zone | None:
        for z in self.zones:
            if z.id == zone_id:
                return z
        return None
