"""The small typed records that flow between pipeline stages (DESIGN.md §1).

Records on the per-packet path (``Frame``, ``Packet``, stream records) are ``NamedTuple``s: they are
immutable like frozen dataclasses but cost a fraction to build, and the sensor builds millions of
them. Records that leave the pipeline (events, observations) are frozen slotted dataclasses.

Every event a dissector emits satisfies the :class:`AppEvent` protocol: it knows its EVE
``event_type``, the ``app_proto`` it belongs to, and how to render its protocol-specific body. The
one EVE serializer (``sensor/outputs/eve.py``) adds the common envelope (timestamp, flow ids,
addresses) so that no dissector repeats it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

# --- capture -> decode ---------------------------------------------------------------------------


class Frame(NamedTuple):
    """One captured link-layer frame, as a capture source hands it over."""

    ts: float  # packet time, seconds since the epoch
    linktype: int  # LINKTYPE_* value from the tcpdump.org link-type registry
    data: bytes  # the captured bytes (possibly fewer than wire_len)
    wire_len: int  # original length on the wire
    interface: int = 0  # pcapng interface id, 0 otherwise


# --- decode -> flows -----------------------------------------------------------------------------

PROTO_TCP = 6
PROTO_UDP = 17

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


class Tunnel(NamedTuple):
    """The outermost tunnel a packet came through (sensor/decode.py opens them): a remote mirroring
    session (ERSPAN), an overlay (VXLAN) or a GRE or IP-in-IP link, from ``src_ip`` to ``dest_ip``."""

    kind: str  # "gre", "erspan_i", "erspan_ii", "erspan_iii", "vxlan" or "ip_in_ip"
    src_ip: str  # the tunnel's ends: for remote SPAN, the mirroring switch and the sensor
    dest_ip: str
    depth: int  # tunnels opened to reach the packet, 1 for one
    session: int | None = None  # ERSPAN session id, VXLAN VNI or GRE key, when the header has one


class Packet(NamedTuple):
    """A decoded IP packet with its transport header (TCP/UDP) split off.

    Addresses are kept packed (4 or 16 bytes) so the flow table can key on them without
    formatting; ``FlowRef`` carries their text form once per flow.
    """

    ts: float
    ip_version: int  # 4 or 6
    src: bytes  # packed source address
    dst: bytes  # packed destination address
    proto: int  # IP protocol number of the transport (6 TCP, 17 UDP, others as seen)
    sport: int  # 0 when the transport has no ports
    dport: int
    payload: bytes  # transport payload
    wire_len: int  # frame length on the wire, for byte counters
    seq: int = 0  # TCP only
    ack: int = 0
    tcp_flags: int = 0
    window: int = 0
    tcp_options: bytes = b""  # raw TCP options (e.g. for the MD5 signature option, RFC 2385)
    src_mac: bytes = b""  # empty when the link layer has no MAC (raw IP, loopback)
    dst_mac: bytes = b""
    vlans: tuple[int, ...] = ()  # outermost first
    tunnel: Tunnel | None = None  # the outermost tunnel the packet came through, if any


def format_ip(packed: bytes) -> str:
    """Text form of a packed IPv4/IPv6 address (RFC 5952 for IPv6)."""
    return str(ipaddress.ip_address(packed))


def format_mac(packed: bytes) -> str:
    return ":".join(f"{b:02x}" for b in packed)


# --- flows -> dissectors -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowRef:
    """Identity of one bidirectional flow, oriented client -> server.

    The client is the side that sent the SYN when the handshake was seen; otherwise the flow
    table decides from well-known server ports (mid-stream pickup, DESIGN.md §3).
    """

    flow_id: int  # stable 63-bit id derived from the 5-tuple and the first packet time
    community_id: str  # Community ID v1 (seed 0), "1:..." base64
    transport: str  # "tcp" | "udp" | other IP protocol name in lower case
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    client_mac: str = ""
    server_mac: str = ""
    vlans: tuple[int, ...] = ()
    tunnel: Tunnel | None = None  # the tunnel its first packet came through (remote SPAN: the session)

    def endpoints(self, to_server: bool) -> tuple[str, int, str, int]:
        """(src_ip, src_port, dest_ip, dest_port) of a record travelling in the given direction."""
        if to_server:
            return self.client_ip, self.client_port, self.server_ip, self.server_port
        return self.server_ip, self.server_port, self.client_ip, self.client_port


class StreamData(NamedTuple):
    """In-order bytes of one direction of a TCP stream (or one UDP datagram)."""

    flow: FlowRef
    to_server: bool
    data: bytes
    ts: float


class StreamGap(NamedTuple):
    """Bytes that will never arrive in one direction: the parser must resync after them."""

    flow: FlowRef
    to_server: bool
    size: int  # number of missing bytes (0 when unknown)
    ts: float


class StreamClosed(NamedTuple):
    """The flow ended (FIN/RST both ways, idle timeout, eviction, or end of capture)."""

    flow: FlowRef
    ts: float
    reason: str  # "fin" | "rst" | "timeout" | "evicted" | "shutdown"


@dataclass(frozen=True, slots=True)
class FlowSummary:
    """Counters of a flow that has ended; rendered as an EVE ``flow`` record."""

    flow: FlowRef
    start: float
    end: float
    pkts_toserver: int
    pkts_toclient: int
    bytes_toserver: int
    bytes_toclient: int
    state: str  # "new" | "established" | "closed"
    reason: str  # same vocabulary as StreamClosed.reason
    app_proto: str = ""  # filled by the pipeline once a dissector claims the flow
    gaps: int = 0

    event_type: ClassVar[str] = "flow"

    @property
    def ts(self) -> float:
        return self.end

    @property
    def to_server(self) -> bool:
        return True

    def eve_body(self) -> dict[str, Any]:
        return {
            "flow": {
                "pkts_toserver": self.pkts_toserver,
                "pkts_toclient": self.pkts_toclient,
                "bytes_toserver": self.bytes_toserver,
                "bytes_toclient": self.bytes_toclient,
                "start": self.start,
                "end": self.end,
                "state": self.state,
                "reason": self.reason,
                "gaps": self.gaps,
            }
        }


# --- dissectors -> observers ---------------------------------------------------------------------


@runtime_checkable
class AppEvent(Protocol):
    """What every event leaving a dissector looks like to observers and outputs.

    ``to_server`` gives the direction of the message that completed the event (for a paired
    request/response, the request's direction, i.e. True), so the EVE envelope can fill
    src/dest correctly. ``app_proto`` is the lowercase protocol id ("modbus", "opcua", ...).
    """

    @property
    def event_type(self) -> str: ...

    @property
    def ts(self) -> float: ...

    @property
    def flow(self) -> FlowRef | None: ...

    @property
    def to_server(self) -> bool: ...

    @property
    def app_proto(self) -> str: ...

    def eve_body(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ProtocolAnomaly:
    """A protocol violation or a cap being hit: a named, counted event, never an exception.

    ``kind`` is a stable snake_case name prefixed by the layer, e.g. ``modbus.invalid_length``,
    ``tcp.overlap_diff``, ``opcua.chunk_limit``.
    """

    ts: float
    flow: FlowRef | None
    kind: str
    detail: str = ""
    to_server: bool = True
    severity: int = 3  # 1 high .. 4 informational, as EVE alert severities
    app_proto: str = ""

    event_type: ClassVar[str] = "anomaly"

    def eve_body(self) -> dict[str, Any]:
        layer = self.kind.split(".", 1)[0]
        return {
            "anomaly": {
                "type": "applayer" if self.app_proto else "stream" if layer == "tcp" else "decode",
                "event": self.kind,
                "layer": layer,
                "detail": self.detail,
                "severity": self.severity,
            }
        }


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What an X.509 certificate says, parsed once (``sensor/certs.py``)."""

    subject: str  # RFC 4514 string
    issuer: str
    serial_hex: str  # lower-case hex, no leading zeros
    not_before: str  # ISO 8601 UTC
    not_after: str
    key_type: str  # "rsa" | "ec" | "ed25519" | "ed448" | "dsa" | "unknown"
    key_size: int  # bits (curve size for EC)
    signature_algorithm: str  # dotted OID name, e.g. "sha256WithRSAEncryption"
    san_uris: tuple[str, ...]
    san_dns: tuple[str, ...]
    san_ips: tuple[str, ...]
    sha1: str  # hex thumbprint of the DER
    sha256: str
    self_signed: bool  # subject == issuer and the signature verifies with its own key
    is_ca: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial_hex,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "key_type": self.key_type,
            "key_size": self.key_size,
            "signature_algorithm": self.signature_algorithm,
            "san_uris": list(self.san_uris),
            "san_dns": list(self.san_dns),
            "san_ips": list(self.san_ips),
            "sha1": self.sha1,
            "sha256": self.sha256,
            "self_signed": self.self_signed,
            "is_ca": self.is_ca,
        }


