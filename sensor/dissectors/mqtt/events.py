"""The event an MQTT session emits: one :class:`MqttPacket` per control packet seen.

Its EVE body follows Suricata's layout in spirit (``{"mqtt": {"publish": {...}}}``) with the packet
type, the protocol level and the connection's client id added, so a consumer can filter on any of
them without joining to the CONNECT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sensor.dissectors.mqtt import codes
from sensor.dissectors.mqtt.frames import (
    CodesAck,
    Connack,
    Connect,
    MqttMessage,
    PacketIdAck,
    Publish,
    ReasonOnly,
    Subscribe,
    Unsubscribe,
)
from sensor.records import FlowRef


@dataclass(frozen=True, slots=True)
class MqttPacket:
    """One MQTT control packet (MQTT 3.1.1 §2, 5.0 §2).

    ``message`` is ``None`` when the packet could not be parsed (``malformed`` names why) or was
    larger than ``limits.mqtt_max_message`` and skipped unread (``truncated``).
    ``qos_flow`` is set on PUBLISH/acks that the QoS 1/2 tracker matched (``"complete"``,
    ``"awaiting_pubrel"``, ...) and ``matched_topic`` is the topic of the PUBLISH an ack belongs to.
    """

    ts: float
    flow: FlowRef | None
    to_server: bool
    packet_type: int
    protocol_version: int  # 3, 4, 5; 0 when no CONNECT was seen and nothing told the level
    client_id: str = ""
    message: MqttMessage | None = None
    malformed: str = ""
    truncated: bool = False
    remaining_length: int = 0
    qos_flow: str = ""
    matched_topic: str = ""

    event_type: ClassVar[str] = "mqtt"

    @property
    def app_proto(self) -> str:
        return "mqtt"

    @property
    def type_name(self) -> str:
        return codes.PACKET_TYPE_NAMES[self.packet_type]

    @property
    def topic(self) -> str:
        """Topic of a PUBLISH (alias resolved) or of the PUBLISH an ack belongs to."""
        if isinstance(self.message, Publish):
            return self.message.topic
        return self.matched_topic

    def _code(self, code: int) -> dict[str, Any]:
        return {"code": code, "name": codes.reason_name(code, self.packet_type, self.protocol_version)}

    def eve_body(self) -> dict[str, Any]:
        name = self.type_name
        body: dict[str, Any] = {"type": name.lower(), "protocol_version": self.protocol_version}
        if self.client_id:
            body["client_id"] = self.client_id
        if self.malformed:
            body["malformed"] = self.malformed
        if self.truncated:
            body["truncated"] = True
            body["remaining_length"] = self.remaining_length
        if self.qos_flow:
            body["qos_flow"] = self.qos_flow
        if self.matched_topic:
            body["topic"] = self.matched_topic
        m = self.message
        detail: dict[str, Any] = {}
        if isinstance(m, Publish):
            detail = {
                "topic": m.topic,
                "qos": m.qos,
                "retain": m.retain,
                "dup": m.dup,
                "payload_size": m.payload_size,
                "payload_preview": m.payload_preview,
            }
            if m.qos:
                detail["packet_id"] = m.packet_id
            if m.topic_alias:
                detail["topic_alias"] = m.topic_alias
        elif isinstance(m, Connect):
            detail = {
                "protocol_string": m.protocol_name,
                "protocol_version": m.protocol_level,
                "client_id": m.client_id,
                "clean_start": m.clean_start,
                "keep_alive": m.keep_alive,
                "username_present": m.username is not None,
                "password_present": m.password_present,
            }
            if m.username is not None:
                detail["username"] = m.username
            if m.password is not None:
                detail["password"] = m.password
            if m.will is not None:
                detail["will"] = {
                    "topic": m.will.topic,
                    "qos": m.will.qos,
                    "retain": m.will.retain,
                    "payload_size": m.will.payload_size,
                    "payload_preview": m.will.payload_preview,
                }
                if m.will.properties:
                    detail["will"]["properties"] = m.will.properties
        elif isinstance(m, Connack):
            detail = {"session_present": m.session_present, **self._code(m.code)}
        elif isinstance(m, PacketIdAck):
            detail = {"packet_id": m.packet_id}
            if self.protocol_version == 5:  # 3.1.1 acks carry no reason code
                detail.update(self._code(m.code))
        elif isinstance(m, Subscribe):
            detail = {
                "packet_id": m.packet_id,
                "topics": [
                    {
                        "topic": s.topic_filter,
                        "qos": s.qos,
                        "no_local": s.no_local,
                        "retain_as_published": s.retain_as_published,
                        "retain_handling": s.retain_handling,
                    }
                    for s in m.subscriptions
                ],
            }
        elif isinstance(m, Unsubscribe):
            detail = {"packet_id": m.packet_id, "topics": list(m.topic_filters)}
        elif isinstance(m, CodesAck):
            detail = {"packet_id": m.packet_id, "reason_codes": [self._code(c) for c in m.codes]}
        elif isinstance(m, ReasonOnly) and self.protocol_version == 5 and name in ("DISCONNECT", "AUTH"):
            detail = self._code(m.code)
        if m is not None and m.properties:
            detail["properties"] = m.properties
        body[name.lower()] = detail
        return {"mqtt": body}
