"""The ``mqtt`` section of the replay summary (``zonewarden replay --summary-json``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sensor.dissectors.base import ProtocolStats
from sensor.dissectors.mqtt import codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish
from sensor.records import AppEvent, ProtocolAnomaly

# Distinct topics / client ids kept for the summary; a hostile stream of random topics must not
# grow the summary without bound (the count of the rest is reported).
MAX_SUMMARY_NAMES = 10_000


class MqttStats(ProtocolStats):
    """Folds :class:`MqttPacket` events and ``mqtt.*`` anomalies into counters."""

    def __init__(self) -> None:
        self.packets_by_type: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.topics: set[str] = set()
        self.client_ids: set[str] = set()
        self.anomalies: Counter[str] = Counter()
        self.names_dropped = 0
        self.publish_qos: Counter[int] = Counter()
        self.connack_codes: Counter[int] = Counter()

    def _add(self, names: set[str], name: str) -> None:
        if name in names:
            return
        if len(names) >= MAX_SUMMARY_NAMES:
            self.names_dropped += 1
            return
        names.add(name)

    def observe(self, event: AppEvent) -> None:
        if isinstance(event, MqttPacket):
            self.packets_by_type[codes.PACKET_TYPE_NAMES[event.packet_type]] += 1
            m = event.message
            if isinstance(m, Publish):
                self.publish_qos[m.qos] += 1
                if m.topic:
                    self._add(self.topics, m.topic)
            elif isinstance(m, Connect):
                self.versions[codes.VERSION_NAMES.get(m.protocol_level, str(m.protocol_level))] += 1
                self._add(self.client_ids, m.client_id)
            elif event.packet_type == codes.CONNACK and m is not None:
                self.connack_codes[getattr(m, "code", 0)] += 1
        elif isinstance(event, ProtocolAnomaly) and event.app_proto == "mqtt":
            self.anomalies[event.kind] += 1

    def section(self) -> dict[str, Any]:
        return {
            "packets_by_type": dict(sorted(self.packets_by_type.items())),
            "versions": dict(sorted(self.versions.items())),
            "topics": sorted(self.topics),
            "client_ids": sorted(self.client_ids),
            "anomalies_by_kind": dict(sorted(self.anomalies.items())),
            "publish_qos": {str(k): v for k, v in sorted(self.publish_qos.items())},
            "connack_codes": {str(k): v for k, v in sorted(self.connack_codes.items())},
            "names_dropped": self.names_dropped,
        }
