"""Events the OPC UA dissector emits (EVE ``event_type: opcua``), besides certificate observations
and protocol anomalies, which use the shared records of ``sensor/records.py``.

* :class:`OpcUaTransport` - one per HEL, ACK, ERR or RHE message (OPC 10000-6 §7.1.2).
* :class:`OpcUaMessage` - one per secure-conversation request/response pair (OPN, MSG, CLO), or per
  unpaired request / response / aborted message; Publish responses carry their notifications.
* :class:`OpcUaChannelEvent` - a secure channel's security mode once it is known (``kind="mode"``),
  and the count of chunks no :class:`OpcUaMessage` covers (encrypted bodies, discarded chunks) when a
  flow ends (``kind="summary"``), so the replay summary counts every chunk exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sensor.records import FlowRef


@dataclass(frozen=True, slots=True)
class OpcUaTransport:
    ts: float
    flow: FlowRef | None
    to_server: bool
    message_type: str  # "HEL" | "ACK" | "ERR" | "RHE"
    fields: dict[str, Any]
    reverse_connect: bool = False

    event_type: ClassVar[str] = "opcua"
    app_proto: ClassVar[str] = "opcua"

    def eve_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message_type": self.message_type, **self.fields}
        if self.reverse_connect:
            body["reverse_connect"] = True
        return {"opcua": body}


@dataclass(frozen=True, slots=True)
class OpcUaMessage:
    ts: float
    flow: FlowRef | None
    to_server: bool  # direction (in the flow's orientation) of the request, or of the lone message
    message_type: str  # "OPN" | "MSG" | "CLO"
    secure_channel_id: int
    request_id: int | None
    service: str  # "Read", "OpenSecureChannel", "ServiceFault"... "" when unknown
    request_type_id: int | None  # encoding NodeId of the request (631 ...)
    response_type_id: int | None
    request_handle: int | None
    status: str | None  # ServiceResult by name; None without a response
    security_policy: str
    security_mode: str  # "None" | "Sign" | "SignAndEncrypt" | "" (unknown)
    request: dict[str, Any] | None
    response: dict[str, Any] | None
    chunks: tuple[tuple[str, int], ...]  # wire chunks this event covers, by message type
    policies: tuple[str, ...] = ()  # security policy URIs mentioned (channel + advertised)
    encrypted: bool = False
    aborted: bool = False
    reverse_connect: bool = False

    event_type: ClassVar[str] = "opcua"
    app_proto: ClassVar[str] = "opcua"

    def eve_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_type": self.message_type,
            "secure_channel_id": self.secure_channel_id,
            "request_id": self.request_id,
            "service": self.service,
            "request_handle": self.request_handle,
            "status": self.status,
            "security_policy": self.security_policy,
            "security_mode": self.security_mode,
        }
        if self.request_type_id is not None:
            body["request_type_id"] = self.request_type_id
        if self.response_type_id is not None:
            body["response_type_id"] = self.response_type_id
        if self.request is not None:
            body["request"] = self.request
        if self.response is not None:
            body["response"] = self.response
        if self.encrypted:
            body["encrypted"] = True
        if self.aborted:
            body["aborted"] = True
        if self.reverse_connect:
            body["reverse_connect"] = True
        return {"opcua": body}


@dataclass(frozen=True, slots=True)
class OpcUaChannelEvent:
    ts: float
    flow: FlowRef | None
    kind: str  # "mode" | "summary"
    secure_channel_id: int | None
    security_policy: str = ""
    security_mode: str = ""
    mode_source: str = ""  # "opn" (requested in OpenSecureChannel) | "decoded" | "encrypted" | "inferred"
    uncounted_chunks: tuple[tuple[str, int], ...] = ()
    encrypted_chunks: int = 0
    encrypted_bytes: int = 0
    to_server: bool = True

    event_type: ClassVar[str] = "opcua"
    app_proto: ClassVar[str] = "opcua"

    def eve_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"channel_event": self.kind, "secure_channel_id": self.secure_channel_id}
        if self.kind == "mode":
            body.update(
                security_policy=self.security_policy,
                security_mode=self.security_mode,
                mode_source=self.mode_source,
            )
        else:
            body.update(
                uncounted_chunks=dict(self.uncounted_chunks),
                encrypted_chunks=self.encrypted_chunks,
                encrypted_bytes=self.encrypted_bytes,
            )
        return {"opcua": body}


OpcUaEvent = OpcUaTransport | OpcUaMessage | OpcUaChannelEvent
