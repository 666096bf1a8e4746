"""Assets, communications (edges), the graph, observed certificates, alerts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import SEARCH_MAX, PageParams

Protocol = Literal[
    "modbus",
    "opcua",
    "mqtt",
    "tls",
    "s7comm",
    "s7comm_plus",
    "enip",
    "cip",
    "dnp3",
    "iec104",
    "bacnet",
    "tcp",
    "udp",
]
IP_FILTER = Field(None, max_length=45, pattern=r"^[0-9A-Fa-f:.]+$", description="IPv4/IPv6 address")


class AssetQuery(PageParams):
    q: str | None = Field(None, max_length=SEARCH_MAX, description="substring of IP, MAC, name or vendor")
    zone: str | None = Field(None, max_length=100, description="policy zone id (needs a policy)")
    protocol: str | None = Field(None, max_length=32, pattern=r"^[a-z0-9_]+$", examples=["modbus"])
    role: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9_]+$", examples=["modbus_server"])
    vendor: str | None = Field(None, max_length=SEARCH_MAX, description="substring of the MAC vendor")


class AssetSummary(BaseModel):
    ip: str = Field(examples=["10.10.1.20"])
    mac: str
    vendor: str
    name: str
    behind_router: str
    first_seen: float
    last_seen: float
    protocols: list[str]
    roles: list[str]
    zone: str | None = Field(None, description="policy zone, when a policy is loaded")


class Edge(BaseModel):
    id: str
    client: str
    server: str
    protocol: str
    port: int
    transport: str
    packets: int
    bytes: int
    flows: int
    first_seen: float
    last_seen: float
    operations: dict[str, list[str]] = Field(description="operations seen, by kind (e.g. modbus function)")


class AssetDetail(BaseModel):
    """One asset: identity, roles (with reasons), protocols, certificates, Modbus register map, OPC UA
    nodes, MQTT topics and its communications. More detail keys may appear as the inventory grows."""

    model_config = ConfigDict(extra="allow")

    ip: str
    mac: str
    vendor: str
    name: str
    behind_router: str
    roles: dict[str, str] = Field(description="role -> why it was inferred")
    protocols: list[str] = []
    identity: dict[str, Any] = {}
    certificates: dict[str, dict[str, Any]] = {}
    modbus_map: dict[str, Any] = {}
    opcua_nodes: dict[str, Any] = {}
    mqtt_topics: dict[str, Any] = {}
    edges: list[Edge] = []
    zone: str | None = None


class EdgeQuery(PageParams):
    ip: str | None = IP_FILTER
    protocol: str | None = Field(None, max_length=32, pattern=r"^[a-z0-9_]+$")


class GraphQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ip: str | None = IP_FILTER
    protocol: str | None = Field(None, max_length=32, pattern=r"^[a-z0-9_]+$")
    zone: str | None = Field(None, max_length=100, description="keep edges touching this zone")


class ObservedCertificate(BaseModel):
    sha256: str
    subject: str
    issuer: str
    not_after: str | None
    self_signed: bool
    san_dns: list[str]
    san_ips: list[str]
    san_uris: list[str]
    sources: list[str] = Field(description="where it was seen (tls.server, opcua.opn, ...)")
    assets: list[str] = Field(description="assets that presented it")
    issued_here: bool = Field(description="issued by this server's CA")


class ObservedQuery(PageParams):
    q: str | None = Field(None, max_length=SEARCH_MAX, description="substring of subject or issuer")
    ip: str | None = IP_FILTER


AlertStatus = Literal["open", "acknowledged", "closed"]


class AlertQuery(PageParams):
    status: AlertStatus | None = None
    category: str | None = Field(None, max_length=100)
    rule: str | None = Field(None, max_length=300, examples=["policy:scada-to-control:function_not_allowed"])
    since: float | None = Field(None, ge=0, le=2**33, description="only alerts last seen at/after (epoch s)")


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    alert_id: str
    ts: float
    last_ts: float
    rule: str
    signature: str
    category: str
    severity: int
    signature_id: int
    status: AlertStatus
    count: int
    evidence: Any = None
    eve: dict[str, Any] = {}
