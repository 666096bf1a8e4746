"""The ``opcua`` section of the replay summary (``zonewarden replay --summary-json``).

Counts follow Wireshark's: ``messages_by_type`` counts chunks (PDUs) by MessageType, and
``services_by_nodeid`` counts every decoded service message by its encoding NodeId (631 ReadRequest,
634 ReadResponse, ...). ``security_modes`` counts secure channels by the mode they were seen to use.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sensor.dissectors.base import ProtocolStats
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage, OpcUaTransport
from sensor.records import AppEvent, CertificateObservation, ProtocolAnomaly

_TYPES = ("HEL", "ACK", "OPN", "MSG", "CLO", "ERR")
_MODES = ("None", "Sign", "SignAndEncrypt")


class OpcUaStats(ProtocolStats):
    def __init__(self) -> None:
        self.messages: Counter[str] = Counter()
        self.services: Counter[int] = Counter()
        self.service_names: Counter[str] = Counter()
        self.policies: set[str] = set()
        self.modes: Counter[str] = Counter()
        self.certs: set[str] = set()
        self.cert_observations = 0
        self.anomalies: Counter[str] = Counter()
        self.events = 0
        self.encrypted_chunks = 0
        self.status_codes: Counter[str] = Counter()

    def observe(self, event: AppEvent) -> None:
        if isinstance(event, OpcUaMessage):
            self.events += 1
            for mtype, n in event.chunks:
                self.messages[mtype] += n
            if event.request_type_id is not None:
                self.services[event.request_type_id] += 1
            if event.response_type_id is not None:
                self.services[event.response_type_id] += 1
            if event.service:
                self.service_names[event.service] += 1
            self.policies.update(event.policies)
            if event.status is not None and event.status != "Good":
                self.status_codes[event.status] += 1
        elif isinstance(event, OpcUaTransport):
            self.events += 1
            self.messages[event.message_type] += 1
        elif isinstance(event, OpcUaChannelEvent):
            if event.kind == "mode":
                self.modes[event.security_mode] += 1
                if event.security_policy:
                    self.policies.add(event.security_policy)
            else:
                for mtype, n in event.uncounted_chunks:
                    self.messages[mtype] += n
                self.encrypted_chunks += event.encrypted_chunks
        elif isinstance(event, CertificateObservation):
            if event.app_proto == "opcua":
                self.certs.add(event.cert.sha256)
                self.cert_observations += 1
        elif isinstance(event, ProtocolAnomaly) and event.app_proto == "opcua":
            self.anomalies[event.kind] += 1

    def section(self) -> dict[str, Any]:
        by_type = {t: self.messages.get(t, 0) for t in _TYPES}
        if self.messages.get("RHE"):
            by_type["RHE"] = self.messages["RHE"]
        # The pipeline files this under "opcua" in the summary (StatsSink wraps by dissector name).
        return {
            "messages_by_type": by_type,
            "services_by_nodeid": {str(k): v for k, v in sorted(self.services.items())},
            "security_policies": sorted(self.policies),
            "security_modes": {m: self.modes.get(m, 0) for m in _MODES},
            "certificates": len(self.certs),
            "anomalies_by_kind": dict(sorted(self.anomalies.items())),
            "services_by_name": dict(sorted(self.service_names.items())),
            "certificate_observations": self.cert_observations,
            "encrypted_chunks": self.encrypted_chunks,
            "status_codes": dict(sorted(self.status_codes.items())),
            "events": self.events,
        }
