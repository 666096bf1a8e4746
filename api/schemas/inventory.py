"""Assets, communications (edges), the graph, observed certificates, alerts."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.alerts import EdgePolicy
from api.schemas.common import SEARCH_MAX, PageParams, StrictModel
from sensor.assets.labels import (
    MAX_NAME_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS_PER_ASSET,
    TAG_PATTERN,
    LabelError,
    check_name,
)
from sensor.assets.reach import DEFAULT_MAX_HOPS, DEFAULT_PATHS, MAX_PATHS
from sensor.limits import DEFAULT_LIMITS

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
    tag: str | None = Field(
        None, max_length=MAX_TAG_CHARS, pattern=TAG_PATTERN, description="only assets people tagged so"
    )


NAME_FIELD_DOC = "the name people gave it when there is one, else the name it announced"
INFERRED_DOC = "what the device calls itself (identity fields)"
GIVEN_DOC = "the name people gave it ('' for none)"
TAGS_DOC = "tags people gave it (policy zones {tag: T} hold it)"


class AssetSummary(BaseModel):
    ip: str = Field(examples=["10.10.1.20"])
    mac: str
    vendor: str
    name: str = Field(description=NAME_FIELD_DOC)
    inferred_name: str = Field("", description=INFERRED_DOC)
    given_name: str = Field("", description=GIVEN_DOC)
    tags: list[str] = Field([], description=TAGS_DOC)
    behind_router: str
    first_seen: float
    last_seen: float
    protocols: list[str]
    roles: list[str]
    zone: str | None = Field(None, description="policy zone, when a policy is loaded")


Tag = Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS, pattern=TAG_PATTERN, examples=["line1"])]


class AssetLabelsPatch(StrictModel):
    """What people call an asset. A field left out (or null) is kept, so ``{}`` changes nothing;
    ``name: ""`` clears the name and ``tags`` replaces every tag (``[]`` removes them). Anything else
    in the body is refused (422)."""

    name: str | None = Field(
        None, max_length=MAX_NAME_CHARS, description=GIVEN_DOC, examples=["Line 1 filler PLC"]
    )
    tags: list[Tag] | None = Field(
        None, max_length=MAX_TAGS_PER_ASSET, description=TAGS_DOC, examples=[["line1", "safety"]]
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_name(value)
        except LabelError as error:
            raise ValueError(str(error)) from None


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
    policy: EdgePolicy | None = Field(
        None, description="policy alerts raised on this communication (client, server, protocol, port)"
    )


class AssetDetail(BaseModel):
    """One asset: identity, roles (with reasons), protocols, certificates, Modbus register map, OPC UA
    nodes, MQTT topics and its communications. More detail keys may appear as the inventory grows."""

    model_config = ConfigDict(extra="allow")

    ip: str
    mac: str
    vendor: str
    name: str = Field(description=NAME_FIELD_DOC)
    inferred_name: str = Field("", description=INFERRED_DOC)
    given_name: str = Field("", description=GIVEN_DOC)
    tags: list[str] = Field([], description=TAGS_DOC)
    labels_updated_at: float | None = Field(None, description="when people last changed the name or tags")
    labels_updated_by: str | None = Field(None, description="who last changed them")
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


class PathQuery(StrictModel):
    """Who can reach ``target`` from ``source`` over the observed communications (sensor/assets/reach.py)."""

    # (IPv4Address | IPv6Address: formats ipv4 / ipv6 in the OpenAPI document, which clients and
    # schemathesis know; pydantic's IPvAnyAddress is a format of its own)
    source: IPv4Address | IPv6Address = Field(
        description="where the paths start (IPv4/IPv6)", examples=["10.1.1.5"]
    )
    target: IPv4Address | IPv6Address = Field(
        description="where they end (IPv4/IPv6)", examples=["10.3.0.10"]
    )
    max_hops: int = Field(
        DEFAULT_MAX_HOPS, ge=1, le=DEFAULT_LIMITS.graph_path_max_hops, description="longest path, in hops"
    )
    directed: bool = Field(
        True,
        description="true: a hop goes from a client to a server it opened connections to (a client can act "
        "on its server); false: either way",
    )
    limit: int = Field(DEFAULT_PATHS, ge=1, le=MAX_PATHS, description="paths listed, shortest first")


class PathHop(BaseModel):
    client: str = Field(description="the end of the hop the path leaves")
    server: str = Field(description="the end of the hop the path enters")
    direction: Literal["forward", "reverse", "both"] = Field(
        description="which way the hop's connections were opened: forward (client to server), reverse "
        "(server to client; only when directed is false) or both"
    )
    client_zone: str | None = Field(description="policy zone of client (null: no policy, or in no zone)")
    server_zone: str | None = Field(description="policy zone of server")
    crosses_zones: bool | None = Field(description="the ends are in different zones (null: no policy)")
    policy_status: Literal["violation", "closed", "allowed", "unknown"] = Field(
        description="the worst policy status of the hop's edges"
    )
    edges: list[Edge] = Field(description="the communications between the two ends, with policy marks")


class PathsAnswer(BaseModel):
    source: str
    target: str
    directed: bool
    max_hops: int
    limit: int
    truncated: bool = Field(
        description="the limit or the search's step budget cut the answer: more paths may exist"
    )
    steps: int = Field(ge=0, description="neighbours the search examined (its budget counts these)")
    policy_loaded: bool = Field(description="a policy is loaded: zones are known")
    paths: list[list[PathHop]] = Field(description="simple paths, shortest first, each a list of hops")


class GraphQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ip: str | None = IP_FILTER
    protocol: str | None = Field(None, max_length=32, pattern=r"^[a-z0-9_]+$")
    zone: str | None = Field(None, max_length=100, description="keep edges touching this zone")