@dataclass(frozen=True, slots=True)
class CertificateObservation:
    """A certificate presented on the wire (OPC UA OpenSecureChannel, TLS handshake, ...).

    ``presenter_is_server`` says which end of the flow presented it; ``source`` names where it was
    found, e.g. ``opcua.opn``, ``opcua.create_session``, ``opcua.endpoint``, ``tls.server``.
    ``der`` is kept so the PKI can match it byte for byte.
    """

    ts: float
    flow: FlowRef | None
    source: str
    presenter_is_server: bool
    cert: CertificateInfo
    der: bytes
    app_proto: str = ""
    chain_index: int = 0  # 0 = leaf

    event_type: ClassVar[str] = "certificate"

    @property
    def to_server(self) -> bool:
        return not self.presenter_is_server

    def eve_body(self) -> dict[str, Any]:
        return {
            "certificate": {
                "source": self.source,
                "presenter": "server" if self.presenter_is_server else "client",
                "chain_index": self.chain_index,
                **self.cert.as_dict(),
            }
        }


# --- observers -> outputs ------------------------------------------------------------------------

ALERT_CATEGORIES = ("policy", "anomaly", "signature", "certificate", "protocol")


@dataclass(frozen=True, slots=True)
class Alert:
    """A finding for a person to look at (DESIGN.md §5).

    ``rule`` is the stable id of what fired: ``policy:<conduit or zone pair>:<reason>``,
    ``anomaly:<kind>``, ``1:<sid>:<rev>`` for a signature, ``cert:<status>``. ``alert_id`` is
    derived from the rule, the endpoints and the packet time of the first occurrence, so a replay
    after a crash produces the same ids and the store never holds one twice. Repeated findings are
    aggregated by the observer that makes them: ``count`` occurrences from ``ts`` to ``last_ts``.
    """

    ts: float
    flow: FlowRef | None
    rule: str
    signature: str  # one line a person reads: what happened, between whom, what exactly
    category: str  # one of ALERT_CATEGORIES
    severity: int  # 1 high .. 4 informational, as EVE alert severities
    signature_id: int  # Suricata sid for signatures; a stable number for the other categories
    rev: int = 1
    to_server: bool = True
    app_proto: str = ""
    src_zone: str = ""
    dest_zone: str = ""
    conduit: str = ""
    mitre: tuple[str, ...] = ()  # ATT&CK for ICS technique ids, e.g. ("T0836",)
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-safe detail: the exact operation
    count: int = 1
    last_ts: float = 0.0

    event_type: ClassVar[str] = "alert"

    @property
    def alert_id(self) -> str:
        src, _sport, dst, dport = self.flow.endpoints(self.to_server) if self.flow else ("", 0, "", 0)
        key = f"{self.rule}|{src}|{dst}|{dport}|{self.ts:.6f}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def eve_body(self) -> dict[str, Any]:
        return {
            "alert": {
                "action": "allowed",  # a passive sensor never blocks
                "gid": 1,
                "signature_id": self.signature_id,
                "rev": self.rev,
                "signature": self.signature,
                "category": self.category,
                "severity": self.severity,
                "metadata": {"mitre_technique_id": list(self.mitre)} if self.mitre else {},
            },
            "zonewarden": {
                "id": self.alert_id,
                "rule": self.rule,
                "src_zone": self.src_zone,
                "dest_zone": self.dest_zone,
                "conduit": self.conduit,
                "evidence": self.evidence,
                "count": self.count,
                "last_seen": self.last_ts or self.ts,
            },
        }


def stable_signature_id(rule: str, base: int = 9_000_000) -> int:
    """A stable sid for non-signature alerts, inside the project's reserved range (9,000,000+)."""
    return base + int.from_bytes(hashlib.sha256(rule.encode()).digest()[:3], "big") % 900_000
