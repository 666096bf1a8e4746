"""MQTT 3.1 / 3.1.1 / 5.0 dissector (OASIS MQTT 3.1.1 and 5.0 standards).

Detection: port 1883 as a hint, and content: a CONNECT with protocol name ``MQTT``/``MQIsdp`` and a
matching level, or (mid-stream) whole packets with valid fixed headers whose bodies have structure,
e.g. a PUBLISH whose topic is printable UTF-8. HTTP and TLS are refused.
"""

from __future__ import annotations

from typing import ClassVar

from sensor.dissectors.base import Dissector, DissectorSession, Probe, ProtocolStats
from sensor.dissectors.mqtt import codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.session import MqttSession, plausible_stream
from sensor.dissectors.mqtt.stats import MqttStats
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import FlowRef

__all__ = ["MqttDissector", "MqttPacket", "MqttSession", "MqttStats"]

_NOT_MQTT_PREFIXES = (
    b"GET ",
    b"POST",
    b"PUT ",
    b"HEAD",
    b"HTTP",
    b"OPTI",
    b"DELE",
    b"PATC",
    b"CONN",
    b"SSH-",
)


class MqttDissector(Dissector):
    name: ClassVar[str] = "mqtt"
    ports: ClassVar[frozenset[int]] = frozenset({1883})

    def __init__(
        self, log_passwords: bool = False, max_message: int = DEFAULT_LIMITS.mqtt_max_message
    ) -> None:
        self.log_passwords = log_passwords
        self.max_message = max_message

    def probe(self, data: bytes, to_server: bool) -> Probe:
        if len(data) < 2:
            return Probe.MORE
        if data[0] == 0x16 and data[1] == 0x03:  # TLS record header
            return Probe.NO
        if data[:4] in _NOT_MQTT_PREFIXES:
            return Probe.NO
        if data[0] == 0x10:
            return self._probe_connect(data)
        good, strong = plausible_stream(data, self.max_message)
        if good < 0:
            return Probe.NO
        if strong:
            return Probe.YES
        if good >= 2:  # e.g. PINGREQ + PUBACK chains that end exactly on a packet boundary
            return Probe.YES
        return Probe.MORE

    def _probe_connect(self, data: bytes) -> Probe:
        """CONNECT (3.1.1 §3.1.2.1-2): fixed header, u16 name length, "MQTT"/"MQIsdp", level."""
        i = 1
        while i < len(data) and i <= 4 and data[i] & 0x80:
            i += 1
        if i > 4:
            return Probe.NO
        body = i + 1
        if len(data) < body + 2:
            return Probe.MORE
        name_len = (data[body] << 8) | data[body + 1]
        if name_len not in (4, 6):
            return Probe.NO
        if len(data) < body + 3 + name_len:
            have = data[body + 2 :]
            return Probe.MORE if any(n.startswith(have) for n in codes.PROTOCOL_NAMES) else Probe.NO
        name = data[body + 2 : body + 2 + name_len]
        levels = codes.PROTOCOL_NAMES.get(name)
        if levels is None:
            return Probe.NO
        return Probe.YES if data[body + 2 + name_len] in levels else Probe.NO

    def session(self, flow: FlowRef, limits: Limits) -> DissectorSession:
        return MqttSession(flow, limits, log_passwords=self.log_passwords)

    def stats(self) -> ProtocolStats:
        return MqttStats()
